"""Freedman–Lane sign-flip test of each unit's intercept μ_u in D_u = μ_u + β_u·x_u + e_u, for a
per-pair nuisance x (one vector for every unit, or one column per unit). Pure numpy; the
run's own sign patterns; every unit's fit in closed form, so the flipped fits of all units
are three matrix products per tile of flips. docs/statistics.md ("Freedman–Lane sign flips").
"""

from __future__ import annotations

import attrs
import numpy as np

#: elements per tile of flipped sums (flips × units)
TILE = 4_000_000


@attrs.frozen(eq=False)
class Adjusted:
    """One adjusted test of every unit: μ is the effect at x = 0 (at equal length for the
    token-count difference, with the shared shift removed for the common mode)."""

    t: np.ndarray  # U: t of μ (NaN untested)
    p: np.ndarray  # U: sign-flip permutation p, two-sided
    p_fwer: np.ndarray  # U: max-|t| over units
    q: np.ndarray  # U: Benjamini–Hochberg over the parametric p of t (N−2 df)
    note: str | None = None  # why the test was not run (then every array is NaN)
    #: U: the standard error of μ over that of the plain paired mean, σ·√(1/N)·κ: how far
    #: the fit extrapolates to x = 0 (κ = √(1 + N·x̄²/Σ(x − x̄)²), plus the nuisance's own
    #: estimation error where it has one). The test detects only effects κ× larger.
    inflation: np.ndarray | None = None
    null_max: np.ndarray | None = None  # F: max |t*| over tested units per sign pattern


def fit_sums(n: int, sx, sxx, sd, sxd, sdd, shift_var):
    """t of the intercept of every OLS fit y = μ + β·x from its sums (n, Σx, Σx², Σy, Σxy, Σy²),
    with the nuisance's location known up to variance ``shift_var`` (added as β²·v)."""
    det = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = (sxx * sd - sx * sxd) / det
        beta = (n * sxd - sx * sd) / det
        rss = np.maximum(sdd - mu * sd - beta * sxd, 0.0)
        var_mu = rss / (n - 2) * sxx / det + beta * beta * shift_var
        return mu / np.sqrt(var_mu), var_mu, rss


def adjusted_test(diff: np.ndarray, tested: np.ndarray, nuisance: np.ndarray, signs: np.ndarray, exact: bool,
                  constant_note: str = "the nuisance is the same in every pair", shift_var: float = 0.0,
                  seed: int = 0) -> Adjusted:
    """Freedman & Lane (1983) with sign flips: fit the reduced model D = β·x + r (no
    intercept), flip the signs of r, add the fit back, refit the full model and compare
    |t(μ)|. ``nuisance`` is N (shared) or N×U (a column per unit). Undefined where x is
    constant (``constant_note`` says what that means). A nuisance whose location is
    estimated (variance ``shift_var``) gets that error drawn per flip, seeded by ``seed``."""
    from scipy.stats import t as tdist
    from statsmodels.stats.multitest import multipletests

    from .engine import TIE_RTOL, fwer_p

    n, u = diff.shape
    nan = np.full(u, np.nan)
    x = np.broadcast_to(np.asarray(nuisance, dtype=np.float64).reshape(n, -1), (n, u))
    if n < 4:
        return Adjusted(nan, nan, nan, nan, "needs at least 4 pairs")
    spread = np.ptp(x[:, tested], axis=0) if tested.any() else np.zeros(0)
    if (spread <= 1e-12 * np.maximum(np.abs(x[:, tested]).max(axis=0, initial=0.0), 1e-300)).any():
        return Adjusted(nan, nan, nan, nan, constant_note)
    d = np.where(tested[None, :], diff, 0.0)
    xs = np.where(tested[None, :], x, 1.0)  # untested columns get a harmless regressor
    sx, sxx = xs.sum(axis=0), (xs * xs).sum(axis=0)
    t_obs, var_mu, rss = fit_sums(n, sx, sxx, d.sum(axis=0), (xs * d).sum(axis=0), (d * d).sum(axis=0), shift_var)
    t_obs = np.where(tested, t_obs, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        inflation = np.sqrt(var_mu / (rss / (n - 2) / n))
    # reduced model (no intercept) and its residuals, flipped
    beta_red = (xs * d).sum(axis=0) / sxx
    fitted = xs * beta_red
    resid = d - fitted
    base_sd, base_sxd = fitted.sum(axis=0), (xs * fitted).sum(axis=0)
    base_sdd = (fitted * fitted).sum(axis=0) + (resid * resid).sum(axis=0)
    xr, fr = xs * resid, fitted * resid
    f = signs.shape[0]
    count = np.zeros(u)
    null_max = np.zeros(f)
    abs_obs = np.where(np.isfinite(t_obs), np.abs(t_obs), np.inf) * (1 - TIE_RTOL)  # ties count as "≥"
    step = max(1, TILE // max(n * u, 1))
    errors = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3]).normal(0.0, np.sqrt(max(shift_var, 0.0)), f)
    for start in range(0, f, step):
        s = signs[start:start + step].astype(np.float64)
        sd_, sxd_, sdd_ = base_sd + s @ resid, base_sxd + s @ xr, base_sdd + 2.0 * (s @ fr)
        if shift_var > 0:
            # the observed intercept carries the shift's estimation error, the same in every
            # unit (−β·e); each flip draws one so that the null carries it too (without it the
            # β²·v in the variance only shrank the null's t's: FWER 6.8% with a shared shift)
            shift = -np.outer(errors[start:start + step], beta_red)  # k × U, constant over pairs
            sdd_ = sdd_ + 2.0 * shift * sd_ + n * shift * shift
            sd_, sxd_ = sd_ + n * shift, sxd_ + shift * sx
        t_star, _, _ = fit_sums(n, sx, sxx, sd_, sxd_, sdd_, shift_var)
        t_star = np.where(tested[None, :] & np.isfinite(t_star), np.abs(t_star), 0.0)
        count += (t_star >= abs_obs[None]).sum(axis=0)
        null_max[start:start + step] = t_star.max(axis=1) if u else 0.0
    keep = tested & np.isfinite(t_obs)
    p = (count + (0 if exact else 1)) / (f if exact else f + 1)
    q = np.full(u, np.nan)
    if keep.any():
        q[keep] = multipletests(2.0 * tdist.sf(np.abs(t_obs[keep]), n - 2), method="fdr_bh")[1]
    p_fwer = fwer_p(np.where(keep, np.abs(t_obs), np.nan), null_max, exact)
    return Adjusted(np.where(keep, t_obs, np.nan), np.where(keep, p, np.nan), p_fwer, q,
                    inflation=np.where(keep, inflation, np.nan), null_max=null_max)


def beyond_all(tests: list[Adjusted]) -> Adjusted:
    """A unit passes only if it passes under every test (the readings of an ambiguous
    nuisance): the largest p, p_fwer and q, the smallest |t|, the largest inflation."""
    if len(tests) == 1:
        return tests[0]
    t = np.stack([x.t for x in tests])
    weakest = np.nanargmin(np.where(np.isfinite(t), np.abs(t), np.inf), axis=0)
    return Adjusted(t[weakest, np.arange(t.shape[1])], *(np.max(np.stack([getattr(x, f) for x in tests]), axis=0)
                                                          for f in ("p", "p_fwer", "q")),
                    inflation=np.max(np.stack([x.inflation for x in tests]), axis=0),
                    null_max=np.max(np.stack([x.null_max for x in tests]), axis=0))
