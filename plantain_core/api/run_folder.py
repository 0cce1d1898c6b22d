"""A run folder as Python reads it: :class:`Run` (lazy: config, manifest, summary,
tidy unit tables, captures, labelled data) and :class:`Captures`."""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, NamedTuple

import numpy as np

from ..config import RunConfig, config_from_manifest
from ..errors import PlantainError
from ..report.analysis import CAPTURES, MANIFEST, load_captures, read_manifest
from ..stats.engine import top_by_abs_t
from ..stats.results import SUMMARY

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

    def units(self, layout: str | None = None, *, step: int | None = None):
        """units.csv as a tidy DataFrame, indexed by unit name: every layout (a ``layout``
        column), or only ``layout``; in a trajectory run one row per unit and captured step,
        with integer ``step`` and its ``sigma`` (``layout="heads@step3"`` or ``step=3``
        picks one). Columns: layout, [step, sigma,] unit, block, mean_diff, t, d, p, q,
        p_fwer, then d_low, d_high, p_tost, t_specific, q_specific, p_fwer_specific,
        t_length, p_length, p_fwer_length (docs/statistics.md)."""
        from .tables import units_table

        table = units_table(self.path, self.manifest, self.config)
        return self._select(table, layout, step)

    def steps(self, layout: str | None = None):
        """steps.csv of a trajectory run: the across-steps test per unit and step
        (columns layout, unit, step, sigma, t, p_fwer_across, q_across), indexed by unit."""
        from .tables import steps_table

        return self._select(steps_table(self.path, self.manifest, self.config), layout, None)

    def _select(self, table, layout: str | None, step: int | None):
        if layout is not None:
            name = self._layout(layout)
            base, _, at = name.partition("@step")
            if at:
                if step is not None and int(at) != step:
                    raise PlantainError(f"layout {layout!r} and step={step} name different steps")
                step = int(at)
            table = table[table["layout"] == base]
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int) or step not in self.config.captured_steps \
                    or self.config.steps == 1:
                raise PlantainError(f"step={step!r} was not captured in {self.path}; captured steps: "
                                    f"{', '.join(map(str, self.config.captured_steps)) if self.config.steps > 1 else 'none (one step)'}")
            table = table[table["step"] == step]
        return table

    def top(self, k: int = 10, layout: str | None = None, *, step: int | None = None):
        """The ``k`` rows with the largest |t| (NaN never), strongest first, of ``layout``
        (default: ``heads`` when captured, else the first layout), over every captured step
        of a trajectory run unless ``step`` picks one."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise PlantainError(f"top(k=): k must be a non-negative integer, got {k!r}")
        if layout is None:
            layout = "heads" if "heads" in self.config.layouts else self.config.layouts[0]
        table = self.units(layout, step=step)
        return table.iloc[top_by_abs_t(table["t"].to_numpy(dtype=float), int(k))]

    def to_xarray(self):
        """The captures as an :class:`xarray.Dataset`: variables ``a`` and ``b`` over dims
        ``pair``, (``step``,) ``unit``, with the unit's name, block, kind, head and
        layout and the pair ids (and each step's sigma) as coordinates; every layout
        along one ``unit`` dim."""
        from .labelled import run_dataset

        return run_dataset(self)

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


def open_run(path) -> Run:
    """:class:`Run` of a run folder or ``hf://user/repo``, its messages in the CLI's words
    (``load_run`` is this for Python callers)."""
    from ..rundir.hub import resolve_run_path

    path = resolve_run_path(path)
    if not (path / CAPTURES).is_dir() and (path / MANIFEST).is_file() and not (path / SUMMARY).is_file():
        raise PlantainError(f"{path} has no captures/ folder: not a complete plantain run folder")
    return Run(path)
