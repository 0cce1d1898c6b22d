"""The denoising trajectory (``--steps K``): the pipeline's own loop, captured at every step.

For K > 1 a batch of passes runs the loop ``Flux2KleinPipeline.__call__`` runs for
``num_inference_steps=K``: its scheduler with sigmas linspace(1, 1/K, K) and the
empirical mu, one transformer forward per step, the scheduler's Euler update, and with
guidance > 1 on a model that is not guidance-distilled the unconditional pass with the
empty prompt (never captured). A and B of a pair start from the same noise and then
follow their own latents. No VAE decode. K = 1 keeps the single probe pass of
:mod:`plantain_core.passes` (byte-identical to runs before trajectories existed).
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np

from .passes import Item, PassInputs


def fresh_schedule(pipe, steps: int, image_seq_len: int, device):
    """A copy of the pipeline's scheduler set for ``steps`` as __call__ step 6 sets it, and its timesteps."""
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps

    scheduler = copy.deepcopy(pipe.scheduler)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    mu = compute_empirical_mu(image_seq_len=image_seq_len, num_steps=steps)
    timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=mu)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler, timesteps


def step_records(pipe, steps: int, image_seq_len: int, captured: Sequence[int]) -> list[dict]:
    """Index, timestep and sigma of each captured step, for the manifest."""
    scheduler, timesteps = fresh_schedule(pipe, steps, image_seq_len, "cpu")
    sigmas = [float(s) for s in scheduler.sigmas]
    return [{"index": int(i), "timestep": float(timesteps[i]), "sigma": sigmas[i]} for i in captured]


def uses_cfg(pipe, guidance: float) -> bool:
    """As the pipeline decides: guidance above 1 on a model that is not guidance-distilled."""
    return guidance > 1.0 and not getattr(pipe.config, "is_distilled", False)


def run_trajectory(inputs: PassInputs, items: Sequence[Item], steps: int, guidance: float,
                   on_step: Callable[[int, bool], None]) -> None:
    """Denoise ``items`` for ``steps`` steps. ``on_step(index, conditional)`` is called after
    every transformer forward (conditional False for the CFG pass), so a capture can keep
    or drop what the forward recorded."""
    import torch

    pipe = inputs.pipe
    transformer, device = pipe.transformer, pipe._execution_device
    kw = inputs.kwargs(items)
    n, n_latent = len(items), PassInputs.latent_tokens(pipe, inputs.size)
    hidden = kw["hidden_states"]
    latents = inputs.noise(items)
    cond = hidden[:, n_latent:]  # conditioning-image latents (empty for text-only passes)
    scheduler, timesteps = fresh_schedule(pipe, steps, n_latent, device)
    cfg = uses_cfg(pipe, guidance)
    if cfg:
        negative, negative_ids = inputs.negative_prompt(n)
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents, cond.to(latents.dtype)], dim=1).to(transformer.dtype)
        timestep = t.expand(n).to(latents.dtype) / 1000
        with transformer.cache_context("cond"):
            pred = transformer(**{**kw, "hidden_states": model_input, "timestep": timestep})[0][:, :n_latent]
        on_step(i, True)
        if cfg:
            with transformer.cache_context("uncond"):
                neg = transformer(**{**kw, "hidden_states": model_input, "timestep": timestep,
                                     "encoder_hidden_states": negative, "txt_ids": negative_ids})[0][:, :n_latent]
            on_step(i, False)
            pred = neg + guidance * (pred - neg)
        latents = scheduler.step(pred, t, latents, return_dict=False)[0]
