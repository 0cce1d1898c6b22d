"""The card's "Specificity, equivalence and length" section: small-N honesty, the common
mode, TOST and the length-adjusted test, written from summary.json alone."""

from __future__ import annotations

from typing import Any, Mapping


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def small_n_line(name: str, s: Mapping[str, Any], n_pairs) -> str | None:
    null = s.get("null") or {}
    if null.get("fwer_reachable", True):
        return None
    return (f"**`{name}`: with {n_pairs} pairs and {null.get('flips', '?'):,} sign patterns the smallest attainable "
            f"FWER p is {null.get('min_p_fwer'):.3g}, so no unit can pass p_fwer < 0.05** — add pairs; the counts "
            "against the null and the BH q remain.")


def _placebo_text(lp: Mapping[str, Any]) -> str:
    if not lp.get("pairs"):
        return f"Length placebo: {lp.get('note', 'not run')}."
    top = ", ".join(f"`{u['unit']}` {_pct(u['placebo_share'])}" for u in lp.get("top_units", [])[:10])
    return (f"Length placebo ({lp['pairs']} pairs in which only the prompt length differs, in the probe's direction): "
            f"of the {lp['significant']:,} units with p_fwer < 0.05, {lp['mostly_length']:,} show at least half their "
            f"probe effect under length alone. Share of the probe effect the placebo reproduces, top units by |t|: "
            f"{top}.")


def checks_section(summary: Mapping[str, Any]) -> list[str]:
    layouts = summary.get("layouts") or {}
    if not any("specificity" in s for s in layouts.values()):
        return []
    out = ["## Specificity, equivalence and length", ""]
    for name, s in layouts.items():
        if "specificity" not in s:
            continue
        lines = []
        warn = small_n_line(name, s, summary.get("n_pairs"))
        if warn:
            lines.append(warn)
        sp = s["specificity"]
        raw = sp["raw_p_fwer_lt_0.05"]
        text = (f"The common mode (per pair, the mean standardized difference over units: the shift every unit "
                f"shares) explains {_pct(sp['common_mode_share'])} of the standardized differences' variance across "
                "pairs. ")
        if sp.get("note"):
            text += f"Specificity: not testable — {sp['note']}."
        else:
            text += (f"Beyond it (Freedman–Lane, the common mode as nuisance), {sp['p_fwer_lt_0.05']:,} units pass the "
                     f"FWER test (raw: {raw:,}) and {sp['q_lt_0.05']:,} have BH q < 0.05.")
            if raw and sp["p_fwer_lt_0.05"] < raw / 2:
                text += " Most raw hits follow the common mode: they are not evidence of unit-specific coding."
        lines.append(text)
        eq = s["equivalence"]
        lines.append(f"Equivalence (paired TOST, bound |d_z| < {eq['bound_dz']:g}): {eq['equivalent']:,} of "
                     f"{eq['tested']:,} tested units are shown not to respond beyond the bound (p < 0.05); the others "
                     "are undecided or respond. Each unit's 95% interval of d_z is in units.csv (d_low, d_high).")
        lp = s.get("length_placebo")
        if lp is not None:
            lines.append(_placebo_text(lp))
        la = s.get("length_adjusted")
        if la is not None:
            if la.get("note"):
                lines.append(f"Length-adjusted test: not possible — {la['note']}.")
            else:
                lines.append(f"At zero token-count difference (Freedman–Lane sign-flip test with the token-count "
                             f"difference as nuisance), {la['p_fwer_lt_0.05']:,} units pass the FWER test.")
        out += [f"- `{name}`: " + " ".join(lines), ""]
    return out
