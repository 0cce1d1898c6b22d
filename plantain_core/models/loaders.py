"""Model loaders (registered by the core plugin) and the bundle they return.

This module must stay cheap to import (plugins import it at ``plantain list`` time):
torch and diffusers are imported inside ``load``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import attrs

from ..errors import PlantainError


@attrs.define
class LoadedModel:
    """A loaded pipeline and what a run manifest records about it."""

    pipeline: Any
    name: str  # the loader's registry name, e.g. "tiny" or "flux2-klein"
    id: str  # hub id, local folder, or "plantain/tiny"
    revision: str | None
    device: str
    dtype: Any  # torch.dtype
    text_encoder_out_layers: tuple[int, ...] = (9, 18, 27)
    default_size: int = 1024
    offload: bool = False
    is_tiny: bool = False
    load_seconds: float = 0.0

    @property
    def dtype_name(self) -> str:
        from ..devices import dtype_name

        return dtype_name(self.dtype)

    @property
    def model_arg(self) -> str:
        """The ``--model`` value that loads this model again."""
        return self.id.split("/", 1)[-1] if self.is_tiny else self.id

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "revision": self.revision}


class TinyLoader:
    """The embedded tiny FLUX.2 Klein (random weights; for demos and tests)."""

    description = ("embedded tiny FLUX.2 Klein (random weights, 128x128, offline; numbers mean nothing about FLUX); "
                   "tiny-weightsN: the same architecture with other random weights")
    NAME = re.compile(r"(?:plantain/)?tiny(?:-weights(\d{1,9}))?")

    def accepts(self, model: str) -> bool:
        return self.NAME.fullmatch(str(model).strip().lower()) is not None

    def load(self, model: str = "tiny", device: str = "auto", dtype=None, *, seed: int | None = None,
             **options) -> LoadedModel:
        from ..devices import resolve_device, resolve_dtype
        from . import tiny

        start = time.perf_counter()
        if seed is None:
            match = self.NAME.fullmatch(str(model).strip().lower())
            seed = int(match[1]) if match and match[1] else 0
        device = resolve_device(device)
        # fp32 unless asked: tiny exists for exact, reproducible checks.
        torch_dtype = resolve_dtype(dtype or "fp32", device)
        pipe = tiny.build_tiny_pipeline(seed=seed)
        _quiet_to(pipe, device, torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        revision = tiny.TINY_REVISION if seed == 0 else f"{tiny.TINY_REVISION}-weights{seed}"
        return LoadedModel(
            pipeline=pipe, name="tiny", id=tiny.TINY_ID if seed == 0 else f"{tiny.TINY_ID}-weights{seed}",
            revision=revision, device=device, dtype=torch_dtype,
            text_encoder_out_layers=tiny.TEXT_OUT_LAYERS, default_size=tiny.TINY_SIZE, is_tiny=True,
            load_seconds=time.perf_counter() - start,
        )


class KleinLoader:
    """FLUX.2 Klein (4B/9B, base or distilled) from a hub id or a local diffusers folder."""

    description = "FLUX.2 Klein via diffusers Flux2KleinPipeline (hub id with 'klein' in it, or a local folder)"

    def accepts(self, model: str) -> bool:
        from . import klein

        model = str(model)
        local = klein.local_pipeline_dir(model)
        if local is not None:
            return klein.is_klein_folder(local)
        return klein.is_hub_id(model) and "klein" in model.lower()

    def load(self, model: str, device: str = "auto", dtype=None, *, revision: str | None = None,
             offload: bool = False, **options) -> LoadedModel:
        from ..devices import resolve_device, resolve_dtype
        from . import klein

        start = time.perf_counter()
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        pipe = klein.load_klein_pipeline(model, revision, torch_dtype)
        offload = bool(offload) and not device.startswith("cpu")
        if offload:
            # Components move to the accelerator only while they run: only the largest must fit.
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        local = klein.local_pipeline_dir(model)
        return LoadedModel(
            pipeline=pipe, name="flux2-klein", id=str(local or model),
            revision=klein.resolved_revision(model, revision), device=device, dtype=torch_dtype,
            text_encoder_out_layers=klein.text_encoder_out_layers(pipe), default_size=klein.DEFAULT_SIZE, offload=offload,
            load_seconds=time.perf_counter() - start,
        )


def _quiet_to(pipe, device: str, dtype) -> None:
    """Move/cast the tiny pipeline; diffusers warns on every dtype cast via ``to()``
    (meant for half-loaded checkpoints), which is noise for weights built in code."""
    import torch
    from diffusers.utils import logging as dlogging

    if dtype == torch.float32:
        pipe.to(device)
        return
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        pipe.to(device=device, dtype=dtype)
    finally:
        dlogging.set_verbosity(level)


BUILTIN_LOADERS = {"tiny": TinyLoader(), "flux2-klein": KleinLoader()}


def resolve_loader(model: str, registry=None) -> tuple[str, Any]:
    """The (name, loader) that accepts ``model``: a loader registered under that exact
    name first, then the first whose ``accepts`` says yes. The built-ins are the fallback
    when the registry supplies no model loaders at all."""
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    table = {name: entry.obj for name, entry in registry.models.items()}
    if not table:
        table = dict(BUILTIN_LOADERS)
    if model in table:
        return model, table[model]
    for name, loader in table.items():
        try:
            if loader.accepts(model):
                return name, loader
        except Exception as exc:  # a plugin's accepts() bug must not hide the others
            raise PlantainError(f"model loader {name!r} failed on {model!r}: {type(exc).__name__}: {exc}") from None
    if model.startswith(("/", ".", "~")) and not os.path.exists(os.path.expanduser(model)):
        raise PlantainError(f"--model: folder not found: {model}")
    raise PlantainError(
        f"no model loader accepts {model!r}; pass 'tiny', a FLUX.2 Klein hub id "
        f"(e.g. black-forest-labs/FLUX.2-klein-base-4B) or a local diffusers folder; loaders: {', '.join(sorted(table))}"
    )


def load_model(model, device: str = "auto", dtype=None, *, registry=None, **options) -> LoadedModel:
    """Load ``model`` (a ``--model`` value, or an already loaded bundle, returned as is)."""
    if isinstance(model, LoadedModel):
        return model
    name, loader = resolve_loader(str(model), registry)
    bundle = loader.load(str(model), device, dtype, **options)
    if not isinstance(bundle, LoadedModel):
        raise PlantainError(f"model loader {name!r} returned {type(bundle).__name__}, not a LoadedModel")
    return bundle
