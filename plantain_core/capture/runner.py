"""Run a probe: every stimulus of every pair through the transformer once, capturing units.

How one pass is built lives in :mod:`plantain_core.capture.passes`. Here: the manifest, the
batches (a batch holds whole pairs), the captures flushed after every batch, and
``resume=True``, which continues an interrupted run after checking that it was started
with the same capture settings.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import pathlib
import sys
import time
from typing import Any

import attrs
import numpy as np

from .. import __version__
from ..config import RunConfig, config_from_manifest
from ..errors import PlantainError
from ..models.loaders import LoadedModel
from ..rundir.folder import check_run_folder, locked
from ..rundir.fsutil import atomic_write_bytes, atomic_write_json
from ..rundir.manifest import check_manifest
from ..spec.probes import check_images_inside
from ..spec.stimuli import IMAGE_GUIDANCE, IMAGE_STEPS
from .distributed import current_share
from .images import get_images
from .passes import NOISE_SEED_STRIDE, PassInputs, auto_batch_size, fit_batch, noise_seed
from .prepare import checked_config, load_bundle
from .run_records import (ResumeRefused, check_images, check_inputs, check_pairs, image_record, input_files,
                          local_model_differs, pair_records, spec_record, stored_config, token_records,
                          write_local)

__all__ = ["noise_seed", "run_probe", "spec_sha256"]

SIDES = ("A", "B")
# Fields a resumed run must share with the run it continues (besides the config's capture fields).
RESUME_KEYS = ("spec_sha256", "model", "pair_ids")


def spec_sha256(spec) -> str:
    digest = spec.sha256() if getattr(spec, "path", None) else None
    if digest:
        return digest
    blob = json.dumps(spec.as_dict(), sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _write_captures(cap_dir: pathlib.Path, layouts, arrays, pair_ids, done, steps=None) -> None:
    """``a``/``b`` are pairs × units, or pairs × steps × units with ``steps`` (the captured
    step indices) for a trajectory run."""
    for name, layout in layouts.items():
        buf = io.BytesIO()
        a, b = arrays[name]
        extra = {"steps": np.asarray(steps, dtype=np.int64)} if steps is not None else {}
        np.savez(buf, a=a, b=b, units=np.asarray(layout.units, dtype=str), pair_ids=np.asarray(pair_ids, dtype=str),
                 done=done, mlp=layout.mlp, **extra)
        atomic_write_bytes(cap_dir / f"{name}.npz", buf.getvalue())


def _read_previous(run_dir: pathlib.Path, layouts, pair_ids, shape: tuple[int, ...]):
    """Arrays and done flags of an interrupted run; checks they belong to this run."""
    arrays, done = {}, np.ones(len(pair_ids), dtype=bool)
    for name, layout in layouts.items():
        path = run_dir / "captures" / f"{name}.npz"
        if not path.is_file():
            return None, np.zeros(len(pair_ids), dtype=bool)
        try:
            with np.load(path, allow_pickle=False) as z:
                units, ids = list(z["units"]), list(z["pair_ids"])
                a, b, flags = z["a"].copy(), z["b"].copy(), z["done"].astype(bool)
        except Exception as exc:  # not written by plantain's atomic writes: damaged or foreign
            raise PlantainError(f"cannot resume {run_dir}: {path} is unreadable ({type(exc).__name__}: {exc}); "
                                f"start a new run in another --out") from None
        if units != list(layout.units) or ids != list(pair_ids) or a.shape != shape + (len(units),) or b.shape != a.shape:
            raise PlantainError(f"cannot resume {run_dir}: {path.name} has other units or pairs than this run")
        arrays[name] = (a, b)
        done &= flags
    return arrays, done


def _read_old_manifest(run_dir: pathlib.Path, resume: bool) -> dict | None:
    path = run_dir / "manifest.json"
    if not path.is_file():
        return None
    check_run_folder(run_dir)  # a folder to continue is read like any received folder
    if not resume:
        raise PlantainError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlantainError(f"cannot resume {run_dir}: {path.name} is unreadable ({type(exc).__name__}); "
                            f"start a new run in another --out") from None
    try:
        return check_manifest(old, str(path))
    except PlantainError as exc:
        raise PlantainError(f"cannot resume {run_dir}: {exc}") from None


def _check_resume(run_dir: pathlib.Path, old: dict, new: dict, config: RunConfig) -> None:
    was, now = (old.get("spec") or {}).get("name"), (new.get("spec") or {}).get("name")
    if was != now:
        raise PlantainError(f"cannot resume {run_dir}: it holds a run of probe {was!r}, not {now!r}")
    # everything the run reads, named: the spec, its pairs file, its image files, then the pairs themselves
    check_inputs(run_dir, old.get("inputs"), new["inputs"])
    check_pairs(run_dir, old.get("pairs"), new["pairs"])
    # the manifest names a local model folder only; the folder itself is checked against LOCAL
    diffs = stored_config(config).capture_differences(config_from_manifest(old, f"{run_dir}/manifest.json"))
    diffs += local_model_differs(run_dir, config)
    diffs += [f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in RESUME_KEYS
              if k != "pair_ids" and old.get(k) != new.get(k)]
    if old.get("pair_ids") != new.get("pair_ids"):
        diffs.append("the pairs differ")
    if diffs:
        raise PlantainError(f"cannot resume {run_dir}: the run was started with other settings ({'; '.join(diffs)})")


def _check_finite(rows: np.ndarray, layout, passes) -> None:
    bad = np.argwhere(~np.isfinite(rows))
    if len(bad):
        r, u = bad[0]
        pair, side = passes[r]
        raise PlantainError(f"non-finite capture in pass {pair.id}/{SIDES[side]} at unit {layout.units[u]} "
                            f"(layout {layout.name}, {len(bad)} values); in fp16 try --dtype fp32 or bf16; in fp32 the "
                            "weights or the model family's inputs (noise, prompt embeddings) are not finite")


def run_probe(probe, run_dir, config: RunConfig, *, resume: bool = False, progress: bool = True,
              model: LoadedModel | None = None, registry=None, figures: bool = True) -> dict[str, Any]:
    """Capture every pair of ``probe`` (a :class:`~plantain_core.spec.probes.Probe`) into
    ``run_dir`` under ``config``; return the manifest written there. ``model``: an
    already loaded bundle, taken as checked for this probe (:func:`load_bundle` and
    :func:`check_loaded` do that; :func:`~plantain_core.execute.execute` calls them once),
    instead of loading ``config.model`` here. ``figures=False`` (``--no-figures``) draws
    no ``figures/stimuli.png``."""
    pairs = list(probe.pairs)
    if not pairs:
        raise PlantainError("no pairs to run")
    pair_ids = [p.id for p in pairs]
    if len(set(pair_ids)) != len(pair_ids):
        raise PlantainError("pair ids must be unique")
    run_dir = pathlib.Path(run_dir)
    share = current_share()  # a run split across processes: only the main one writes the folder
    with locked(run_dir, create=True) if share is None or share.is_main else contextlib.nullcontext():
        return _run_probe(probe, run_dir, config, resume, progress, model, registry, figures)


def _run_probe(probe, run_dir: pathlib.Path, config: RunConfig, resume, progress, model, registry,
               figures) -> dict[str, Any]:
    import diffusers
    import torch

    from ..models.lookup import family_of, transformer_layouts

    spec, pairs = probe.spec, list(probe.pairs)
    pair_ids = [p.id for p in pairs]
    manifest_path = run_dir / "manifest.json"
    old = _read_old_manifest(run_dir, resume)
    config = config.for_spec(spec)
    check_images_inside(probe, config.allow_outside_images)  # the runner called directly, too
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    share = current_share()
    if share is not None and config.length_control:
        raise PlantainError("--length-control runs a second probe into RUN_DIR/placebo; run it in one process")
    bundle = model if isinstance(model, LoadedModel) else load_bundle(probe, checked_config(probe, config, registry),
                                                                      registry)
    pipe = bundle.pipeline
    config = config.evolve(
        # what was loaded, so that the manifest's config loads it again
        model=bundle.model_arg, revision=None if bundle.is_tiny else (config.revision or bundle.revision),
        height=config.height or bundle.default_size, width=config.width or bundle.default_size,
        dtype=bundle.dtype_name,
        # a resume keeps the batch size it was started with: batches change the last bits
        batch_size=config.batch_size or (old or {}).get("batch_size"),
    )
    family = family_of(bundle)
    mult = family.size_multiple(pipe)
    if config.height % mult or config.width % mult:
        raise PlantainError(f"height and width must be multiples of {mult}, got {config.height}x{config.width}")

    built = transformer_layouts(pipe.transformer, config.layouts, config.token_scope, family)
    loader = registry.models.get(bundle.name)
    providers = probe.provenance()
    if loader is not None:
        providers["model_loader"] = {k: v for k, v in loader.provider.as_dict().items() if k != "module"}
    manifest: dict[str, Any] = {
        "plantain_version": __version__,
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": stored_config(config).as_dict(),
        "providers": providers,
        "spec": spec_record(spec),
        "spec_sha256": spec_sha256(spec),
        "inputs": input_files(probe),
        "model": bundle.describe(),
        "device": bundle.device,
        "dtype": bundle.dtype_name,
        "offload": bundle.offload,
        "seed": config.seed,
        "noise_seed": f"seed * {NOISE_SEED_STRIDE} + pair index",
        "layouts": list(config.layouts),
        "layout_info": {name: lay.info() for name, lay in built.items()},
        "token_scope": config.token_scope,
        "steps": config.steps,
        "guidance": config.guidance,
        # how the family used it: CFG passes in the loop, or the guidance embedding of a distilled model
        "cfg": config.steps > 1 and family.uses_cfg(pipe, config.guidance),
        "guidance_embedded": bool(getattr(pipe.transformer.config, "guidance_embeds", False)),
        "image_steps": IMAGE_STEPS,
        "image_guidance": IMAGE_GUIDANCE,
        "height": config.height,
        "width": config.width,
        "batch_size": config.batch_size,
        "images": [],
        "spec_file": pathlib.Path(spec.path).name if spec.path else None,
        "pairs": pair_records(pairs, spec.spec_dir),
        "pair_ids": pair_ids,
        "token_counts": [],
        "timings": {"load": round(bundle.load_seconds, 4)},
        "status": "running",
    }
    # one row per pair; with --steps K > 1, one slice per captured step (pairs × steps × units)
    shape = (len(pairs),) + ((len(config.captured_steps),) if config.steps > 1 else ())
    arrays = {name: (np.full(shape + (len(lay),), np.nan), np.full(shape + (len(lay),), np.nan))
              for name, lay in built.items()}
    if config.steps > 1:
        from .trajectory import step_records

        manifest["trajectory"] = step_records(bundle, config.steps,
                                              family.latent_tokens(pipe, (config.height, config.width)),
                                              config.captured_steps)
    done = np.zeros(len(pairs), dtype=bool)
    if old is not None:
        _check_resume(run_dir, old, manifest, config)
        prev, done = _read_previous(run_dir, built, pair_ids, shape)
        arrays = prev or arrays
        for stale in run_dir.rglob(".*.tmp") if share is None or share.is_main else ():
            stale.unlink(missing_ok=True)  # temp files of a write a kill cut short
        manifest["created"] = old.get("created", manifest["created"])
        manifest["images"] = old.get("images", [])
        for key, value in old.items():  # keys others added (statistics options) survive a resume
            manifest.setdefault(key, value)

    if share is None or share.is_main:
        write_local(run_dir, config)
    capture = _Capture(bundle, pairs, built, manifest, run_dir, spec.spec_dir, share, figures)
    try:
        manifest = capture.run(arrays, done, progress)
        if config.length_control:
            from .placebo import run_placebo

            run_placebo(probe, run_dir, config, {"resume": resume, "progress": progress}, bundle, run_probe)
        return manifest
    except BaseException as exc:
        if isinstance(exc, ResumeRefused):  # the folder is as it was: not a failure of its run
            raise
        # Ctrl-C is the user's choice, not a fault: say so, so the folder reads as resumable.
        interrupted = isinstance(exc, KeyboardInterrupt)
        if share is not None and not share.is_main:
            raise
        manifest["status"] = "interrupted" if interrupted else "failed"
        manifest["error"] = "interrupted (KeyboardInterrupt)" if interrupted else f"{type(exc).__name__}: {exc}"
        try:
            atomic_write_json(manifest_path, manifest)
        except OSError:  # a full disk must not hide the error that brought us here
            pass
        raise


@attrs.define
class _Capture:
    """The capture loop of one run: batches of passes, rows into arrays, a flush per batch."""

    bundle: LoadedModel
    pairs: list
    built: dict
    manifest: dict
    run_dir: pathlib.Path
    spec_dir: pathlib.Path | None
    share: Any = None  # plantain_core.capture.distributed.Share of a run split across processes
    figures: bool = True  # draw figures/stimuli.png (not under --no-figures)

    @property
    def writes(self) -> bool:
        return self.share is None or self.share.is_main

    def _flush(self, arrays, done) -> None:
        if not self.writes:
            return
        steps = [s["index"] for s in self.manifest["trajectory"]] if self.manifest.get("trajectory") else None
        _write_captures(self.run_dir / "captures", self.built, arrays, self.manifest["pair_ids"], done, steps)

    def run(self, arrays, done, progress: bool) -> dict[str, Any]:
        import torch
        from tqdm.auto import tqdm

        from .compiled import running
        from .noise import NOISE_STIMULI, measure_noise_floor
        from .hooks import capture_units

        manifest, pairs, pipe = self.manifest, self.pairs, self.bundle.pipeline
        config = RunConfig.from_dict(manifest["config"])
        timings = manifest["timings"]
        manifest["token_counts"] = token_records(self.bundle, pairs)
        pending = [i for i in range(len(pairs)) if not done[i]]
        if self.share is not None:  # every process has read the folder before the main one writes to it
            self.share.gather(len(pending))
            pending = self.share.mine(pending)
        passes = [(i, side) for i in pending for side in (0, 1)]
        start = time.perf_counter()
        size = (config.height, config.width)
        # refused before any image is made or encoded; an automatic batch is cut to what fits
        fits = fit_batch(self.bundle, size, any(s.image is not None for p in pairs for s in p.stimuli()),
                         config.batch_size)
        if not manifest["images"] and self.writes:  # the folder reads as a run while its images are made
            atomic_write_json(self.run_dir / "manifest.json", manifest)
        images = self._images(size)  # a changed image is refused before the folder is touched
        if self.writes:  # every image the captures depend on is recorded before the first is flushed
            atomic_write_json(self.run_dir / "manifest.json", manifest)
        inputs = PassInputs.prepare(self.bundle, pairs, pending, config.seed, size, images, config.guidance)
        timings["prepare"] = round(time.perf_counter() - start, 4)

        batch_size = config.batch_size or min(auto_batch_size(self.bundle, inputs.tokens), fits or 16)
        manifest["batch_size"] = int(batch_size)
        manifest["config"] = config.evolve(batch_size=batch_size).as_dict()  # probe already stored
        # A batch holds whole pairs where it can (batch_size // 2 pairs), else single passes.
        per = max(1, batch_size // 2) * 2 if batch_size >= 2 else 1
        batches = [passes[k:k + per] for k in range(0, len(passes), per)]
        side_done = {i: [False, False] for i in pending}
        bar = tqdm(total=len(passes), desc=f"{manifest['spec']['name']} passes", unit="pass", file=sys.stderr,
                   disable=not progress or not self.writes, dynamic_ncols=True)
        start = time.perf_counter()
        try:
            with running(pipe.transformer, config.compile, config.attention_backend), \
                    capture_units(pipe.transformer, list(self.built), config.token_scope, family=inputs.family,
                                  method=config.capture_method) as cap, torch.inference_mode():
                for batch in batches:
                    for items in inputs.groups(batch):
                        if config.steps == 1:
                            inputs.forward(items)
                            self._store(cap.take(), items, arrays)
                        else:
                            self._trajectory(inputs, items, config, cap, arrays)
                        for i, s in items:
                            side_done[i][s] = True
                    for i, s in batch:
                        done[i] = all(side_done[i])
                    self._flush(arrays, done)
                    bar.update(len(batch))
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        if self.share is not None:
            self._gather(arrays, done, pending)
        if config.steps == 1 and self.writes:  # kernel noise: the first pairs' A again, under the run's
            # kernels, the same stimuli whether resumed, split or not (every capture is in ``arrays`` now)
            first = list(range(min(NOISE_STIMULI, len(pairs))))
            again = inputs if set(first) <= set(pending) else \
                PassInputs.prepare(self.bundle, pairs, first, config.seed, size, images, config.guidance)
            with running(pipe.transformer, config.compile, config.attention_backend), \
                    capture_units(pipe.transformer, list(self.built), config.token_scope, family=again.family,
                                  method=config.capture_method) as cap, torch.inference_mode():
                manifest["noise_floor"] = measure_noise_floor(again, cap, arrays, first)
        timings["passes"] = round(elapsed, 4)
        timings["passes_per_second"] = round(len(passes) / elapsed, 3) if passes and elapsed > 0 else None
        if not passes:
            self._flush(arrays, done)
        manifest["status"] = "captured"
        manifest.pop("error", None)
        if self.writes:
            atomic_write_json(self.run_dir / "manifest.json", manifest)
        return manifest

    def _gather(self, arrays, done, mine: list[int]) -> None:
        """Every process's rows of its own pairs to the main process, which flushes them."""
        rows = {name: (a[mine], b[mine]) for name, (a, b) in arrays.items()}
        for theirs, their_rows in self.share.gather((mine, rows)):
            if not self.writes or not theirs:
                continue
            for name, (a, b) in their_rows.items():
                arrays[name][0][theirs] = a
                arrays[name][1][theirs] = b
            done[theirs] = True
        self._flush(arrays, done)

    def _images(self, size: tuple[int, int]) -> dict:
        """Every pair's images, the captured pairs' too: a resumed run must see the images
        it started with (checked by sha256, then recorded in the manifest)."""
        sources = [s.image for p in self.pairs for s in p.stimuli() if s.image is not None]
        images = get_images(self.bundle, sources, *size)
        records = [image_record(rec, self.spec_dir) for _, rec in images.values()]
        check_images(self.run_dir, self.manifest["images"], records)
        self.manifest["images"] = records
        if images and self.writes and self.figures:
            from ..report.figures import stimulus_sheet

            stimulus_sheet(self.run_dir, self.pairs, images)
        return images

    def _trajectory(self, inputs, items, config: RunConfig, cap, arrays) -> None:
        """Denoise ``items`` for ``config.steps`` steps, keeping the captured steps' rows."""
        from .trajectory import run_trajectory

        slot = {step: k for k, step in enumerate(config.captured_steps)}

        def on_step(step: int, conditional: bool) -> None:
            rows = cap.take()  # what this forward recorded; the unconditional (CFG) pass is dropped
            if conditional and step in slot:
                self._store(rows, items, arrays, slot[step])

        run_trajectory(inputs, items, config.steps, config.guidance, on_step)

    def _store(self, rows: dict[str, np.ndarray], items, arrays, step_slot: int | None = None) -> None:
        n = len(items)
        if any(len(v) != n for v in rows.values()):
            raise RuntimeError(f"capture returned {[len(v) for v in rows.values()]} rows for a batch of {n}")
        for name, layout in self.built.items():
            _check_finite(rows[name], layout, [(self.pairs[i], s) for i, s in items])
            for r, (i, s) in enumerate(items):
                if step_slot is None:
                    arrays[name][s][i] = rows[name][r]
                else:
                    arrays[name][s][i, step_slot] = rows[name][r]
