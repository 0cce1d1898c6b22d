"""``plantain causal RUN_DIR`` over a run folder: reload the run's model, pairs and
captures, plan the unit sets, run the engine (:mod:`plantain_core.causal.effects`) and write
``causal.json``, the dose figure and the card's section.

:class:`CausalOptions` holds the check's settings (the ``plantain causal`` options), so
the command, ``plantain run --causal`` and benchmarks pass one value.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Sequence

import attrs
import numpy as np

from .. import __version__
from .effects import (ABLATE_VALUES, CAUSAL_JSON, DEFAULT_CONTROLS, DEFAULT_DOSES, DEFAULT_TOP, MODES, Intervention,
                     Passes, _f, file_sha256, measure_effects, now, summarize_test, tests_of)
from ..capture.images import get_images
from ..capture.run_records import check_images, image_record
from ..config import config_from_manifest
from ..errors import PlantainError
from ..rundir.folder import check_writable, disk_errors, locked
from .attribution import attribution_scores
from .plan import halves_of, label, measured_sets, plan
from .stats import BOOTSTRAP, SELECTIONS, screen_summary, selection_strength
from .unit_sets import ALPHA, RANKINGS


@attrs.frozen(kw_only=True)
class CausalOptions:
    """The causal check's settings; ``None`` means the run's own (seed, layouts, model, dtype).
    ``doses`` empty: the headline K only (``exhaustive``: 1, 4, 16, 64); ``exhaustive``
    also draws every control instead of stopping once p's side of 0.05 is settled."""

    top: int = DEFAULT_TOP
    controls: int = DEFAULT_CONTROLS
    mode: str = "ablate"
    ablate_value: str = "mean"
    doses: tuple[int, ...] = attrs.field(default=(), converter=lambda d: tuple(int(x) for x in (d or ())))
    exhaustive: bool = False
    #: the rankings whose top units are tested against matched controls; the other ranking's top
    #: units are measured too, without controls
    rankings: tuple[str, ...] = attrs.field(default=("t",), converter=lambda v: tuple(v))
    #: "held-out": the pairs split in two seeded halves, each half's top units measured on the other half;
    #: "same": selected and measured on every pair (double-dipped)
    selection: str = "held-out"
    seed: int | None = None
    layouts: tuple[str, ...] | None = attrs.field(default=None, converter=lambda v: None if v is None else tuple(v))
    model: str | None = None
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    offload: bool = False

    def check(self) -> None:
        if self.mode not in MODES:
            raise PlantainError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.ablate_value not in ABLATE_VALUES:
            raise PlantainError(f"unknown ablate value {self.ablate_value!r}; choose from {', '.join(ABLATE_VALUES)}")
        if self.selection not in SELECTIONS:
            raise PlantainError(f"unknown selection {self.selection!r}; choose from {', '.join(SELECTIONS)}")
        if not self.rankings or any(r not in RANKINGS for r in self.rankings):
            raise PlantainError(f"unknown ranking in {list(self.rankings)}; choose from {', '.join(RANKINGS)}")
        if self.top < 1 or self.controls < 0 or any(d < 1 for d in self.doses):
            raise PlantainError(f"need top ≥ 1, controls ≥ 0 and doses ≥ 1 "
                                f"(got {self.top}, {self.controls}, {list(self.doses)})")

    @property
    def planned_doses(self) -> tuple[int, ...]:
        return self.doses or (DEFAULT_DOSES if self.exhaustive else ())


def _load_run_model(manifest, model, options: CausalOptions, registry):
    from ..models.loaders import LoadedModel, is_tiny_record, load_model, resolve_loader

    if isinstance(model, LoadedModel):
        return model, []
    recorded = manifest.get("model") or {}
    tiny = is_tiny_record(recorded)
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    name = model or recorded.get("id")  # the tiny models' ids load them too
    if not name:
        raise PlantainError("the run's manifest records no model; pass --model")
    was = recorded.get("family")  # before the load: another family's units are not the run's
    family = getattr(resolve_loader(str(name), registry)[1], "family", None)
    if isinstance(was, str) and family is not None and getattr(family, "name", was) != was:
        raise PlantainError(f"the run was captured on a model of family {was!r}; {name} is {family.name}, whose units "
                            "differ; pass a model of the run's family")
    bundle = load_model(name, options.device, options.dtype or manifest.get("dtype"), registry=registry,
                        revision=None if tiny or model else recorded.get("revision"), offload=options.offload)
    notes = []
    loaded = bundle.describe()["id"]  # a local folder by its name, as the manifest records it
    if (loaded, bundle.revision) != (recorded.get("id"), recorded.get("revision")):
        if not model:
            raise PlantainError(f"the run was captured on {recorded.get('id')} @ {recorded.get('revision')}, but "
                                f"{loaded} @ {bundle.revision} was loaded; pass --model to use another copy")
        notes.append(f"the run was captured on {recorded.get('id')} @ {recorded.get('revision')}; this check used "
                     f"{loaded} @ {bundle.revision}")
    return bundle, notes


