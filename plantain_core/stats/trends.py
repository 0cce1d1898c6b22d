"""Per-pair analyses of a probe's strongest units, for interpreters.

The paired t says a unit separates A from B on average; these ask how the per-pair
effect behaves across pairs: does it grow with a graded covariate (a creature's rank, a
scale gap), and is it carried by every pair or by one or two?

Per-pair effects are oriented by the sign of the unit's t, so "grows" means "the unit's
own effect gets stronger", whichever direction the unit moves.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .engine import top_by_abs_t

DEFAULT_TOP = 20
DEFAULT_PERMUTATIONS = 2000


def top_units(stats, k: int = DEFAULT_TOP) -> np.ndarray:
    """Indices of the k units with the largest finite |t|, strongest first."""
    return top_by_abs_t(stats.t, k)


def oriented_effects(stats, idx: np.ndarray) -> np.ndarray:
    """N×k per-pair differences of the chosen units, signed so the unit's mean is positive."""
    signs = np.sign(np.asarray(stats.t)[idx])
    signs[signs == 0] = 1.0
    return np.asarray(stats.diff)[:, idx] * signs


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=0)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    norm = np.sqrt((x**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / norm


def covariate_trend(
    stats,
    covariate: Sequence[float],
    *,
    top: int = DEFAULT_TOP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """Spearman correlation between a per-pair covariate and the top units' oriented
    per-pair effects, with a permutation p for the mean correlation.

    The same permutation of pairs is applied to every unit, so the correlation between
    units is kept in the null. Returns JSON-safe numbers.
    """
    cov = np.asarray(covariate, dtype=float)
    n = stats.diff.shape[0]
    if cov.shape != (n,):
        raise ValueError(f"covariate has {cov.shape[0]} values for {n} pairs")
    idx = top_units(stats, top)
    if len(idx) == 0 or np.ptp(cov) == 0:
        return {"units": 0, "mean_rho": None, "p_perm": None, "note": "no testable units or constant covariate"}
    effects = _standardise(_ranks(oriented_effects(stats, idx)))  # N×k
    zc = _standardise(_ranks(cov))  # N
    rho = zc @ effects  # k Spearman rhos
    valid = np.isfinite(rho)
    observed = float(np.mean(rho[valid])) if valid.any() else float("nan")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((permutations, n)), axis=1)
    null = (zc[perms] @ np.nan_to_num(effects[:, valid])) .mean(axis=1) if valid.any() else np.zeros(permutations)
    p = (1 + np.count_nonzero(np.abs(null) >= abs(observed) - 1e-12)) / (1 + permutations)
    return {
        "units": int(len(idx)),
        "unit_names": [stats.units[i] for i in idx],
        "rho": [None if not np.isfinite(r) else round(float(r), 6) for r in rho],
        "mean_rho": round(observed, 6) if np.isfinite(observed) else None,
        "p_perm": round(float(p), 6),
        "permutations": permutations,
        "n_positive_rho": int(np.count_nonzero(rho[valid] > 0)),
    }


def sign_agreement(stats, *, top: int = DEFAULT_TOP, axis_min: float = 0.8, detector_share: float = 0.5) -> dict[str, Any]:
    """Does each top unit's effect generalise across pairs, or do one or two pairs carry it?

    ``agreement`` is the fraction of pairs whose difference has the sign of the unit's
    mean; ``top2_share`` is the part of the unit's positive oriented effect supplied by
    its two largest pairs. Axis units agree in at least ``axis_min`` of pairs; class
    detectors have two pairs supplying at least ``detector_share`` of the effect while
    agreeing in fewer than ``axis_min`` of pairs.
    """
    idx = top_units(stats, top)
    if len(idx) == 0:
        return {"units": 0}
    eff = oriented_effects(stats, idx)
    agreement = (eff > 0).mean(axis=0)
    pos = np.clip(eff, 0, None)
    top2 = np.sort(pos, axis=0)[-2:].sum(axis=0)
    total = pos.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, top2 / total, np.nan)
    axis = agreement >= axis_min
    detector = (~axis) & (share >= detector_share)
    return {
        "units": int(len(idx)),
        "unit_names": [stats.units[i] for i in idx],
        "agreement": [round(float(a), 6) for a in agreement],
        "top2_share": [None if not np.isfinite(s) else round(float(s), 6) for s in share],
        "n_axis_units": int(axis.sum()),
        "n_class_detectors": int(detector.sum()),
        "n_other": int(len(idx) - axis.sum() - detector.sum()),
        "median_agreement": round(float(np.median(agreement)), 6),
        "axis_min": axis_min,
        "detector_share": detector_share,
    }
