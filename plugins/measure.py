"""measure: does the effect grow with the claimed scale gap (log10 of large / small)?"""

from __future__ import annotations

import math

from plantain_core import Interpretation, hookimpl
from plantain_core.trends import covariate_trend

from .interpretation import graded_reading, trend_section


class MeasureInterpreter:
    description = "effect vs log10 scale gap (pair meta scale_a_m / scale_b_m)"

    def interpret(self, spec, pairs, result) -> Interpretation:
        stats = result.primary
        gap = [math.log10(p.meta["scale_a_m"] / p.meta["scale_b_m"]) for p in pairs]
        trend = covariate_trend(stats, gap, seed=result.manifest.get("seed", 0))
        numbers = {"scale_gap_log10": {"min": min(gap), "max": max(gap)}, "trend_vs_scale_gap": trend}
        reading = graded_reading(trend, "with the scale gap")
        section = trend_section("Effect vs scale gap", stats.layout, "the log10 scale gap", trend, reading)
        return Interpretation(numbers, (section,))


@hookimpl
def plantain_register_interpreters(register):
    register("measure", MeasureInterpreter())
