"""Shared pieces of the seed-probe interpreters: the graded-covariate trend interpreter
and its card wording (the numbers come from plantain_core.stats.trends)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from plantain_core import Interpretation, Section
from plantain_core.stats.trends import covariate_trend


def trend_section(title: str, layout: str, covariate: str, trend: dict, reading: str) -> Section:
    if trend.get("mean_rho") is None:
        body = f"Not computed: {trend.get('note', 'no testable units')}."
        return Section(title, body)
    body = (
        f"For the {trend['units']} units with the largest |t| ({layout} layout), the Spearman "
        f"correlation between {covariate} and each unit's per-pair effect (signed so the "
        f"unit's own effect is positive) averages **ρ = {trend['mean_rho']:.3f}** "
        f"({trend['n_positive_rho']} of {trend['units']} units positive); permutation p = "
        f"{trend['p_perm']:.4f} over {trend['permutations']} shuffles of the pairs. {reading}"
    )
    return Section(title, body)


def graded_reading(trend: dict, grows: str) -> str:
    rho, p = trend.get("mean_rho"), trend.get("p_perm")
    if rho is None:
        return ""
    if p is not None and p < 0.05:
        return f"The effect {'grows' if rho > 0 else 'shrinks'} {grows} (p < 0.05)."
    return f"No reliable trend {grows} at this sample size (p ≥ 0.05)."


class TrendInterpreter:
    """Does the probe's effect follow a graded per-pair covariate read from pair meta?"""

    def __init__(self, *, description: str, key: str, covariate: Callable[[Mapping[str, Any]], float],
                 title: str, label: str, grows: str, caveat: str = ""):
        self.description = description
        self.key, self.covariate = key, covariate
        self.title, self.label, self.grows, self.caveat = title, label, grows, caveat

    def interpret(self, spec, pairs, result) -> Interpretation:
        stats = result.primary
        values = [float(self.covariate(p.meta)) for p in pairs]
        trend = covariate_trend(stats, values, seed=result.manifest.get("seed", 0))
        reading = graded_reading(trend, self.grows) + self.caveat
        numbers = {self.key: trend, "covariate": {"min": min(values), "max": max(values)}}
        return Interpretation(numbers, (trend_section(self.title, stats.layout, self.label, trend, reading),))
