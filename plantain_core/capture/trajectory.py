"""The denoising trajectory (``--steps K``): the pipeline's own loop, captured at every step.

For K > 1 a batch of passes runs the loop the pipeline's ``__call__`` runs for
``num_inference_steps=K``: its scheduler set as the model family says (FLUX.2: sigmas
linspace(1, 1/K, K) and the empirical mu), the scheduler protocol of the loop
(``scale_model_input``, one transformer forward per step, ``step`` with the pipeline's
step arguments: the family's hooks of the same names), and where the family runs
classifier-free guidance (FLUX.2 Klein base, SD3 at guidance > 1) the unconditional pass
with the empty prompt (never captured). A and B of a pair start from the same noise and then
follow their own latents. No VAE decode. K = 1 keeps the single probe pass of
:mod:`plantain_core.capture.passes` (byte-identical to runs before trajectories existed).
"""

from __future__ import annotations

from typing import Callable, Sequence

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
    or drop what the forward recorded.

    Each step is ``__call__``'s: the latents scaled by the scheduler (``scale_model_input``),
    the timestep as the loop builds it (``loop_timestep``), the conditional forward, the
    unconditional one and ``guide`` where the family runs CFG, then ``step`` with the
    pipeline's step arguments (``step_kwargs``)."""
    import torch

    pipe, family = inputs.pipe, inputs.family
    transformer, device = pipe.transformer, pipe._execution_device
    n, n_latent = len(items), inputs.n_latent
    text, ids = inputs.text(items), inputs.ids(items)
    scheduler, timesteps = family.schedule(pipe, steps, n_latent, device)
    latents, generators = inputs.start(items, scheduler)
    groups = step_groups(scheduler, [family.step_kwargs(pipe, g) for g in generators])
    cond = inputs.conditioning(items)  # conditioning-image latents (None for text-only passes)
    if cond is not None:
        cond = cond.to(transformer.dtype).to(latents.dtype)  # as the batch's hidden states carry it
    cfg = family.uses_cfg(pipe, guidance)
    if cfg:
        negative = inputs.negative_text(n)
    for i, t in enumerate(timesteps):
        scaled = torch.cat([family.scale_model_input(s, latents[rows], t) for s, rows, _ in groups], dim=0)
        hidden = family.model_input(scaled, cond).to(transformer.dtype)
        timestep = family.loop_timestep(t, latents)
        with cache_context(transformer, "cond"):
            kw = family.transformer_kwargs(pipe, hidden, timestep, text, ids, guidance)
            pred = predict(family, transformer, kw, n_latent, latents.shape)
        on_step(i, True)
        if cfg:
            with cache_context(transformer, "uncond"):
                kw = family.transformer_kwargs(pipe, hidden, timestep, negative, ids, guidance)
                neg = predict(family, transformer, kw, n_latent, latents.shape)
            on_step(i, False)
            pred = family.guide(pred, neg, guidance, i)
        latents = torch.cat([family.step(s, pred[rows], t, latents[rows], skw) for s, rows, skw in groups], dim=0)


def step_groups(scheduler, kwargs: list[dict]) -> list[tuple]:
    """(scheduler, rows, step kwargs) that step together: the whole batch on one scheduler,
    unless the step draws from each stimulus's generator (an ancestral or SDE scheduler):
    then each row steps alone on its own copy, as its own ``__call__`` does, so the noise it
    adds is its own whatever the batch."""
    import copy

    import torch

    if not any(isinstance(v, torch.Generator) for kw in kwargs for v in kw.values()):
        return [(scheduler, slice(0, len(kwargs)), kwargs[0])]
    return [(copy.deepcopy(scheduler), slice(k, k + 1), kw) for k, kw in enumerate(kwargs)]
