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

from . import __version__
from .capture import SliceEditor, SliceMeans, SliceStore, capture_units, merge_features, unit_features
from .errors import PlantainError
from .unit_sets import SELECTED, UnitSet, permutation_p, plan_layout

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

# ---- over a run folder ---------------------------------------------------------------------
def _load_run_model(manifest, model, device, dtype, registry, offload):
    from .models.loaders import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        return model, []
    recorded = manifest.get("model") or {}
    tiny = recorded.get("name") == "tiny"
    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    name = model or ("tiny" if tiny else recorded.get("id"))
    if not name:
        raise PlantainError("the run's manifest records no model; pass --model")
    bundle = load_model(name, device, dtype or manifest.get("dtype"), registry=registry,
                        revision=None if tiny or model else recorded.get("revision"), offload=offload)
    notes = []
    if (bundle.id, bundle.revision) != (recorded.get("id"), recorded.get("revision")):
        if not model:
            raise PlantainError(f"the run was captured on {recorded.get('id')} @ {recorded.get('revision')}, but "
                                f"{bundle.id} @ {bundle.revision} was loaded; pass --model to use another copy")
        notes.append(f"the run was captured on {recorded.get('id')} @ {recorded.get('revision')}; this check used "
                     f"{bundle.id} @ {bundle.revision}")
    return bundle, notes


def pairs_from_manifest(manifest, pair_ids: Sequence[str]) -> list:
    """The stimuli exactly as the run recorded them (``manifest["pairs"]``), in capture order."""
    from .stimuli import ImageSource, Pair, Stimulus

    recs = {str(r.get("id")): r for r in manifest.get("pairs") or [] if isinstance(r, dict)}
    missing = [i for i in pair_ids if i not in recs]
    if missing:
        raise PlantainError(f"the manifest records no stimuli for pairs {', '.join(missing[:5])}")

    def stim(rec):
        img = (rec or {}).get("image")
        keys = ("path", "prompt", "seed", "steps", "guidance")
        image = ImageSource(**{k: v for k, v in img.items() if k in keys}) if isinstance(img, dict) else None
        return Stimulus(prompt=str((rec or {}).get("prompt", "")), image=image)

    return [Pair(i, stim(recs[i].get("a")), stim(recs[i].get("b"))) for i in pair_ids]


