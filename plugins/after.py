"""after: generalisation across events. Axis units respond to post-event states in most
pairs; class detectors are carried by one or two events."""

from __future__ import annotations

from plantain_core import Interpretation, Section, hookimpl
from plantain_core.stats.trends import sign_agreement


class AfterInterpreter:
    description = "sign agreement across events: axis units vs class-detector units"

    def interpret(self, spec, pairs, result) -> Interpretation:
        stats = result.primary
        agree = sign_agreement(stats)
        if not agree.get("units"):
            return Interpretation({"generalisation": agree}, (Section("Generalisation across events", "No testable units."),))
        body = (
            f"Of the {agree['units']} units with the largest |t| ({stats.layout} layout), "
            f"**{agree['n_axis_units']}** agree in sign with their mean in at least "
            f"{agree['axis_min']:.0%} of the {stats.n_pairs} events (axis units), "
            f"**{agree['n_class_detectors']}** have two events supplying at least "
            f"{agree['detector_share']:.0%} of their effect (class detectors), and "
            f"{agree['n_other']} are neither. Median sign agreement: {agree['median_agreement']:.2f}."
        )
        return Interpretation({"generalisation": agree}, (Section("Generalisation across events", body),))


@hookimpl
def plantain_register_interpreters(register):
    register("after", AfterInterpreter())
