"""Population prevalence across a sweep's seeds (``stats.prevalence``, Ince et al. 2021): per
unit from each cell's FWER decisions (units.csv), per block from each cell's block tests
(summary.json ``block_tests``). A cell is a replicate; its own test's α (0.05, FWER) and an
assumed sensitivity of 1 enter the posterior. Used by ``sweep.report``."""

from __future__ import annotations

import json
from typing import Any

from ..stats.prevalence import ALPHA, POWER, prevalence, prevalence_text

SHOWN_BLOCKS = 6


def _round(p: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in p.items()}


def _block_decisions(cell: dict, layout: str) -> dict[str, bool] | None:
    """Block → responds (p_fwer < α) in one cell; None when its summary.json has no block tests."""
    try:
        summary = json.loads((cell["dir"] / "summary.json").read_text(encoding="utf-8"))
        rows = summary["layouts"][layout]["block_tests"]["blocks"]
        return {str(r["block"]): r["p_fwer"] is not None and float(r["p_fwer"]) < ALPHA for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prevalence_entry(members: list[dict], layout: str) -> dict[str, Any]:
    """sweep_summary.json's ``prevalence`` of one replication entry: per k (seeds in which a
    unit is a FWER hit) the posterior summary, and per block the same from the block tests."""
    n = len(members)
    out: dict[str, Any] = {"alpha": ALPHA, "power": POWER, "replicates": n,
                           "units_by_k": {str(k): _round(prevalence(k, n)) for k in range(n + 1)}}
    decisions = [_block_decisions(m, layout) for m in members]
    if all(d is not None for d in decisions) and decisions:
        blocks = [b for b in decisions[0] if all(b in d for d in decisions)]
        rows = [{"block": b, **_round(prevalence(sum(d[b] for d in decisions), n))} for b in blocks]
        out["blocks"] = sorted(rows, key=lambda r: -r["k"])
    else:
        out["blocks_note"] = "a cell's summary.json has no block tests (reported before they existed)"
    return out


def prevalence_lines(entry: dict[str, Any]) -> list[str]:
    """The sweep card's prevalence sentences of one replication entry."""
    prev = entry.get("prevalence")
    if not prev:
        return []
    n = prev["replicates"]
    seeds = "seed" if n == 1 else "seeds"
    every = prev["units_by_k"][str(n)]
    count = entry["units_by_seeds_significant"].get(str(n), 0)
    lines = [f"Population prevalence (Ince et al. 2021; each seed's FWER decision at α = {prev['alpha']:g}, assumed "
             f"sensitivity {prev['power']:g}): a unit significant in {n} of {n} {seeds} ({count:,} units) has "
             f"{prevalence_text(every)}; in {n - 1} of {n}: {prevalence_text(prev['units_by_k'][str(n - 1)])}."
             if n > 1 else f"Population prevalence needs two or more seeds ({n} here)."]
    responding = [b for b in prev.get("blocks", []) if b["k"] > 0][:SHOWN_BLOCKS]
    if responding:
        lines.append("Blocks that respond as a whole (block tests): " + "; ".join(
            f"{b['block']} in {b['k']} of {n} {seeds}, {prevalence_text(b)}" for b in responding) + ".")
    return lines + [""]


def models_prevalence(cells: list[dict]) -> list[dict[str, Any]]:
    """Prevalence across models: per probe, steps, token scope, pairs and layout, the models
    whose layouts have the same units, each represented by its lowest-seed cell; per unit,
    in how many of the M models it is a FWER hit, and the posterior per k (and per block)."""
    import numpy as np

    groups: dict[tuple, dict[str, dict]] = {}
    for cell in sorted(cells, key=lambda c: c["config"].seed):
        c = cell["config"]
        for layout, data in cell["units"].items():
            key = (cell["probe"], c.steps, c.token_scope, tuple(map(str, cell["manifest"].get("pair_ids") or ())),
                   layout, tuple(data["unit"]))
            groups.setdefault(key, {}).setdefault(str(c.model), cell)  # the lowest seed of each model
    out = []
    for (probe, steps, scope, _, layout, units), by_model in groups.items():
        if len(by_model) < 2:
            continue
        models = sorted(by_model)
        members = [by_model[m] for m in models]
        hits = np.sum([m["units"][layout]["p_fwer"] < ALPHA for m in members], axis=0)
        entry = {"probe": probe, "steps": steps, "token_scope": scope, "layout": layout, "models": models,
                 "seeds": [m["config"].seed for m in members], "n_units": len(units),
                 "units_by_models_significant": {str(k): int(np.sum(hits == k)) for k in range(len(models) + 1)},
                 "in_every_model": [units[i] for i in np.flatnonzero(hits == len(models))][:50],
                 "prevalence": prevalence_entry(members, layout)}
        out.append(entry)
    return out


def models_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The sweep card's section on prevalence across models (nothing when no models share units)."""
    if not entries:
        return []
    lines = ["## Prevalence across models", "",
             "Models whose layouts have the same units, each by its lowest-seed cell: a unit's FWER decision in each "
             "model, and the population prevalence over models (Ince et al. 2021; α = 0.05, assumed sensitivity 1). "
             "The population is models like these (the same architecture and units), not models in general.", ""]
    for e in entries:
        n = len(e["models"])
        prev = e["prevalence"]
        k_all = e["units_by_models_significant"][str(n)]
        lines.append(f"**{e['probe']}**, `{e['layout']}` over {', '.join(e['models'])}: {k_all:,} of {e['n_units']:,} "
                     f"units are FWER hits in {n} of {n} models; such a unit has "
                     f"{prevalence_text(prev['units_by_k'][str(n)])}.")
        responding = [b for b in prev.get("blocks", []) if b["k"] > 0][:SHOWN_BLOCKS]
        if responding:
            lines.append("Blocks: " + "; ".join(f"{b['block']} in {b['k']} of {n} models, {prevalence_text(b)}"
                                                for b in responding) + ".")
        lines.append("")
    return lines
