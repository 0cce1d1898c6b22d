"""Which units a causal check intervenes on: the top K by |t| (or by attribution), random
control sets matched per stratum (block, and MLP vs attention), the doses, the
permutation p and its sequential (Besag–Clifford) stopping rule. Pure numpy; see
``docs/causal.md``."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Sequence

import attrs
import numpy as np

from ..stats.engine import top_by

SELECTED = -1  # UnitSet.replicate of the selected (top-k) set
RANKINGS = ("t", "attribution")  # what ranks the units a selected set takes: |t|, or the attribution score
FALLBACK_DOSES = (1, 4, 16, 64)  # where a headline K covers its blocks, the largest of these below it that does not
ALPHA = 0.05


@attrs.frozen
class UnitSet:
    """Units of one layout that one intervention acts on together."""

    layout: str
    k: int
    replicate: int  # SELECTED, or 0..R-1 for a matched random control
    indices: tuple[int, ...]
    by: str = "t"  # the ranking the selected set of this test came from (RANKINGS)
    fold: int = 0  # held-out selection: which half of the pairs chose the selected set of this test
    pairs: tuple[int, ...] | None = None  # the pairs the set is measured on (None: every pair)


def matched_controls(strata: np.ndarray, selected: np.ndarray, replicates: int,
                     rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``replicates`` distinct random unit sets with as many units per stratum (block,
    and MLP or attention) as ``selected``, drawn without replacement from the stratum's
    other units; where a stratum has too few others, from all its units (the sets may then
    overlap). Where fewer distinct sets exist than ``replicates`` (small blocks), every one
    of them, once: a repeated control would only repeat one draw of the null."""
    need = Counter(int(s) for s in strata[selected])
    pools, short = {}, []
    for s, count in sorted(need.items()):
        members = np.flatnonzero(strata == s)
        others = members[~np.isin(members, selected)]
        pools[s] = others if len(others) >= count else members
        if len(others) < count:
            short.append(s)
    possible = math.prod(math.comb(len(pools[s]), c) for s, c in need.items())
    if possible <= replicates:
        parts = [list(itertools.combinations(pools[s].tolist(), c)) for s, c in sorted(need.items())]
        return [np.sort(np.asarray([u for part in combo for u in part], dtype=np.int64))
                for combo in itertools.product(*parts)], short
    sets: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    while len(sets) < replicates:
        draw = np.sort(np.concatenate([rng.choice(pools[s], size=c, replace=False) for s, c in sorted(need.items())]))
        if tuple(draw.tolist()) not in seen:
            seen.add(tuple(draw.tolist()))
            sets.append(draw)
    return sets, short


def reaches(x, effect: float) -> bool:
    """Whether a control counts against the selected effect: ≥ it, or with no effect of its
    own (None, NaN): a control that could not be measured is not evidence for the selection,
    so it counts as at least as large (conservative)."""
    return x is None or not math.isfinite(x) or x >= effect


def permutation_p(effect: float, controls: Sequence[float]) -> float | None:
    """(1 + #controls ≥ effect) / (1 + R), one-sided, a non-finite control counting as ≥;
    None without controls or effect."""
    if not len(controls) or effect is None or not math.isfinite(effect):
        return None
    return float((1 + sum(1 for x in controls if reaches(x, effect))) / (1 + len(controls)))


def stop_after(controls: int, alpha: float = ALPHA) -> int:
    """h of the Besag–Clifford rule: with R controls, p = (1 + g) / (1 + R) ≤ alpha exactly
    when fewer than h = floor(alpha (R + 1)) controls reach the selected effect, so the
    h-th one that does settles p > alpha and the remaining controls cannot change it."""
    return max(1, math.floor(alpha * (controls + 1) + 1e-9))


def sequential_p(effect: float, drawn: Sequence[float], controls: int, alpha: float = ALPHA) -> float | None:
    """After all R controls, the permutation p. Stopped early at the h-th control reaching
    the effect after l draws: Besag & Clifford's (1991) p = h / l, raised where needed to
    (1 + h) / (1 + R), the least the permutation p of all R could be; so an early stop
    always reports p > alpha, as all R controls would have."""
    if len(drawn) >= controls:
        return permutation_p(effect, drawn)
    if effect is None or not math.isfinite(effect) or not drawn:
        return None
    h = stop_after(controls, alpha)
    return max(h / len(drawn), (1 + h) / (1 + controls))


