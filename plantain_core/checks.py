"""What a reviewer asks after the per-unit t: is it length, is it everything, how sure,
and can a unit be said *not* to respond? Pure numpy/scipy on one layout's differences
D (N pairs × U units); docs/statistics.md gives every formula.

- :func:`common_mode`: the per-pair shift shared by all units; with it as nuisance,
  :func:`adjusted_test` asks which units respond beyond it (specificity).
- :func:`dz_interval`: a 95% interval for each unit's d_z.
- :func:`tost_p`: paired two one-sided tests against ±bound (in d_z): equivalence.
- :func:`adjusted_test`: Freedman–Lane sign-flip test of each unit's effect with a
  per-pair nuisance regressed out: the token-count difference (the effect at equal
  length) or the common mode (the effect beyond the shift all units share).
- :func:`attainable_p`: the smallest p_fwer the sign-flip null can give.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

#: Default equivalence bound for TOST, in d_z units (a "medium" standardized effect).
EQUIVALENCE_BOUND = 0.5
CI_LEVEL = 0.95
TILE = 4_000_000  # elements per tile of the Freedman–Lane null (flips × pairs × units)


def common_mode(diff: np.ndarray, tested: np.ndarray) -> tuple[np.ndarray, float]:
    """(g, share): the common mode g_i = mean over tested units of z_iu = D_iu / sd_u (the
    shift every unit shares in pair i), and the share of the standardized differences'
    variance across pairs that a per-unit fit on g explains, 1 − Σ(z − ẑ)² / Σ(z − z̄)²."""
    if not tested.any():
        return np.zeros(diff.shape[0]), math.nan
    z = diff[:, tested] / diff[:, tested].std(axis=0, ddof=1)
    g = z.mean(axis=1)
    x = np.column_stack([np.ones(len(g)), g])
    fit = x @ np.linalg.lstsq(x, z, rcond=None)[0]
    centred = z - z.mean(axis=0)
    total = float((centred * centred).sum())
    share = 1.0 - float(((z - fit) ** 2).sum()) / total if total > 0 else math.nan
    return g, share


def dz_interval(d: np.ndarray, n: int, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Normal-approximation interval for the paired d_z: d ± z_(1+level)/2 · √(1/N + d²/(2N))
    (the large-sample standard error of a standardized mean; Cumming 2012)."""
    from scipy.stats import norm

    half = norm.ppf(0.5 + level / 2) * np.sqrt(1.0 / n + d * d / (2.0 * n))
    return d - half, d + half


def tost_p(t: np.ndarray, n: int, bound: float = EQUIVALENCE_BOUND) -> np.ndarray:
    """Paired TOST p against |d_z| < bound: max of the two one-sided p's of
    t + bound·√N > 0 and t − bound·√N < 0 (t distribution, N−1 df). Equal to
    statsmodels' ``ttost_paired`` with the bounds ±bound·sd(D)."""
    from scipy.stats import t as tdist

    shift = bound * math.sqrt(n)
    return np.maximum(tdist.sf(t + shift, n - 1), tdist.cdf(t - shift, n - 1))


def attainable_p(flips_used: int, exact: bool) -> float:
    """The smallest p_fwer (and permutation p) the null can give: 1/2^(N−1) exact, else 1/(F+1)."""
    return 1.0 / flips_used if exact else 1.0 / (flips_used + 1)


@attrs.frozen
class Adjusted:
    """Freedman–Lane test of each unit's intercept μ in D = μ + β·x + e, for a per-pair
    nuisance x: with x the token-count difference A − B, μ is the effect at equal length;
    with x the common mode, μ is the effect beyond the shift all units share."""

    t: np.ndarray  # U: t of μ (NaN untested)
    p: np.ndarray  # U: sign-flip permutation p, two-sided
    p_fwer: np.ndarray  # U: max-|t| over units
    q: np.ndarray  # U: Benjamini–Hochberg over the parametric p of t (N−2 df)
    note: str | None = None


CONSTANT_LENGTH = ("the token-count difference is the same in every pair: condition and length are confounded, "
                   "so no test can separate them")
CONSTANT_MODE = ("the common mode is the same in every pair: a shift all units share cannot be told apart from "
                 "unit-specific effects")