def run_pairs(manifest, config, pair_ids: Sequence[str], notes: list[str]) -> list:
    """The run's pairs for new passes. The manifest names image files relative to their
    spec (it carries no local paths), so pairs with image files come from the probe as
    it resolves here, and must match the recorded stimuli."""
    from ..report.analysis import pairs_from_manifest

    pairs = pairs_from_manifest(manifest, pair_ids)
    if not any(s.image is not None and s.image.path is not None for p in pairs for s in p.stimuli()):
        return pairs
    from ..spec.probes import load_probe

    try:
        local = {p.id: p for p in load_probe(config.probe).pairs}
    except PlantainError as exc:
        raise PlantainError(f"the run conditions on image files, which its folder names relative to the spec; "
                            f"plantain causal needs the probe {config.probe!r} as the run saw it ({exc})") from None
    rebuilt = []
    for p in pairs:
        mine = local.get(p.id)
        if mine is None or (mine.a.prompt, mine.b.prompt) != (p.a.prompt, p.b.prompt):
            raise PlantainError(f"probe {config.probe!r} here has other pairs than the run (pair {p.id!r}); "
                                "plantain causal needs the spec the run was made from")
        rebuilt.append(mine)
    notes.append(f"image files taken from probe {config.probe!r} as it resolves here (checked by sha256)")
    return rebuilt


def run_causal(run_dir, options: CausalOptions = CausalOptions(), *, model=None, progress: bool = True,
               figures: bool = True, report: bool = True, registry=None, status=None) -> dict[str, Any]:
    """The causal check of a run folder: writes ``causal.json`` (and the dose figure),
    re-renders the card when ``report``; returns causal.json's content. ``model``: an
    already loaded bundle (else ``options.model``, else the run's); ``status(line)``
    hears one line per settled test (layout, ranking, dose), whatever ``progress``."""
    options.check()
    with locked(run_dir):
        return _run_causal(pathlib.Path(run_dir), options, model, (progress, figures, report, status), registry)


def _check_outputs(run_dir: pathlib.Path, figures: bool, report: bool) -> None:
    """Refuse a folder that cannot take the check's outputs before the passes, not after them."""
    from ..report.card import CARD
    from ..report.causal_section import FIGURE
    from ..stats.results import BLOCKS_CSV, SUMMARY, UNITS_CSV

    check_writable(run_dir, [CAUSAL_JSON] + [FIGURE] * figures + [SUMMARY, UNITS_CSV, BLOCKS_CSV, CARD] * report)


def _status_line(name: str, unit_set, record: dict, controls: int) -> str:
    what = label(unit_set.by)
    eff = "n/a" if not np.isfinite(record["effect"]) else f"{record['effect']:.3f}"
    if not controls:
        return f"{name} K={unit_set.k} (top by {what}): effect {eff}, measured without controls"
    p = "n/a" if record["p"] is None else f"{record['p']:.3g}"
    stop = " (stopped early: p > 0.05 is settled)" if record["stopped_early"] else ""
    return f"{name} K={unit_set.k} (top by {what}): effect {eff}, {record['drawn']}/{controls} controls, p = {p}{stop}"


