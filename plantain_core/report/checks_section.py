"""The card's "Specificity, equivalence and length" section: small-N honesty, the common
mode, TOST and the length-adjusted test, written from summary.json alone."""

from __future__ import annotations

from typing import Any, Mapping

from .markup import md_code


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
    top = ", ".join(f"{md_code(u['unit'])} {_pct(u['placebo_share'])}" for u in lp.get("top_units", [])[:10])
    return (f"Length placebo ({lp['pairs']} pairs in which only the prompt length differs, in the probe's direction): "
            f"of the {lp['significant']:,} units with p_fwer < 0.05, {lp['mostly_length']:,} show at least half their "
            f"probe effect under length alone. Share of the probe effect the placebo reproduces (negative: length alone "
            f"moves the unit the other way), top units by |t|: {top}.")


#: median standard-error inflation above which the card calls identification weak
WEAK = 3.0


def _mde(x) -> str:
    return f"|d_z| ≥ {x:.2f}" if x is not None else "no effect (the FWER test cannot reject at this N)"


def specificity_text(sp: Mapping[str, Any]) -> str:
    """The specificity sentences: what passes, how well the shift is identified, and
    "cannot tell" (with the detectable effect) for the rest; never "not specific"."""
    raw = sp["raw_p_fwer_lt_0.05"]
    text = (f"The common mode (per pair, the mean standardized difference over the other units: the variation every "
            f"unit shares) explains {_pct(sp['common_mode_share'])} of the standardized differences' variance across "
            "pairs. ")
    if sp.get("note"):
        return text + f"Specificity: cannot tell — {sp['note']}."
    readings = sp.get("readings") or []
    kappa = sp.get("inflation")
    text += (f"Beyond it (Freedman–Lane, the common mode and its shared shift as nuisance), {sp['p_fwer_lt_0.05']:,} units "
             f"pass the FWER test (raw: {raw:,}) and {sp['q_lt_0.05']:,} have BH q < 0.05.")
    if len(readings) > 1:
        text += (f" Two readings of the shared shift fit about equally well ({readings[0]['agreeing']:,} and "
                 f"{readings[1]['agreeing']:,} units agree with them): a unit counts only beyond both.")
    if kappa is not None:
        weak = kappa > WEAK
        text += (f" Identification: the specific effect's standard error is {kappa:.1f}× the plain test's (median)"
                 + (" — weak: the shift is large against its variation across pairs." if weak else "."))
    rest = raw - sp["p_fwer_lt_0.05"]
    if rest > 0 or (kappa is not None and kappa > WEAK):
        text += (f" For the other raw hits the data cannot tell whether they are unit-specific: this test detects "
                 f"{_mde(sp.get('mde_dz'))} with 80% power here.")
    return text


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
        lines.append(specificity_text(s["specificity"]))
        eq = s["equivalence"]
        if eq.get("reachable", True):
            lines.append(f"Equivalence (paired TOST, exact noncentral t, bound |d_z| < {eq['bound_dz']:g}): "
                         f"{eq['equivalent']:,} of {eq['tested']:,} tested units {'is' if eq['equivalent'] == 1 else 'are'} "
                         "shown not to respond beyond the bound (p < 0.05); the others are undecided or respond.")
        else:
            lines.append(f"Equivalence (paired TOST, bound |d_z| < {eq['bound_dz']:g}): cannot be shown at this N — even a "
                         f"unit with t = 0 gets p = {eq['min_p']:.2f}; no unit can be said not to respond.")
        lines.append("Each unit's exact 95% interval of d_z is in units.csv (d_low, d_high).")
        lp = s.get("length_placebo")
        if lp is not None:
            lines.append(_placebo_text(lp))
        la = s.get("length_adjusted")
        if la is not None:
            lines.append(length_text(la))
        out += [f"- `{name}`: " + " ".join(lines), ""]
    return out


def length_text(la: Mapping[str, Any]) -> str:
    if la.get("note"):
        if la["note"].startswith("A and B have the same token count"):
            return f"Length: {la['note']}."
        return f"Length-adjusted test: not possible — {la['note']}."
    text = (f"At zero token-count difference (Freedman–Lane sign-flip test with the token-count difference as "
            f"nuisance), {la['p_fwer_lt_0.05']:,} units pass the FWER test.")
    kappa = la.get("inflation")
    if kappa is not None and kappa > WEAK:
        text += (f" Its standard errors are {kappa:.1f}× the plain test's (the token-count difference has one sign "
                 f"or little spread): it detects only {_mde(la.get('mde_dz'))}, so a null result here says little.")
    elif la["p_fwer_lt_0.05"] == 0:
        text += f" It detects {_mde(la.get('mde_dz'))} with 80% power here."
    return text
