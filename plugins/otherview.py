"""otherview: does the viewpoint-vs-mention effect grow along the creature axis?"""

from __future__ import annotations

from plantain_core import Interpretation, hookimpl
from plantain_core.trends import covariate_trend

from .interpretation import graded_reading, trend_section


class OtherviewInterpreter:
    description = "Spearman of the effect against the creature's rank on the perceptual-similarity axis"

    def interpret(self, spec, pairs, result) -> Interpretation:
        stats = result.primary
        ranks = [p.meta["rank"] for p in pairs]
        trend = covariate_trend(stats, ranks, seed=result.manifest.get("seed", 0))
        reading = graded_reading(trend, "as the creature's senses depart from a human's")
        section = trend_section("Graded perceptual-similarity axis", stats.layout, "the creature's rank", trend, reading)
        return Interpretation({"trend_vs_rank": trend}, (section,))


@hookimpl
def plantain_register_interpreters(register):
    register("otherview", OtherviewInterpreter())
