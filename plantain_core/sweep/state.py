"""A sweep folder's manifest (``sweep.json``): every cell's configuration and status.

Only the process that drives the sweep writes it (atomically, under the sweep folder's
lock); workers write only their own cell folders. A cell counts as complete when its own
run folder says so (``manifest.json`` status ``complete``, the same configuration), so a
sweep killed at any point restarts from what is on disk. A cell whose configuration in
``sweep.json`` differs from the grid's is refused: results made under other conditions
never share a folder.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any

import attrs

from .. import __version__
from ..config import RunConfig
from ..errors import PlantainError
from ..rundir.fsutil import atomic_write_json
from .grid import Cell, SweepGrid

SWEEP_JSON = "sweep.json"
STATUSES = ("pending", "running", "complete", "failed")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cell_status(cell_dir: pathlib.Path, config: RunConfig, identity: dict[str, Any] | None = None) -> str:
    """``complete`` when the cell's run folder finished under ``config`` (and, given, the
    probe's ``identity`` now: manifest keys ``spec_sha256``, ``inputs``, ``pairs`` and
    their values), ``partial`` when it holds a run to resume (whose own resume check
    refuses what changed, naming it), ``pending`` when there is none."""
    path = cell_dir / "manifest.json"
    if not path.is_file():
        return "pending"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recorded = RunConfig.from_dict(manifest["config"])
    except Exception:  # unreadable: the run's own resume check will say why
        return "partial"
    if any(manifest.get(key) != value for key, value in (identity or {}).items()):
        return "partial"  # the probe's spec, a file it reads or its pairs changed since: never reuse its results
    # the run resolves what the grid leaves open (dtype, size, batch size): compare what the grid sets
    if any(getattr(config, f) is not None and getattr(config, f) != getattr(recorded, f)
           for f in RunConfig.fields() if f != "probe"):
        return "partial"  # its resume check refuses it, naming the differences
    return "complete" if manifest.get("status") == "complete" else "partial"


def _entry_problem(entry) -> str | None:
    """What is wrong with one cell entry of a received ``sweep.json``, or None."""
    if not isinstance(entry, dict):
        return "not an object"
    if entry.get("status") not in STATUSES:
        return f"status {str(entry.get('status'))[:40]!r}"
    attempts = entry.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 0 <= attempts <= 10**6:
        return f"attempts {str(attempts)[:40]!r}"
    seconds = entry.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
        return f"seconds {str(seconds)[:40]!r}"
    for key in ("error", "worker"):
        if entry.get(key) is not None and not isinstance(entry.get(key), str):
            return f"{key} is not a string"
    return None


def read_cells(path: pathlib.Path, advice: str = "") -> dict[str, dict[str, Any]]:
    """The ``cells`` of a received ``sweep.json``, each entry checked; anything else is one
    error naming the file (``advice`` is appended)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        if not isinstance(cells, dict):
            raise TypeError("cells is not an object")
    except Exception as exc:
        raise PlantainError(f"{path} is not a plantain sweep manifest ({type(exc).__name__});{advice}") from None
    for name, entry in cells.items():
        problem = _entry_problem(entry)
        if problem:
            raise PlantainError(f"{path} is not a plantain sweep manifest (cells.{str(name)[:80]!r}: {problem});{advice}")
    return cells


@attrs.define
class SweepState:
    """``sweep.json`` in memory; :meth:`save` writes it whole."""

    out: pathlib.Path
    data: dict[str, Any]

    @classmethod
    def open(cls, out: pathlib.Path, grid: SweepGrid, cells: list[Cell],
             identities: dict[str, dict] | None = None) -> "SweepState":
        """Create ``sweep.json``, or check the grid's cells against the one there.
        ``identities``: per probe reference, its identity now (:func:`cell_status`)."""
        path = out / SWEEP_JSON
        if path.exists() and not path.is_file():
            raise PlantainError(f"{path} is not a file; use another --out")
        cells_data = {c.name: {"config": c.config.as_dict(), "status": "pending", "attempts": 0, "error": None,
                               "worker": None, "seconds": None} for c in cells}
        if path.is_file():
            old_cells = read_cells(path, " use another --out")
            for name, cell in cells_data.items():
                before = old_cells.get(name)
                if before is None:
                    continue
                try:
                    was = RunConfig.from_dict(before.get("config"), where=f"{path}: cells.{name}.config")
                except PlantainError as exc:
                    raise PlantainError(str(exc)) from None
                now = RunConfig.from_dict(cell["config"])
                diffs = [f"{f}: was {getattr(was, f)!r}, now {getattr(now, f)!r}" for f in RunConfig.fields()
                         if getattr(was, f) != getattr(now, f)]
                if diffs:
                    raise PlantainError(f"{out}: cell {name} was run with other settings ({'; '.join(diffs)}); "
                                        "its results would mix with these: use another --out")
                cell.update({k: before.get(k) for k in ("attempts", "error", "worker", "seconds")})
                cell["attempts"] = int(cell["attempts"] or 0)
            for name, before in old_cells.items():  # cells the grid no longer has stay listed
                cells_data.setdefault(name, before)
        data = {"plantain_version": __version__, "created": _now(), "sweep_file": grid.path.name,
                "sweep_sha256": grid.sha256, "cells": cells_data}
        state = cls(out, data)
        for cell in cells:
            done = cell_status(out / cell.name, cell.config, (identities or {}).get(cell.config.probe)) == "complete"
            state.cells[cell.name]["status"] = "complete" if done else "pending"
        state.save()
        return state

    @property
    def cells(self) -> dict[str, dict[str, Any]]:
        return self.data["cells"]

    def mark(self, name: str, status: str, **fields) -> None:
        assert status in STATUSES
        self.cells[name].update(status=status, **fields)
        self.save()

    def save(self) -> None:
        self.data["updated"] = _now()
        atomic_write_json(self.out / SWEEP_JSON, self.data)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for cell in self.cells.values():
            out[cell["status"]] = out.get(cell["status"], 0) + 1
        return out
