"""The denoising trajectory (``--steps K``): the pipeline's own loop, captured at every step.

For K > 1 a batch of passes runs the loop the pipeline's ``__call__`` runs for
``num_inference_steps=K``: its scheduler set as the model family says (FLUX.2: sigmas
linspace(1, 1/K, K) and the empirical mu), one transformer forward per step, the
scheduler's Euler update, and where the family runs classifier-free guidance (FLUX.2
Klein base, SD3 at guidance > 1) the unconditional pass with the empty prompt (never
captured). A and B of a pair start from the same noise and then
follow their own latents. No VAE decode. K = 1 keeps the single probe pass of
:mod:`plantain_core.capture.passes` (byte-identical to runs before trajectories existed).
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import plugin_call
from ..models.lookup import family_of
from .passes import Item, PassInputs, cache_context, predict


def step_records(bundle, steps: int, image_seq_len: int, captured: Sequence[int]) -> list[dict]:
    """Index, timestep and sigma of each captured step, for the manifest."""
    scheduler, timesteps = family_of(bundle).schedule(bundle.pipeline, steps, image_seq_len, "cpu")
    sigmas = [float(s) for s in scheduler.sigmas]
    return [{"index": int(i), "timestep": float(timesteps[i]), "sigma": sigmas[i]} for i in captured]


def run_trajectory(inputs: PassInputs, items: Sequence[Item], steps: int, guidance: float,
                   on_step: Callable[[int, bool], None]) -> None:
    """Denoise ``items`` for ``steps`` steps. ``on_step(index, conditional)`` is called after
    every transformer forward (conditional False for the CFG pass), so a capture can keep
    or drop what the forward recorded."""
    pipe, family = inputs.pipe, inputs.family
    transformer, device = pipe.transformer, pipe._execution_device
    n, n_latent = len(items), inputs.n_latent
    text, ids = inputs.text(items), inputs.ids(items)
    latents = inputs.noise(items)
    cond = inputs.conditioning(items)  # conditioning-image latents (None for text-only passes)
    if cond is not None:
        cond = cond.to(transformer.dtype).to(latents.dtype)  # as the batch's hidden states carry it
    scheduler, timesteps = family.schedule(pipe, steps, n_latent, device)
    cfg = family.uses_cfg(pipe, guidance)
    if cfg:
        negative = inputs.negative_text(n)
    for i, t in enumerate(timesteps):
        hidden = family.model_input(latents, cond).to(transformer.dtype)
        timestep = t.expand(n).to(latents.dtype)
        with cache_context(transformer, "cond"):
            kw = family.transformer_kwargs(pipe, hidden, timestep, text, ids, guidance)
            pred = predict(family, transformer, kw, n_latent, latents.shape)
        on_step(i, True)
        if cfg:
            with cache_context(transformer, "uncond"):
                kw = family.transformer_kwargs(pipe, hidden, timestep, negative, ids, guidance)
                neg = predict(family, transformer, kw, n_latent, latents.shape)
            on_step(i, False)
            pred = neg + guidance * (pred - neg)
        latents = plugin_call(f"model family {family.name!r}: its scheduler's step()", scheduler.step, pred, t, latents,
                              return_dict=False)[0]
