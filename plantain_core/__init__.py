"""plantain: paired-stimulus, per-unit attention probes for diffusion transformers.

The public API is what this module exports (docs/python-api.md for notebooks,
docs/writing-a-plugin.md for plugin authors). Importing it is cheap: numpy, torch and
diffusers are imported only when a name that needs them is first used.
"""

from __future__ import annotations

import importlib

import pluggy

from .errors import PlantainError, PluginError, SpecError
from .hookspecs import PROJECT
from .interpretation import Interpretation, Section
from .spec import ModelSettings, ProbeSpec
from .stimuli import ImageSource, Pair, Stimulus

__version__ = "0.1.0"

#: Marker for plugin hook implementations (project name ``plantain``).
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Public names loaded on first use (they import numpy or more): name -> module.
_LAZY = {
    "probe": "api", "run": "api", "load_run": "api", "Run": "api", "Captures": "api",
    "Probe": "probes", "RunConfig": "config", "ConfigError": "config", "InterpreterFailed": "execute",
    "ProbeResult": "analysis", "LayoutStats": "stats", "BlockStats": "stats",
    "read_pairs": "pairtable", "RawPair": "pairtable", "check_text": "pairtable",
    "ModelFamily": "family", "TEXT_KINDS": "family", "IMAGE_KINDS": "family", "ALL_KINDS": "family",
    "LoadedModel": "models.loaders", "TinyModel": "models.loaders",
    "TinyLoader": "models.loaders", "HubLoader": "models.loaders", "BlockInfo": "models.layouts",
    "Site": "models.layouts",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plantain_core' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "hookimpl",
    "ALL_KINDS",
    "IMAGE_KINDS",
    "TEXT_KINDS",
    "BlockStats",
    "Captures",
    "ConfigError",
    "BlockInfo",
    "HubLoader",
    "ImageSource",
    "Interpretation",
    "InterpreterFailed",
    "LayoutStats",
    "LoadedModel",
    "ModelFamily",
    "ModelSettings",
    "Pair",
    "PlantainError",
    "PluginError",
    "Probe",
    "ProbeResult",
    "ProbeSpec",
    "RawPair",
    "Run",
    "RunConfig",
    "Section",
    "Site",
    "SpecError",
    "Stimulus",
    "TinyLoader",
    "TinyModel",
    "check_text",
    "load_run",
    "probe",
    "read_pairs",
    "run",
    "__version__",
]
