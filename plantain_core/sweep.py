"""``plantain sweep SWEEP.toml``: run every cell of a grid into its own folder under the
sweep folder, skipping complete cells, resuming partial ones and retrying failed ones.

The grid is :mod:`plantain_core.sweep_grid`, the sweep folder's manifest
:mod:`plantain_core.sweep_state`, the executors :mod:`plantain_core.sweep_exec`; the
cross-cell card is :mod:`plantain_core.sweep_report` and the cost planner
:mod:`plantain_core.sweep_plan`. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

from .runfolder import locked
from .sweep_exec import SweepOptions, run_cells
from .sweep_grid import load_grid
from .sweep_state import SweepState


def default_sweep_out(path) -> pathlib.Path:
    return pathlib.Path("sweeps") / pathlib.Path(path).stem


def run_sweep(path, out=None, options: SweepOptions = SweepOptions(), *,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep file ``path`` into ``out`` (default ``sweeps/<file stem>``); return
    the counts per status, the model loads and the folder. ``say(line)`` hears one line
    per finished cell."""
    options.check()
    grid = load_grid(path)
    cells = grid.cells()
    out = pathlib.Path(out) if out is not None else default_sweep_out(path)
    if out.exists() and not out.is_dir():
        from .errors import PlantainError

        raise PlantainError(f"--out {out} is a file, not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    say = say or (lambda line: None)
    with locked(out, create=True):  # one driver per sweep folder
        state = SweepState.open(out, grid, cells)
        skipped = [c.name for c in cells if state.cells[c.name]["status"] == "complete"]
        todo = [c for c in cells if c.name not in skipped]
        if skipped:
            say(f"{len(skipped)} of {len(cells)} cells already complete; skipped")
        tries = {c.name: 1 + options.retries for c in todo}
        tally: dict[str, int] = {"model_loads": 0}

        def started(cell, worker: str) -> None:
            state.mark(cell.name, "running", worker=worker, attempts=state.cells[cell.name]["attempts"] + 1,
                       error=None)

        while todo:
            again = []
            for outcome in run_cells(todo, out, options, started, tally):
                name = outcome.cell.name
                if outcome.ok:
                    state.mark(name, "complete", seconds=outcome.seconds, error=None)
                elif outcome.lost_worker and "requeued" in (outcome.error or ""):
                    state.mark(name, "pending", error=outcome.error)
                else:
                    tries[name] -= 1
                    state.mark(name, "failed", error=outcome.error)
                    if tries[name] > 0:
                        again.append(outcome.cell)
                done = state.counts()["complete"]
                what = "complete" if outcome.ok else (outcome.error or "failed")
                say(f"[{done}/{len(cells)}] {name}: {what}" + (f" ({outcome.seconds:.1f} s, {outcome.worker})"
                                                               if outcome.ok and outcome.seconds is not None else ""))
            todo = again
        return {"out": out, "counts": state.counts(), "model_loads": tally["model_loads"], "cells": len(cells),
                "skipped": len(skipped)}
