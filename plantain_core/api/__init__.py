"""The Python API: ``probe()``, ``load_model()``, ``run()``, ``load_run()``, ``compare()``,
``sweep()`` and ``load_sweep()``, and the :class:`Run` and :class:`Sweep` they return.

::

    import plantain_core as pt

    probe = pt.probe("ray")                                   # spec + pairs + providers
    model = pt.load_model("tiny")                             # loaded once, reused by every run
    run = pt.run(probe, model=model, out="runs/ray", layouts=["heads"])
    run.top(5)                                                # a pandas DataFrame
    again = pt.load_run("runs/ray")                           # any run folder, or hf://user/repo

``run()`` takes the ``plantain run`` options as keywords (see
:class:`~plantain_core.config.RunConfig`) and writes the same run folder the command
does; what the command prints as ``warning:`` arrives as a :class:`PlantainWarning`.
See docs/python-api.md.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Iterable

from ..config import FLAGS
from ..errors import PlantainError
from ..spec.probes import Probe, load_probe
from .run_folder import Captures, Run, open_run
from .sweeps import Sweep

#: CLI spellings in messages -> the keyword a Python caller passes
_KEYWORDS = {**{flag: f"{field}=" for field, flag in FLAGS.items() if flag.startswith("--")},
             "--out": "out=", "--resume": "resume=True", "--no-figures": "figures=False"}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(:)?( (?=[\w'\"./~-]))?")


def _keyword(match) -> str:
    """``--height: 100 …`` → ``height: 100 …``; ``--device cpu`` → ``device=cpu``."""
    flag, colon, space = match.groups()
    keyword = _KEYWORDS.get(flag)
    if keyword is None:
        return match.group(0)
    if colon:
        return keyword.rstrip("=") + colon + (space or "")
    return keyword + ("" if keyword.endswith("=") else space or "")


def python_errors(fn):
    """Errors of ``fn`` name the Python keyword (``height``, ``out=``) where the message
    names the CLI flag (``--height``, ``--out``); the exception keeps its class."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PlantainError as exc:
            if len(exc.args) == 1 and isinstance(exc.args[0], str):
                exc.args = (_FLAG.sub(_keyword, exc.args[0]),)
            raise
    return wrapper


@python_errors
def probe(name_or_path: str | os.PathLike, *, spec_dirs: Iterable[str | os.PathLike] | str | os.PathLike = ()) -> Probe:
    """A probe by name (built-in, a plugin's, ``PLANTAIN_SPEC_PATH`` or ``spec_dirs``) or a spec file path."""
    return _find_probe(name_or_path, spec_dirs)


def _find_probe(name_or_path, spec_dirs=()) -> Probe:
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise PlantainError(f"probe(): expected a probe name or a spec path, got {name_or_path!r}")
    if isinstance(spec_dirs, (str, os.PathLike)):  # one folder, not its characters
        spec_dirs = [spec_dirs]
    return load_probe(name_or_path, spec_dirs)


#: the run options a loaded model fixes
MODEL_OPTIONS = ("revision", "device", "dtype", "offload")


@python_errors
def load_model(model: str | os.PathLike = "tiny", **options):
    """Load ``model`` (a ``--model`` value: a name, hub id or local folder) once, for many
    :func:`run` calls: ``pt.run(probe, model=m, ...)``. ``options``: ``revision``,
    ``device``, ``dtype``, ``offload`` as in :func:`run`. Returns a
    :class:`~plantain_core.models.loaders.LoadedModel`."""
    from ..capture.prepare import load_for
    from ..config import RunConfig
    from ..models.devices import check_dtype_supported

    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise PlantainError(f"load_model(): unknown keyword {unknown[0]!r}; it takes {', '.join(MODEL_OPTIONS)} "
                            "(the other options belong to run())")
    if not isinstance(model, (str, os.PathLike)):
        raise PlantainError(f"load_model(): model= expects a model name, hub id or folder, got {type(model).__name__}")
    config = RunConfig.from_keywords("load_model", {"model": os.fspath(model), **options})
    bundle = load_for(config)
    check_dtype_supported(bundle.device, bundle.dtype)
    return bundle


