"""A run's result tables as tidy pandas DataFrames, checked against the manifest before
anyone reads them: units.csv (one row per unit, layout and captured step) and steps.csv.

A run folder may have come from anyone, so a table that does not hold exactly the
layouts and unit counts its manifest records is one error naming the file, never a
short or padded table."""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from ..errors import PlantainError
from ..rundir.manifest import check_unit_rows
from ..stats.across_steps import STEPS_CSV
from ..stats.results import CHECK_COLUMNS, UNITS_COLUMNS, UNITS_CSV


def _read_csv(path: pathlib.Path, dtypes: Mapping[str, Any], numeric, run_dir, what: str):
    import pandas as pd

    if not path.is_file():
        raise PlantainError(f"{path} not found: the run has no statistics yet; run plantain report {run_dir}")
    try:
        return pd.read_csv(path, dtype={**dtypes, **{c: float for c in numeric}}, keep_default_na=False,
                           na_values={c: [""] for c in numeric}, encoding="utf-8")
    except (ValueError, TypeError, UnicodeDecodeError, OSError, pd.errors.ParserError) as exc:
        raise PlantainError(f"{path}: not a plantain {what} table ({type(exc).__name__}: {str(exc)[:200]}); "
                            f"run plantain report {run_dir}") from None


def step_sigmas(manifest: Mapping[str, Any]) -> dict[int, float]:
    """Captured step index -> the scheduler's sigma there, as the run recorded it."""
    out = {}
    for entry in manifest.get("trajectory") or ():
        if isinstance(entry, dict) and isinstance(entry.get("index"), int) and isinstance(entry.get("sigma"), (int, float)):
            out[entry["index"]] = float(entry["sigma"])
    return out


def units_table(run_dir: pathlib.Path, manifest: Mapping[str, Any], config):
    """units.csv, tidy: columns ``layout`` (the captured layout), for a trajectory run
    ``step`` (int) and ``sigma``, then ``unit``, ``block`` and the statistics; the index is
    the unit name. Every layout holds the manifest's unit count, at every captured step."""
    import numpy as np

    path = run_dir / UNITS_CSV
    numeric = UNITS_COLUMNS[3:] + CHECK_COLUMNS
    table = _read_csv(path, {"layout": str, "unit": str, "block": str}, numeric, run_dir, "units")
    if list(table.columns) not in (list(UNITS_COLUMNS), list(UNITS_COLUMNS + CHECK_COLUMNS)):
        raise PlantainError(f"{path}: not a plantain units table (columns {list(table.columns)[:18]}, expected "
                            f"{list(UNITS_COLUMNS + CHECK_COLUMNS)}); "
                            f"run plantain report {run_dir}")
    steps = config.captured_steps if config.steps > 1 else None
    expected = [name if steps is None else f"{name}@step{s}" for name in config.layouts for s in (steps or [None])]
    got = table["layout"].value_counts().to_dict()
    check_unit_rows(path, got, manifest, run_dir)
    if set(got) != set(expected):  # a layout the manifest does not record
        raise PlantainError(f"{path}: holds layouts {sorted(got)}, the manifest records {sorted(expected)}; "
                            f"run plantain report {run_dir}")
    if steps is not None:
        base_step = table["layout"].str.rsplit("@step", n=1, expand=True)
        table.insert(1, "step", base_step[1].astype(int))
        table["layout"] = base_step[0]
        sigmas = step_sigmas(manifest)
        table.insert(2, "sigma", table["step"].map(lambda s: sigmas.get(int(s), np.nan)).astype(float))
    table.index = table["unit"].to_numpy()
    return table


def steps_table(run_dir: pathlib.Path, manifest: Mapping[str, Any], config):
    """steps.csv of a trajectory run (the across-steps test per unit and step), with
    ``sigma`` beside ``step``; the index is the unit name."""
    import numpy as np

    if config.steps == 1:
        raise PlantainError(f"{run_dir} captured one step: it has no steps.csv (run with steps=K for a trajectory)")
    path = run_dir / STEPS_CSV
    table = _read_csv(path, {"layout": str, "unit": str, "step": int}, ("t", "p_fwer_across", "q_across"), run_dir, "steps")
    if list(table.columns) != ["layout", "unit", "step", "t", "p_fwer_across", "q_across"]:
        raise PlantainError(f"{path}: columns {list(table.columns)[:8]}, expected layout, unit, step, t, "
                            f"p_fwer_across, q_across; run plantain report {run_dir}")
    sigmas = step_sigmas(manifest)
    table.insert(3, "sigma", table["step"].map(lambda s: sigmas.get(int(s), np.nan)).astype(float))
    table.index = table["unit"].to_numpy()
    return table
