"""Statistics across the denoising trajectory: one family of units × captured steps.

Each captured step has its own per-unit statistics (``heads@step3``, computed like any
layout). Across steps, the max-|t| sign-flip FWER is taken over every unit × step cell
with the same sign patterns for all steps (a pattern flips a pair at every step, which
keeps the dependence between steps), BH over all cells, and per unit the step of peak
|t| and the sign consistency over steps. See docs/statistics.md.
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import numpy as np

from .clusters import (CLUSTERS_CSV, TFCE_CSV, TFCE_DEFAULT, clusters_csv, clusters_summary, tfce_csv,
                       trajectory_clusters)
from .engine import LayoutStats, fwer_p, null_signs, sign_flip_null

STEPS_CSV = "steps.csv"
ALPHA = 0.05


def across_steps(per_step: Mapping[int, LayoutStats], tfce: bool | Mapping[str, float] | None = None
                 ) -> dict[str, Any]:
    """The across-steps family of one layout: arrays (S × U), the summary numbers, and the
    clusters of consecutive steps per unit (with ``tfce``, True for the default parameters or
    a mapping of them: TFCE too, ``stats.clusters``)."""
    from statsmodels.stats.multitest import multipletests

    steps = sorted(per_step)
    first = per_step[steps[0]]
    n = first.n_pairs
    t = np.stack([per_step[s].t for s in steps])  # S × U
    p = np.stack([per_step[s].p for s in steps])
    tested = np.isfinite(t)
    diff = np.concatenate([per_step[s].diff for s in steps], axis=1)  # N × (S·U), step-major
    cols = tested.ravel()
    d = diff[:, cols]
    z = d / np.sqrt((d * d).sum(axis=0))
    signs, exact = null_signs(n, first.flips, first.seed)
    _, null_max = sign_flip_null(z, signs, first.thresholds)
    p_fwer = fwer_p(np.abs(t).ravel(), null_max, exact).reshape(t.shape)
    q = np.full(t.shape, np.nan)
    if tested.any():
        q[tested] = multipletests(p[tested], method="fdr_bh")[1]
    tfce = TFCE_DEFAULT if tfce is True else (tfce or None)
    clusters = trajectory_clusters(t, diff.reshape(n, len(steps), -1), signs, exact, tfce)
    summary = {**_summary(steps, t, p_fwer, q, first), **clusters_summary(clusters, steps, first.units)}
    return {"steps": steps, "t": t, "p_fwer": p_fwer, "q": q, "units": first.units, "clusters": clusters,
            "summary": summary}


def _summary(steps: Sequence[int], t: np.ndarray, p_fwer: np.ndarray, q: np.ndarray, first: LayoutStats) -> dict:
    tested = np.isfinite(t)
    sig = tested & np.isfinite(p_fwer) & (p_fwer < ALPHA)
    any_unit = sig.any(axis=0)
    abs_t = np.where(tested, np.abs(t), -1.0)
    peak = abs_t.argmax(axis=0)  # per unit, row of the step with the largest |t| (the earliest on ties)
    peak_sign = np.sign(t[peak, np.arange(t.shape[1])])
    n_tested = tested.sum(axis=0)
    same = (np.sign(t) == peak_sign[None, :]) & tested
    consistency = np.where(n_tested > 0, same.sum(axis=0) / np.maximum(n_tested, 1), np.nan)
    stable = stable_units(t, sig)
    early, late = halves(sig)
    return {
        "steps": list(steps),
        "cells": int(t.size),
        "p_fwer_lt_0.05": int(sig.sum()),
        "q_lt_0.05": int(np.count_nonzero(q[np.isfinite(q)] < ALPHA)),
        "units_any_step": int(any_unit.sum()),
        "stable_units": int(stable.sum()),
        "transient_units": int((any_unit & ~stable).sum()),
        "per_step": [int(x) for x in sig.sum(axis=1)],
        "early_share": (early / (early + late)) if early + late else None,
        # per captured step (aligned with "steps"), how many significant units peak there, and the
        # step most of them peak at (the earliest on ties): numbers, not a histogram keyed by strings
        "peak_step_counts": [int(c) for c in np.bincount(peak[any_unit], minlength=len(steps))],
        "peak_step": int(steps[int(np.bincount(peak[any_unit], minlength=len(steps)).argmax())])
        if any_unit.any() else None,
        "top_units": [{"unit": first.units[u], "t": [float(x) for x in t[:, u]], "peak_step": int(steps[peak[u]]),
                       "sign_consistency": float(consistency[u])}
                      for u in np.argsort(-abs_t.max(axis=0), kind="stable")[:8] if abs_t[:, u].max() >= 0],
    }


def stable_units(t: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """Per unit: significant at half or more of the steps where it was tested (finite t),
    and one sign at all of its significant steps. Steps where it is not significant may
    have either sign: a noise step's sign says nothing."""
    n_tested = np.isfinite(t).sum(axis=0)
    sig_steps = sig.sum(axis=0)
    mixed = (sig & (t > 0)).any(axis=0) & (sig & (t < 0)).any(axis=0)
    return (sig_steps > 0) & (2 * sig_steps >= n_tested) & ~mixed


