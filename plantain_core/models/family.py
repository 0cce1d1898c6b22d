"""The model-family contract: what a diffusion-transformer family supplies to plantain.

A model family (FLUX.2 Klein, FLUX.1, SD3, ...) is an object a plugin registers with
``plantain_register_families``; its model loaders return :class:`LoadedModel` bundles
whose ``family`` is that object. The core asks the family, never the pipeline class:

- **capture sites** (:meth:`ModelFamily.sites`): which projections take each attention's
  output, how many heads of what width they carry, which trailing features are MLP
  channels, and which stream each is (``image``/``text`` projections of joint blocks,
  ``single`` projections over text tokens followed by image tokens);
- **probe passes** (``encode_prompts``, ``encode_image``, ``noise``, ``model_input``,
  ``transformer_kwargs``, ``prediction``): the transformer inputs of one stimulus, as the
  family's pipeline ``__call__`` builds them;
- **trajectory steps** (``schedule``, ``uses_cfg``, and the scheduler protocol of ``__call__``'s
  loop: ``scale_model_input``, ``loop_timestep``, ``guide``, ``step_kwargs``, ``step``);
- **stimulus kinds** (``kinds``): a probe of another kind is refused before any work.

docs/writing-a-model-plugin.md walks through a family; the built-in ones (FLUX.2, FLUX.1,
SD3) are plugins like any other (``plantain_plugins.families``): this module imports none of
them, and finding a registered family is :mod:`plantain_core.models.lookup`'s job. What a
family's methods return is checked in :mod:`plantain_core.models.family_checks` (its
``checked_sites`` and ``RETURNS`` are importable from here too).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from ..errors import PlantainError, is_out_of_memory, plugin_call
from .family_checks import RETURNS, checked_sites  # noqa: F401 (public here too)

TEXT_KINDS = ("text-pair",)
#: Kinds whose stimuli carry a conditioning image (the reference image or the pair's images).
IMAGE_KINDS = ("fixed-image-text-pair", "image-pair")
ALL_KINDS = TEXT_KINDS + IMAGE_KINDS


class KindRefused(PlantainError):
    """A probe of a stimulus ``kind`` its model family cannot run. The contract knows no
    registry: whoever looks families up (the runner) adds which registered ones run it."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class ModelFamily:
    """Base class of model families; the defaults fit FLUX-style flow-matching pipelines.

    A subclass sets the class attributes and implements :meth:`sites` and the pass
    methods its pipeline differs in. Methods receive the diffusers pipeline (``pipe``)
    or the loaded bundle; they must not keep state between calls.
    """

    #: registry name, e.g. ``flux2-klein``
    name: str = ""
    #: one line for ``plantain plugins`` and error messages
    description: str = ""
    #: the diffusers pipeline class (a local folder's ``model_index.json`` names it)
    pipeline_class: str = ""
    #: the diffusers transformer class (``plantain units`` builds it on the meta device)
    transformer_class: str = ""
    #: stimulus kinds (generator names) this family runs
    kinds: tuple[str, ...] = TEXT_KINDS
    #: text tokens of the transformer's text stream (prompts are padded to it)
    text_tokens: int = 512
    #: prompt tokens (of :meth:`prompt_tokens`) the text encoder reads; the rest is cut
    prompt_limit: int = 512
    #: diffusers divides the timestep by this before the transformer (FLUX: 1000; SD3: 1)
    timestep_scale: float = 1000.0
    #: lines for ``plantain units`` and the card: what the units of this family are
    unit_notes: tuple[str, ...] = ()
    #: the card's hub tag for the model (default: ``name``)
    card_tag: str = ""
    #: N where ``__call__`` cannot run one step (Qwen-Image: its 1-step schedule is 0/0): the
    #: probe pass is then step 0 of an N-step ``__call__``, and the conformance kit compares it so
    reference_steps_for_one: int = 1

    def padding_note(self) -> str:
        """The card's sentence (no final period; the card goes on ", so prompt length and padding
        can move unit RMS") on how prompts fill the text stream and whether a mask hides the
        padding. The default claims neither: a family says what its pipeline does (FLUX: padded
        to 512 tokens with no attention mask)."""
        return (f"The text stream holds up to {self.text_tokens} tokens; model family {self.name} does not say how "
                "prompts are padded or whether an attention mask hides the padding")

    def presets(self) -> dict:
        """``{hub id: transformer config dict}`` of the published checkpoints this family
        ships, so ``plantain units <hub id>`` counts them offline (read with
        :func:`plantain_core.models.hub.json_presets`); plantain's own FLUX and SD3 ones are
        ``models/presets/*.json``."""
        return {}

    def __repr__(self) -> str:
        return f"<model family {self.name}>"

    # -- capture sites ------------------------------------------------------------------
    def sites(self, transformer) -> list:
        """The capture sites of ``transformer`` (weights may be on meta), as
        :class:`plantain_core.models.layouts.Site` in forward order. A single-stream
        site's input must hold the text tokens first, then the image tokens."""
        raise NotImplementedError

    # -- prompts and images ---------------------------------------------------------------
    def prompt_tokens(self, pipe, prompt: str) -> list[int]:
        """The token ids of ``prompt`` in the text stream (before padding or the cut at
        ``text_tokens``): token counts and the length placebo read them."""
        raise NotImplementedError

    def encode_prompts(self, bundle, prompts: Sequence[str]) -> tuple[dict, dict]:
        """``({prompt: {kwarg: tensor (1, ...)}}, shared)``: each prompt's transformer
        inputs (kept on the host) and the inputs every prompt shares (text ids)."""
        raise NotImplementedError

    def encode_image(self, bundle, image) -> tuple[Any, Any]:
        """(latents (1, tokens, channels), position ids) of one conditioning image."""
        raise PlantainError(f"model family {self.name} takes no conditioning images")

    def text_encoder_out_layers(self, pipe) -> tuple[int, ...]:
        """Text-encoder layers the prompt embedding stacks (FLUX.2); () where it is one output."""
        return ()

    def call_kwargs(self, bundle, size: tuple[int, int]) -> dict:
        """Extra keyword arguments of the pipeline's ``__call__`` when plantain generates
        an image of ``size`` (height, width) with it (reference images of image-conditioned probes)."""
        return {}

    def pipeline_guidance(self, guidance: float) -> dict:
        """The keyword arguments of ``__call__`` that run plantain's ``--guidance`` (``uncond +
        guidance * (cond - uncond)`` where :meth:`uses_cfg` holds): ``guidance_scale`` by default;
        a pipeline with another convention maps it (Z-Image's ``guidance_scale`` is ``guidance - 1``)."""
        return {"guidance_scale": guidance}

    def text_length(self, args: tuple, kwargs: dict):
        """The text tokens of one transformer forward, from its arguments as the pipeline or
        plantain calls it (the capture hooks read it to split single-stream sites): the length of
        ``encoder_hidden_states`` (keyword or second positional argument) by default; None where
        the forward has no such text-first stream (the family then runs ``--token-scope all`` only)."""
        ehs = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        return None if ehs is None else int(ehs.shape[1])

    # -- one pass -----------------------------------------------------------------------------
    def size_multiple(self, pipe) -> int:
        """Image height and width must be multiples of this."""
        return pipe.vae_scale_factor * 2

    def latent_tokens(self, pipe, size: tuple[int, int]) -> int:
        """Image tokens of the noisy latent at ``size`` (height, width)."""
        m = self.size_multiple(pipe)
        return (size[0] // m) * (size[1] // m)

    def noise(self, pipe, generator, size: tuple[int, int], dtype, device) -> tuple[Any, Any]:
        """(initial latents of one stimulus, their position ids), as ``prepare_latents``."""
        raise NotImplementedError

    def model_input(self, latents, cond):
        """The transformer's ``hidden_states``: the latents, followed by the conditioning
        image's latents along the sequence when there is one."""
        import torch

        return latents if cond is None else torch.cat([latents, cond], dim=1)

    def join_ids(self, latent_ids, image_ids):
        """Position ids of latents followed by conditioning latents."""
        import torch

        return latent_ids if image_ids is None else torch.cat([latent_ids, image_ids], dim=-2)

    def text_kwargs(self, text: dict, shared: dict, n: int) -> dict:
        """The transformer's text inputs for a batch of ``n`` (``text``: batched prompt inputs)."""
        raise NotImplementedError

    def transformer_kwargs(self, pipe, hidden, timestep, text: dict, ids, guidance: float) -> dict:
        """Every keyword argument of one transformer forward (``timestep`` as the pipeline's
        loop has it, before the division by :attr:`timestep_scale`)."""
        raise NotImplementedError

    def scale_timestep(self, t):
        """The timestep as the transformer takes it."""
        return t / self.timestep_scale

    def prediction(self, out, n_latent: int):
        """The prediction for the noisy latent in the transformer's output."""
        return out[:, :n_latent]

    # -- the denoising loop -----------------------------------------------------------------
    def schedule(self, pipe, steps: int, image_seq_len: int, device):
        """(a fresh copy of the pipeline's scheduler set for ``steps``, its timesteps), as
        ``__call__`` sets them for ``num_inference_steps=steps``."""
        raise NotImplementedError

    def uses_cfg(self, pipe, guidance: float) -> bool:
        """Does ``__call__`` run an unconditional pass (classifier-free guidance) at ``guidance``?"""
        return False

    # The loop's scheduler protocol, one hook per call ``__call__`` makes between forwards
    # (plantain_core.capture.trajectory runs them in this order; the probe pass runs the first two).
    def scale_model_input(self, scheduler, latents, t):
        """The latents as the transformer takes them at ``t``: ``scheduler.scale_model_input(latents,
        t)`` as ``__call__`` calls it (k-diffusion schedulers, e.g. ``EulerDiscreteScheduler``,
        divide by sqrt(sigma^2 + 1)); unchanged where the scheduler has no such method (FLUX's
        flow matching). A pipeline that never calls it, whatever its scheduler, returns ``latents``."""
        scale = getattr(scheduler, "scale_model_input", None)
        return latents if scale is None else scale(latents, t)

    def loop_timestep(self, t, latents):
        """The ``timestep`` handed to :meth:`transformer_kwargs` from the scheduler's ``t`` (one
        0-d entry of the timesteps) for the batch ``latents``, as ``__call__``'s loop builds it:
        FLUX's ``t.expand(batch).to(latents.dtype)`` by default (PixArt keeps the scheduler's
        dtype; a 16-bit cast turns 999 into 1000)."""
        return t.expand(latents.shape[0]).to(latents.dtype)

    def guide(self, cond, uncond, guidance: float, index: int):
        """The prediction at step ``index`` from the conditional and the unconditional one when
        :meth:`uses_cfg` holds: ``uncond + guidance * (cond - uncond)`` by default (a pipeline
        with another formula, a renormalisation or a truncation says so here)."""
        return uncond + guidance * (cond - uncond)

    def step_kwargs(self, pipe, generator) -> dict:
        """The extra keyword arguments of ``scheduler.step`` as ``__call__`` passes them, for a
        stimulus whose noise ``generator`` drew (it goes on drawing where the scheduler adds noise).
        Default: the pipeline's own ``prepare_extra_step_kwargs(generator, eta=0.0)`` where it has
        one (``eta`` / ``generator`` as the scheduler takes them), else none (FLUX, SD3)."""
        prepare = getattr(pipe, "prepare_extra_step_kwargs", None)
        return {} if prepare is None else dict(prepare(generator, 0.0))

    def step(self, scheduler, pred, t, latents, kwargs: dict):
        """The latents after one step: ``scheduler.step(pred, t, latents, **kwargs)`` and whatever
        else ``__call__`` does to the latents before the next forward (a dtype cast, ...)."""
        return scheduler.step(pred, t, latents, **kwargs, return_dict=False)[0]

    # -- stimulus kinds -----------------------------------------------------------------------
    def check_kind(self, kind: str, has_images: bool, probe: str = "") -> None:
        """Refuse a probe this family cannot run; ``kind`` is its generator's name (a kind
        that is not a built-in one is judged by whether its stimuli carry images)."""
        if kind in self.kinds:
            return
        if kind not in ALL_KINDS and not (has_images and not set(IMAGE_KINDS) & set(self.kinds)):
            return
        what = "conditioning images" if kind in IMAGE_KINDS or has_images else "its stimuli"
        raise KindRefused(
            f"probe {probe or '?'!r} is {kind} ({what}), which model family {self.name} ({self.description}) "
            f"cannot run; {self.name} runs: {', '.join(self.kinds)}", kind)


def encode_in_chunks(prompts: Sequence[str], encode, chunk: int = 8) -> dict:
    """``{prompt: {kwarg: tensor (1, ...)}}`` on the host from ``encode(chunk of prompts) ->
    {kwarg: tensor (len(chunk), ...)}``: a helper for :meth:`ModelFamily.encode_prompts`.
    Kept on the host: at 7.5 MiB per prompt (Klein 4B, bf16) a 1,000-pair probe's
    embeddings would hold 15 GiB of GPU memory; a batch moves only its own."""
    out: dict = {}
    for k in range(0, len(prompts), chunk):
        part = list(prompts[k:k + chunk])
        batched = {key: value.cpu() for key, value in encode(part).items()}
        out.update({p: {key: value[j:j + 1] for key, value in batched.items()} for j, p in enumerate(part)})
    return out


def fresh_schedule(pipe, steps: int, device, retrieve_timesteps, **kwargs):
    """A copy of the pipeline's scheduler set with its own ``retrieve_timesteps(scheduler,
    steps, device, **kwargs)`` (``set_timesteps`` mutates; image generation uses the
    original), and the timesteps: a helper for :meth:`ModelFamily.schedule`."""
    import copy

    scheduler = copy.deepcopy(pipe.scheduler)
    timesteps, _ = retrieve_timesteps(scheduler, steps, device, **kwargs)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler, timesteps


def flow_sigmas(pipe, steps: int):
    """FLUX's sigmas for ``steps``: linspace(1, 1/steps, steps), None where the scheduler
    makes its own (``use_flow_sigmas``)."""
    import numpy as np

    return None if getattr(pipe.scheduler.config, "use_flow_sigmas", False) else np.linspace(1.0, 1 / steps, steps)


#: What a registered family must have beyond the base class's defaults.
REQUIRED = ("sites", "prompt_tokens", "encode_prompts", "noise", "text_kwargs", "transformer_kwargs", "schedule")


def contract_problem(family) -> str | None:
    """Why ``family`` does not fulfil the contract (checked when a plugin registers it), else None."""
    import re

    for attr in ("name", "description", "pipeline_class", "transformer_class"):
        if not isinstance(getattr(family, attr, None), str) or not getattr(family, attr):
            return f"`{attr}` must be a non-empty string"
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", family.name):  # it is printed in cards, tables, errors
        return f"`name` {family.name[:80]!r} must be lower-case letters, digits, '.', '_' or '-' (at most 64)"
    if not family.description.isprintable():
        return "`description` must be one printable line"
    kinds = getattr(family, "kinds", None)
    if not isinstance(kinds, tuple) or not kinds or not all(isinstance(k, str) and k for k in kinds):
        return "`kinds` must be a non-empty tuple of stimulus kind names"
    for attr in ("text_tokens", "prompt_limit"):
        value = getattr(family, attr, None)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1 << 20:
            return f"`{attr}` must be a positive integer"
    notes = getattr(family, "unit_notes", ())
    if not isinstance(notes, tuple) or not all(isinstance(n, str) for n in notes):
        return "`unit_notes` must be a tuple of strings (one line each)"
    if not isinstance(getattr(family, "card_tag", ""), str):
        return "`card_tag` must be a string"
    steps = getattr(family, "reference_steps_for_one", 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
        return "`reference_steps_for_one` must be a positive integer"
    for method in REQUIRED:
        impl = getattr(type(family), method, None)
        if not callable(impl) or impl is getattr(ModelFamily, method, None):
            return f"it does not implement `{method}`"
    for attr, base in vars(ModelFamily).items():
        if callable(base) and not attr.startswith("_") and not callable(getattr(family, attr, None)):
            return f"`{attr}` must be a method, not {type(getattr(family, attr, None)).__name__}"
    return None


class GuardedFamily:
    """A model family as the core calls it: a plugin's exception or malformed return value
    becomes one PlantainError naming the family and the method, instead of a traceback deep
    inside a pass. Attributes pass through; the family's own internal calls are its business."""

    def __init__(self, family):
        object.__setattr__(self, "_family", family)

    def __getattr__(self, attr):
        value = getattr(self._family, attr)
        if attr.startswith("_") or not callable(value) or not hasattr(ModelFamily, attr):
            return value
        return functools.partial(self._call, attr, value)

    def __setattr__(self, attr, value):
        raise AttributeError("a model family is read-only to the core")

    def __repr__(self) -> str:
        return repr(self._family)

    def _call(self, attr, method, *args, **kwargs):
        where = f"model family {self._family.name!r}: {attr}()"
        try:
            value = plugin_call(where, method, *args, **kwargs)
        except BaseException as exc:
            if not is_out_of_memory(exc):
                raise
            raise PlantainError(f"{where} ran out of memory ({type(exc).__name__}); try a smaller --batch-size or "
                                "--height/--width") from exc
        check = RETURNS.get(attr)
        problem = check(value, args) if check else None
        if problem:
            raise PlantainError(f"{where} {problem} (got {type(value).__name__})")
        return value


def guarded(family, owner: str = "") -> GuardedFamily:
    """``family`` checked against the contract and wrapped in :class:`GuardedFamily`
    (``owner``: who supplied it, for the message, e.g. ``model loader 'x'``)."""
    if isinstance(family, GuardedFamily):
        return family
    known = _GUARDED.get(id(family))
    if known is not None and known._family is family:
        return known  # checked once: family_of runs on every pass
    problem = contract_problem(family)
    if problem:
        raise PlantainError(f"{owner or 'a plugin'} supplies a model family that breaks the contract "
                            f"({type(family).__name__}): {problem}; see docs/writing-a-model-plugin.md")
    _GUARDED[id(family)] = wrapped = GuardedFamily(family)
    return wrapped


#: id(family) -> its GuardedFamily (which holds the family, so the id is not reused meanwhile)
_GUARDED: dict[int, GuardedFamily] = {}
