"""Causal check: ablate or patch the units a probe selects and measure the output change.

The probe is correlational: a unit whose RMS differs between A and B need not matter
for what the model outputs. ``plantain causal RUN_DIR`` re-runs the probe passes of a
run (same model, pairs, seeds, size and token scope) with an intervention on the top K
units by |t| and on R random unit sets matched per block, and measures what happens to
the transformer's output v (the predicted velocity at the probe step, noisy-latent
tokens only):

- ``ablate``: the selected units' slice of the output-projection input is replaced by
  its mean over all 2N stimuli of the probe, per token position and feature (or by
  zero) in both the A and the B pass; effect = mean over pairs of
  1 − ||v_A' − v_B'|| / ||v_A − v_B|| (how much of the A/B output separation goes away).
- ``patch``: the A pass runs with the selected units' slice taken from the B pass of the
  same pair; effect = mean over pairs of 1 − ||v_A^patched − v_B|| / ||v_A − v_B||
  (the fraction of the way v_A moves toward v_B).

Controls give a null: p = (1 + #controls with effect ≥ the selected set's) / (1 + R),
drawn one at a time until p's side of 0.05 is settled (Besag–Clifford, in
:mod:`plantain_core.causal.unit_sets`). The clean passes run once; rows of one intervened forward
carry different unit sets' edits (:class:`RowEditor`). See ``docs/causal.md``.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import pathlib
import sys
import time
from collections import Counter
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from ..capture.hooks import Site, SliceEditor, SliceMeans, capture_units, merge_features, token_range, unit_features
from ..errors import PlantainError
from .stats import mean_interval
from .unit_sets import ALPHA, SELECTED, UnitSet, sequential_p, settled

CAUSAL_JSON = "causal.json"
MODES = ("ablate", "patch")
ABLATE_VALUES = ("mean", "zero")
DEFAULT_TOP = 16
DEFAULT_CONTROLS = 20
DEFAULT_DOSES = (1, 4, 16, 64)
@attrs.frozen(kw_only=True)
class Passes:
    """How the check runs the probe's passes: ``forward(items)`` runs one transformer
    forward for ``items`` [(pair, side 0=A/1=B)] and returns v, (len(items), n) float32;
    ``group(items)`` splits items into lists one forward can take (default: one list);
    ``batch_rows``: the most rows (stimuli) per forward."""

    transformer: Any
    forward: Callable
    n_pairs: int
    layouts: dict
    token_scope: str
    group: Callable | None = None
    batch_rows: int = 16


@attrs.frozen(kw_only=True)
class Intervention:
    """What an intervention does, and whether controls are drawn until p's side of
    ``alpha`` is settled (Besag–Clifford) or all of them (``sequential=False``)."""

    mode: str = "ablate"
    ablate_value: str = "mean"
    sequential: bool = True
    alpha: float = ALPHA


@attrs.frozen
class CausalTest:
    """One selected set and its controls: indices into the engine's ``sets``. Cross-fitted
    (held-out) selection adds ``folds``: the other halves' (selected, controls). Each pair
    is measured by the set of the half that did not select it, so the test's effect per pair
    comes from whichever fold measured the pair, and its j-th control joins control j of
    every fold (``n_controls``: the fewest any fold has)."""

    selected: int
    controls: tuple[int, ...] = ()
    folds: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @property
    def n_controls(self) -> int:
        return min([len(self.controls)] + [len(c) for _, c in self.folds])

    def selected_rows(self) -> tuple[int, ...]:
        return (self.selected, *(s for s, _ in self.folds))

    def control_rows(self, j: int) -> tuple[int, ...]:
        return (self.controls[j], *(c[j] for _, c in self.folds))

    def all_rows(self) -> set[int]:
        return {*self.selected_rows(), *self.controls, *(r for _, c in self.folds for r in c)}


def tests_of(sets: Sequence[UnitSet]) -> list[CausalTest]:
    """Group planned sets into tests: each selected set of fold 0 with the controls of its
    layout, ranking, dose and fold, in draw order, and the other folds' selected sets and
    controls of the same layout, ranking and dose."""
    def key(o: UnitSet) -> tuple:
        return o.layout, o.by, o.k

    def controls(s: UnitSet) -> tuple[int, ...]:
        ctl = [c for c, o in enumerate(sets) if o.replicate != SELECTED and (key(o), o.fold) == (key(s), s.fold)]
        return tuple(sorted(ctl, key=lambda c: sets[c].replicate))

    out = []
    for r, s in enumerate(sets):
        if s.replicate == SELECTED and s.fold == 0:
            others = sorted((o.fold, q) for q, o in enumerate(sets) if o.replicate == SELECTED and o.fold > 0
                            and key(o) == key(s))
            out.append(CausalTest(r, controls(s), tuple((q, controls(sets[q])) for _, q in others)))
    return out


def per_pair(values: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """A test's per-pair values (sets × N, NaN where a set was not measured): each pair's
    from the row that measured it (the folds' pairs are disjoint)."""
    rows = list(rows)
    if len(rows) == 1:
        return values[rows[0]]
    out = np.full(values.shape[1], np.nan)
    for r in rows:
        seen = np.isfinite(values[r])
        out[seen] = values[r][seen]
    return out


class RowEditor:
    """An ``editor`` for :func:`capture_units` under which each row of a forward carries its
    own unit set's edit: ``rows`` lists the next forward's (set, pair, side). The
    replacement of a slice is its mean over the probe's stimuli (``means``), zero, or the
    B pass's slice of the same pair (``store``, patch)."""

    def __init__(self, feats: Sequence[dict], cols: Sequence[dict], token_scope: str, *, means=None, store=None):
        self.feats, self.cols, self.token_scope = feats, cols, token_scope
        self.means, self.store = means, store
        self.rows: list[tuple[int, int, int]] = []
        self._on: dict = {}

    def _index(self, which: str, s: int, key, device):
        """Set ``s``'s features at ``key`` (``feats``) or their columns in the union (``cols``), on ``device``."""
        import torch

        got = self._on.get((which, s, key, device))
        if got is None:
            values = (self.feats if which == "feats" else self.cols)[s][key]
            got = self._on[(which, s, key, device)] = torch.as_tensor(values, device=device)
        return got

    def _mean(self, key, tokens: int):
        got = self._on.get(("mean", key, tokens))
        if got is None:
            got = self._on[("mean", key, tokens)] = self.means.mean(key, tokens)
        return got

    def __call__(self, site: Site, x, text_len):
        key = (site.block, site.stream)
        rows = [(r, s, i) for r, (s, i, _) in enumerate(self.rows) if key in self.feats[s]]
        if not rows:
            return None
        start, stop = token_range(site.stream, self.token_scope, x.shape[1], text_len)
        out = x.clone()
        for r, s, i in rows:
            feats = self._index("feats", s, key, x.device)
            if self.store is not None:
                donor = self.store[key].get(i)
                if donor is None or donor.shape[0] != stop - start:
                    raise PlantainError(f"cannot patch {key[0].name}/{key[1]}: the A and B passes of pair {i} differ "
                                        "in sequence length")
                value = donor.to(x.device)[:, self._index("cols", s, key, x.device)]
            elif self.means is not None:
                value = self._mean(key, stop - start)[:, self._index("cols", s, key, x.device)]
            else:
                value = 0.0
            out[r, start:stop, feats] = value if isinstance(value, float) else value.to(x.dtype)
        return out


class _BReader:
    """A ``read`` callback of the clean passes' :class:`SliceEditor`: the means over every
    stimulus and/or every B pass's slice (on the CPU: it holds all pairs)."""

    def __init__(self, means, keep_b: bool):
        self.means, self.keep_b = means, keep_b
        self.items: list[tuple[int, int]] = []
        self.data: dict = {}

    def __call__(self, key, part) -> None:
        if self.means is not None:
            self.means(key, part)
        if self.keep_b:
            store = self.data.setdefault(key, {})
            for r, (i, side) in enumerate(self.items):
                if side == 1:
                    store[i] = part[r].detach().to("cpu", copy=True)


# ---- the engine ----------------------------------------------------------------------------
def measure_effects(passes: Passes, sets: Sequence[UnitSet], tests: Sequence[CausalTest] | None = None,
                    how: Intervention = Intervention(), *, on_clean: Callable | None = None,
                    progress: bool = False, status: Callable | None = None) -> dict[str, Any]:
    """Clean passes once, then the unit sets' intervention passes, several sets per forward.

    ``tests`` (default: every set its own test, all run) say which sets are selected sets
    and which their controls; with ``how.sequential`` a test's controls are drawn one per
    round until its p's side of ``how.alpha`` is settled. A set with ``pairs`` is measured on
    those pairs only (held-out selection: each half's sets on the other half); a test's
    effect takes each pair from the fold that measured it. ``on_clean(items, rows)``
    receives the capture rows of the clean passes; ``status(test, record)`` hears of each
    settled test. Returns ``separation`` (N,), ``effect`` and ``output_change`` (sets × N;
    NaN for sets and pairs not run), per test ``drawn`` / ``p`` / ``stopped_early``, pass counts,
    timings.
    """
    import torch
    from tqdm.auto import tqdm

    if how.mode not in MODES or how.ablate_value not in ABLATE_VALUES:
        raise PlantainError(f"unknown mode {how.mode!r} / ablate value {how.ablate_value!r}")
    tests = list(tests) if tests is not None else [CausalTest(r) for r in range(len(sets))]
    n, group = passes.n_pairs, passes.group or (lambda items: [items])
    pairs_of = [range(n) if s.pairs is None else s.pairs for s in sets]
    feats = [unit_features(passes.layouts[s.layout], s.indices, passes.token_scope) for s in sets]
    union = merge_features(*feats)
    cols = [{key: np.searchsorted(union[key], f) for key, f in fs.items()} for fs in feats]
    sides = (0, 1) if how.mode == "ablate" else (0,)
    means = SliceMeans() if how.mode == "ablate" and how.ablate_value == "mean" else None
    reader = _BReader(means, keep_b=how.mode == "patch")
    shape_of = {it: g for g, items in enumerate(group([(i, s) for i in range(n) for s in (0, 1)])) for it in items}
    effect = np.full((len(sets), n), np.nan)
    change = np.full((len(sets), n), np.nan)
    ran = np.zeros(len(sets), dtype=bool)
    drawn = [0] * len(tests)
    open_tests = set(range(len(tests)))
    counts = {"clean": 0, "interventions": 0}
    timings: dict[str, float] = {}
    bar = tqdm(total=len(set().union(*(t.all_rows() for t in tests))), desc="causal unit sets",
               unit="set", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def dist(x, y) -> float:
        return float(torch.linalg.vector_norm((x - y).double() if x.device.type == "cpu" else x - y))

    def chunks(jobs):
        """Jobs [(set, pair, side)] packed into forwards: one conditioning shape each, by pair."""
        by_shape: dict[int, list] = {}
        for job in sorted(jobs, key=lambda j: (j[1], j[0], j[2])):
            by_shape.setdefault(shape_of[(job[1], job[2])], []).append(job)
        for jobs_ in by_shape.values():
            for k in range(0, len(jobs_), max(1, passes.batch_rows)):
                yield jobs_[k:k + passes.batch_rows]

    def record(t: int) -> dict:
        test = tests[t]
        e = _nanmean(per_pair(effect, test.selected_rows()))
        got = [_nanmean(per_pair(effect, test.control_rows(j))) for j in range(drawn[t])]
        return {"effect": e, "controls": got, "drawn": drawn[t],
                "p": sequential_p(e, got, test.n_controls, how.alpha) if test.n_controls else None,
                "stopped_early": drawn[t] < test.n_controls}

    try:
        with capture_units(passes.transformer, list(passes.layouts), passes.token_scope,
                           measure=on_clean is not None) as cap, torch.inference_mode():
            start, cpu = time.perf_counter(), time.process_time()
            cap.editor = SliceEditor(union, passes.token_scope, read=reader) if union else None
            clean = {}
            for items in chunks([(-1, i, s) for i in range(n) for s in (0, 1)]):
                items = [(i, s) for _, i, s in items]
                reader.items = items
                v = passes.forward(items)
                clean.update({it: v[r] for r, it in enumerate(items)})
                counts["clean"] += len(items)
                if on_clean is not None:
                    on_clean(items, cap.take())
            cap.measure = False
            sep = np.array([dist(clean[(i, 0)], clean[(i, 1)]) for i in range(n)])
            norm = {it: dist(v, torch.zeros_like(v)) for it, v in clean.items()}
            timings["clean"], timings["clean_cpu"] = time.perf_counter() - start, time.process_time() - cpu

            start, cpu = time.perf_counter(), time.process_time()
            editor = cap.editor = RowEditor(feats, cols, passes.token_scope, means=means,
                                            store=reader.data if how.mode == "patch" else None)
            round_sets = sorted({r for t in tests for r in t.selected_rows()} | (set() if how.sequential else {
                r for t in tests for j in range(t.n_controls) for r in t.control_rows(j)}))
            if not how.sequential:
                drawn = [t.n_controls for t in tests]
            while round_sets:
                got: dict = {}
                for jobs in chunks([(r, i, s) for r in round_sets if not ran[r] for i in pairs_of[r] for s in sides]):
                    editor.rows = jobs
                    v = passes.forward([(i, s) for _, i, s in jobs])
                    counts["interventions"] += len(jobs)
                    got.update({job: v[k] for k, job in enumerate(jobs)})
                for r in round_sets:
                    if ran[r]:
                        continue
                    for i in pairs_of[r]:
                        moved = (dist(got[(r, i, 0)], got[(r, i, 1)]) if how.mode == "ablate"
                                 else dist(got[(r, i, 0)], clean[(i, 1)]))
                        effect[r, i] = 1.0 - moved / sep[i] if sep[i] > 0 else np.nan
                        change[r, i] = np.mean([dist(got[(r, i, s)], clean[(i, s)]) / max(norm[(i, s)], 1e-30)
                                                for s in sides])
                    ran[r] = True
                    bar.update(1)
                round_sets = []
                for t in sorted(open_tests):
                    rec = record(t)
                    if settled(rec["effect"], rec["controls"], tests[t].n_controls, how.alpha) \
                            or not how.sequential:
                        open_tests.discard(t)
                        left = tests[t].all_rows() - {r for j in range(drawn[t]) for r in tests[t].control_rows(j)}
                        bar.total -= sum(1 for c in left if not ran[c])
                        bar.refresh()
                        if status is not None:
                            status(t, rec)
                    else:
                        round_sets += tests[t].control_rows(drawn[t])
                        drawn[t] += 1
            timings["interventions"] = time.perf_counter() - start
            timings["interventions_cpu"] = time.process_time() - cpu
    finally:
        bar.close()
    return {"separation": sep, "effect": effect, "output_change": change, "ran": ran, "timings": timings,
            "tests": [record(t) for t in range(len(tests))],
            "passes": {**counts, "per_unit_set": len(sides) * n, "unit_sets": int(ran.sum()),
                       "planned": sum(len(sides) * len(pairs_of[r]) for t in tests for r in
                                      {*t.selected_rows(), *(r for j in range(t.n_controls) for r in t.control_rows(j))})},
            "mean_shapes": means.shapes if means is not None else None}


# ---- summaries -------------------------------------------------------------------------------
def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def summarize_test(layout, t: np.ndarray, sets: Sequence[UnitSet], test: CausalTest, result: dict,
                   record: dict, seed: int = 0) -> dict[str, Any]:
    """One dose's entry of causal.json: the selected set (held-out: every half's, ``folds``),
    its effect with a bootstrap interval over the measured pairs (seeded by ``seed``), its
    controls as drawn, p. ``t``: the run's t (every pair)."""
    selected = [sets[r] for r in test.selected_rows()]
    rows = [r for j in range(record["drawn"]) for r in test.control_rows(j)]
    units = list(dict.fromkeys(u for s in selected for u in s.indices))  # held-out: either half's selection
    blocks = layout.block_index()
    c = np.asarray([x for x in record["controls"] if math.isfinite(x)])
    change = result["output_change"]
    effect = per_pair(result["effect"], test.selected_rows())
    halves = [range(result["effect"].shape[1]) if s.pairs is None else s.pairs for s in selected]
    out = {
        "k": selected[0].k,
        "by": selected[0].by,
        "units": [layout.units[u] for u in units],
        "t": [_f(t[u]) for u in units],
        "blocks": dict(Counter(layout.spans[blocks[u]].block.name for u in units)),
        "effect": _f(record["effect"]),
        "effect_ci": mean_interval(effect, halves, seed) if math.isfinite(record["effect"]) else None,
        "effect_per_pair": [_f(x) for x in effect],
        "output_change": _f(_nanmean(per_pair(change, test.selected_rows()))),
        "controls": {
            "n": record["drawn"],
            "planned": test.n_controls,
            "stopped_early": bool(record["stopped_early"]),
            "effects": [_f(x) for x in record["controls"]],
            "mean": _f(c.mean()) if len(c) else None,
            "sd": _f(c.std(ddof=1)) if len(c) > 1 else None,
            "q05": _f(np.percentile(c, 5)) if len(c) else None,
            "q95": _f(np.percentile(c, 95)) if len(c) else None,
            "max": _f(c.max()) if len(c) else None,
            "output_change_mean": _f(_nanmean(change[rows])) if rows else None,
        },
        "p": record["p"],
    }
    if test.folds:
        out["folds"] = [{"measured_on": [int(i) for i in s.pairs], "units": [layout.units[u] for u in s.indices],
                         "effect": _f(_nanmean(result["effect"][r]))} for r, s in zip(test.selected_rows(), selected)]
    return out


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
