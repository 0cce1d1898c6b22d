"""The card's own reading of the numbers: readable numbers, the neutral sentences per
layout (counts against the null, FWER and BH hits, split-half replication, what the test
could have found) and the verdict a layout with hits gets. No claim beyond the numbers."""

from __future__ import annotations

import math
from typing import Any, Mapping

from .markup import md_text


def num(x: Any) -> str:
    """Readable numbers: integers with thousands separators, small floats to 2 decimals."""
    if x is None:
        return "—"
    x = float(x)
    if not math.isfinite(x):
        return "∞" if x > 0 else "—"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:,.1f}"


def pct(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "—"


def ratio_text(row: Mapping[str, Any]) -> str:
    if row.get("ratio") is None:
        note = row.get("ratio_note") or "undefined"
        return "∞ (null p99 = 0)" if note == "null p99 is 0" else f"— ({note})"
    r = row["ratio"]
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×"


def _have(count: int) -> str:
    return "has" if count == 1 else "have"


def _units(count: int) -> str:
    return f"{count:,} unit passes" if count == 1 else f"{count:,} units pass"


def default_interpretation(name, s, direction) -> str:
    """Neutral sentences from the numbers; no claim beyond them."""
    u = s["n_units"]
    rows = s["thresholds"]
    first = rows[0]
    parts = [f"On the `{name}` layout, {first['observed']:,} of {u:,} units ({pct(first['observed'], u)}) "
             f"{_have(first['observed'])} "
             f"|t| > {first['threshold']:g} against a sign-flip null p99 of {num(first['null_p99'])} ({ratio_text(first)})"]
    for row in rows[1:]:
        ratio = f", {ratio_text(row)}" if row.get("ratio") is not None else ""
        parts.append(f"{row['observed']:,} {_have(row['observed'])} |t| > {row['threshold']:g} "
                     f"(null p99 {num(row['null_p99'])}{ratio})")
    text = "; ".join(parts) + "."
    if first["observed"]:
        text += (f" Of the units above |t| > {first['threshold']:g}, {first['positive']:,} are larger under "
                 f"\"{md_text(direction[0])}\" and {first['observed'] - first['positive']:,} under "
                 f"\"{md_text(direction[1])}\".")
    sig = s["significant"]
    text += (f" {_units(sig['p_fwer_lt_0.05'])} the max-|t| family-wise test at 0.05 and "
             f"{sig['q_lt_0.05']:,} {_have(sig['q_lt_0.05'])} BH q < 0.05.")
    mde = (s.get("null") or {}).get("mde_dz")
    if sig["p_fwer_lt_0.05"] == 0:
        text += (f" Nothing found is not nothing there: at this N the FWER test detects |d_z| ≥ {mde:.2f} with 80% "
                 "power; smaller effects can be present." if mde is not None else
                 " At this N the FWER test cannot reject at all, so no effect could have been found.")
    sh = s["split_half"]
    if sh["median"] is not None:
        r = sh["median"]
        how = "replicates well" if r >= 0.7 else "replicates partly" if r >= 0.3 else "barely replicates"
        text += (f" The per-unit pattern {how} across independent halves of the pairs "
                 f"(median split-half r = {r:.2f}).")
        if s.get("n_pairs", 99) < 8:
            text += (f" With {s['n_pairs']} pairs each half holds {s['n_pairs'] // 2}, so few distinct splits exist "
                     "and this r is rough.")
    p99 = first["null_p99"] or 0
    if sig["p_fwer_lt_0.05"] == 0 and first["observed"] <= p99:
        text += " These counts are within the range of the sign-flip null: no evidence that A and B differ here."
    return text + verdict(s)


def verdict(s) -> str:
    """One sentence that says what the FWER hits amount to: none, a few named units, a
    subset, or most units (where a shared shift is the simpler reading)."""
    hits, u = s["significant"]["p_fwer_lt_0.05"], s["n_units"]
    if not hits:
        return ""
    top, t = s.get("max_abs_t_unit"), s.get("max_abs_t")
    strongest = f"; the strongest is `{top}` (|t| = {t:.1f})" if top is not None and t is not None else ""
    share = hits / u if u else 0.0
    if share <= 0.05 or hits <= 5:
        return (f" **Verdict: a few units respond** ({hits:,} of {u:,} pass the family-wise test{strongest}): a "
                "localized effect, each unit listed in units.csv with its p_fwer.")
    if share < 0.5:
        return (f" **Verdict: a subset of units responds** ({hits:,} of {u:,}, {pct(hits, u)}{strongest}).")
    return (f" **Verdict: most units respond** ({hits:,} of {u:,}, {pct(hits, u)}{strongest}): a shift shared by "
            "the whole layout is the simpler reading; the specificity check below says which units stand out "
            "beyond it.")
