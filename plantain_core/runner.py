"""Run a probe: every stimulus of every pair through the transformer once, capturing units.

One probe pass = one transformer forward at the first step of a one-step schedule
(timestep exactly as ``Flux2KleinPipeline.__call__`` computes it for
``num_inference_steps=1``), guidance 1.0 (no CFG), initial noise seeded per pair so A
and B share it, no VAE decode. Prompts are encoded once each, conditioning images are
VAE-encoded once each, stimuli are batched (a batch holds whole pairs). Captures are
flushed after every batch, so ``resume=True`` continues an interrupted run.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np

from . import __version__
from .devices import check_dtype_supported, resolve_device, resolve_dtype
from .errors import PlantainError
from .fsutil import atomic_write_bytes, atomic_write_json
from .images import get_images
from .models.layouts import check_scope, parse_layouts
from .models.loaders import LoadedModel, load_model
from .stimuli import IMAGE_GUIDANCE, IMAGE_STEPS, Pair, Stimulus

MAX_SEQUENCE_LENGTH = 512
NOISE_SEED_STRIDE = 1_000_003
SIDES = ("A", "B")
# Fields a resumed run must share with the run it continues.
RESUME_KEYS = ("spec_sha256", "model", "seed", "layouts", "token_scope", "height", "width", "dtype", "pair_ids")


def noise_seed(seed: int, pair_index: int) -> int:
    return int(seed) * NOISE_SEED_STRIDE + int(pair_index)


def spec_sha256(spec) -> str:
    digest = spec.sha256() if getattr(spec, "path", None) else None
    if digest:
        return digest
    blob = json.dumps(spec.as_dict(), sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _stimulus_dict(stim: Stimulus) -> dict[str, Any]:
    return {"prompt": stim.prompt, "image": stim.image.describe() if stim.image is not None else None}


def token_count(tokenizer, prompt: str, max_length: int = MAX_SEQUENCE_LENGTH) -> int:
    """Real (non-pad) prompt tokens after the chat template, as the pipeline tokenizes."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    return len(tokenizer(text, truncation=True, max_length=max_length)["input_ids"])


