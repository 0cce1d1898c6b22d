"""Which units a causal check intervenes on: the top K by |t|, random control sets
matched per stratum (block, and MLP vs attention), the doses, and the permutation p.
Pure numpy; see ``docs/causal.md``."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import attrs
import numpy as np

from .stats import top_by_abs_t

SELECTED = -1  # UnitSet.replicate of the selected (top-k) set


@attrs.frozen
class UnitSet:
    """Units of one layout that one intervention acts on together."""

    layout: str
    k: int
    replicate: int  # SELECTED, or 0..R-1 for a matched random control
    indices: tuple[int, ...]


def matched_controls(strata: np.ndarray, selected: np.ndarray, replicates: int,
                     rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """``replicates`` random unit sets with as many units per stratum (block, and MLP or
    attention) as ``selected``, drawn without replacement from the stratum's other units;
    where a stratum has too few others, from all its units (the sets may then overlap)."""
    need = Counter(int(s) for s in strata[selected])
    pools, short = {}, []
    for s, count in sorted(need.items()):
        members = np.flatnonzero(strata == s)
        others = members[~np.isin(members, selected)]
        pools[s] = others if len(others) >= count else members
        if len(others) < count:
            short.append(s)
    sets = [np.sort(np.concatenate([rng.choice(pools[s], size=c, replace=False) for s, c in sorted(need.items())]))
            for _ in range(replicates)]
    return sets, short


def permutation_p(effect: float, controls: Sequence[float]) -> float | None:
    """(1 + #controls ≥ effect) / (1 + R), one-sided; None without controls or effect."""
    c = np.asarray([x for x in controls if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(controls) or effect is None or not math.isfinite(effect):
        return None
    return float((1 + np.count_nonzero(c >= effect)) / (1 + len(controls)))


def doses_for(top: int, doses: Sequence[int], n_tested: int) -> tuple[int, list[int]]:
    """The headline K and every dose, capped at the tested units, sorted, unique."""
    k = min(int(top), n_tested)
    return k, sorted({min(int(d), n_tested) for d in doses if int(d) >= 1} | {k})


def _covers_its_strata(strata: np.ndarray, selected: np.ndarray) -> bool:
    """Every unit of every stratum the selection touches is selected: controls matched per
    stratum would be the selection itself."""
    return bool(np.isin(np.flatnonzero(np.isin(strata, strata[selected])), selected).all())


def plan_layout(layout, t: np.ndarray, *, top: int, doses: Sequence[int], controls: int, seed: int,
                ordinal: int) -> tuple[int, list[UnitSet], list[str]]:
    """Headline K, the unit sets of one layout (per dose: selected + controls), notes."""
    n_tested = int(np.isfinite(t).sum())
    if n_tested == 0:
        return 0, [], [f"`{layout.name}`: no unit has a finite t; nothing to test"]
    k, ks = doses_for(top, doses, n_tested)
    strata = layout.block_index() * 2 + layout.mlp.astype(np.int64)
    sets, notes = [], []
    covered = [d for d in ks if _covers_its_strata(strata, top_by_abs_t(t, d))]
    if k in covered:  # a headline whose "controls" could only be the selected units themselves
        usable = [d for d in ks if d not in covered]
        notes.append(f"`{layout.name}`: K={k} covers every unit of its blocks, so no matched control set can differ "
                     "from it and no p is given for it" + (f"; the headline is K={usable[-1]}" if usable else ""))
        k = usable[-1] if usable else k
    for dose in ks:
        sel = top_by_abs_t(t, dose)
        sets.append(UnitSet(layout.name, dose, SELECTED, tuple(int(i) for i in sel)))
        if dose in covered:
            continue
        rng = np.random.default_rng([int(seed), ordinal, dose])
        ctrl, short = matched_controls(strata, sel, controls, rng)
        sets += [UnitSet(layout.name, dose, r, tuple(int(i) for i in c)) for r, c in enumerate(ctrl)]
        if short and controls:
            blocks = sorted({layout.spans[s // 2].block.name for s in short})
            notes.append(f"`{layout.name}` K={dose}: {', '.join(blocks)} had too few other units, so the controls "
                         "there were drawn from all of the block's units and can overlap the selected set")
    return k, sets, notes
