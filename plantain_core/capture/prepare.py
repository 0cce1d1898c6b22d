"""Preparing a run before any capture: the checks that refuse a model, device, dtype or
stimulus kind before a folder or a model is touched, and the one model load of a run.
:func:`~plantain_core.execute.execute` calls them once and hands the bundle to the runner.
May import models, rundir, config and errors."""

from __future__ import annotations

from ..config import RunConfig
from ..models.devices import check_dtype_supported, resolve_device, resolve_dtype
from ..models.loaders import LoadedModel, load_model
from .distributed import current_share


def preflight(config: RunConfig, registry=None) -> None:
    """Refuse a model no loader takes, or a device or dtype this machine cannot use,
    before a folder or a model is touched."""
    from ..models.loaders import resolve_loader

    if config.model is not None:
        resolve_loader(config.model, registry)
    dev = resolve_device(config.device)
    if config.dtype is not None:
        check_dtype_supported(dev, resolve_dtype(config.dtype, dev))


def load_for(config: RunConfig, model=None, registry=None) -> LoadedModel:
    """``model`` if it is a loaded bundle, else ``config``'s model, after :func:`preflight`."""
    if isinstance(model, LoadedModel):
        return model
    preflight(config)  # before a long model load
    return load_model(config.model, config.device, config.dtype, registry=registry, revision=config.revision,
                      offload=config.offload)


def checked_config(probe, config: RunConfig, registry=None) -> RunConfig:
    """``config`` as it will be loaded for ``probe`` (a split run's process on its own device),
    checked before any load: the device and dtype, and the family's stimulus kinds where
    the loader names its family. :func:`execute` calls it once, before the run folder exists."""
    share = current_share()
    if share is not None and config.device == "auto":  # each process of a split run on its own device (cuda:N)
        config = config.evolve(device=share.device.split(":")[0] if share.device.startswith("cpu") else share.device)
    preflight(config)
    check_family_kind(probe, config.model, registry)
    return config


def load_bundle(probe, config: RunConfig, registry=None) -> LoadedModel:
    """The model of ``config`` (as :func:`checked_config` returned it), loaded and checked
    once loaded (a loader that names no family is judged here)."""
    bundle = load_model(config.model, config.device, config.dtype, registry=registry, revision=config.revision,
                        offload=config.offload)
    check_loaded(probe, bundle)
    return bundle


def check_loaded(probe, bundle: LoadedModel) -> None:
    """A loaded bundle fits ``probe``: its device takes its dtype, its family runs the kind."""
    check_dtype_supported(bundle.device, bundle.dtype)
    check_family_kind(probe, bundle)


def check_family_kind(probe, model, registry=None) -> None:
    """Refuse, before any model is loaded, a probe whose stimulus kind ``model``'s family
    cannot run (``model``: a ``--model`` value or a loaded bundle)."""
    from ..models.family import KindRefused, guarded
    from ..models.lookup import families, family_of

    if isinstance(model, LoadedModel):
        family = family_of(model)
    elif model is None:
        return
    else:
        from ..models.loaders import resolve_loader

        name, loader = resolve_loader(str(model), registry)
        if getattr(loader, "family", None) is None:  # a loader that names no family: judged once loaded
            return
        family = guarded(loader.family, f"model loader {name!r}")
    has_images = any(s.image is not None for p in probe.pairs for s in p.stimuli())
    try:
        family.check_kind(probe.spec.generator, has_images, probe.spec.name)
    except KindRefused as exc:
        others = [f.name for f in families() if exc.kind in f.kinds]
        if not others:
            raise
        raise KindRefused(f"{exc}; families that run {exc.kind}: {', '.join(others)}", exc.kind) from None