def _run_causal(run_dir: pathlib.Path, options: CausalOptions, model, flags, registry) -> dict[str, Any]:
    import torch

    from ..report.analysis import load_captures, read_manifest
    from ..rundir.fsutil import atomic_write_json
    from ..models.lookup import transformer_layouts
    from ..models.layouts import parse_layouts
    from ..models.lookup import family_of
    from ..capture.passes import PassInputs, auto_batch_size
    from ..stats.engine import paired_t

    progress, figures, report, status = flags
    run_dir = pathlib.Path(run_dir)
    manifest = read_manifest(run_dir)
    config = config_from_manifest(manifest, str(run_dir / "manifest.json"))
    if config.steps > 1:
        raise PlantainError(f"{run_dir} is a trajectory run (--steps {config.steps}); the causal check works on "
                            "single-step runs (--steps 1)")
    _check_outputs(run_dir, figures, report)
    names = parse_layouts(options.layouts or config.layouts)
    names = tuple(sorted(names, key=lambda n: n != "heads"))  # heads first
    # every layout is screened; by default only heads (the units plantain asks about) are confirmed exactly
    confirm = names if options.layouts or "heads" not in names else ("heads",)
    seed = int(manifest.get("seed", 0) if options.seed is None else options.seed)
    scope = manifest.get("token_scope", "all")
    caps = {}
    for name in names:
        a, b, units, pair_ids = load_captures(run_dir, name)
        caps[name] = (a, b, units, pair_ids, paired_t(a - b)[1])
    pair_ids = caps[names[0]][3]
    if any(c[3] != pair_ids for c in caps.values()):
        raise PlantainError(f"{run_dir}: the layouts list their pairs in different orders")
    notes: list[str] = []
    pairs = run_pairs(manifest, config, pair_ids, notes)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    from ..capture.run_records import local_model

    # a local model folder: the manifest names it, the run folder's unpublished LOCAL has its path
    bundle, more = _load_run_model(manifest, model or options.model or local_model(run_dir), options, registry)
    notes += more
    timings["load"] = time.perf_counter() - start
    transformer = bundle.pipeline.transformer
    built = transformer_layouts(transformer, names, scope, family_of(bundle))
    for name in names:
        if list(built[name].units) != caps[name][2]:
            raise PlantainError(f"{run_dir}: the model's `{name}` units differ from the captured ones")
    height = int(manifest.get("height") or bundle.default_size)
    width = int(manifest.get("width") or bundle.default_size)

    seed_run = int(manifest.get("seed", 0))  # the run's noise seed (``seed`` seeds the controls)
    start = time.perf_counter()
    images = get_images(bundle, [s.image for p in pairs for s in p.stimuli() if s.image is not None], height, width)
    spec_dir = next((pathlib.Path(s.image.path).parent for p in pairs for s in p.stimuli()
                     if s.image is not None and s.image.path), None)
    check_images(run_dir, manifest.get("images") or [], [image_record(r, spec_dir) for _, r in images.values()],
                 doing="check")
    inputs = PassInputs.prepare(bundle, pairs, range(len(pairs)), seed_run, (height, width), images, config.guidance)
    timings["encode"] = time.perf_counter() - start
    batch_size = options.batch_size or auto_batch_size(bundle, inputs.tokens)
    forward = inputs.prediction

    check = {name: 0.0 for name in names}

    def on_clean(items, rows):
        for name in names:
            a, b = caps[name][0], caps[name][1]
            ref = np.stack([(a if s == 0 else b)[i] for i, s in items])
            scale = max(float(np.abs(ref).max()), 1e-30)
            check[name] = max(check[name], float(np.abs(rows[name] - ref).max()) / scale)

    start = time.perf_counter()
    screen = attribution_scores(transformer, forward, len(pairs), built, scope, group=inputs.groups,
                                batch_pairs=max(1, batch_size // 2))
    timings["screen"] = time.perf_counter() - start
    split, halves = halves_of(len(pairs), options.selection, seed, notes)
    strengths = {n: [selection_strength(caps[n][0], caps[n][1], screen["per_pair"][n], part) for part in split]
                 for n in confirm}
    unit_sets, heads_k, layout_rows, more = plan({n: built[n] for n in confirm}, strengths, options, seed, halves)
    notes += more
    if not unit_sets:
        raise PlantainError(f"{run_dir}: no unit with a finite t in {', '.join(names)}; nothing to test")
    tests = tests_of(unit_sets)
    for test in tests:
        counts = [len(test.controls)] + [len(c) for _, c in test.folds]
        if len(set(counts)) > 1:
            chosen = unit_sets[test.selected]
            notes.append(f"`{chosen.layout}` K={chosen.k} (top by {label(chosen.by)}): the halves' selections have "
                         f"{' and '.join(map(str, counts))} matched control sets; a control of the test joins one of "
                         f"each, so it has {test.n_controls} (p ≥ {1 / (test.n_controls + 1):.3g})")

    def on_settled(t: int, record: dict) -> None:
        if status is not None:
            chosen = unit_sets[tests[t].selected]
            status(_status_line(chosen.layout, chosen, record, tests[t].n_controls))

    passes = Passes(transformer=transformer, forward=forward, n_pairs=len(pairs), layouts=built, token_scope=scope,
                    group=inputs.groups, batch_rows=batch_size)
    how = Intervention(mode=options.mode, ablate_value=options.ablate_value, sequential=not options.exhaustive)
    result = measure_effects(passes, unit_sets, tests, how, on_clean=on_clean, progress=progress, status=on_settled)
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
    layouts_out: dict[str, Any] = {}
    for name in confirm:
        entries = {"t": [], "attribution": []}
        for t, test in enumerate(tests):
            chosen = unit_sets[test.selected]
            if chosen.layout == name:
                entry = summarize_test(built[name], caps[name][4], unit_sets, test, result, result["tests"][t], seed)
                for f, fold in enumerate(entry.get("folds") or []):  # t of its units on the pairs that chose them
                    t_half = strengths[name][f]["signed_t"]
                    fold["t_selection"] = [_f(t_half[u]) for u in unit_sets[test.selected_rows()[f]].indices]
                    fold["selected_on"] = [int(i) for i in split[f]]
                entries[chosen.by].append(entry)
        if not entries["t"] and not entries["attribution"]:
            continue
        layouts_out[name] = {"n_units": len(built[name]), "n_tested": int(np.isfinite(caps[name][4]).sum()),
                             "k": heads_k.get((name, "t")), "doses": sorted(entries["t"], key=lambda d: d["k"]),
                             "attribution": {"k": heads_k.get((name, "attribution")),
                                             "doses": sorted(entries["attribution"], key=lambda d: d["k"])}}
    n_pairs = len(pairs)
    per_set = result["passes"]["per_unit_set"] / len(halves)  # held-out: a set is measured on half the pairs
    per_set = int(per_set) if float(per_set).is_integer() else per_set
    cost = {
        "screen": {"forward": screen["passes"], "backward": screen["passes"] // 2},
        "clean": result["passes"]["clean"],
        "interventions": result["passes"]["interventions"],
        "unit_sets_run": result["passes"]["unit_sets"],
        "unit_sets_planned": len(unit_sets),
        "every_control_would_take": result["passes"]["planned"],
    }
    cost["total_forward"] = cost["screen"]["forward"] + cost["clean"] + cost["interventions"]
    confirmed = {name: sorted({u for d in lay["doses"] + lay["attribution"]["doses"]
                               if d["p"] is not None and d["p"] <= ALPHA for u in d["units"]})
                 for name, lay in layouts_out.items()}
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
        "mode": options.mode,
        "ablate_value": options.ablate_value if options.mode == "ablate" else None,
        "top": int(options.top),
        "controls": int(options.controls),
        "doses": [int(d) for d in options.planned_doses],
        "exhaustive": bool(options.exhaustive),
        "rankings": list(options.rankings),
        "selection": {
            "method": "same" if halves == [None] else "held-out",
            "asked": options.selection,
            "rule": ("the units were selected (|t|, attribution) and measured on the same pairs: double-dipped"
                     if halves == [None] else
                     "cross-fitted: the pairs are split in two halves seeded by `seed`; the top units by |t| and by "
                     "attribution computed on half 1 only are measured on half 2, those of half 2 on half 1; a "
                     "test's effect is the mean over every pair of the effect measured by the other half's selection, "
                     "and its j-th control joins both halves' j-th matched controls"),
            "halves": None if halves == [None] else [[pair_ids[i] for i in part] for part in split],
            "seed": seed,
            "bootstrap": {"resamples": BOOTSTRAP, "level": 95, "seed": seed,
                          "how": "percentile interval; the measured pairs resampled with replacement within each half"},
        },
        "sequential": None if options.exhaustive else {
            "rule": "Besag–Clifford: controls are drawn one at a time and stop at the h-th that reaches the selected "
                    "effect (p = max(h / drawn, (1 + h) / (1 + R)) > 0.05), else all R are drawn "
                    "(p = (1 + g) / (1 + R))",
            "alpha": ALPHA},
        "seed": seed,
        "run_seed": seed_run,
        "token_scope": scope,
        "height": height,
        "width": width,
        "n_pairs": n_pairs,
        "output": "transformer output (predicted velocity) at the probe step, noisy-latent tokens only",
        "clean": {"pair_ids": list(pair_ids), "separation": [_f(x) for x in sep],
                  "separation_mean": _f(sep.mean()),
                  "capture_check_max_rel_diff": {n: _f(v) for n, v in check.items()}},
        "layouts": layouts_out,
        "screened": {name: len(built[name]) for name in names},
        "confirmed_layouts": list(confirm),
        "confirmed": confirmed,
        "cost": cost,
        "captures_sha256": {n: file_sha256(run_dir / "captures" / f"{n}.npz") for n in names},
        "timings": {
            **{k: round(v, 4) for k, v in timings.items()},
            "unit_sets": cost["unit_sets_run"],
            "passes_per_unit_set": per_set,
            "seconds_per_unit_set": round(timings["interventions"] / max(cost["unit_sets_run"], 1), 5),
            "cpu_seconds_per_unit_set": round(timings["interventions_cpu"] / max(cost["unit_sets_run"], 1), 5),
            "batch_size": int(batch_size),
        },
        "screen": screen_summary(built, caps, {n: heads_k.get((n, "t"), min(options.top, len(built[n])))
                                               for n in names}, screen, measured_sets(result, unit_sets, layout_rows),
                                 options.mode, seed),
        "notes": notes,
    }
    with disk_errors(run_dir):
        atomic_write_json(run_dir / CAUSAL_JSON, out)
        if figures:
            from ..report.causal_section import write_causal_figure

            write_causal_figure(run_dir, out)
    if report:
        from ..report.analysis import analyze_run

        analyze_run(run_dir, figures="keep", registry=registry)  # statistics unchanged: link the figures drawn
    return out
