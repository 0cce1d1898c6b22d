"""A sweep folder as Python reads it: :class:`Sweep`, its cells as a DataFrame, each
cell's :class:`~plantain_core.api.run_folder.Run`, and the cross-cell report."""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

from ..errors import PlantainError
from ..rundir.folder import check_run_folder
from ..sweep.state import SWEEP_JSON, read_cells
from .run_folder import Run

#: the cells table's columns, after the cell name
CELL_COLUMNS = ("probe", "model", "seed", "steps", "layouts", "height", "width", "status", "run_dir")


class Sweep:
    """A sweep folder: ``cells`` (a DataFrame), ``run(cell)``, ``report()``."""

    def __init__(self, path: str | os.PathLike):
        self.path = check_run_folder(pathlib.Path(path))
        file = self.path / SWEEP_JSON
        if not file.is_file():
            what = "a run folder (load it with pt.load_run)" if (self.path / "manifest.json").is_file() else \
                "not a sweep folder"
            raise PlantainError(f"{self.path} has no {SWEEP_JSON}: {what}")
        cells = read_cells(file)
        for name in cells:
            if (self.path / str(name)).resolve().parent != self.path.resolve():
                raise PlantainError(f"{file}: cells.{str(name)[:80]!r}: not a folder name")
        self._cells: dict[str, dict[str, Any]] = cells

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, {len(self._cells)} cells)"

    @functools.cached_property
    def cells(self):
        """One row per cell, indexed by its folder name: probe, model, seed, steps, layouts,
        height, width, status and the cell's run folder."""
        import pandas as pd

        from ..config import RunConfig

        rows = {}
        for name, entry in self._cells.items():
            config = RunConfig.from_dict(entry.get("config"), where=f"{self.path / SWEEP_JSON}: cells.{name}.config")
            rows[name] = {"probe": config.probe, "model": config.model, "seed": config.seed, "steps": config.steps,
                          "layouts": ",".join(config.layouts), "height": config.height, "width": config.width,
                          "status": entry["status"], "run_dir": str(self.path / name)}
        return pd.DataFrame.from_dict(rows, orient="index", columns=list(CELL_COLUMNS))

    def run(self, cell: str | int) -> Run:
        """The :class:`Run` of ``cell`` (its folder name, or its row number in ``cells``)."""
        names = list(self._cells)
        if isinstance(cell, int) and not isinstance(cell, bool):
            if not 0 <= cell < len(names):
                raise PlantainError(f"run(cell=): row {cell} does not exist; the sweep has {len(names)} cells")
            cell = names[cell]
        if cell not in self._cells:
            raise PlantainError(f"run(cell=): no cell {cell!r} in {self.path}; cells: {', '.join(names[:10])}")
        if self._cells[cell]["status"] != "complete":
            raise PlantainError(f"cell {cell} is {self._cells[cell]['status']}, not complete; run the sweep again")
        return Run(self.path / cell)

    def report(self, *, figures: bool = True) -> pathlib.Path:
        """Write the sweep's card (README.md), sweep_summary.json and figures; return the card's path."""
        from ..sweep.report import report_sweep

        report_sweep(self.path, figures=figures)
        return self.path / "README.md"
