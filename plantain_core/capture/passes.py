"""Building probe passes: the transformer inputs of one stimulus, as the pipeline builds them.

One probe pass = one transformer forward at the first step of a one-step schedule
(timestep exactly as the pipeline's ``__call__`` computes it for
``num_inference_steps=1``, the latents scaled by that schedule's
``scale_model_input``), guidance 1.0 (no CFG), initial noise seeded per pair so A
and B share it (made while ``pipe.scheduler`` is the schedule's copy: ``prepare_latents``
of k-diffusion pipelines multiplies by its ``init_noise_sigma``). Prompts are encoded once each and conditioning images VAE-encoded once
each (:meth:`PassInputs.prepare`); :meth:`PassInputs.kwargs` then builds any batch of
passes. What differs between pipelines (prompt encoding, noise, transformer arguments)
is the model family's (:mod:`plantain_core.models.family`). The runner and the causal check
both build their passes here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import attrs

from ..errors import PlantainError, is_out_of_memory, plugin_call
from ..models.family import ModelFamily
from ..models.lookup import family_of
from ..spec.stimuli import Pair
from .images import get_images

NOISE_SEED_STRIDE = 1_000_003

#: One pass: (pair index, side) with side 0 = A, 1 = B.
Item = tuple[int, int]


def noise_seed(seed: int, pair_index: int) -> int:
    return int(seed) * NOISE_SEED_STRIDE + int(pair_index)


def cache_context(transformer, name: str):
    """The transformer's cache context (diffusers' CacheMixin: FLUX); a no-op where it has none (SD3)."""
    enter = getattr(transformer, "cache_context", None)
    return contextlib.nullcontext() if enter is None else enter(name)


@contextlib.contextmanager
def pipeline_scheduler(pipe, scheduler):
    """``pipe.scheduler`` is ``scheduler`` (the loop's set copy) inside: ``__call__`` sets the
    timesteps before ``prepare_latents``, which reads ``scheduler.init_noise_sigma`` (k-diffusion
    schedulers; it depends on the timesteps set), so the family's ``noise`` must see that copy, not
    the pipeline's own scheduler as the last image generation left it. Written to the instance
    ``__dict__``: a plain assignment would rewrite the pipeline's config."""
    if scheduler is None:
        yield
        return
    had, saved = "scheduler" in pipe.__dict__, pipe.__dict__.get("scheduler")
    pipe.__dict__["scheduler"] = scheduler
    try:
        yield
    finally:
        if had:
            pipe.__dict__["scheduler"] = saved
        else:
            del pipe.__dict__["scheduler"]


def pass_bytes(bundle, tokens: int) -> int:
    """A generous estimate of one stimulus's activation memory in a pass: the largest single
    block's activations (tokens x (8 x attention width + 4 x MLP width) in the model's dtype,
    doubled for the temporaries around them). Blocks run one after another and free theirs,
    so the layers do not add up; the estimate does not count the weights (already loaded)."""
    import torch

    from ..models.family import checked_sites
    from ..models.layouts import blocks_of

    # the widths from the family's own capture sites: transformer configs name them differently
    blocks = blocks_of(checked_sites(family_of(bundle), bundle.pipeline.transformer))
    inner = max((b.attn_dim for b in blocks), default=0)
    mlp = max((b.mlp_dim for b in blocks), default=0) or 4 * inner
    return int(tokens) * (8 * inner + 4 * mlp) * torch.finfo(bundle.dtype).bits // 8 * 2


def free_memory(device: str) -> int | None:
    """Bytes a pass may use on ``device``: CUDA's free memory (``torch.cuda.mem_get_info``),
    else the host's available memory (``psutil``, else ``/proc/meminfo``'s MemAvailable),
    capped by an address-space limit (``ulimit -v``); None where it cannot be told (mps)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if not device.startswith("cpu"):
        return None
    import os
    import resource

    try:
        import psutil

        avail, used = int(psutil.virtual_memory().available), int(psutil.Process().memory_info().vms)
    except ImportError:
        try:
            meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo", encoding="ascii"))
            avail = int(meminfo["MemAvailable"].split()[0]) * 1024
            used = int(open("/proc/self/statm", encoding="ascii").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, KeyError, ValueError, IndexError):
            return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return avail if limit == resource.RLIM_INFINITY else max(0, min(avail, limit - used))


def fit_batch(bundle, size: tuple[int, int], has_images: bool, batch_size: int | None) -> int | None:
    """Before any image is made or encoded: refuse a run whose single pass cannot fit in
    memory (a huge --height), and a --batch-size that cannot, naming one that can; returns
    the most stimuli per forward that fit (None where unknown)."""
    family = family_of(bundle)
    latent = family.latent_tokens(bundle.pipeline, size)
    tokens = family.text_tokens + latent * (2 if has_images else 1)  # a conditioning image is about as long
    free = free_memory(bundle.device)
    if free is None or bundle.offload and not bundle.device.startswith("cpu"):
        return None
    one = pass_bytes(bundle, tokens)
    fits = int(free // max(one, 1))
    if fits < 1:
        raise PlantainError(f"a pass at {size[0]}x{size[1]} ({tokens:,} tokens) needs about {one / 2**30:.1f} GiB of "
                            f"activations on {bundle.device}, more than the {free / 2**30:.1f} GiB available; choose a "
                            "smaller --height/--width")
    if batch_size is not None and batch_size > fits:
        raise PlantainError(f"--batch-size {batch_size}: {batch_size} passes at {size[0]}x{size[1]} need about "
                            f"{batch_size * one / 2**30:.1f} GiB of activations on {bundle.device}, more than the "
                            f"{free / 2**30:.1f} GiB available; try --batch-size {fits}")
    return fits


def auto_batch_size(bundle, tokens: int) -> int:
    """Stimuli per forward: all the tiny model wants on CPU; on CUDA what fits in free
    memory by :func:`pass_bytes`'s estimate."""
    if bundle.is_tiny:
        return 16
    if not bundle.device.startswith("cuda") or bundle.offload:
        return 2
    n = int(max(0, free_memory(bundle.device) - 4 * 2**30) // max(pass_bytes(bundle, tokens), 1))
    return max(1, min(16, n - n % 2 if n >= 2 else n))


def encode_stimuli(bundle, prompts, images):
    """Each prompt encoded once (``{prompt: {kwarg: tensor}}``, shared text inputs) and each
    conditioning image VAE-encoded once (``{source: (latents, ids)}``), by the model family."""
    import torch

    family = family_of(bundle)
    embeds, shared = family.encode_prompts(bundle, prompts)
    cond = {}
    with torch.inference_mode():
        for source, (img, _) in images.items():
            cond[source] = family.encode_image(bundle, img)
    return embeds, shared, cond


@attrs.define
class PassInputs:
    """What every probe pass of a set of pairs needs, prepared once: prompt embeddings,
    conditioning latents, the probe timestep, the noise seed and the image size."""

    bundle: Any
    pairs: Sequence[Pair]
    embeds: dict  # {prompt: {kwarg: tensor (1, ...)}} on the host
    shared: dict  # text inputs every prompt shares (text position ids)
    cond: dict  # {image source: (latents, ids)}
    timestep: Any
    seed: int
    size: tuple[int, int]
    guidance: float = 1.0  # embedded guidance of guidance-distilled families
    scheduler: Any = None  # the one-step schedule's scheduler (scale_model_input, init_noise_sigma)
    _negative: tuple | None = None
    _latent_shape: tuple | None = None  # one stimulus's noisy latents, without the batch

    @classmethod
    def prepare(cls, bundle, pairs: Sequence[Pair], indices: Sequence[int], seed: int, size: tuple[int, int],
                images: dict | None = None, guidance: float = 1.0):
        """Images obtained (files or the cache; or ``images`` from ``get_images``) and
        encoded, prompts encoded, for the pairs at ``indices``."""
        pipe = bundle.pipeline
        sources = [s.image for i in indices for s in pairs[i].stimuli() if s.image is not None]
        images = get_images(bundle, sources, size[0], size[1]) if images is None else \
            {src: images[src] for src in dict.fromkeys(sources)}
        prompts = list(dict.fromkeys(s.prompt for i in indices for s in pairs[i].stimuli()))
        embeds, shared, cond = encode_stimuli(bundle, prompts, images)
        family = family_of(bundle)
        scheduler, timesteps = family.schedule(pipe, 1, family.latent_tokens(pipe, size), pipe._execution_device)
        return cls(bundle, pairs, embeds, shared, cond, timesteps[0], int(seed), size, float(guidance), scheduler)

    @property
    def pipe(self):
        return self.bundle.pipeline

    @property
    def family(self) -> ModelFamily:
        return family_of(self.bundle)

    @property
    def n_latent(self) -> int:
        """Image tokens of the noisy latent (the prediction's length)."""
        return self.family.latent_tokens(self.pipe, self.size)

    @property
    def tokens(self) -> int:
        """The longest sequence a pass has: text + noisy latents + conditioning latents."""
        n_cond = max((c[0].shape[1] for c in self.cond.values()), default=0)
        return self.family.text_tokens + self.n_latent + n_cond

    def image_of(self, item: Item):
        return self.pairs[item[0]].stimuli()[item[1]].image

    def groups(self, items: Sequence[Item]) -> list[list[Item]]:
        """``items`` split by conditioning shape (the transformer takes one set of position ids
        per call) and by text length: families whose prompts keep their own length (Qwen-Image,
        Z-Image) would otherwise be padded to the batch's longest, and the padding captured."""
        out: dict[Any, list[Item]] = {}
        for item in items:
            img = self.image_of(item)
            prompt = self.pairs[item[0]].stimuli()[item[1]].prompt
            text_len = self.embeds[prompt]["encoder_hidden_states"].shape[1]
            out.setdefault((None if img is None else tuple(self.cond[img][0].shape), text_len), []).append(item)
        return list(out.values())

    @property
    def _dtype(self):
        """The prompt embeddings' dtype: the pipelines make their noise in it."""
        return next(iter(self.embeds.values()))["encoder_hidden_states"].dtype

    def _noise(self, i: int, scheduler=None, generator=None):
        """Pair ``i``'s (latents, ids), drawn by ``generator`` (default: a fresh one seeded for the
        pair), with ``scheduler`` (default: the one-step schedule's) as the pipeline's."""
        import torch

        gen = torch.Generator("cpu").manual_seed(noise_seed(self.seed, i)) if generator is None else generator
        with pipeline_scheduler(self.pipe, self.scheduler if scheduler is None else scheduler):
            return self.family.noise(self.pipe, gen, self.size, self._dtype, self.pipe._execution_device)

    def text(self, items: Sequence[Item]) -> dict:
        """The text inputs of ``items``' prompts, batched, on the device."""
        import torch

        device = self.pipe._execution_device
        prompts = [self.pairs[i].stimuli()[s].prompt for i, s in items]
        batched = {k: torch.cat([self.embeds[p][k] for p in prompts], dim=0).to(device) for k in self.embeds[prompts[0]]}
        return self.family.text_kwargs(batched, self.shared, len(items))

    def conditioning(self, items: Sequence[Item]):
        """The conditioning latents of ``items`` (one group of :meth:`groups`: the same shape,
        each its own image) batched, or None for text-only passes."""
        import torch

        if self.image_of(items[0]) is None:
            return None
        return torch.cat([self.cond[self.image_of(item)][0] for item in items], dim=0)

    def ids(self, items: Sequence[Item]):
        """Position ids of the image sequence of ``items`` (one group of :meth:`groups`)."""
        _, latent_ids = self._noise(items[0][0])
        img = self.image_of(items[0])
        return latent_ids if img is None else self.family.join_ids(latent_ids, self.cond[img][1])

    def kwargs(self, items: Sequence[Item]) -> dict:
        """The transformer's keyword arguments for ``items``: per-pair seeded noise
        (+ conditioning latents), prompt embeddings, ids, the probe timestep."""
        import torch

        family, transformer = self.family, self.pipe.transformer
        latents = torch.cat([self._noise(i)[0] for i, _ in items], dim=0)
        scaled = latents if self.scheduler is None else family.scale_model_input(self.scheduler, latents,
                                                                                  self.timestep)
        cond = self.conditioning(items)
        hidden = [family.model_input(scaled[k:k + 1], None if cond is None else cond[k:k + 1]).to(transformer.dtype)
                  for k in range(len(items))]
        t = family.loop_timestep(self.timestep, latents)
        return family.transformer_kwargs(self.pipe, torch.cat(hidden, dim=0), t, self.text(items), self.ids(items),
                                         self.guidance)

    def noise(self, items: Sequence[Item], scheduler=None):
        """The initial latents of ``items`` (the per-pair seeded noise), batched, in the
        prompt embeddings' dtype as the pipeline makes them (``scheduler``: the loop's)."""
        return self.start(items, scheduler)[0]

    def start(self, items: Sequence[Item], scheduler=None) -> tuple[Any, list]:
        """(the initial latents of ``items``, batched; each item's generator after drawing them):
        ``__call__`` goes on drawing from the generator that made the noise where its scheduler
        adds noise in ``step``."""
        import torch

        gens = [torch.Generator("cpu").manual_seed(noise_seed(self.seed, i)) for i, _ in items]
        latents = [self._noise(i, scheduler, gen)[0] for (i, _), gen in zip(items, gens)]
        return torch.cat(latents, dim=0), gens

    def negative_text(self, n: int) -> dict:
        """The empty prompt's text inputs for ``n`` rows, as __call__ encodes them for CFG."""
        if self._negative is None:
            embeds, shared = self.family.encode_prompts(self.bundle, [""])
            device = self.pipe._execution_device
            self._negative = ({k: v.to(device) for k, v in embeds[""].items()}, shared)
        embeds, shared = self._negative
        return self.family.text_kwargs({k: v.expand(n, *v.shape[1:]) for k, v in embeds.items()}, shared, n)

    def forward(self, items: Sequence[Item]):
        """One transformer forward for ``items``; returns the transformer's output tensor."""
        transformer = self.pipe.transformer
        with cache_context(transformer, "cond"):
            return transformer_forward(self.family, transformer, self.kwargs(items))

    def prediction(self, items: Sequence[Item]):
        """One forward's prediction for the noisy latents of ``items``, flattened per row, float32."""
        transformer = self.pipe.transformer
        if self._latent_shape is None:  # one stimulus's noise: the same for every pass
            self._latent_shape = tuple(self._noise(0)[0].shape[1:])
        with cache_context(transformer, "cond"):
            pred = predict(self.family, transformer, self.kwargs(items), self.n_latent,
                           (len(items), *self._latent_shape))
        if not bool(pred.isfinite().all()):
            raise PlantainError(f"model family {self.family.name!r}: the prediction is not finite (NaN or inf); "
                                "in bf16/fp16 try --dtype fp32")
        return pred.reshape(len(items), -1).float()


def transformer_forward(family, transformer, kwargs: dict):
    """The transformer's output for the arguments ``family`` built: a failure there (a shape
    the transformer cannot take) is the family's, named as such, not a traceback; running
    out of memory is the machine's, named with the batch size to try."""
    try:
        return plugin_call(f"the transformer forward on model family {family.name!r}'s inputs (noise, "
                           "encode_prompts, transformer_kwargs)", transformer, **kwargs)[0]
    except BaseException as exc:
        if not is_out_of_memory(exc):
            raise
        rows = getattr(kwargs.get("hidden_states"), "shape", (None,))[0]
        what = f"a transformer pass of {rows} stimul{'us' if rows == 1 else 'i'}" if rows else "a transformer pass"
        hint = (f"try --batch-size {max(1, rows // 2)}" if rows and rows > 1 else
                "one stimulus per pass does not fit: choose a smaller --height/--width, or --dtype bf16, or --cpu-offload"
                if rows == 1 else "try a smaller --batch-size")
        raise PlantainError(f"out of memory in {what} ({type(exc).__name__}); {hint}") from exc


def predict(family, transformer, kwargs: dict, n_latent: int, shape):
    """The family's prediction from one forward on ``kwargs``, which must have the latents'
    ``shape`` (the scheduler steps the latents by it)."""
    pred = family.prediction(transformer_forward(family, transformer, kwargs), n_latent)
    if tuple(pred.shape) != tuple(shape):
        raise PlantainError(f"model family {family.name!r}: prediction() gives shape {tuple(pred.shape)} for latents "
                            f"of shape {tuple(shape)}")
    return pred
