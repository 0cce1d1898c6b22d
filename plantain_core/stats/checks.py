"""What a reviewer asks after the per-unit t: is it length, is it everything, how sure,
can a unit be said *not* to respond, and what could this N have found? Pure numpy/scipy
on one layout's differences D (N pairs × U units); docs/statistics.md gives every formula.

- :func:`dz_interval`: the exact 95% interval of each unit's d_z (noncentral t).
- :func:`tost_p`: paired two one-sided tests against ±bound in d_z, exact (noncentral t).
- :func:`mde`: the minimum detectable d_z (80% power) of a test at this N and threshold.
- :func:`review`: fills a LayoutStats with the above and the two adjusted tests
  (plantain_core.stats.freedman_lane): beyond the common mode (plantain_core.stats.common_mode) and at
  equal prompt length.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from .common_mode import NO_VARIATION, common_mode
from .freedman_lane import Adjusted, adjusted_test, beyond_all
from .power import mde, nct_cdf, tost_floor

__all__ = ["Adjusted", "adjusted_test", "common_mode", "dz_interval", "tost_p", "tost_floor", "mde", "review"]

#: Default equivalence bound for TOST, in d_z units (a "medium" standardized effect).
EQUIVALENCE_BOUND = 0.5
CI_LEVEL = 0.95
#: |t| above which the noncentral-t inversion is replaced by its limit (scipy's root
#: finder slows to seconds per unit near 1e5 and hangs beyond); the two agree to 1e-3 there
T_ASYMPTOTIC = 1e4


def dz_interval(d: np.ndarray, n: int, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval for the paired d_z: √N·d_z is noncentral t with N − 1 df and
    noncentrality √N·δ, so the bounds are the noncentralities whose CDF at the observed t
    is (1 ± level)/2, over √N (Steiger & Fouladi 1997). Beyond |t| = T_ASYMPTOTIC the
    limit T/ncp → √(df/χ²_df) gives them in closed form."""
    from scipy.special import nctdtrinc
    from scipy.stats import chi2

    d = np.asarray(d, dtype=np.float64)
    df, root = n - 1, math.sqrt(n)
    t = d * root
    tail = (1 - level) / 2
    low, high = np.full(d.shape, np.nan), np.full(d.shape, np.nan)
    near = np.isfinite(t) & (np.abs(t) <= T_ASYMPTOTIC)
    low[near] = nctdtrinc(df, 1 - tail, t[near])
    high[near] = nctdtrinc(df, tail, t[near])
    far = np.isfinite(t) & ~near
    lo_f, hi_f = math.sqrt(chi2.ppf(tail, df) / df), math.sqrt(chi2.ppf(1 - tail, df) / df)
    low[far] = np.where(t[far] > 0, t[far] * lo_f, t[far] * hi_f)
    high[far] = np.where(t[far] > 0, t[far] * hi_f, t[far] * lo_f)
    return low / root, high / root


def tost_p(t: np.ndarray, n: int, bound: float = EQUIVALENCE_BOUND) -> np.ndarray:
    """Paired TOST p against |d_z| < bound, exact: the larger of the one-sided p's of t at
    the two bounds, with t noncentral t (N − 1 df, noncentrality ±bound·√N). A central-t
    TOST with the bound scaled by the sample sd is above its level at large N (5.6% at
    N = 1,000); this one is exactly 5% at the bound."""
    ncp = bound * math.sqrt(n)
    t = np.asarray(t, dtype=np.float64)
    return np.maximum(nct_cdf(-t, n - 1, ncp), nct_cdf(t, n - 1, ncp))  # P(T ≥ t | −ncp) = P(T ≤ −t | ncp)


CONSTANT_LENGTH = ("the token-count difference is the same in every pair: condition and length are confounded, "
                   "so no test can separate them")
EQUAL_LENGTH = ("A and B have the same token count in every pair: length cannot explain any effect, so there is "
                "nothing to adjust for")
CONSTANT_MODE = NO_VARIATION


def specificity(diff: np.ndarray, tested: np.ndarray, signs: np.ndarray, exact: bool, seed: int = 0):
    """(common mode, the test beyond it): under each reading of the shared shift, the
    Freedman–Lane test of every unit's intercept on x_u = s + c_u; a unit passes only
    beyond every reading."""
    mode = common_mode(diff, tested, seed)
    if mode.note is not None:
        u = diff.shape[1]
        nan = np.full(u, np.nan)
        return mode, Adjusted(nan, nan, nan, nan, mode.note)
    tests = [adjusted_test(diff, tested, mode.nuisance(k), signs, exact, CONSTANT_MODE, shift_var=r.var, seed=seed)
             for k, r in enumerate(mode.readings)]
    return mode, beyond_all(tests)


def length_test(diff: np.ndarray, tested: np.ndarray, delta: np.ndarray, signs: np.ndarray, exact: bool) -> Adjusted:
    """The effect at equal prompt length; a probe whose pairs all have equal length needs none."""
    delta = np.asarray(delta, dtype=np.float64)
    if delta.size and not np.any(delta):
        u = diff.shape[1]
        nan = np.full(u, np.nan)
        return Adjusted(nan, nan, nan, nan, EQUAL_LENGTH)
    return adjusted_test(diff, tested, delta, signs, exact, CONSTANT_LENGTH)


def review(st, delta: np.ndarray | None, bound: float = EQUIVALENCE_BOUND):
    """``st`` (a LayoutStats) with the reviewer's numbers filled in: intervals, TOST,
    specificity (the test beyond the common mode) and, when token counts are known
    (``delta`` = A − B per pair), the length-adjusted test. Both adjusted tests use the
    run's own sign patterns."""
    from .engine import null_signs

    n, tested = st.n_pairs, st.tested
    low, high = dz_interval(st.d, n)
    signs, exact = null_signs(n, st.flips, st.seed)
    mode, specific = specificity(st.diff, tested, signs, exact, st.seed)
    length = length_test(st.diff, tested, delta, signs, exact) if delta is not None else None
    return attrs.evolve(st, d_low=np.where(tested, low, np.nan), d_high=np.where(tested, high, np.nan),
                        tost_bound=float(bound), p_tost=np.where(tested, tost_p(st.t, n, bound), np.nan),
                        common_share=mode.share, common_mode=mode, specific=specific, length=length)
