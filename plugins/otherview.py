"""otherview: does the viewpoint-vs-mention effect grow along the creature axis?"""

from __future__ import annotations

from plantain_core import hookimpl

from .interpretation import TrendInterpreter


@hookimpl
def plantain_register_interpreters(register):
    register("otherview", TrendInterpreter(
        description="Spearman of the effect against the creature's rank on the perceptual-similarity axis",
        key="trend_vs_rank", covariate=lambda meta: meta["rank"],
        title="Graded perceptual-similarity axis", label="the creature's rank",
        grows="as the creature's senses depart from a human's",
    ))