def auto_batch_size(bundle: LoadedModel, tokens: int) -> int:
    """Stimuli per forward: all the tiny model wants on CPU; on CUDA what fits in free
    memory by a generous per-element estimate of the largest single-block activations."""
    if bundle.is_tiny:
        return 16
    if not bundle.device.startswith("cuda") or bundle.offload:
        return 2
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(bundle.device))
    tr = bundle.pipeline.transformer
    inner = tr.config.num_attention_heads * tr.config.attention_head_dim
    mlp = int(inner * tr.config.mlp_ratio)
    per_elem = tokens * (8 * inner + 4 * mlp) * torch.finfo(bundle.dtype).bits // 8 * 2
    n = int(max(0, free - 4 * 2**30) // max(per_elem, 1))
    return max(1, min(16, n - n % 2 if n >= 2 else n))


def _condition_pixels(pipe, img):
    """The pipeline's own preprocessing of a conditioning image (__call__ step 4)."""
    try:
        pipe.image_processor.check_image_input(img)
    except ValueError as exc:
        raise PlantainError(f"conditioning image rejected: {exc}") from None
    w, h = img.size
    if w * h > 1024 * 1024:
        img = pipe.image_processor._resize_to_target_area(img, 1024 * 1024)
        w, h = img.size
    m = pipe.vae_scale_factor * 2
    w, h = (w // m) * m, (h // m) * m
    return pipe.image_processor.preprocess(img, height=h, width=w, resize_mode="crop")


def _probe_timestep(pipe, image_seq_len: int, device):
    """The first (only) timestep of a one-step schedule, as __call__ step 6 builds it."""
    import copy

    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps

    scheduler = copy.deepcopy(pipe.scheduler)  # set_timesteps mutates; image generation uses the original
    sigmas = np.linspace(1.0, 1.0, 1)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    mu = compute_empirical_mu(image_seq_len=image_seq_len, num_steps=1)
    timesteps, _ = retrieve_timesteps(scheduler, 1, device, sigmas=sigmas, mu=mu)
    return timesteps[0]


def _write_captures(cap_dir: pathlib.Path, layouts, arrays, pair_ids, done) -> None:
    for name, layout in layouts.items():
        buf = io.BytesIO()
        a, b = arrays[name]
        np.savez(buf, a=a, b=b, units=np.asarray(layout.units, dtype=str), pair_ids=np.asarray(pair_ids, dtype=str),
                 done=done, mlp=layout.mlp)
        atomic_write_bytes(cap_dir / f"{name}.npz", buf.getvalue())


def _read_previous(run_dir: pathlib.Path, layouts, pair_ids):
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
        if units != list(layout.units) or ids != list(pair_ids):
            raise PlantainError(f"cannot resume {run_dir}: {path.name} has other units or pairs than this run")
        arrays[name] = (a, b)
        done &= flags
    return arrays, done


def _check_resume(run_dir: pathlib.Path, old: dict, new: dict) -> None:
    diffs = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in diffs if k != "pair_ids")
        if "pair_ids" in diffs:
            detail = (detail + "; " if detail else "") + "the pairs differ"
        raise PlantainError(f"cannot resume {run_dir}: the run was started with other settings ({detail})")


def _check_finite(rows: np.ndarray, layout, passes) -> None:
    bad = np.argwhere(~np.isfinite(rows))
    if len(bad):
        r, u = bad[0]
        pair, side = passes[r]
        raise PlantainError(f"non-finite capture in pass {pair.id}/{SIDES[side]} at unit {layout.units[u]} "
                            f"(layout {layout.name}, {len(bad)} values); try --dtype fp32 or bf16")


def run_probe(
    spec,
    pairs: Sequence[Pair],
    run_dir,
    *,
    model="tiny",
    device: str = "auto",
    dtype=None,
    layouts=("heads", "slices16"),
    batch_size: int | None = None,
    seed: int = 0,
    token_scope: str = "all",
    height: int | None = None,
    width: int | None = None,
    resume: bool = False,
    progress: bool = True,
    registry=None,
    revision: str | None = None,
    offload: bool = False,
) -> dict[str, Any]:
    """Capture every pair of ``pairs`` into ``run_dir``; return the manifest written there."""
    import diffusers
    import torch

    from .capture import capture_units
    from .models.layouts import transformer_layouts

    layouts = parse_layouts(layouts)
    check_scope(token_scope)
    pairs = list(pairs)
    if not pairs:
        raise PlantainError("no pairs to run")
    pair_ids = [p.id for p in pairs]
    if len(set(pair_ids)) != len(pair_ids):
        raise PlantainError("pair ids must be unique")
    if batch_size is not None and batch_size < 1:
        raise PlantainError(f"batch size must be at least 1, got {batch_size}")
    run_dir = pathlib.Path(run_dir)
    cap_dir = run_dir / "captures"
    manifest_path = run_dir / "manifest.json"
    old = None
    if manifest_path.is_file():
        if not resume:
            raise PlantainError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PlantainError(f"cannot resume {run_dir}: {manifest_path.name} is unreadable ({exc}); "
                                f"start a new run in another --out") from None
        if not isinstance(old, dict):
            raise PlantainError(f"cannot resume {run_dir}: {manifest_path.name} is not a plantain manifest")

    timings: dict[str, float] = {}
    if revision is None and isinstance(model, str) and model == spec.model.id:
        revision = spec.model.revision  # the spec's pin applies to the spec's model only
    if registry is None and not isinstance(model, LoadedModel):
        from .plugins import get_registry

        registry = get_registry()
    if dtype is not None and not isinstance(model, LoadedModel):  # refuse before a long model load
        dev = resolve_device(device)
        check_dtype_supported(dev, resolve_dtype(dtype, dev))
    bundle = load_model(model, device, dtype, registry=registry, revision=revision, offload=offload)
    check_dtype_supported(bundle.device, bundle.dtype)
    timings["load"] = round(bundle.load_seconds, 4)
    pipe = bundle.pipeline
    height = height or (bundle.default_size if bundle.is_tiny else spec.model.height) or bundle.default_size
    width = width or (bundle.default_size if bundle.is_tiny else spec.model.width) or bundle.default_size
    mult = pipe.vae_scale_factor * 2
    if height % mult or width % mult or height <= 0 or width <= 0:
        raise PlantainError(f"height and width must be positive multiples of {mult}, got {height}x{width}")

    built = transformer_layouts(pipe.transformer, layouts)
    manifest: dict[str, Any] = {
        "plantain_version": __version__,
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.as_dict(),
        "spec_path": spec.path,
        "spec_sha256": spec_sha256(spec),
        "model": bundle.describe(),
        "device": bundle.device,
        "dtype": bundle.dtype_name,
        "offload": bundle.offload,
        "seed": int(seed),
        "noise_seed": f"seed * {NOISE_SEED_STRIDE} + pair index",
        "layouts": list(layouts),
        "layout_info": {name: lay.info() for name, lay in built.items()},
        "token_scope": token_scope,
        "steps": 1,
        "guidance": 1.0,
        "image_steps": IMAGE_STEPS,
        "image_guidance": IMAGE_GUIDANCE,
        "height": int(height),
        "width": int(width),
        "batch_size": None,
        "images": [],
        "pairs": [{"id": p.id, "a": _stimulus_dict(p.a), "b": _stimulus_dict(p.b), "meta": p.meta} for p in pairs],
        "pair_ids": pair_ids,
        "token_counts": [],
        "timings": timings,
        "status": "running",
    }
    arrays = {name: (np.full((len(pairs), len(lay)), np.nan), np.full((len(pairs), len(lay)), np.nan))
              for name, lay in built.items()}
    done = np.zeros(len(pairs), dtype=bool)
    if old is not None:
        _check_resume(run_dir, old, manifest)
        prev, done = _read_previous(run_dir, built, pair_ids)
        arrays = prev or arrays
        for stale in run_dir.rglob(".*.tmp"):  # temp files of a write a kill cut short
            stale.unlink(missing_ok=True)
        manifest["created"] = old.get("created", manifest["created"])
        manifest["images"] = old.get("images", [])
        for key, value in old.items():  # keys others added (statistics options) survive a resume
            manifest.setdefault(key, value)

    try:
        return _run(pipe, bundle, manifest, manifest_path, cap_dir, pairs, built, arrays, done, seed, token_scope,
                    height, width, batch_size, progress, timings, capture_units)
    except BaseException as exc:
        # Ctrl-C is the user's choice, not a fault: say so, so the folder reads as resumable.
        interrupted = isinstance(exc, KeyboardInterrupt)
        manifest["status"] = "interrupted" if interrupted else "failed"
        manifest["error"] = "interrupted (KeyboardInterrupt)" if interrupted else f"{type(exc).__name__}: {exc}"
        atomic_write_json(manifest_path, manifest)
        raise


def _run(pipe, bundle, manifest, manifest_path, cap_dir, pairs, built, arrays, done, seed, token_scope,
         height, width, batch_size, progress, timings, capture_units):
    import torch
    from tqdm.auto import tqdm

    tok = pipe.tokenizer
    manifest["token_counts"] = [{"id": p.id, "a": token_count(tok, p.a.prompt), "b": token_count(tok, p.b.prompt)}
                                for p in pairs]
    atomic_write_json(manifest_path, manifest)
    pending = [i for i in range(len(pairs)) if not done[i]]
    passes = [(i, side) for i in pending for side in (0, 1)]
    exec_device = pipe._execution_device

    # Conditioning images: obtained once each (files or the cache), then VAE-encoded once each.
    start = time.perf_counter()
    sources = [s.image for i in pending for s in pairs[i].stimuli() if s.image is not None]
    images = get_images(bundle, sources, height, width)
    known = {r.get("key") or r.get("path") for r in manifest["images"]}  # a resumed run keeps earlier records
    manifest["images"] += [rec for _, rec in images.values() if (rec.get("key") or rec.get("path")) not in known]
    timings["images"] = round(time.perf_counter() - start, 4)

    start = time.perf_counter()
    prompts = list(dict.fromkeys(s.prompt for i in pending for s in pairs[i].stimuli()))
    embeds, text_ids, cond = encode_stimuli(pipe, bundle, prompts, images)
    timings["encode"] = round(time.perf_counter() - start, 4)

    transformer = pipe.transformer
    latent_dtype = next(iter(embeds.values())).dtype if embeds else bundle.dtype
    n_latent = (height // (pipe.vae_scale_factor * 2)) * (width // (pipe.vae_scale_factor * 2))
    n_cond = max((c[0].shape[1] for c in cond.values()), default=0)
    if batch_size is None:
        batch_size = auto_batch_size(bundle, MAX_SEQUENCE_LENGTH + n_latent + n_cond)
    manifest["batch_size"] = int(batch_size)
    timestep = _probe_timestep(pipe, n_latent, exec_device)

    # A batch holds whole pairs where it can (batch_size // 2 pairs), else single passes.
    per = max(1, batch_size // 2) * 2 if batch_size >= 2 else 1
    batches = [passes[k:k + per] for k in range(0, len(passes), per)]
    side_done = {i: [False, False] for i in pending}
    bar = tqdm(total=len(passes), desc=f"{manifest['spec']['name']} passes", unit="pass", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        with capture_units(transformer, list(built), token_scope) as cap, torch.inference_mode():
            for batch in batches:
                # One forward per conditioning shape: the transformer takes one set of position ids per call.
                groups: dict[Any, list] = {}
                for item in batch:
                    img = pairs[item[0]].stimuli()[item[1]].image
                    key = None if img is None else tuple(cond[img][0].shape)
                    groups.setdefault(key, []).append(item)
                for key, items in groups.items():
                    rows = _forward(pipe, transformer, cap, pairs, items, embeds, text_ids, cond, timestep,
                                    latent_dtype, seed, height, width, exec_device)
                    for name, layout in built.items():
                        _check_finite(rows[name], layout, [(pairs[i], s) for i, s in items])
                        for r, (i, s) in enumerate(items):
                            arrays[name][s][i] = rows[name][r]
                    for i, s in items:
                        side_done[i][s] = True
                for i, s in batch:
                    done[i] = all(side_done[i])
                _write_captures(cap_dir, built, arrays, manifest["pair_ids"], done)
                bar.update(len(batch))
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    timings["passes"] = round(elapsed, 4)
    timings["passes_per_second"] = round(len(passes) / elapsed, 3) if passes and elapsed > 0 else None
    if not passes:
        _write_captures(cap_dir, built, arrays, manifest["pair_ids"], done)
    manifest["status"] = "captured"
    manifest.pop("error", None)
    atomic_write_json(manifest_path, manifest)
    return manifest


def encode_stimuli(pipe, bundle, prompts, images):
    """Each prompt encoded once (``{prompt: (1, 512, dim)}``, text ids) and each conditioning
    image VAE-encoded once (``{source: (latents, ids)}``), as the pipeline does."""
    import torch

    exec_device = pipe._execution_device
    embeds, text_ids, cond = {}, None, {}
    with torch.inference_mode():
        for k in range(0, len(prompts), 8):
            chunk = prompts[k:k + 8]
            pe, text_ids = pipe.encode_prompt(prompt=chunk, device=exec_device, max_sequence_length=MAX_SEQUENCE_LENGTH,
                                              text_encoder_out_layers=tuple(bundle.text_encoder_out_layers))
            # Kept on the host: at 7.5 MiB per prompt (Klein 4B, bf16) a 1,000-pair probe's
            # embeddings would hold 15 GiB of GPU memory; a batch moves only its own.
            pe = pe.cpu()
            embeds.update({p: pe[j:j + 1] for j, p in enumerate(chunk)})
        for source, (img, _) in images.items():
            pixels = _condition_pixels(pipe, img)
            cond[source] = pipe.prepare_image_latents(images=[pixels], batch_size=1, generator=None,
                                                      device=exec_device, dtype=pipe.vae.dtype)
    return embeds, text_ids, cond


def _forward(pipe, transformer, cap, pairs, items, embeds, text_ids, cond, timestep, latent_dtype, seed,
             height, width, device) -> dict[str, np.ndarray]:
    """One transformer forward for ``items`` [(pair index, side)], built as __call__ builds it."""
    kwargs = transformer_inputs(pipe, transformer, pairs, items, embeds, text_ids, cond, timestep, latent_dtype,
                                seed, height, width, device)
    with transformer.cache_context("cond"):
        transformer(**kwargs)
    rows = cap.take()
    n = len(items)
    if any(len(v) != n for v in rows.values()):
        raise RuntimeError(f"capture returned {[len(v) for v in rows.values()]} rows for a batch of {n}")
    return rows


def transformer_inputs(pipe, transformer, pairs, items, embeds, text_ids, cond, timestep, latent_dtype, seed,
                       height, width, device) -> dict:
    """The transformer's keyword arguments for ``items`` [(pair index, side)]: per-pair
    seeded noise (+ conditioning latents), prompt embeddings, ids, the probe timestep."""
    import torch

    latents, latent_ids, hidden, ids = [], None, [], None
    for i, side in items:
        gen = torch.Generator("cpu").manual_seed(noise_seed(seed, i))
        lat, latent_ids = pipe.prepare_latents(batch_size=1, num_latents_channels=transformer.config.in_channels // 4,
                                               height=height, width=width, dtype=latent_dtype, device=device,
                                               generator=gen)
        img = pairs[i].stimuli()[side].image
        if img is None:
            hidden.append(lat.to(transformer.dtype))
            ids = latent_ids
        else:
            image_latents, image_ids = cond[img]
            hidden.append(torch.cat([lat, image_latents], dim=1).to(transformer.dtype))
            ids = torch.cat([latent_ids, image_ids], dim=1)
        latents.append(lat)
    n = len(items)
    prompt_embeds = torch.cat([embeds[pairs[i].stimuli()[s].prompt] for i, s in items], dim=0).to(device)
    t = timestep.expand(n).to(latents[0].dtype)
    return dict(
        hidden_states=torch.cat(hidden, dim=0),
        timestep=t / 1000,
        guidance=None,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids[:1].expand(n, -1, -1),
        img_ids=ids.expand(n, -1, -1),
        joint_attention_kwargs=None,
        return_dict=False,
    )
