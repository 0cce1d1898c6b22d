"""Which unit sets a causal check measures on which pairs: per confirmed layout and ranking
the top units of each selection half (or of every pair) with their matched controls
(:func:`plantain_core.causal.unit_sets.plan_layout`), measured on the other half. Pure numpy."""

from __future__ import annotations

import attrs
import numpy as np

from .stats import split_pairs
from .unit_sets import RANKINGS, SELECTED, plan_layout


def plan(built, strengths, options, seed: int, halves):
    """Per layout the sets by |t| and by attribution: the confirmed rankings' with controls,
    the others' without (a selection equal, in every half, to one planned before it at its
    dose is measured once); the headline K per layout and ranking. ``halves``: per fold the
    pairs its sets are measured on (``[None]``: one fold, every pair); ``strengths[name][f]``
    what ranks the units for fold f (from the pairs it does not measure)."""
    sets, heads_k, layout_rows, notes = [], {}, {}, []
    order = sorted(RANKINGS, key=lambda r: r not in options.rankings)  # confirmed first
    folds = len(halves)
    for ordinal, (name, layout) in enumerate(built.items()):
        start = len(sets)
        for by in order:
            controls = options.controls if by in options.rankings else 0
            per_fold, ks = [], []
            for f, pairs in enumerate(halves):
                k, planned, more = plan_layout(layout, strengths[name][f][by], top=options.top,
                                               doses=options.planned_doses, controls=controls, seed=seed,
                                               ordinal=ordinal * folds + f, by=by)
                per_fold.append([attrs.evolve(s, fold=f, pairs=None if pairs is None else tuple(int(i) for i in pairs))
                                 for s in planned])
                ks.append(k)
                notes += [(f"selection on half {f + 1} of the pairs: " if folds > 1 else "") + m for m in more]
            common = set.intersection(*({s.k for s in p if s.replicate == SELECTED} for p in per_fold))
            if len(set(ks)) > 1 or any({s.k for s in p if s.replicate == SELECTED} != common for p in per_fold):
                notes.append(f"`{name}` (top by {label(by)}): the halves' selections allow different doses; only "
                             f"K = {', '.join(map(str, sorted(common))) or 'none'}, planned in both, is measured")
            below = [d for d in common if d <= min(ks)]
            heads_k[(name, by)] = max(below) if below else (min(common) if common else 0)
            same = {(s.k, s.fold): sorted(s.indices) for s in sets[start:] if s.replicate == SELECTED}
            dup = {d for d in common if all(same.get((d, s.fold)) == sorted(s.indices) for p in per_fold for s in p
                                            if s.replicate == SELECTED and s.k == d)}
            if dup:
                other = next(r for r in order if r != by)
                notes.append(f"`{name}`: the top units by {label(by)} are those by {label(other)} at K="
                             f"{', '.join(map(str, sorted(dup)))}" + (" in both halves" if folds > 1 else "")
                             + "; measured once")
            sets += [s for p in per_fold for s in p if s.k in common and s.k not in dup]
        layout_rows[name] = list(range(start, len(sets)))
    return sets, heads_k, layout_rows, list(dict.fromkeys(notes))


def halves_of(n: int, selection: str, seed: int, notes: list[str]):
    """(the pairs each fold selects on, the pairs it is measured on): held-out, two seeded
    halves crossed; ``same`` (or fewer than 4 pairs, where a half of one pair has no t), one
    fold on every pair."""
    if selection == "same" or n < 4:
        if selection != "same":
            notes.append(f"{n} pairs cannot be split into halves of at least 2 (a t needs 2 pairs): the units were "
                         "selected and measured on the same pairs (double-dipped)")
        return [None], [None]
    split = split_pairs(n, seed)
    return split, split[::-1]


def measured_sets(result, unit_sets, layout_rows) -> dict:
    """Per confirmed layout, the sets measured exactly: units, pairs, per-pair effects."""
    n = result["effect"].shape[1]
    out = {}
    for name, rows in layout_rows.items():
        rows = [r for r in rows if result["ran"][r]]
        out[name] = ([unit_sets[r].indices for r in rows],
                     [tuple(range(n)) if unit_sets[r].pairs is None else unit_sets[r].pairs for r in rows],
                     result["effect"][rows] if rows else np.zeros((0, n)))
    return out


def label(by: str) -> str:
    return "|t|" if by == "t" else "attribution"
