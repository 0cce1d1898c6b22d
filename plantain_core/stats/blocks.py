"""Block-level inference: does a block (``joint[3]``, ``single[12]``) respond as a whole?

Per block the statistic is the mean |t| over its tested units: a broad, weak effect spread
over a block's heads raises it where no single head passes the max-|t| test. Its null is
the run's own sign patterns (the same patterns flip every unit, so the dependence between
units and blocks is kept). Blocks differ in size, so each block's statistic is
standardized by its own null mean and sd (over the patterns, the observed one included),
and the FWER p over blocks is the share of patterns whose largest standardized statistic
over all blocks reaches the block's own: a max-statistic test (Westfall & Young 1993),
exact when the patterns are enumerated. See docs/statistics.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .engine import TILE_ELEMENTS, LayoutStats, fwer_p, json_float, null_signs, single_blas_thread, t_from_g

ALPHA = 0.05
#: A flipped |t| is infinite when every flipped difference of a unit is equal (tiny N); capped
#: so a block mean stays a number (and 0 × ∞ never turns another block's mean into NaN).
T_CAP = 1e12


def block_null(z: np.ndarray, signs: np.ndarray, member: np.ndarray) -> np.ndarray:
    """F × B: per pattern, each block's mean |t'| (``member`` is V × B, columns summing to 1)."""
    n, v = z.shape
    out = np.empty((signs.shape[0], member.shape[1]))
    fstep = max(1, TILE_ELEMENTS // max(1, v))
    with single_blas_thread():
        for start in range(0, signs.shape[0], fstep):
            rows = slice(start, start + fstep)
            out[rows] = np.minimum(t_from_g(np.abs(signs[rows].astype(np.float64) @ z), n), T_CAP) @ member
    return out


def standardized(observed: np.ndarray, null: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Observed (B) and null (F × B) statistics in units of each block's null sd from its null
    mean; the moments are over the patterns plus the observed one (exact: the patterns hold it)."""
    pool = null if exact else np.vstack([null, observed[None]])
    mean, sd = pool.mean(axis=0), pool.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(sd > 0, sd, np.nan)
        return (observed - mean) / scale, (null - mean) / scale


def block_tests(st: LayoutStats) -> dict[str, Any]:
    """summary.json's ``block_tests`` of one layout: per block the mean |t|, its null mean, the
    standardized statistic and the FWER p over blocks (blocks in capture order)."""
    tested = st.tested
    names = list(dict.fromkeys(st.blocks_of_units))
    col = np.array([names.index(b) for b in st.blocks_of_units])[tested]
    counts = np.bincount(col, minlength=len(names)).astype(np.float64)
    member = np.zeros((col.size, len(names)))
    member[np.arange(col.size), col] = 1.0
    member /= np.where(counts > 0, counts, 1.0)
    d = st.diff[:, tested]
    z = d / np.sqrt((d * d).sum(axis=0))
    signs, exact = null_signs(st.n_pairs, st.flips, st.seed)
    null = block_null(z, signs, member)
    observed = np.minimum(np.abs(st.t[tested]), T_CAP) @ member
    obs_z, null_z = standardized(observed, null, exact)
    null_max = np.where(np.isfinite(null_z), null_z, -np.inf).max(axis=1, initial=-np.inf)
    p = fwer_p(np.where(counts > 0, obs_z, np.nan), null_max, exact)
    rows = [{"block": b, "units": int(counts[j]), "mean_abs_t": json_float(observed[j] if counts[j] else np.nan),
             "null_mean": json_float(null[:, j].mean() if counts[j] else np.nan), "z": json_float(obs_z[j]),
             "p_fwer": json_float(p[j])} for j, b in enumerate(names)]
    return {"statistic": "mean |t| over the block's tested units",
            "fwer": "max over blocks of the statistic standardized by each block's null mean and sd",
            "responding": sum(1 for r in rows if r["p_fwer"] is not None and r["p_fwer"] < ALPHA),
            "blocks": rows}
