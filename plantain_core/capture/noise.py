"""The run's own kernel noise floor: a few stimuli passed a second time, each unit's capture
compared with the first pass.

Repeated forwards on identical inputs are not bit-identical on GPUs (bf16 kernels with
non-deterministic reductions, batch-composition-dependent tiling: diffusers #10233), so part of
every A − B difference is kernel noise. The second pass runs the chosen A stimuli together in
one batch (another batch composition than the run's), so the floor covers both the
nondeterminism and the batch dependence the run's own passes have. On a CPU in fp32 it is
usually exactly 0. ``summary.json`` carries it per layout and the card states it beside the
effects (:func:`noise_summary`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: stimuli passed twice (A sides of the first pairs of the run)
NOISE_STIMULI = 4


def measure_noise_floor(inputs, cap, arrays, pairs: Sequence[int], k: int = NOISE_STIMULI) -> dict[str, Any] | None:
    """Pass the A stimuli of ``pairs[:k]`` again under ``cap`` (a one-step run's capture) and
    return, per layout, each unit's largest |second − first| over them (the floor)."""
    chosen = [(int(i), 0) for i in list(pairs)[:k]]
    if not chosen:
        return None
    again: dict[str, list[np.ndarray]] = {}
    order: list[int] = []
    for group in inputs.groups(chosen):
        inputs.forward(group)
        for name, rows in cap.take().items():
            again.setdefault(name, []).append(rows)
        order += [i for i, _ in group]
    out: dict[str, Any] = {"stimuli": len(order), "pairs_index": order, "layouts": {}}
    for name, parts in again.items():
        second = np.concatenate(parts, axis=0)
        first = arrays[name][0][order]
        out["layouts"][name] = np.abs(second - first).max(axis=0).tolist()
    return out


def noise_summary(record: Any, layout: str, mean_diff: np.ndarray) -> dict[str, Any] | None:
    """``summary.json``'s noise floor of one layout: the largest and median per-unit floor and
    how many units have a |mean D| at or below their own floor (effects kernels could make)."""
    if not isinstance(record, dict) or not isinstance(record.get("layouts"), dict):
        return None
    floor = record["layouts"].get(layout.split("@", 1)[0])
    if not isinstance(floor, list) or len(floor) != len(mean_diff):
        return None
    floor_arr = np.asarray(floor, dtype=np.float64)
    below = np.isfinite(mean_diff) & (np.abs(mean_diff) <= floor_arr)
    return {"stimuli": int(record.get("stimuli", 0)), "max_abs": float(floor_arr.max(initial=0.0)),
            "median_abs": float(np.median(floor_arr)) if len(floor_arr) else 0.0,
            "units_at_or_below": int(below.sum())}