def settled(effect: float, drawn: Sequence[float], controls: int, alpha: float = ALPHA) -> bool:
    """Whether drawing further controls can no longer move p across alpha: every control is
    drawn, there is no effect to compare with, or h controls already reach it."""
    if len(drawn) >= controls or effect is None or not math.isfinite(effect):
        return True
    return sum(1 for x in drawn if reaches(x, effect)) >= stop_after(controls, alpha)


def doses_for(top: int, doses: Sequence[int], n_tested: int) -> tuple[int, list[int]]:
    """The headline K and every dose, capped at the tested units, sorted, unique."""
    k = min(int(top), n_tested)
    return k, sorted({min(int(d), n_tested) for d in doses if int(d) >= 1} | {k})


def _covers_its_strata(strata: np.ndarray, selected: np.ndarray) -> bool:
    """Every unit of every stratum the selection touches is selected: controls matched per
    stratum would be the selection itself."""
    return bool(np.isin(np.flatnonzero(np.isin(strata, strata[selected])), selected).all())


def strata_of(layout) -> np.ndarray:
    """Per unit its control stratum: block, and MLP or attention part, as 2 × block + part,
    so a block's MLP (2b + 1) never shares a stratum with the next block's attention (2b + 2)."""
    return layout.block_index().astype(np.int64) * 2 + np.asarray(layout.mlp).astype(np.int64)


def plan_layout(layout, strength: np.ndarray, *, top: int, doses: Sequence[int], controls: int, seed: int,
                ordinal: int, by: str = "t") -> tuple[int, list[UnitSet], list[str]]:
    """Headline K, the unit sets of one layout (per dose: selected + controls), notes.
    ``strength`` ranks the units (|t|, or the attribution score; NaN: untested); ``doses``
    may be empty (the headline K only); ``ordinal`` says which planned selection this is (it
    seeds the controls with ``seed``, the dose and the ranking). Where K covers every unit of its blocks, the
    headline falls back to the largest other dose, or of :data:`FALLBACK_DOSES`, that does
    not (K itself is then measured only when ``doses`` ask for it)."""
    n_tested = int(np.isfinite(strength).sum())
    if n_tested == 0:
        return 0, [], [f"`{layout.name}`: no unit has a finite {'t' if by == 't' else 'score'}; nothing to test"]
    k, ks = doses_for(top, doses, n_tested)
    strata = strata_of(layout)
    sets, notes = [], []
    covered = {d for d in set(ks) | set(FALLBACK_DOSES) if d <= n_tested and _covers_its_strata(strata, top_by(strength, d))}
    if k in covered:  # a headline whose "controls" could only be the selected units themselves
        usable = sorted(d for d in set(ks) | {d for d in FALLBACK_DOSES if d < k} if d not in covered and d <= n_tested)
        what = "" if k == n_tested else f" (top by {'|t|' if by == 't' else 'attribution'})"
        notes.append(f"`{layout.name}`{what}: K={k} covers every unit of its blocks, so no matched control set can "
                     "differ from it and it gets no p" + (f"; the headline is K={usable[-1]}" if usable else ""))
        asked = {min(int(d), n_tested) for d in doses}
        ks = sorted({d for d in ks if d in asked or d not in covered} | ({usable[-1]} if usable else {k}))
        k = usable[-1] if usable else k
    salt = [] if by == "t" else [RANKINGS.index(by)]
    for dose in ks:
        sel = top_by(strength, dose)
        sets.append(UnitSet(layout.name, dose, SELECTED, tuple(int(i) for i in sel), by))
        if dose in covered:
            continue
        rng = np.random.default_rng([int(seed), ordinal, dose, *salt])
        ctrl, short = matched_controls(strata, sel, controls, rng)
        sets += [UnitSet(layout.name, dose, r, tuple(int(i) for i in c), by) for r, c in enumerate(ctrl)]
        if controls and len(ctrl) < controls:
            floor = 1 / (len(ctrl) + 1)
            notes.append(f"`{layout.name}` K={dose} (top by {'|t|' if by == 't' else 'attribution'}): only "
                         f"{len(ctrl)} distinct matched control set{'s exist' if len(ctrl) != 1 else ' exists'} (the "
                         f"blocks are small); each is used once, so p ≥ {floor:.3g}"
                         + (" and cannot reach 0.05" if floor > ALPHA else ""))
        if short and controls:
            blocks = sorted({layout.spans[s // 2].block.name for s in short})
            notes.append(f"`{layout.name}` K={dose}: {', '.join(blocks)} had too few other units, so the controls "
                         "there were drawn from all of the block's units and can overlap the selected set")
    return k, sets, notes
