"""Model loaders (registered by the core plugin) and the bundle they return.

This module must stay cheap to import (plugins import it at ``plantain list`` time):
torch and diffusers are imported inside ``load``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

import attrs

from ..errors import PlantainError, plugin_call


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
    family: Any = None  # plantain_core.models.family.ModelFamily; None = FLUX.2 Klein's (see family_of)

    @property
    def dtype_name(self) -> str:
        from .devices import dtype_name

        return dtype_name(self.dtype)

    @property
    def model_arg(self) -> str:
        """The ``--model`` value that loads this model again."""
        return self.id.split("/", 1)[-1] if self.is_tiny else self.id

    def describe(self) -> dict[str, Any]:
        """What a manifest records: a local folder by its name only, marked ``local`` (a
        published run carries no local path; the image cache keys on the full ``id``)."""
        from .lookup import family_of

        local = is_local_model(self.id)
        return {"name": self.name, "id": local_model_name(self.id) if local else self.id, "revision": self.revision,
                "family": family_of(self).name, "tiny": self.is_tiny, **({"local": True} if local else {})}


def is_local_model(value) -> bool:
    """Does a ``--model`` value (or a loaded model's id) name a local folder rather than a
    hub id or a registered name?"""
    value = str(value or "")
    return value.startswith(("/", ".", "~", "\\")) or os.path.isabs(value) or bool(re.match(r"[A-Za-z]:[\\/]", value))


def local_model_name(value) -> str:
    """A local folder as a manifest or card may name it: its last path component."""
    import pathlib

    return pathlib.Path(os.path.expanduser(str(value))).resolve().name or "local-model"


def is_tiny_record(model) -> bool:
    """Was a manifest's ``model`` record (untrusted) made by an embedded tiny model?"""
    if not isinstance(model, dict):
        return False
    return model.get("tiny") is True or model.get("name") == "tiny" or str(model.get("id", "")).startswith("plantain/tiny")


@attrs.frozen
class TinyModel:
    """An embedded tiny model of one family: random weights, built in code, offline."""

    stem: str  # the --model name, e.g. "tiny-flux1"
    family: Any  # plantain_core.models.family.ModelFamily
    builder: str  # "module:function" building the pipeline from a seed
    revision: str  # part of the image-cache key: bump when the builder changes
    transformer_config: str  # "module:NAME" of its transformer config (plantain units)
    text_encoder_out_layers: tuple[int, ...] = ()
    size: int = 128
    about: str = ""

    def _attr(self, ref: str):
        import importlib

        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

    def build(self, seed: int):
        return self._attr(self.builder)(seed=seed)

    def config(self) -> dict:
        return dict(self._attr(self.transformer_config))


class TinyLoader:
    """An embedded tiny model (random weights; for demos and tests); ``tiny`` is FLUX.2 Klein's."""

    def __init__(self, tiny: TinyModel | None = None):
        if tiny is None:  # the built-in plugin's "tiny" (FLUX.2 Klein), found as any loader is
            from ..plugins import builtin_registry

            tiny = builtin_registry().models["tiny"].obj.tiny
        self.tiny = tiny
        self.family = self.tiny.family
        self.description = (f"embedded tiny {self.tiny.about} (random weights, {self.tiny.size}x{self.tiny.size}, offline; "
                            f"numbers mean nothing about the real model); {self.tiny.stem}-weightsN: other random weights")
        self.NAME = re.compile(rf"(?:plantain/)?{re.escape(self.tiny.stem)}(?:-weights(\d{{1,9}}))?")

    def accepts(self, model: str) -> bool:
        return self.NAME.fullmatch(str(model).strip().lower()) is not None

    def canonical(self, model: str) -> str:
        """The one spelling of ``model`` (``TINY``, ``plantain/tiny`` and ``tiny-weights0`` are ``tiny``)."""
        match = self.NAME.fullmatch(str(model).strip().lower())
        seed = int(match[1]) if match and match[1] else 0
        return self.tiny.stem + (f"-weights{seed}" if seed else "")

    def transformer_config(self, model: str) -> tuple[dict[str, Any], str]:
        return self.tiny.config(), f"embedded {self.tiny.stem} model"

    def load(self, model: str | None = None, device: str = "auto", dtype=None, *, seed: int | None = None,
             **options) -> LoadedModel:
        from .devices import resolve_device, resolve_dtype

        start = time.perf_counter()
        if seed is None:
            match = self.NAME.fullmatch(str(model or self.tiny.stem).strip().lower())
            seed = int(match[1]) if match and match[1] else 0
        device = resolve_device(device)
        # fp32 unless asked: tiny exists for exact, reproducible checks.
        torch_dtype = resolve_dtype(dtype or "fp32", device)
        with _quiet_transformers():
            pipe = self.tiny.build(seed)
        _quiet_to(pipe, device, torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        suffix = "" if seed == 0 else f"-weights{seed}"
        return LoadedModel(
            pipeline=pipe, name=self.tiny.stem, id=f"plantain/{self.tiny.stem}{suffix}",
            revision=self.tiny.revision + suffix, device=device, dtype=torch_dtype,
            text_encoder_out_layers=self.tiny.text_encoder_out_layers, default_size=self.tiny.size, is_tiny=True,
            load_seconds=time.perf_counter() - start, family=self.family,
        )


class HubLoader:
    """One family's published checkpoints from a hub id or a local diffusers folder."""

    def __init__(self, family, hub_names: str, examples: str, default_size: int = 1024):
        self.family = family
        self.default_size = int(default_size)  # height and width when a run names none
        self.description = f"{family.description} (a hub id like {examples}, or a local folder)"
        self._names = re.compile(hub_names, re.IGNORECASE)  # matched against the repository name

    def accepts(self, model: str) -> bool:
        from . import hub

        model = str(model)
        local = hub.local_pipeline_dir(model)
        if local is not None:
            return hub.folder_pipeline_class(local) == self.family.pipeline_class
        if hub.is_hub_id(model):
            return self._names.search(model.rsplit("/", 1)[-1]) is not None
        # a bare preset name (`plantain units FLUX.1-Kontext-dev`): the family is the one it names
        if "/" in model or os.path.exists(model):
            return False
        preset = hub.find_preset(model)
        if preset is not None:
            return self._names.search(preset.stem) is not None
        found = hub.find_family_preset(model)  # a plugin family's preset names its family
        return found is not None and found[1] == self.family.name

    def transformer_config(self, model: str) -> tuple[dict[str, Any], str]:
        from . import hub

        return hub.transformer_config(model)

    def load(self, model: str, device: str = "auto", dtype=None, *, revision: str | None = None,
             offload: bool = False, **options) -> LoadedModel:
        from .devices import resolve_device, resolve_dtype
        from . import hub

        start = time.perf_counter()
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        pipe = hub.load_pipeline(self.family.pipeline_class, model, revision, torch_dtype, tiny_of(self.family))
        offload = bool(offload) and not device.startswith("cpu")
        if offload:
            # Components move to the accelerator only while they run: only the largest must fit.
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        local = hub.local_pipeline_dir(model)
        return LoadedModel(
            pipeline=pipe, name=self.family.name, id=str(local or model),
            revision=hub.resolved_revision(model, revision), device=device, dtype=torch_dtype,
            text_encoder_out_layers=self.family.text_encoder_out_layers(pipe), default_size=self.default_size,
            offload=offload, load_seconds=time.perf_counter() - start, family=self.family,
        )


def tiny_of(family) -> str:
    """The ``--model`` name of a registered tiny model of ``family`` (``tiny``, FLUX.2 Klein's,
    where the family has none): what an offline error suggests instead of the real model."""
    from ..plugins import get_registry

    for name, entry in get_registry().models.items():
        tiny = getattr(entry.obj, "tiny", None)
        if isinstance(tiny, TinyModel) and tiny.stem == name and getattr(tiny.family, "name", None) == family.name:
            return name
    return "tiny"


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' warnings while a tiny pipeline is built (a missing torchvision's
    image-processor fallback for components the tiny models never use): noise in every
    demo run. Restored afterwards; a real model's load keeps them."""
    try:
        from transformers.utils import logging as tlogging
    except ImportError:
        yield
        return
    level = tlogging.get_verbosity()
    tlogging.set_verbosity_error()
    try:
        yield
    finally:
        tlogging.set_verbosity(level)


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


class NoLoader(PlantainError):
    """No model loader accepts a ``--model`` value (it may still name a config: ``plantain units``)."""


def resolve_loader(model: str, registry=None) -> tuple[str, Any]:
    """The (name, loader) that accepts ``model``: a loader registered under that exact
    name first, then the first whose ``accepts`` says yes. The built-ins are the fallback
    when the registry supplies no model loaders at all."""
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    from .hub import check_model_value

    check_model_value(model)
    table = {name: entry.obj for name, entry in registry.models.items()}
    if not table:
        from ..plugins import builtin_registry

        table = {name: entry.obj for name, entry in builtin_registry().models.items()}
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
    weights = re.fullmatch(r"(?:plantain/)?(tiny[\w-]*?)-weights(\d+)", model.strip().lower())
    if weights and weights[1] in table and len(weights[2]) > 9:
        raise PlantainError(f"--model {model}: the weights number of {weights[1]}-weightsN has at most 9 digits")
    raise NoLoader(
        f"no model loader accepts {model!r}; pass a tiny model (tiny, tiny-flux1, tiny-sd3, ...), a hub id of a "
        f"supported family (e.g. black-forest-labs/FLUX.2-klein-base-4B) or a local diffusers folder; "
        f"loaders: {', '.join(sorted(table))} (plantain plugins lists them)"
    )


def canonical_model(model: str, registry=None) -> str:
    """``model`` as its loader spells it (a loader without ``canonical``: a local folder's
    resolved path, else as given), so that one model written two ways is seen as one."""
    name, loader = resolve_loader(model, registry)
    if callable(getattr(loader, "canonical", None)):
        return f"{name}:{plugin_call(f'model loader {name!r}: canonical({model!r})', loader.canonical, model)}"
    from .hub import local_pipeline_dir

    local = local_pipeline_dir(model)
    return f"{name}:{local or model.strip()}"


def load_model(model, device: str = "auto", dtype=None, *, registry=None, **options) -> LoadedModel:
    """Load ``model`` (a ``--model`` value, or an already loaded bundle, returned as is)."""
    if isinstance(model, LoadedModel):
        return model
    name, loader = resolve_loader(str(model), registry)
    bundle = loader.load(str(model), device, dtype, **options)
    if not isinstance(bundle, LoadedModel):
        raise PlantainError(f"model loader {name!r} returned {type(bundle).__name__}, not a LoadedModel")
    return bundle
