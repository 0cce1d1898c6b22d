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
        out += clusters_lines(name, s, f.get("clusters"))
    return out


def clusters_lines(name: str, s: Mapping[str, Any], figure: str | None) -> list[str]:
    """The clusters of consecutive steps (and TFCE) of one layout, from summary.json."""
    if "cluster_threshold" not in s:
        return []
    listed = s.get("clusters") or []
    text = (f"Clusters along the steps (`{name}`): per unit, runs of consecutive captured steps with |t| > "
            f"{s['cluster_threshold']:.3f} (the two-sided t quantile at 0.05) and one sign; a cluster's mass is the "
            f"sum of its t, its FWER p the share of sign patterns whose largest |mass| over all units reaches it "
            f"(MNE's cluster test with a chain over steps; clusters.csv lists all {s['n_clusters']:,}). "
            f"{s['n_clusters_p_fwer_lt_0.05']:,} {'cluster has' if s['n_clusters_p_fwer_lt_0.05'] == 1 else 'clusters have'} "
            "p_fwer < 0.05")
    if listed:
        text += ": " + "; ".join(
            f"`{c['unit']}` steps {c['first_step']}–{c['last_step']} (mass {c['mass']:+.1f}, p = {c['p_fwer']:.3g})"
            for c in listed[:5]) + (f"; and {len(listed) - 5:,} more" if len(listed) > 5 else "")
    text += ". A cluster says the unit responds somewhere in that run of steps, not at each of its steps."
    out = [text, ""]
    tf = s.get("tfce")
    if tf:
        out += [f"TFCE along the steps (`{name}`; heights from {tf['start']:g} in steps of {tf['step']:g}, E = "
                f"{tf['e_power']:g}, H = {tf['h_power']:g}): {tf['cells_p_fwer_lt_0.05']:,} unit × step cells in "
                f"{tf['units_any_step']:,} units have FWER p < 0.05.", ""]
    if figure:
        out += [f"![{name}: t per unit and step, significant clusters outlined]({figure})", ""]
    return out
