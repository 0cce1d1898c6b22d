"""One probe run from start to card: the run folder, the capture, statistics and status.

``plantain run`` and the Python API's ``run()`` both come here, so a run made from a
notebook and one made from the shell write the same folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
from typing import Any, Mapping

import attrs

from .capture.distributed import current_share
from .config import RunConfig, config_from_manifest
from .errors import PlantainError
from .rundir.folder import OWN_FILES, disk_error, locked
from .rundir.fsutil import atomic_write_json

MANIFEST = "manifest.json"


def slug(model: str) -> str:
    """A model reference (hub id, folder, name) as one folder-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", pathlib.Path(model).name if "/" in model else model).strip("-") or "model"


def default_out(name: str, model: str, seed: int) -> pathlib.Path:
    return pathlib.Path("runs") / f"{name}-{slug(model)}-seed{seed}"


def update_manifest(out: pathlib.Path, **fields) -> None:
    """Add fields to the run's manifest (atomically), e.g. the final status."""
    path = out / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(fields)
    atomic_write_json(path, manifest)


def build_config(probe: str, given: Mapping[str, Any], out: str | os.PathLike | None, resume: bool) -> RunConfig:
    """The config of a run from the options the user gave. A resumed run starts from the
    config its manifest records, so ``--resume`` needs no other option; a given option
    that changes the captures is refused by the runner's resume check."""
    manifest_path = pathlib.Path(out) / MANIFEST if out is not None else None
    if resume and manifest_path is not None and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PlantainError(f"cannot resume {out}: {MANIFEST} is unreadable ({type(exc).__name__}: "
                                f"{str(exc)[:200]}); start a new run in another --out") from None
        if not isinstance(manifest, dict):
            raise PlantainError(f"cannot resume {out}: {MANIFEST} is not a plantain manifest")
        from .capture.run_records import with_local_model

        # the manifest names a local model folder only; its path is kept beside it, unpublished
        recorded = with_local_model(pathlib.Path(out), config_from_manifest(manifest, str(manifest_path)),
                                    given.get("model"))
        config = recorded.evolve(probe=probe, **dict(given))
        diffs = config.capture_differences(recorded)
        if diffs:  # refused before a model is loaded (or downloaded)
            raise PlantainError(f"cannot resume {out}: the run was started with other settings ({'; '.join(diffs)})")
        return config
    return RunConfig.from_keywords(probe, given)


@attrs.frozen
class Outcome:
    """What :func:`execute` did: the run folder, the config it ran under, summary.json's content."""

    out: pathlib.Path
    config: RunConfig
    summary: dict
    main: bool = True  # False in the other processes of a run split across processes: they write nothing


def prepare_out(out: pathlib.Path, resume: bool) -> pathlib.Path | None:
    """Check ``out`` can take this run; return the outermost folder the run will create
    (``out`` or a missing parent), so that a failure before any capture removes exactly
    what it made, or None when ``out`` exists. ``--resume`` on a missing or empty folder
    starts the run."""
    if out.exists() and not out.is_dir():
        raise PlantainError(f"--out {out} is a file, not a folder; choose another --out")
    created = None
    for folder in [out, *out.absolute().parents]:
        if folder.exists():
            break
        created = folder
    if not created and any(p.name not in OWN_FILES for p in out.iterdir()):
        if not resume:
            raise PlantainError(f"--out {out} exists and is not empty; pass --resume to continue it or choose "
                                "another --out")
        if not (out / MANIFEST).is_file():
            raise PlantainError(f"--resume: {out} holds no plantain run (no {MANIFEST}) and is not empty; "
                                "choose another --out")
    return created


def execute(probe, config: RunConfig, out=None, *, resume: bool = False, progress: bool = True,
            figures: bool = True, model=None) -> Outcome:
    """Capture ``probe`` under ``config`` into ``out`` (default ``runs/<probe>-<model>-seed<seed>``),
    then statistics, result files and card. ``model``: an already loaded bundle.

    An interpreter that fails marks the run failed and raises after every other file is
    written; an interruption (Ctrl-C, SIGTERM) marks it interrupted and propagates.
    """
    from .report.analysis import analyze_run
    from .capture.prepare import check_loaded, checked_config, load_bundle
    from .capture.runner import run_probe

    from .spec.probes import check_images_inside

    spec = probe.spec
    check_images_inside(probe, config.allow_outside_images)  # before a folder or a model is touched
    # checked once, before the run folder exists, and loaded once (inside the lock); the
    # runner takes the bundle as it is
    load_config = checked_config(probe, config.for_spec(spec)) if model is None else None
    if model is not None:
        check_loaded(probe, model)
    out = pathlib.Path(out) if out is not None else default_out(spec.name, config.model or spec.model.id, config.seed)
    share = current_share()
    if share is not None and not share.is_main:  # capture this process's pairs; the main process writes
        run_probe(probe, out, config, resume=resume, progress=False, model=model or load_bundle(probe, load_config))
        return Outcome(out, config, {}, main=False)
    created = prepare_out(out, resume)
    try:
        with locked(out, create=True):  # a second process on this folder is refused, naming the holder
            model = model or load_bundle(probe, load_config)
            manifest = run_probe(probe, out, config, resume=resume, progress=progress, model=model, figures=figures)
            # the resolved config, naming the probe as the user did (the manifest may shorten a path)
            config = RunConfig.from_dict(manifest["config"]).evolve(probe=config.probe)
            summary = analyze_run(out, config, figures=figures)
            error = summary.get("interpreter_error")
            # The statistics, result files and card are written; a failed interpreter's analyses are not.
            update_manifest(out, status="failed" if error else "complete", **({"error": error} if error else {}))
    except BaseException as exc:
        # Leave nothing half-written: a run that failed before capturing anything is removed.
        if created is not None and out.exists() and not any((out / "captures").glob("*.npz")):
            shutil.rmtree(out, ignore_errors=True)
            for folder in out.absolute().parents:  # parents the run made, if still empty
                if not folder.is_relative_to(created):
                    break
                try:
                    folder.rmdir()  # refuses a folder that is not empty
                except OSError:
                    break
        if isinstance(exc, OSError):  # the disk, not plantain: name the path and the reason
            raise disk_error(out, exc) from exc
        raise
    if error:
        raise InterpreterFailed(error, Outcome(out, config, summary))
    return Outcome(out, config, summary)


class InterpreterFailed(PlantainError):
    """The probe ran and its statistics and card were written, but the interpreter failed."""

    def __init__(self, error: str, outcome: Outcome):
        self.outcome = outcome
        resume = outcome.config.command(outcome.out, resume=True)
        super().__init__(f"{error}; the run is marked failed (statistics, result files and card were written "
                         f"without its analyses). Fix the plugin, then: {resume}")
