"""dense: the card's articulation caveat. Does the canonical-vs-expressive effect track how
many limbs the expressive pose moves away from the T-pose?"""

from __future__ import annotations

from plantain_core import Interpretation, hookimpl
from plantain_core.trends import covariate_trend

from .interpretation import graded_reading, trend_section


class DenseInterpreter:
    description = "effect vs number of limbs departing from canonical (pair meta limbs)"

    def interpret(self, spec, pairs, result) -> Interpretation:
        stats = result.primary
        limbs = [p.meta["limbs"] for p in pairs]
        trend = covariate_trend(stats, limbs, seed=result.manifest.get("seed", 0))
        reading = graded_reading(trend, "with the number of limbs moved")
        caveat = (
            " The card warns that expressive poses articulate more than the T-pose, so part of "
            "the signal may be 'amount of articulation' rather than canonical-vs-deformed; a "
            "reliable positive trend here supports that caveat, no trend weakens it."
        )
        section = trend_section("Articulation check", stats.layout, "the number of limbs moved", trend, reading + caveat)
        return Interpretation({"trend_vs_limbs": trend}, (section,))


@hookimpl
def plantain_register_interpreters(register):
    register("dense", DenseInterpreter())
