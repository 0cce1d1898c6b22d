"""Bayesian population prevalence (Ince, Paton, Kay & Schyns, eLife 2021).

An effect tested in n replicates (noise seeds, models) is significant in k of them. If a
share γ of the population of replicates truly has the effect, a replicate is significant
with probability θ = α + γ(β − α): α the false-positive rate of each replicate's test,
β its sensitivity. With a uniform prior on γ, θ's posterior is Beta(k + 1, n − k + 1)
truncated to [α, β]; γ's is that mapped back. Reported: the MAP, the 95% highest-density
interval (HDI) and the one-sided 95% lower bound. α is the test's nominal level (FWER
tests keep each unit's own false-positive rate below it) and β defaults to 1, Ince et
al.'s default: both choices can only lower the estimate. See docs/statistics.md.
"""

from __future__ import annotations

from typing import Any

ALPHA = 0.05
POWER = 1.0
LEVEL = 0.95


def _truncated(k: int, n: int, alpha: float, power: float):
    """θ's posterior: its quantile function on [alpha, power]."""
    from scipy import stats as sps

    post = sps.beta(k + 1, n - k + 1)
    lo, hi = post.cdf(alpha), post.cdf(power)
    return lambda u: float(post.ppf(lo + u * (hi - lo)))


def prevalence(k: int, n: int, alpha: float = ALPHA, power: float = POWER, level: float = LEVEL) -> dict[str, Any]:
    """γ's MAP, ``level`` HDI and one-sided ``level`` lower bound, given k of n significant."""
    from scipy.optimize import minimize_scalar

    if not 0 <= k <= n or n < 1 or not 0 <= alpha < power <= 1:
        raise ValueError(f"prevalence needs 0 <= k <= n, n >= 1 and 0 <= alpha < power <= 1 (k={k}, n={n})")
    q = _truncated(k, n, alpha, power)
    to_gamma = lambda theta: min(1.0, max(0.0, (theta - alpha) / (power - alpha)))  # noqa: E731
    # The posterior is unimodal: its HDI is the shortest interval holding `level` of it.
    best = minimize_scalar(lambda c: q(c + level) - q(c), bounds=(0.0, 1.0 - level), method="bounded",
                           options={"xatol": 1e-10})
    c = min((0.0, 1.0 - level, float(best.x)), key=lambda c: q(c + level) - q(c))
    return {"k": k, "n": n, "alpha": alpha, "power": power, "map": to_gamma(k / n),
            "hdi_low": to_gamma(q(c)), "hdi_high": to_gamma(q(c + level)), "lower_bound": to_gamma(q(1 - level))}


def prevalence_text(p: dict[str, Any]) -> str:
    """The sweep card's words: ``in 4 of 4 seeds; prevalence ≥ 0.53 (95% HDI), MAP 1.00``."""
    return (f"prevalence ≥ {p['hdi_low']:.2f} (95% HDI {p['hdi_low']:.2f}–{p['hdi_high']:.2f}, MAP "
            f"{p['map']:.2f})")
