"""The causal check's selection halves and intervals (pure numpy/scipy; docs/causal.md).

Held-out selection: the pairs are split in two halves, seeded; the units of half 1's top
(by |t| computed on half 1's pairs only, or by the attribution estimate averaged over
half 1's pairs) are measured on half 2, and vice versa (cross-fitting). ``same`` selects
on every pair and measures on the same pairs (double-dipped: the old behaviour).

Intervals: a percentile bootstrap over the measured pairs, resampled within each half,
for the selected units' effect, the Spearman correlations and the top-K overlaps; each
overlap beside its chance value K²/U.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..stats.engine import paired_t, top_by

SELECTIONS = ("held-out", "same")
BOOTSTRAP = 2000  # resamples of the pairs per interval
LEVEL = 95
MIN_SETS = 5  # fewer unit sets leave a Spearman ρ = 1 too likely by chance (1/3! = 1/6 with 3)
_SPLIT, _BOOT = 0x5E1EC7, 0xB0075  # salts: the split and the resamples draw apart from the control sets


def split_pairs(n: int, seed: int) -> list[np.ndarray]:
    """Two halves of the pairs 0..n-1 (sizes ⌊n/2⌋ and ⌈n/2⌉), seeded, each sorted."""
    order = np.random.default_rng([int(seed), _SPLIT]).permutation(int(n))
    return [np.sort(order[:n // 2]), np.sort(order[n // 2:])]


def _nanmean(x: np.ndarray, axis=None):
    with warnings.catch_warnings():  # a column with no finite value is NaN, said once by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def selection_strength(a: np.ndarray, b: np.ndarray, att_per_pair: np.ndarray | None, pairs=None) -> dict:
    """What ranks the units, from ``pairs`` only (None: every pair): |t| of the captured
    paired differences (``a``, ``b``: N × U) and the attribution estimate averaged over the
    pairs (``att_per_pair``: N × U), and the signed t. NaN: untested."""
    idx = slice(None) if pairs is None else np.asarray(pairs, dtype=np.int64)
    t = paired_t(np.asarray(a)[idx] - np.asarray(b)[idx])[1]
    out = {"t": np.abs(t), "signed_t": t}
    if att_per_pair is not None:
        out["attribution"] = _nanmean(np.asarray(att_per_pair)[idx], axis=0)
    return out


def resamples(strata: Sequence[Sequence[int]], seed: int, n_boot: int = BOOTSTRAP) -> list[np.ndarray]:
    """Per stratum (a half's pairs), ``n_boot`` × its size pair indices drawn with
    replacement from it: the halves stay halves, as each was measured by its own selection."""
    rng = np.random.default_rng([int(seed), _BOOT])
    return [rng.choice(np.asarray(s, dtype=np.int64), size=(n_boot, len(s)), replace=True) for s in strata]


def interval(draws) -> list[float] | None:
    """The central 95% percentile interval of the finite draws; None when fewer than half
    the resamples gave a value (a statistic that mostly does not exist has no interval)."""
    x = np.asarray([d for d in draws if d is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < max(1, len(draws) // 2):
        return None
    lo, hi = np.percentile(x, [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return [float(f"{lo:.6g}"), float(f"{hi:.6g}")]


def mean_interval(values: np.ndarray, strata: Sequence[Sequence[int]], seed: int) -> list[float] | None:
    """Bootstrap interval of the mean over pairs of ``values`` (N,; NaN: not measured),
    resampling each stratum's pairs within it."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.concatenate(resamples(strata, seed), axis=1)
    return interval(_nanmean(values[idx], axis=1))


def spearman(x, y) -> float | None:
    """Spearman ρ over the entries finite in both; None with fewer than 3 or a constant side
    (no rank order)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(spearmanr(x[ok], y[ok]).statistic)


def overlap(a: np.ndarray, b: np.ndarray, k: int) -> int:
    """How many of the top ``k`` by ``a`` are among the top ``k`` by ``b`` (NaN never chosen)."""
    return len(set(top_by(a, k).tolist()) & set(top_by(b, k).tolist()))


def chance_overlap(k: int, u: int) -> float | None:
    """The expected overlap of two unrelated top-k lists among u units: k · k / u."""
    return k * k / u if u else None


def rankings_agreement(a: np.ndarray, b: np.ndarray, att_per_pair: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    """|t| against the attribution estimate over every unit tested by both (U): Spearman ρ
    (chance 0) and the overlap of their top k (chance k²/U), each with its bootstrap
    interval over the pairs."""
    n = np.asarray(a).shape[0]

    def stats(pairs):
        s = selection_strength(a, b, att_per_pair, pairs)
        both = np.isfinite(s["t"]) & np.isfinite(s["attribution"])
        t, score = np.where(both, s["t"], np.nan), np.where(both, s["attribution"], np.nan)
        return spearman(t, score), overlap(t, score, k), int(both.sum())

    rho, shared, u = stats(None)
    boot = [stats(idx) for idx in resamples([np.arange(n)], seed)[0]]
    return {"spearman_t_vs_attribution": rho, "spearman_t_vs_attribution_ci": interval([r for r, _, _ in boot]),
            "spearman_chance": 0.0, "overlap": shared, "overlap_ci": interval([o for _, o, _ in boot]),
            "overlap_chance": chance_overlap(k, u), "units_ranked": u}


def sets_agreement(units: Sequence[Sequence[int]], pairs: Sequence[Sequence[int]], exact: np.ndarray,
                   att_per_pair: np.ndarray, seed: int) -> dict[str, Any]:
    """Over unit sets measured exactly (row r: its ``units``, measured on ``pairs[r]``;
    ``exact``: sets × N per-pair effects, NaN elsewhere), the Spearman ρ between each set's
    summed attribution estimate and its exact effect, both averaged over the set's measured
    pairs, with its bootstrap interval (pairs resampled within each half). ρ is None with
    fewer than :data:`MIN_SETS` sets: from 3 sets ρ = 1 happens 1 time in 6 by chance."""
    att = np.asarray(att_per_pair, dtype=np.float64)
    est = np.stack([np.nansum(att[:, list(u)], axis=1) for u in units]) if len(units) else np.zeros((0, att.shape[0]))
    strata = sorted({tuple(int(i) for i in p) for p in pairs})
    where = [strata.index(tuple(int(i) for i in p)) for p in pairs]
    out: dict[str, Any] = {"sets_compared": len(units), "min_sets": MIN_SETS, "spearman_chance": 0.0}
    if len(units) < MIN_SETS:
        return {**out, "spearman_sets_estimate_vs_exact": None, "spearman_sets_estimate_vs_exact_ci": None,
                "spearman_sets_withheld": f"too few sets to tell ({len(units)} < {MIN_SETS})"}
    rows = range(len(units))
    rho = spearman([_nanmean(est[r, list(pairs[r])]) for r in rows], [_nanmean(exact[r, list(pairs[r])]) for r in rows])
    boot = resamples(strata, seed)
    est_b = np.stack([_nanmean(est[r][boot[where[r]]], axis=1) for r in rows], axis=1)  # resamples × sets
    exact_b = np.stack([_nanmean(np.asarray(exact[r], dtype=np.float64)[boot[where[r]]], axis=1) for r in rows], axis=1)
    draws = [spearman(x, y) for x, y in zip(est_b, exact_b)]
    return {**out, "spearman_sets_estimate_vs_exact": rho, "spearman_sets_estimate_vs_exact_ci": interval(draws),
            "spearman_sets_withheld": None if rho is not None else "a side is constant (no rank order)"}


def finite_or_none(x) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def screen_summary(built, caps, heads_k, screen, measured, mode: str, seed: int) -> dict[str, Any]:
    """causal.json's ``screen``: every unit's attribution estimate, the top units by it and
    by |t| (every pair), how the two rankings agree, and how the estimates agree with the
    exact effects of the sets measured (``measured[layout]``: their units, measured pairs and
    per-pair effects; in ablate mode withheld: the screen estimates a patch, not an ablation)."""
    from .attribution import rank

    out: dict[str, Any] = {"method": "attribution patching: first-order estimate of the patch effect, one forward "
                                     "and one backward per pass", "passes": screen["passes"], "layouts": {}}
    for name, lay in built.items():
        a, b, t = caps[name][0], caps[name][1], caps[name][4]
        score, per = screen["score"][name], screen["per_pair"][name]
        k = max(heads_k.get(name, 0), 1)
        agree = rankings_agreement(a, b, per, k, seed)
        units, pairs, exact = measured.get(name, ([], [], np.zeros((0, np.asarray(a).shape[0]))))
        if mode == "patch":
            sets = sets_agreement(units, pairs, exact, per, seed)
        else:
            sets = {"sets_compared": len(units), "min_sets": MIN_SETS, "spearman_chance": 0.0,
                    "spearman_sets_estimate_vs_exact": None, "spearman_sets_estimate_vs_exact_ci": None,
                    "spearman_sets_withheld": "withheld in ablate mode: the screen estimates each unit's patch effect, and an "
                                "ablation effect is another quantity (run --mode patch to compare like with like)"}
        out["layouts"][name] = {
            "k": k,
            "rank": [int(x) for x in rank(score)],
            "score": [finite_or_none(x) for x in score],
            "top_by_attribution": [{"unit": lay.units[i], "score": finite_or_none(score[i]),
                                    "t": finite_or_none(t[i])} for i in top_by(score, k)],
            "top_by_t": [lay.units[i] for i in top_by(np.abs(t), k)],
            **{key: finite_or_none(v) if isinstance(v, float) else v for key, v in agree.items()},
            **{key: finite_or_none(v) if isinstance(v, float) else v for key, v in sets.items()},
        }
    return out
