"""The Python API: ``probe()``, ``run()``, ``load_run()`` and the :class:`Run` they return.

::

    import plantain_core as pt

    probe = pt.probe("ray")                                   # spec + pairs + providers
    run = pt.run(probe, model="tiny", out="runs/ray", layouts=["heads"])
    run.top(5)                                                # a pandas DataFrame
    again = pt.load_run("runs/ray")                           # any finished run folder

``run()`` takes the ``plantain run`` options as keywords (see
:class:`~plantain_core.config.RunConfig`) and writes the same run folder the command
does. See docs/python-api.md.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import sys
from typing import Any, Iterable, NamedTuple

import numpy as np

from .config import RunConfig, config_from_manifest
from .errors import PlantainError
from .report.analysis import CAPTURES, MANIFEST, load_captures, read_manifest
from .rundir.manifest import check_unit_rows
from .spec.probes import Probe, load_probe
from .stats.engine import top_by_abs_t
from .stats.results import CHECK_COLUMNS, SUMMARY, UNITS_COLUMNS, UNITS_CSV

CARD = "README.md"


class Captures(NamedTuple):
    """One layout's captures: ``a`` and ``b`` (N pairs × U units, float64), unit names, pair ids."""

    a: np.ndarray
    b: np.ndarray
    units: list[str]
    pair_ids: list[str]


