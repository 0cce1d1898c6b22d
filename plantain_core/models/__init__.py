"""Models: loaders for ``--model`` values, the embedded tiny FLUX.2 Klein, unit layouts.

Importing this package is cheap; torch and diffusers load when a model does.
"""

from __future__ import annotations

from .loaders import BUILTIN_LOADERS, KleinLoader, LoadedModel, TinyLoader, load_model, resolve_loader

__all__ = ["BUILTIN_LOADERS", "KleinLoader", "LoadedModel", "TinyLoader", "load_model", "resolve_loader"]
