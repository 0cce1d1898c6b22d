"""Power and exact noncentral-t helpers: the minimum detectable effect of a t test and the
smallest p a TOST can give. A leaf module (numpy and scipy only), read by the checks and by
the results files."""

from __future__ import annotations

import math

import numpy as np

POWER = 0.8


def nct_cdf(t, df, ncp):
    """The noncentral t CDF; scipy's returns NaN far in a tail (P(T ≤ −3 | 6 df, ncp 11)),
    where the value is 0 below the centre and 1 above it."""
    from scipy.special import nctdtr

    with np.errstate(invalid="ignore"):
        p = nctdtr(df, ncp, t)
    return np.where(np.isnan(p) & ~np.isnan(t), np.where(t < ncp, 0.0, 1.0), p)


def tost_floor(n: int, bound: float) -> float:
    """The smallest TOST p this N can give (at t = 0): equivalence needs it below 0.05."""
    return float(nct_cdf(0.0, n - 1, bound * math.sqrt(n)))


def mde(n: int, df: int, t_crit: float | None, inflation: float = 1.0, power: float = POWER) -> float | None:
    """The smallest |d_z| that a two-sided test rejecting at |t| > t_crit finds with
    ``power``, when its t is noncentral t (df) with noncentrality √N·d_z / inflation.
    None when the test cannot reject at all (t_crit None or infinite)."""
    from scipy.optimize import brentq

    if t_crit is None or not math.isfinite(t_crit) or not math.isfinite(inflation) or df < 1 or t_crit <= 0:
        return None  # t_crit <= 0: a degenerate null (no unit tested), no test at any level
    scale = math.sqrt(n) / inflation

    def short(dz):
        ncp = dz * scale
        return float(1.0 - nct_cdf(t_crit, df, ncp) + nct_cdf(-t_crit, df, ncp)) - power

    hi = 1.0
    while short(hi) < 0:
        hi *= 2
        if hi > 1e6:
            return None
    return float(brentq(short, 0.0, hi, xtol=1e-6))