def adjusted_test(diff: np.ndarray, tested: np.ndarray, nuisance: np.ndarray, signs: np.ndarray,
                  exact: bool, constant_note: str = CONSTANT_LENGTH) -> Adjusted:
    """Freedman & Lane (1983) with sign flips: fit the reduced model D = β·x + r, flip the
    signs of r, add the fit back, refit the full model, and compare |t(μ)|. Undefined
    when x is constant (``constant_note`` says what that means)."""
    from scipy.stats import t as tdist
    from statsmodels.stats.multitest import multipletests

    n, u = diff.shape
    nan = np.full(u, np.nan)
    delta = np.asarray(nuisance, dtype=np.float64)
    if np.ptp(delta) <= 1e-12 * max(float(np.abs(delta).max()), 1e-300):
        return Adjusted(nan, nan, nan, nan, constant_note)
    if n < 4:
        return Adjusted(nan, nan, nan, nan, "needs at least 4 pairs")
    x = np.column_stack([np.ones(n), delta])
    xtx_inv = np.linalg.inv(x.T @ x)
    proj = xtx_inv @ x.T  # 2 × N
    d = np.where(tested[None, :], diff, 0.0)
    t_obs = _intercept_t(d[None], x, proj, xtx_inv)[0]
    beta_red = (delta @ d) / (delta @ delta)  # reduced model: no intercept
    fitted = np.outer(delta, beta_red)
    resid = d - fitted
    f = signs.shape[0]
    count = np.zeros(u)
    max_abs = np.zeros(f)
    step = max(1, TILE // max(n * u, 1))
    abs_obs = np.abs(t_obs) * (1 - 1e-12)  # ties count as "at least as large"
    for start in range(0, f, step):
        s = signs[start:start + step].astype(np.float64)
        star = fitted[None] + s[:, :, None] * resid[None]
        t_star = np.abs(_intercept_t(star, x, proj, xtx_inv))
        t_star[:, ~tested] = 0.0
        count += (t_star >= abs_obs[None]).sum(axis=0)
        max_abs[start:start + step] = t_star.max(axis=1)
    denom = f if exact else f + 1
    p = (count + (0 if exact else 1)) / denom
    at_least = (max_abs[:, None] >= abs_obs[None]).sum(axis=0)
    p_fwer = (at_least + (0 if exact else 1)) / denom
    keep = tested & np.isfinite(t_obs)
    q = np.full(u, np.nan)
    if keep.any():
        q[keep] = multipletests(2.0 * tdist.sf(np.abs(t_obs[keep]), n - 2), method="fdr_bh")[1]
    return Adjusted(np.where(keep, t_obs, np.nan), np.where(keep, p, np.nan), np.where(keep, p_fwer, np.nan), q)


def _intercept_t(d: np.ndarray, x: np.ndarray, proj: np.ndarray, xtx_inv: np.ndarray) -> np.ndarray:
    """t of the intercept of an OLS fit of every column of every K × N × U slice on x."""
    n = x.shape[0]
    beta = np.einsum("pn,knu->kpu", proj, d)
    resid = d - np.einsum("np,kpu->knu", x, beta)
    sigma2 = (resid * resid).sum(axis=1) / (n - 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return beta[:, 0, :] / np.sqrt(sigma2 * xtx_inv[0, 0])


def review(st, delta: np.ndarray | None, bound: float = EQUIVALENCE_BOUND):
    """``st`` (a LayoutStats) with the reviewer's numbers filled in: intervals, TOST,
    specificity (the test beyond the common mode) and, when token counts are known
    (``delta`` = A − B per pair), the length-adjusted test. Both adjusted tests use the
    run's own sign patterns."""
    from .stats import null_signs

    n, tested = st.n_pairs, st.tested
    low, high = dz_interval(st.d, n)
    g, share = common_mode(st.diff, tested)
    signs, exact = null_signs(n, st.flips, st.seed)
    specific = adjusted_test(st.diff, tested, g, signs, exact, CONSTANT_MODE)
    length = adjusted_test(st.diff, tested, delta, signs, exact) if delta is not None else None
    return attrs.evolve(st, d_low=np.where(tested, low, np.nan), d_high=np.where(tested, high, np.nan),
                        tost_bound=float(bound), p_tost=np.where(tested, tost_p(st.t, n, bound), np.nan),
                        common_share=share, specific=specific, length=length)