def _with_loaded(config: dict[str, Any]):
    """Split a loaded model out of ``run()``'s keywords: the keywords it fixes (checked
    against any given) and the bundle; ``(config, None)`` when ``model`` is a name."""
    from ..models.devices import resolve_device
    from ..models.loaders import LoadedModel

    bundle = config.get("model")
    if not isinstance(bundle, LoadedModel):
        return config, None
    fixed = {"model": bundle.model_arg, "revision": bundle.revision, "device": bundle.device,
             "dtype": bundle.dtype_name, "offload": bundle.offload}
    for key in MODEL_OPTIONS:
        given = config.get(key)
        if given is None or given == fixed[key] or (key == "device" and resolve_device(str(given)) == bundle.device):
            continue
        raise PlantainError(f"run(): {key}={given!r} differs from the loaded model's {key}={fixed[key]!r}; pass "
                            f"{key}= to pt.load_model() instead (or leave it out here)")
    # the device as given (default auto): the record says how the run was asked for, as from the CLI
    return {**config, **{k: v for k, v in fixed.items() if k != "device"}}, bundle


@python_errors
def run(probe: Probe | str | os.PathLike, *, out: str | os.PathLike | None = None, resume: bool = False,
        progress: bool | None = None, figures: bool = True, **config) -> Run:
    """Run ``probe`` (a :class:`Probe`, a name or a spec path) and return its :class:`Run`.

    ``config`` keywords are the run options (``model``, ``seed``, ``layouts``,
    ``token_scope``, ``batch_size``, ``flips``, ...: :class:`RunConfig`); ``model`` may be
    a model :func:`load_model` loaded, reused as it is. ``out`` defaults to
    ``runs/<probe>-<model>-seed<seed>``; ``resume`` continues an interrupted run with its
    recorded options; ``progress`` (default: only when stderr is a terminal) shows a
    progress bar. The run's warnings (length confound, truncation, small N, specificity
    the data cannot tell) are raised as :class:`~plantain_core.errors.PlantainWarning`.
    """
    from ..execute import build_config, execute
    from ..report.advisories import warn_advisories

    for name, value in (("resume", resume), ("figures", figures), ("progress", progress)):
        if not isinstance(value, bool) and not (name == "progress" and value is None):
            raise PlantainError(f"run(): {name}= must be True or False, got {value!r}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise PlantainError(f"run(): out= must be a folder path, got {out!r}")
    if not isinstance(probe, Probe):
        probe = _find_probe(probe)
    config, bundle = _with_loaded(config)
    reference = probe.reference or probe.name
    cfg = build_config(reference, config, out, resume)
    if progress is None:
        progress = sys.stderr.isatty()
    outcome = execute(probe, cfg, out, resume=resume, progress=progress, figures=figures, model=bundle)
    if outcome.main:
        warn_advisories(outcome.summary, stacklevel=4)
    return Run(outcome.out)


@python_errors
def load_run(path: str | os.PathLike) -> Run:
    """A finished (or interrupted) run folder, or a run published with ``plantain publish``
    (``hf://user/repo``, downloaded into the hub cache); every manifest field is checked."""
    return open_run(path)


@python_errors
def compare(*runs: Run | str | os.PathLike, step: int | None = None, q: float = 0.05):
    """Runs of different probes on one model, compared unit by unit: a DataFrame with one
    row per shared layout (and captured step) and pair of runs: ``layout``, ``step``,
    ``a``, ``b``, ``units``, ``pearson_r`` and ``spearman_r`` of per-unit t, and the
    FWER (p_fwer < 0.05) and BH (q < ``q``) hits of each, of both, and their Jaccard
    overlap. ``step`` picks one step of trajectory runs; a one-step run compares with
    every captured step of a trajectory run otherwise."""
    import pandas as pd

    from ..report.compare import compare_runs

    paths = [r.path if isinstance(r, Run) else r for r in runs]
    result = compare_runs(paths, q, step=step)
    return pd.DataFrame(result["rows"])


@python_errors
def sweep(grid: dict | str | os.PathLike, *, out: str | os.PathLike | None = None, executor: str = "local",
          workers: int | None = None, retries: int = 0, figures: bool = True, address: str | None = None) -> Sweep:
    """Run a sweep (``grid``: a SWEEP.toml path, or a dict with its keys, spec paths relative to
    the working folder) into ``out`` and return its :class:`Sweep`; complete cells are skipped."""
    from ..sweep.execute import SweepOptions
    from ..sweep.run import run_sweep

    if not isinstance(grid, (dict, str, os.PathLike)):
        raise PlantainError(f"sweep(): grid= expects a dict of sweep keys or a SWEEP.toml path, got {type(grid).__name__}")
    options = SweepOptions(executor=executor, address=address, workers=workers, retries=retries, figures=figures)
    result = run_sweep(grid, out, options)
    return Sweep(result["out"])


@python_errors
def load_sweep(path: str | os.PathLike) -> Sweep:
    """A sweep folder (``plantain sweep`` or :func:`sweep` made it)."""
    return Sweep(path)


__all__ = ["Captures", "Run", "Sweep", "probe", "load_model", "run", "load_run", "compare", "sweep", "load_sweep"]
