"""Building probe passes: the transformer inputs of one stimulus, as the pipeline builds them.

One probe pass = one transformer forward at the first step of a one-step schedule
(timestep exactly as ``Flux2KleinPipeline.__call__`` computes it for
``num_inference_steps=1``), guidance 1.0 (no CFG), initial noise seeded per pair so A
and B share it. Prompts are encoded once each and conditioning images VAE-encoded once
each (:meth:`PassInputs.prepare`); :meth:`PassInputs.kwargs` then builds any batch of
passes. The runner and the causal check both build their passes here.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
import numpy as np

from .early_exit import early_exit
from .errors import PlantainError
from .images import get_images
from .stimuli import Pair

MAX_SEQUENCE_LENGTH = 512
NOISE_SEED_STRIDE = 1_000_003

#: One pass: (pair index, side) with side 0 = A, 1 = B.
Item = tuple[int, int]


def noise_seed(seed: int, pair_index: int) -> int:
    return int(seed) * NOISE_SEED_STRIDE + int(pair_index)


def prompt_tokens(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids after the chat template, before the pipeline's cut at
    ``MAX_SEQUENCE_LENGTH`` (the text encoder sees the first 512; the rest is dropped)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    return list(tokenizer(text, verbose=False)["input_ids"])


def auto_batch_size(bundle, tokens: int) -> int:
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


def condition_pixels(pipe, img):
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


def probe_timestep(pipe, image_seq_len: int, device):
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


def encode_stimuli(pipe, bundle, prompts, images):
    """Each prompt encoded once (``{prompt: (1, 512, dim)}``, text ids) and each conditioning
    image VAE-encoded once (``{source: (latents, ids)}``), as the pipeline does."""
    import torch

    exec_device = pipe._execution_device
    embeds, text_ids, cond = {}, None, {}
    layers = tuple(bundle.text_encoder_out_layers)
    with torch.inference_mode(), early_exit(pipe.text_encoder, layers):  # the same embeddings, fewer layers run
        for k in range(0, len(prompts), 8):
            chunk = prompts[k:k + 8]
            pe, text_ids = pipe.encode_prompt(prompt=chunk, device=exec_device, max_sequence_length=MAX_SEQUENCE_LENGTH,
                                              text_encoder_out_layers=layers)
            # Kept on the host: at 7.5 MiB per prompt (Klein 4B, bf16) a 1,000-pair probe's
            # embeddings would hold 15 GiB of GPU memory; a batch moves only its own.
            pe = pe.cpu()
            embeds.update({p: pe[j:j + 1] for j, p in enumerate(chunk)})
        for source, (img, _) in images.items():
            pixels = condition_pixels(pipe, img)
            cond[source] = pipe.prepare_image_latents(images=[pixels], batch_size=1, generator=None,
                                                      device=exec_device, dtype=pipe.vae.dtype)
    return embeds, text_ids, cond


@attrs.define
class PassInputs:
    """What every probe pass of a set of pairs needs, prepared once: prompt embeddings,
    conditioning latents, the probe timestep, the noise seed and the image size."""

    pipe: Any
    pairs: Sequence[Pair]
    embeds: dict
    text_ids: Any
    cond: dict
    timestep: Any
    seed: int
    size: tuple[int, int]
    text_encoder_out_layers: tuple[int, ...] = ()
    _negative: tuple | None = None
    @classmethod
    def prepare(cls, bundle, pairs: Sequence[Pair], indices: Sequence[int], seed: int, size: tuple[int, int],
                images: dict | None = None):
        """Images obtained (files or the cache; or ``images`` from ``get_images``) and
        encoded, prompts encoded, for the pairs at ``indices``."""
        pipe = bundle.pipeline
        sources = [s.image for i in indices for s in pairs[i].stimuli() if s.image is not None]
        images = get_images(bundle, sources, size[0], size[1]) if images is None else \
            {src: images[src] for src in dict.fromkeys(sources)}
        prompts = list(dict.fromkeys(s.prompt for i in indices for s in pairs[i].stimuli()))
        embeds, text_ids, cond = encode_stimuli(pipe, bundle, prompts, images)
        timestep = probe_timestep(pipe, cls.latent_tokens(pipe, size), pipe._execution_device)
        return cls(pipe, pairs, embeds, text_ids, cond, timestep, int(seed), size,
                   tuple(bundle.text_encoder_out_layers))

    @staticmethod
    def latent_tokens(pipe, size: tuple[int, int]) -> int:
        m = pipe.vae_scale_factor * 2
        return (size[0] // m) * (size[1] // m)

    @property
    def tokens(self) -> int:
        """The longest sequence a pass has: text + noisy latents + conditioning latents."""
        n_cond = max((c[0].shape[1] for c in self.cond.values()), default=0)
        return MAX_SEQUENCE_LENGTH + self.latent_tokens(self.pipe, self.size) + n_cond

    def image_of(self, item: Item):
        return self.pairs[item[0]].stimuli()[item[1]].image

    def groups(self, items: Sequence[Item]) -> list[list[Item]]:
        """``items`` split by conditioning shape: the transformer takes one set of position ids per call."""
        out: dict[Any, list[Item]] = {}
        for item in items:
            img = self.image_of(item)
            out.setdefault(None if img is None else tuple(self.cond[img][0].shape), []).append(item)
        return list(out.values())

    def kwargs(self, items: Sequence[Item]) -> dict:
        """The transformer's keyword arguments for ``items``: per-pair seeded noise
        (+ conditioning latents), prompt embeddings, ids, the probe timestep."""
        import torch

        pipe = self.pipe
        transformer, device = pipe.transformer, pipe._execution_device
        latent_dtype = next(iter(self.embeds.values())).dtype
        latents, hidden, ids = [], [], None
        for i, side in items:
            gen = torch.Generator("cpu").manual_seed(noise_seed(self.seed, i))
            lat, latent_ids = pipe.prepare_latents(batch_size=1, num_latents_channels=transformer.config.in_channels // 4,
                                                   height=self.size[0], width=self.size[1], dtype=latent_dtype,
                                                   device=device, generator=gen)
            img = self.image_of((i, side))
            if img is None:
                hidden.append(lat.to(transformer.dtype))
                ids = latent_ids
            else:
                image_latents, image_ids = self.cond[img]
                hidden.append(torch.cat([lat, image_latents], dim=1).to(transformer.dtype))
                ids = torch.cat([latent_ids, image_ids], dim=1)
            latents.append(lat)
        n = len(items)
        prompt_embeds = torch.cat([self.embeds[self.pairs[i].stimuli()[s].prompt] for i, s in items], dim=0).to(device)
        t = self.timestep.expand(n).to(latents[0].dtype)
        return dict(
            hidden_states=torch.cat(hidden, dim=0),
            timestep=t / 1000,
            guidance=None,
            encoder_hidden_states=prompt_embeds,
            txt_ids=self.text_ids[:1].expand(n, -1, -1),
            img_ids=ids.expand(n, -1, -1),
            joint_attention_kwargs=None,
            return_dict=False,
        )

    def noise(self, items: Sequence[Item]):
        """The initial latents of ``items`` (the per-pair seeded noise), batched, in the
        prompt embeddings' dtype as the pipeline makes them."""
        import torch

        pipe = self.pipe
        dtype = next(iter(self.embeds.values())).dtype
        out = []
        for i, _ in items:
            gen = torch.Generator("cpu").manual_seed(noise_seed(self.seed, i))
            lat, _ = pipe.prepare_latents(batch_size=1, num_latents_channels=pipe.transformer.config.in_channels // 4,
                                          height=self.size[0], width=self.size[1], dtype=dtype,
                                          device=pipe._execution_device, generator=gen)
            out.append(lat)
        return torch.cat(out, dim=0)

    def negative_prompt(self, n: int):
        """The empty prompt's embeddings and text ids, as __call__ encodes them for CFG."""
        pipe = self.pipe
        if self._negative is None:
            self._negative = pipe.encode_prompt(prompt=[""], device=pipe._execution_device,
                                                max_sequence_length=MAX_SEQUENCE_LENGTH,
                                                text_encoder_out_layers=tuple(self.text_encoder_out_layers))
        embeds, ids = self._negative
        return embeds.expand(n, -1, -1), ids[:1].expand(n, -1, -1)

    def forward(self, items: Sequence[Item]):
        """One transformer forward for ``items``; returns the transformer's output tensor."""
        transformer = self.pipe.transformer
        with transformer.cache_context("cond"):
            return transformer(**self.kwargs(items))[0]