def run_causal(run_dir, *, top: int = DEFAULT_TOP, controls: int = DEFAULT_CONTROLS, mode: str = "ablate",
               ablate_value: str = "mean", doses: Sequence[int] = DEFAULT_DOSES, seed: int | None = None,
               layouts: Sequence[str] | None = None, model=None, device: str = "auto", dtype=None,
               batch_size: int | None = None, offload: bool = False, progress: bool = True, figures: bool = True,
               report: bool = True, registry=None) -> dict[str, Any]:
    """The causal check of a run folder: writes ``causal.json`` (and the dose figure),
    re-renders the card when ``report``; returns causal.json's content."""
    import torch

    from .analysis import load_captures, read_manifest
    from .fsutil import atomic_write_json
    from .models.layouts import parse_layouts, transformer_layouts
    from .passes import PassInputs, auto_batch_size
    from .stats import paired_t

    if mode not in MODES:
        raise PlantainError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if ablate_value not in ABLATE_VALUES:
        raise PlantainError(f"unknown ablate value {ablate_value!r}; choose from {', '.join(ABLATE_VALUES)}")
    if top < 1 or controls < 0 or not doses or any(int(d) < 1 for d in doses):
        raise PlantainError(f"need top ≥ 1, controls ≥ 0 and doses ≥ 1 (got {top}, {controls}, {list(doses)})")
    run_dir = pathlib.Path(run_dir)
    manifest = read_manifest(run_dir)
    names = parse_layouts(layouts or manifest.get("layouts"))
    names = tuple(sorted(names, key=lambda n: n != "heads"))  # heads first
    seed = int(manifest.get("seed", 0) if seed is None else seed)
    scope = manifest.get("token_scope", "all")
    caps = {}
    for name in names:
        a, b, units, pair_ids = load_captures(run_dir, name)
        caps[name] = (a, b, units, pair_ids, paired_t(a - b)[1])
    pair_ids = caps[names[0]][3]
    if any(c[3] != pair_ids for c in caps.values()):
        raise PlantainError(f"{run_dir}: the layouts list their pairs in different orders")
    pairs, notes = pairs_from_manifest(manifest, pair_ids), []

    timings: dict[str, float] = {}
    start = time.perf_counter()
    bundle, more = _load_run_model(manifest, model, device, dtype, registry, offload)
    notes += more
    timings["load"] = time.perf_counter() - start
    pipe, transformer = bundle.pipeline, bundle.pipeline.transformer
    built = transformer_layouts(transformer, names)
    for name in names:
        if list(built[name].units) != caps[name][2]:
            raise PlantainError(f"{run_dir}: the model's `{name}` units differ from the captured ones")
    height = int(manifest.get("height") or bundle.default_size)
    width = int(manifest.get("width") or bundle.default_size)

    unit_sets, heads_k, layout_rows = [], {}, {}
    for ordinal, name in enumerate(names):
        k, sets, more = plan_layout(built[name], caps[name][4], top=top, doses=doses, controls=controls, seed=seed,
                                    ordinal=ordinal)
        notes += more
        heads_k[name] = k
        layout_rows[name] = list(range(len(unit_sets), len(unit_sets) + len(sets)))
        unit_sets += sets
    if not unit_sets:
        raise PlantainError(f"{run_dir}: no unit with a finite t in {', '.join(names)}; nothing to test")

    seed_run = int(manifest.get("seed", 0))  # the run's noise seed (``seed`` seeds the controls)
    start = time.perf_counter()
    inputs = PassInputs.prepare(bundle, pairs, range(len(pairs)), seed_run, (height, width))
    timings["encode"] = time.perf_counter() - start
    n_latent = PassInputs.latent_tokens(pipe, (height, width))
    batch_size = batch_size or auto_batch_size(bundle, inputs.tokens)

    def forward(items):
        return inputs.forward(items)[:, :n_latent].reshape(len(items), -1).float()

    check = {name: 0.0 for name in names}

    def on_clean(items, rows):
        for name in names:
            a, b = caps[name][0], caps[name][1]
            ref = np.stack([(a if s == 0 else b)[i] for i, s in items])
            scale = max(float(np.abs(ref).max()), 1e-30)
            check[name] = max(check[name], float(np.abs(rows[name] - ref).max()) / scale)

    result = measure_effects(transformer, forward, len(pairs), unit_sets, built, scope, mode=mode,
                             ablate_value=ablate_value, batch_pairs=max(1, batch_size // 2), group=inputs.groups,
                             on_clean=on_clean, progress=progress)
    timings.update(result["timings"])
    tol = 1e-4 if bundle.dtype == torch.float32 else 5e-2
    for name, dev in check.items():
        if dev > tol:
            notes.append(f"the clean passes reproduce the run's `{name}` captures only to a relative {dev:.2g} "
                         "(another device, dtype or batch size?)")
    if result["mean_shapes"] and result["mean_shapes"] > 1:
        notes.append("passes differ in sequence length (conditioning images of different sizes): the mean is "
                     "taken over the stimuli of the same length")
    sep = result["separation"]
    if (sep <= 0).any():
        notes.append(f"{int((sep <= 0).sum())} pairs have identical clean outputs for A and B and are left out")
    n_sets = len(unit_sets)
    spec = manifest.get("spec") or {}
    out = {
        "plantain_version": __version__,
        "created": now(),
        "probe": spec.get("name"),
        "direction": list(spec.get("direction", ["A", "B"])),
        "model": manifest.get("model"),
        "check_model": bundle.describe(),
        "device": bundle.device,
        "dtype": bundle.dtype_name,
        "mode": mode,
        "ablate_value": ablate_value if mode == "ablate" else None,
        "top": int(top),
        "controls": int(controls),
        "doses": [int(d) for d in doses],
        "seed": seed,
        "run_seed": seed_run,
        "token_scope": scope,
        "height": height,
        "width": width,
        "n_pairs": len(pairs),
        "output": "transformer output (predicted velocity) at the probe step, noisy-latent tokens only",
        "clean": {"pair_ids": list(pair_ids), "separation": [_f(x) for x in sep],
                  "separation_mean": _f(sep.mean()),
                  "capture_check_max_rel_diff": {n: _f(v) for n, v in check.items()}},
        "layouts": {name: summarize_layout(built[name], caps[name][4], heads_k[name],
                                           [unit_sets[r] for r in rows], result["effect"][rows],
                                           result["output_change"][rows], controls)
                    for name, rows in layout_rows.items() if rows},
        "captures_sha256": {n: file_sha256(run_dir / "captures" / f"{n}.npz") for n in names},
        "timings": {
            **{k: round(v, 4) for k, v in timings.items()},
            "unit_sets": n_sets,
            "passes_per_unit_set": result["passes"]["per_unit_set"],
            "seconds_per_unit_set": round(timings["interventions"] / n_sets, 5),
            "cpu_seconds_per_unit_set": round(timings["interventions_cpu"] / n_sets, 5),
            "batch_size": int(batch_size),
        },
        "notes": notes,
    }
    atomic_write_json(run_dir / CAUSAL_JSON, out)
    if figures:
        from .report.causal_section import write_causal_figure

        write_causal_figure(run_dir, out)
    if report:
        from .analysis import analyze_run

        analyze_run(run_dir, figures=any((run_dir / "figures").glob("*_t_heatmap.png")), registry=registry)
    return out
