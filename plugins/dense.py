"""dense: the card's articulation caveat. Does the canonical-vs-expressive effect track how
many limbs the expressive pose moves away from the T-pose?"""

from __future__ import annotations

from plantain_core import hookimpl

from .interpretation import TrendInterpreter

CAVEAT = (
    " The card warns that expressive poses articulate more than the T-pose, so part of "
    "the signal may be 'amount of articulation' rather than canonical-vs-deformed; a "
    "reliable positive trend here supports that caveat, no trend weakens it."
)


@hookimpl
def plantain_register_interpreters(register):
    register("dense", TrendInterpreter(
        description="effect vs number of limbs departing from canonical (pair meta limbs)",
        key="trend_vs_limbs", covariate=lambda meta: meta["limbs"],
        title="Articulation check", label="the number of limbs moved",
        grows="with the number of limbs moved", caveat=CAVEAT,
    ))
