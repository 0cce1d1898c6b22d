"""measure: does the effect grow with the claimed scale gap (log10 of large / small)?"""

from __future__ import annotations

import math

from plantain_core import hookimpl

from .interpretation import TrendInterpreter


@hookimpl
def plantain_register_interpreters(register):
    register("measure", TrendInterpreter(
        description="effect vs log10 scale gap (pair meta scale_a_m / scale_b_m)",
        key="trend_vs_scale_gap",
        covariate=lambda meta: math.log10(meta["scale_a_m"] / meta["scale_b_m"]),
        title="Effect vs scale gap", label="the log10 scale gap", grows="with the scale gap",
    ))
