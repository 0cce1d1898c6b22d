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

Controls give a null: p = (1 + #controls with effect ≥ the selected set's) / (1 + R).
Every intervention goes through :class:`~plantain_core.capture.SliceEditor`. See
``docs/causal.md``.
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

import numpy as np

from .capture import SliceEditor, SliceMeans, SliceStore, capture_units, merge_features, unit_features
from .errors import PlantainError
from .unit_sets import SELECTED, UnitSet, permutation_p

CAUSAL_JSON = "causal.json"
MODES = ("ablate", "patch")
ABLATE_VALUES = ("mean", "zero")
DEFAULT_TOP = 16
DEFAULT_CONTROLS = 20
DEFAULT_DOSES = (1, 4, 16, 64)
# ---- what replaces a slice -----------------------------------------------------------------
def make_writer(mode: str, value: str, cols: dict, means: SliceMeans | None, store: SliceStore | None,
                rows_ref: list[list[int]]):
    """``write(key, part)`` for one unit set; ``cols`` maps a site to the set's columns in
    the union of all sets' features (what ``means`` / ``store`` hold)."""
    import torch

    on_device: dict = {}

    def col(key, device):
        if (key, device) not in on_device:
            on_device[(key, device)] = cols[key].to(device)
        return on_device[(key, device)]

    def write(key, part):
        if mode == "patch":
            donor = store.get(key, rows_ref[0])[..., col(key, part.device)]
            if donor.shape != part.shape:
                raise PlantainError(f"cannot patch {key[0].name}/{key[1]}: the A pass has {tuple(part.shape)} and the B "
                                    f"pass {tuple(donor.shape)} (A and B differ in sequence length)")
            return donor
        if value == "zero":
            return torch.zeros_like(part)
        return means.mean(key, part.shape[1])[:, col(key, part.device)].unsqueeze(0).expand(part.shape[0], -1, -1)

    return write


# ---- the engine ----------------------------------------------------------------------------
def measure_effects(transformer, forward: Callable, n_pairs: int, unit_sets: Sequence[UnitSet], layouts: dict,
                    token_scope: str, *, mode: str = "ablate", ablate_value: str = "mean", batch_pairs: int = 8,
                    group: Callable | None = None, on_clean: Callable | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Clean passes, then every unit set's intervention passes; per set and pair the effect.

    ``forward(items)`` runs one transformer forward for ``items`` [(pair, side 0=A/1=B)]
    and returns v, (len(items), n) float32; ``group(items)`` splits items into lists one
    forward can take (default: one). ``on_clean(items, rows)`` receives the capture rows
    of the clean passes (``layouts`` are measured there), e.g. to check them against the
    run. Returns ``separation`` (N,), ``effect`` and ``output_change`` (sets × N) arrays,
    pass counts and timings.
    """
    import torch
    from tqdm.auto import tqdm

    if mode not in MODES or ablate_value not in ABLATE_VALUES:
        raise PlantainError(f"unknown mode {mode!r} / ablate value {ablate_value!r}")
    group = group or (lambda items: [items])
    feats = [unit_features(layouts[s.layout], s.indices, token_scope) for s in unit_sets]
    union = merge_features(*feats)
    cols = [{key: torch.as_tensor(np.searchsorted(union[key], f)) for key, f in fs.items()} for fs in feats]
    batches = [list(range(k, min(k + batch_pairs, n_pairs))) for k in range(0, n_pairs, max(1, batch_pairs))]
    means = SliceMeans() if mode == "ablate" and ablate_value == "mean" else None
    per_set = (2 if mode == "ablate" else 1) * n_pairs
    total = 2 * n_pairs + (n_pairs if mode == "patch" else 0) + len(unit_sets) * per_set
    bar = tqdm(total=total, desc="causal passes", unit="pass", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)

    def run(items) -> dict:
        out = {}
        for g in group(items):
            rows_ref[0] = [i for i, _ in g]
            v = forward(g)
            out.update({it: v[r] for r, it in enumerate(g)})
            bar.update(len(g))
        return out

    def dist(x, y) -> float:
        return float(torch.linalg.vector_norm((x - y).double() if x.device.type == "cpu" else x - y))

    rows_ref: list[list[int]] = [[]]
    effect = np.full((len(unit_sets), n_pairs), np.nan)
    change = np.full((len(unit_sets), n_pairs), np.nan)
    timings: dict[str, float] = {}
    try:
        with capture_units(transformer, list(layouts), token_scope, measure=on_clean is not None) as cap, \
                torch.inference_mode():
            start, cpu = time.perf_counter(), time.process_time()
            cap.editor = SliceEditor(union, token_scope, read=means) if means is not None else None
            clean = {}
            for batch in batches:
                for g in group([(i, s) for i in batch for s in (0, 1)]):
                    clean.update(run(g))
                    if on_clean is not None:
                        on_clean(g, cap.take())
            cap.measure = False
            sep = np.array([dist(clean[(i, 0)], clean[(i, 1)]) for i in range(n_pairs)])
            norm = {it: dist(v, torch.zeros_like(v)) for it, v in clean.items()}
            timings["clean"], timings["clean_cpu"] = time.perf_counter() - start, time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            store = SliceStore() if mode == "patch" else None
            for batch in batches:
                if store is not None:  # B's slices of every set's units, this batch's pairs only
                    store.data.clear()
                    cap.editor = SliceEditor(union, token_scope, read=store)
                    for g in group([(i, 1) for i in batch]):
                        store.rows = [i for i, _ in g]
                        forward(g)
                        bar.update(len(g))
                for si in range(len(unit_sets)):
                    write = make_writer(mode, ablate_value, cols[si], means, store, rows_ref)
                    cap.editor = SliceEditor(feats[si], token_scope, write=write)
                    sides = (0, 1) if mode == "ablate" else (0,)
                    got = run([(i, s) for i in batch for s in sides])
                    for i in batch:
                        if mode == "ablate":
                            moved = dist(got[(i, 0)], got[(i, 1)])
                        else:
                            moved = dist(got[(i, 0)], clean[(i, 1)])
                        effect[si, i] = 1.0 - moved / sep[i] if sep[i] > 0 else np.nan
                        change[si, i] = np.mean([dist(got[(i, s)], clean[(i, s)]) / max(norm[(i, s)], 1e-30)
                                                 for s in sides])
            timings["interventions"] = time.perf_counter() - start
            timings["interventions_cpu"] = time.process_time() - cpu
    finally:
        bar.close()
    return {"separation": sep, "effect": effect, "output_change": change, "timings": timings,
            "passes": {"clean": 2 * n_pairs, "store": n_pairs if mode == "patch" else 0, "per_unit_set": per_set},
            "mean_shapes": means.shapes if means is not None else None}


# ---- summaries -------------------------------------------------------------------------------
def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def summarize_layout(layout, t: np.ndarray, k: int, sets: Sequence[UnitSet], effect: np.ndarray,
                     change: np.ndarray, controls: int) -> dict[str, Any]:
    """The layout's entry of causal.json: per dose, the selected set and its controls.
    ``effect`` and ``change`` are (sets × pairs), rows in ``sets`` order."""
    out = {"n_units": len(layout), "n_tested": int(np.isfinite(t).sum()), "k": k, "doses": []}
    blocks = layout.block_index()
    for dose in sorted({s.k for s in sets}):
        rows = [r for r, s in enumerate(sets) if s.k == dose]
        sel = next(r for r in rows if sets[r].replicate == SELECTED)
        ctl = [r for r in rows if r != sel]
        units = sets[sel].indices
        e = _nanmean(effect[sel])
        ce = [_nanmean(effect[r]) for r in ctl]
        c = np.asarray([x for x in ce if math.isfinite(x)])
        out["doses"].append({
            "k": dose,
            "units": [layout.units[u] for u in units],
            "t": [_f(t[u]) for u in units],
            "blocks": dict(Counter(layout.spans[blocks[u]].block.name for u in units)),
            "effect": _f(e),
            "effect_per_pair": [_f(x) for x in effect[sel]],
            "output_change": _f(_nanmean(change[sel])),
            "controls": {
                "n": len(ctl),
                "effects": [_f(x) for x in ce],
                "mean": _f(c.mean()) if len(c) else None,
                "sd": _f(c.std(ddof=1)) if len(c) > 1 else None,
                "q05": _f(np.percentile(c, 5)) if len(c) else None,
                "q95": _f(np.percentile(c, 95)) if len(c) else None,
                "max": _f(c.max()) if len(c) else None,
                "output_change_mean": _f(_nanmean(change[ctl])) if ctl else None,
            },
            "p": permutation_p(e, ce) if controls else None,
        })
    return out


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
