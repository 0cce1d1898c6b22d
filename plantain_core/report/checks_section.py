"""The card's "Specificity, equivalence and length" section: small-N honesty, the common
mode, TOST and the length-adjusted test, written from summary.json alone."""

from __future__ import annotations

from typing import Any, Mapping


def _pct(x) -> str:
    if x is None:
        return "—"
    return "0%" if abs(x) < 0.005 else f"{100 * x:.0f}%"


def small_n_line(s: Mapping[str, Any], n_pairs) -> str | None:
    null = s.get("null") or {}
    if null.get("fwer_reachable", True):
        return None
    return (f"with {n_pairs} pairs and {null.get('flips', '?'):,} sign patterns the smallest attainable FWER p is "
            f"{null.get('min_p_fwer'):.3g}, so no unit can pass p_fwer < 0.05; add pairs (the counts against the "
            "null and the BH q remain)")


def length_sentence(tc: Mapping[str, Any]) -> str:
    """"A has 6 tokens more than B" (or B more than A) in every pair."""
    d = float(tc.get("mean_diff") or 0)
    longer, shorter = ("A", "B") if d > 0 else ("B", "A")
    n = abs(d)
    return f"{longer} has {n:g} token{'s' if n != 1 else ''} more than {shorter} in every pair"


def _placebo_text(lp: Mapping[str, Any]) -> str:
    if not lp.get("pairs"):
        return f"Length placebo: {lp.get('note', 'not run')}."
    top = ", ".join(f"`{u['unit']}` {_pct(u['placebo_share'])}" for u in lp.get("top_units", [])[:10])
    return (f"Length placebo ({lp['pairs']} pairs in which only the prompt length differs, in the probe's direction): "
            f"of the {lp['significant']:,} units with p_fwer < 0.05, {lp['mostly_length']:,} show at least half their "
            f"probe effect under length alone. Share of the probe effect the placebo reproduces (negative: length alone "
            f"moves the unit the other way), top units by |t|: {top}.")


def checks_section(summary: Mapping[str, Any]) -> list[str]:
    layouts = summary.get("layouts") or {}
    if not any("specificity" in s for s in layouts.values()):
        return []
    out = ["## Specificity, equivalence and length", ""]
    for name, s in layouts.items():
        if "specificity" not in s:
            continue
        lines = []
        warn = small_n_line(s, summary.get("n_pairs"))
        if warn:
            lines.append(f"**Small N: {warn}.**")
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
                     f"{eq['tested']:,} tested units {'is' if eq['equivalent'] == 1 else 'are'} shown not to respond beyond the bound (p < 0.05); the others "
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
