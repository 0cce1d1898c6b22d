"""The card's block-level lines: which blocks respond as a whole, with their FWER p
(``layouts.<layout>.block_tests`` of summary.json, ``plantain_core.stats.blocks``)."""

from __future__ import annotations

from typing import Any, Mapping

ALPHA = 0.05
SHOWN = 8


def block_lines(s: Mapping[str, Any]) -> list[str]:
    tests = s.get("block_tests")
    if not tests or not tests.get("blocks"):
        return []
    rows = [b for b in tests["blocks"] if b.get("p_fwer") is not None]
    hits = sorted((b for b in rows if b["p_fwer"] < ALPHA), key=lambda b: (b["p_fwer"], -(b["z"] or 0)))
    head = (f"**Blocks as a whole** (mean |t| over a block's units against the same sign-flip null, standardized per "
            f"block; FWER over the {len(rows)} blocks): ")
    if not hits:
        best = min(rows, key=lambda b: b["p_fwer"], default=None)
        tail = f" (smallest p = {best['p_fwer']:.3g}, `{best['block']}`)" if best else ""
        return [head + f"no block responds at FWER 0.05{tail}.", ""]
    said = "; ".join(f"{b['block']} responds, p = {b['p_fwer']:.3g} (mean |t| {b['mean_abs_t']:.2f} against "
                     f"{b['null_mean']:.2f} under the null)" for b in hits[:SHOWN])
    more = f"; and {len(hits) - SHOWN} more" if len(hits) > SHOWN else ""
    return [head + said + more + ". A responding block holds an effect somewhere among its units; which units is "
            "the per-unit tests' question.", ""]
