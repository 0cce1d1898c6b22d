"""Models, below everything else: the model-family contract (``family``) and finding a
registered family (``lookup``), loaders for ``--model`` values (``loaders``, ``hub``),
unit layouts (``layouts``), devices and dtypes (``devices``), stopping a forward pass
early (``early_exit``) and the builders of the embedded tiny pipelines (``tiny*``, random
weights built in code, family-neutral so third-party families build theirs from them).

The built-in families (FLUX.2, FLUX.1, SD3) and their loaders are plugins
(``plantain_plugins.families``), registered through the same hooks as a third party's;
nothing here imports them. May import: ``errors``, ``plugins`` (the registry).
Importing this package is cheap; torch and diffusers load when a model does.
"""

from __future__ import annotations

from .loaders import HubLoader, LoadedModel, TinyLoader, TinyModel, load_model, resolve_loader

__all__ = ["HubLoader", "LoadedModel", "TinyLoader", "TinyModel", "load_model", "resolve_loader"]


def __getattr__(name: str):
    if name == "KleinLoader":  # 0.1 exported it here; FLUX.2 Klein's loader is the built-in plugin's now
        import importlib
        import warnings

        warnings.warn("plantain_core.models.KleinLoader is deprecated and goes in 0.3; "
                      "import it from plantain_plugins.families.builtin", DeprecationWarning, stacklevel=2)
        return importlib.import_module("plantain_plugins.families.builtin").KleinLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