def halves(sig: np.ndarray) -> tuple[int, int]:
    """Significant cells in the first ⌊S/2⌋ and the last ⌊S/2⌋ captured steps. With an odd
    count the middle step is in neither half: counted as early it made an effect spread
    evenly over 3 steps read "mostly early" (2 of 3 cells)."""
    k = sig.shape[0] // 2
    return int(sig[:k].sum()), int(sig[sig.shape[0] - k:].sum())


def steps_csv(families: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per layout, unit and captured step: t, FWER p over all units × steps, BH q."""
    from .results import fmt

    buf = io.StringIO()
    buf.write("layout,unit,step,t,p_fwer_across,q_across\n")
    for name, fam in families.items():
        for k, step in enumerate(fam["steps"]):
            for u, unit in enumerate(fam["units"]):
                buf.write(",".join(fmt(v) for v in (name, unit, step, fam["t"][k, u], fam["p_fwer"][k, u],
                                                    fam["q"][k, u])) + "\n")
    return buf.getvalue()


def write_family_files(folder, families: Mapping[str, Mapping[str, Any]]) -> None:
    """steps.csv, clusters.csv and (with TFCE) tfce.csv of a trajectory run's families
    (nothing without one)."""
    from ..rundir.fsutil import atomic_write_text

    if families:
        atomic_write_text(folder / STEPS_CSV, steps_csv(families))
        atomic_write_text(folder / CLUSTERS_CSV, clusters_csv(families))
        if (tfce := tfce_csv(families)) is not None:
            atomic_write_text(folder / TFCE_CSV, tfce)


def plain_summary(name: str, s: Mapping[str, Any], sigmas: Mapping[int, float]) -> str:
    """The card's sentences: how many cells and units, early or late, stable or transient."""
    steps = s["steps"]
    span = (f" (σ from {sigmas[steps[0]]:.2f} to {sigmas[steps[-1]]:.2f})"
            if steps[0] in sigmas and steps[-1] in sigmas else "")
    text = (f"`{name}` across {len(steps)} captured steps{span}: {s['p_fwer_lt_0.05']:,} of {s['cells']:,} unit × step "
            f"cells pass the max-|t| FWER test over all units and steps ({s['q_lt_0.05']:,} with BH q < 0.05). "
            f"{s['units_any_step']:,} units pass at some step: {s['stable_units']:,} stable (significant at half or "
            f"more of the steps where they were tested, all with one sign) and {s['transient_units']:,} transient.")
    share = s.get("early_share")
    if share is not None:
        where = ("mostly early (near pure noise)" if share >= 2 / 3 else "mostly late (near the image)"
                 if share <= 1 / 3 else "throughout the trajectory")
        among = " outside the middle step" if len(steps) % 2 else ""
        text += (f" Of the significant cells{among}, {100 * share:.0f}% lie in the first half of the steps: the axis is "
                 f"carried {where}.")
    return text
