"""A run's captures as labelled N-d data (xarray): the pair × (step ×) unit arrays with
their names attached, so no one has to remember which axis is which."""

from __future__ import annotations

import re

import numpy as np

from ..report.analysis import load_captures
from ..stats.engine import block_of
from .tables import step_sigmas

_INDEX = re.compile(r"\.[A-Za-z]+(\d+)$")


def unit_coords(units: list[str], layout: str) -> dict[str, list]:
    """Per unit: its block (``joint[3]``), the block's kind (``joint``: the stream name
    before the index), its index within the block (head or slice, -1 if the name has
    none) and the layout."""
    blocks = [block_of(u) for u in units]
    return {
        "block": blocks,
        "kind": [b.split("[", 1)[0] for b in blocks],
        "index": [int(m.group(1)) if (m := _INDEX.search(u)) else -1 for u in units],
        "layout": [layout] * len(units),
    }


def run_dataset(run):
    """``run``'s captures (a :class:`~plantain_core.api.Run`) as an ``xarray.Dataset``."""
    import xarray as xr

    config = run.config
    parts, names, coords, pair_ids = [], [], {"block": [], "kind": [], "index": [], "layout": []}, None
    for layout in config.layouts:
        a, b, units, ids = load_captures(run.path, layout)
        pair_ids = ids
        parts.append((a, b))
        names += list(units)
        for key, values in unit_coords(list(units), layout).items():
            coords[key] += values
    trajectory = config.steps > 1
    dims = ("pair", "step", "unit") if trajectory else ("pair", "unit")
    a = np.concatenate([p[0] for p in parts], axis=-1)
    b = np.concatenate([p[1] for p in parts], axis=-1)
    all_coords = {"pair": list(pair_ids), "unit": names, **{k: ("unit", v) for k, v in coords.items()}}
    if trajectory:
        sigmas = step_sigmas(run.manifest)
        steps = list(config.captured_steps)
        all_coords["step"] = steps
        all_coords["sigma"] = ("step", [sigmas.get(s, np.nan) for s in steps])
    spec = run.manifest.get("spec") or {}
    direction = list(spec.get("direction") or ["A", "B"])
    attrs = {"probe": str(config.probe), "model": str(config.model), "seed": int(config.seed),
             "direction": f"{direction[0]} - {direction[1]}" if len(direction) == 2 else "A - B",
             "token_scope": str(config.token_scope)}
    return xr.Dataset({"a": (dims, a), "b": (dims, b)}, coords=all_coords, attrs=attrs)
