"""The card's "Across the trajectory" section (runs with ``--steps K``), from summary.json."""

from __future__ import annotations

from typing import Any, Mapping

from ..stats.across_steps import plain_summary


def trajectory_section(summary: Mapping[str, Any], manifest: Mapping[str, Any],
                       figs: Mapping[str, Mapping[str, str]]) -> list[str]:
    families = summary.get("trajectory") or {}
    if not families:
        return []
    sigmas = {int(r["index"]): float(r["sigma"]) for r in manifest.get("trajectory") or [] if "sigma" in r}
    out = ["## Across the trajectory", "",
           f"The denoising loop ran {manifest.get('steps')} steps as the pipeline runs them (guidance "
           f"{manifest.get('guidance', 1.0)}); A and B of a pair start from the same noise and follow their own "
           "latents. Each captured step has its own statistics above (`layout@stepK`); here the family is every "
           "unit × step cell, with one set of sign patterns for all steps (steps.csv has each cell's t, FWER p and "
           "BH q).", ""]
    for name, s in families.items():
        out += [plain_summary(name, s, sigmas), ""]
        f = figs.get(f"{name}@trajectory") or {}
        if "steps_blocks" in f:
            out.append(f"![{name}: max |t| per block and step]({f['steps_blocks']})")
        if "steps_units" in f:
            out.append(f"![{name}: top units over the steps]({f['steps_units']})")
        out.append("")
    return out