class Run:
    """A run folder, read lazily: ``config``, ``manifest``, ``summary``, ``units()``,
    ``captures()``, ``top()``, ``card_path``. Made by :func:`run` and :func:`load_run`."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.config: RunConfig = config_from_manifest(self.manifest, str(self.path / MANIFEST))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, probe={self.config.probe!r}, model={self.config.model!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    @property
    def layouts(self) -> tuple[str, ...]:
        """The layouts with statistics: the captured ones, or per captured step (``heads@step3``)
        for a trajectory run (``--steps K``)."""
        if self.config.steps == 1:
            return self.config.layouts
        return tuple(f"{name}@step{s}" for name in self.config.layouts for s in self.config.captured_steps)

    @property
    def card_path(self) -> pathlib.Path:
        return self.path / CARD

    @functools.cached_property
    def summary(self) -> dict[str, Any]:
        """``summary.json``: statistics per layout, interpretation, confounds."""
        path = self.path / SUMMARY
        if not path.is_file():
            raise PlantainError(f"{path} not found: the run has no statistics yet (status {self.status!r}); "
                                f"finish it with --resume or run plantain report {self.path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise PlantainError(f"{path}: cannot read: {type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise PlantainError(f"{path}: expected a JSON object")
        return data

    def _layout(self, layout: str | None) -> str:
        if layout is None:
            return "heads" if "heads" in self.layouts else self.layouts[0]
        if layout not in self.layouts and layout not in self.config.layouts:
            raise PlantainError(f"layout {layout!r} was not captured in {self.path}; it has {', '.join(self.layouts)}")
        return layout

    def units(self, layout: str | None = None):
        """One row per unit of ``layout`` (default: ``heads`` when captured) with the
        units.csv columns: layout, unit, block, mean_diff, t, d, p, q, p_fwer, then d_low,
        d_high, p_tost, t_specific, q_specific, p_fwer_specific, t_length, p_length,
        p_fwer_length (docs/statistics.md)."""
        import pandas as pd

        layout = self._layout(layout)
        if layout not in self.layouts:
            raise PlantainError(f"layout {layout!r} has statistics per captured step in this trajectory run: use one "
                                f"of {', '.join(self.layouts)}")
        path = self.path / UNITS_CSV
        if not path.is_file():
            raise PlantainError(f"{path} not found: the run has no statistics yet (status {self.status!r})")
        numeric = UNITS_COLUMNS[3:] + CHECK_COLUMNS
        try:
            table = pd.read_csv(path, dtype={"layout": str, "unit": str, "block": str, **{c: float for c in numeric}},
                                keep_default_na=False, na_values={c: [""] for c in numeric}, encoding="utf-8")
            if list(table.columns) not in (list(UNITS_COLUMNS), list(UNITS_COLUMNS + CHECK_COLUMNS)):
                raise ValueError(f"columns {list(table.columns)[:18]}, expected {list(UNITS_COLUMNS + CHECK_COLUMNS)}")
        except (ValueError, TypeError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise PlantainError(f"{path}: not a plantain units table ({type(exc).__name__}: {str(exc)[:200]}); "
                                f"run plantain report {self.path}") from None
        check_unit_rows(path, table["layout"].value_counts().to_dict(), self.manifest, self.path)
        return table[table["layout"] == layout].reset_index(drop=True)

    def top(self, k: int = 10, layout: str | None = None):
        """The ``k`` units with the largest |t| (NaN never), strongest first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise PlantainError(f"top(k): k must be a non-negative integer, got {k!r}")
        table = self.units(layout)
        return table.iloc[top_by_abs_t(table["t"].to_numpy(dtype=float), int(k))].reset_index(drop=True)

    def captures(self, layout: str | None = None) -> Captures:
        """The raw captures of ``layout``: ``a, b, units, pair_ids = run.captures("heads")``.
        In a trajectory run ``a`` and ``b`` are pairs × steps × units for ``"heads"``, and
        pairs × units for one step (``"heads@step3"``)."""
        name = self._layout(layout)
        base, _, step = name.partition("@step")
        a, b, units, ids = load_captures(self.path, base)
        if step:
            k = self.config.captured_steps.index(int(step))
            a, b = a[:, k], b[:, k]
        return Captures(a, b, units, ids)

    def files(self) -> list[str]:
        """The run's files, relative to its folder."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()
                      and not p.name.startswith("."))


def probe(name_or_path: str | os.PathLike, *, spec_dirs: Iterable[str | os.PathLike] | str | os.PathLike = ()) -> Probe:
    """A probe by name (built-in, a plugin's, ``PLANTAIN_SPEC_PATH`` or ``spec_dirs``) or a spec file path."""
    return _find_probe(name_or_path, spec_dirs)


def _find_probe(name_or_path, spec_dirs=()) -> Probe:
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise PlantainError(f"probe(): expected a probe name or a spec path, got {name_or_path!r}")
    if isinstance(spec_dirs, (str, os.PathLike)):  # one folder, not its characters
        spec_dirs = [spec_dirs]
    return load_probe(name_or_path, spec_dirs)


def run(probe: Probe | str | os.PathLike, *, out: str | os.PathLike | None = None, resume: bool = False,
        progress: bool | None = None, figures: bool = True, **config) -> Run:
    """Run ``probe`` (a :class:`Probe`, a name or a spec path) and return its :class:`Run`.

    ``config`` keywords are the run options (``model``, ``seed``, ``layouts``,
    ``token_scope``, ``batch_size``, ``flips``, ...: :class:`RunConfig`). ``out``
    defaults to ``runs/<probe>-<model>-seed<seed>``; ``resume`` continues an
    interrupted run with its recorded options; ``progress`` (default: only when stderr
    is a terminal) shows a progress bar.
    """
    from .execute import build_config, execute

    for name, value in (("resume", resume), ("figures", figures), ("progress", progress)):
        if not isinstance(value, bool) and not (name == "progress" and value is None):
            raise PlantainError(f"run(): {name} must be True or False, got {value!r}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise PlantainError(f"run(): out must be a folder path, got {out!r}")
    if not isinstance(probe, Probe):
        probe = _find_probe(probe)
    reference = probe.reference or probe.name
    cfg = build_config(reference, config, out, resume)
    if progress is None:
        progress = sys.stderr.isatty()
    outcome = execute(probe, cfg, out, resume=resume, progress=progress, figures=figures)
    return Run(outcome.out)


def load_run(path: str | os.PathLike) -> Run:
    """A finished (or interrupted) run folder; every manifest field is checked."""
    path = pathlib.Path(path)
    if not (path / CAPTURES).is_dir() and (path / MANIFEST).is_file():
        raise PlantainError(f"{path} has no captures/ folder: not a complete plantain run folder")
    return Run(path)
