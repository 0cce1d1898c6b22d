"""``plantain sweep SWEEP.toml``: run every cell of a grid into its own folder under the
sweep folder, skipping complete cells, resuming partial ones and retrying failed ones.

The grid is :mod:`plantain_core.sweep.grid`, the sweep folder's manifest
:mod:`plantain_core.sweep.state`, the executors :mod:`plantain_core.sweep.execute`; the
cross-cell card is :mod:`plantain_core.sweep.report` and the cost planner
:mod:`plantain_core.sweep.plan`. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

from ..errors import PlantainError
from ..rundir.folder import check_run_folder, locked
from .execute import SweepOptions, run_cells
from .grid import load_grid
from .state import SweepState


def default_sweep_out(path) -> pathlib.Path:
    return pathlib.Path("sweeps") / pathlib.Path(path).stem


def _sweep_folder(out) -> pathlib.Path:
    """``--out`` made, after checking it can hold a sweep: a folder (or nothing yet), not
    inside a run folder, holding no links (a linked cell folder would write elsewhere)."""
    if str(out).strip() == "":
        raise PlantainError("--out: an empty path; name the sweep folder")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise PlantainError(f"--out {out} is a file, not a folder; choose another --out")
    if (out / "manifest.json").is_file():
        raise PlantainError(f"--out {out} is a run folder (it holds manifest.json), not a sweep folder; choose "
                            "another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlantainError(f"--out {out}: cannot make the folder ({exc.strerror or exc})") from None
    return check_run_folder(out)


def _identities(cells) -> dict[str, dict]:
    """Each probe's identity as it resolves now (its spec's sha256, every file it reads,
    its pairs): a cell made from other inputs is not complete (its rerun is refused by
    the run's resume check, naming the file)."""
    from ..spec.probes import load_probe
    from ..capture.run_records import input_files, pair_records
    from ..capture.runner import spec_sha256

    out = {}
    for ref in {c.config.probe for c in cells}:
        probe = load_probe(ref)
        out[ref] = {"spec_sha256": spec_sha256(probe.spec), "inputs": input_files(probe),
                    "pairs": pair_records(probe.pairs, probe.spec.spec_dir)}
    return out


def run_sweep(path, out=None, options: SweepOptions = SweepOptions(), *,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the sweep file ``path`` (or a dict of its keys) into ``out`` (default
    ``sweeps/<file stem>``); return
    the counts per status, the model loads and the folder. ``say(line)`` hears one line
    per finished cell."""
    options.check()
    if isinstance(path, dict) and out is None:
        raise PlantainError("sweep(): a grid given as a dict needs out= (the sweep folder)")
    grid = load_grid(path)
    cells = grid.cells()
    out = _sweep_folder(out if out is not None else default_sweep_out(path))
    say = say or (lambda line: None)
    with locked(out, create=True):  # one driver per sweep folder
        state = SweepState.open(out, grid, cells, _identities(cells))
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
            for outcome in _stopped_cells_pending(state, run_cells(todo, out, options, started, tally)):
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


def _stopped_cells_pending(state: SweepState, outcomes):
    """``outcomes``, and on an interruption (Ctrl-C, SIGTERM) the running cells marked
    pending again (their folders keep the pairs they flushed and resume), not left 'running'."""
    try:
        yield from outcomes
    except KeyboardInterrupt:
        for name, entry in state.cells.items():
            if entry["status"] == "running":
                state.mark(name, "pending", error="interrupted")
        raise
