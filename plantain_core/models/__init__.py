"""Models: loaders for ``--model`` values, the built-in families (FLUX.2, FLUX.1, SD3) with
their embedded tiny models, unit layouts.

Importing this package is cheap; torch and diffusers load when a model does.
"""

from __future__ import annotations

from .loaders import HubLoader, KleinLoader, LoadedModel, TinyLoader, TinyModel, load_model, resolve_loader

__all__ = ["HubLoader", "KleinLoader", "LoadedModel", "TinyLoader", "TinyModel", "load_model", "resolve_loader"]
