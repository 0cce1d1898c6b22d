"""plantain: paired-stimulus, per-unit attention probes for diffusion transformers.

The public API for plugin authors is what this module exports. Importing it is cheap:
torch and diffusers are imported only when a probe runs.
"""

from __future__ import annotations

import pluggy

from .errors import PlantainError, PluginError, SpecError
from .hookspecs import PROJECT
from .interpretation import Interpretation, Section
from .spec import ModelSettings, ProbeSpec
from .stimuli import ImageSource, Pair, Stimulus

__version__ = "0.1.0"

#: Marker for plugin hook implementations (project name ``plantain``).
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "hookimpl",
    "ImageSource",
    "Interpretation",
    "ModelSettings",
    "Pair",
    "PlantainError",
    "PluginError",
    "ProbeSpec",
    "Section",
    "SpecError",
    "Stimulus",
    "__version__",
]
