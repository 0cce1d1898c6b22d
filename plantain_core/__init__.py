"""plantain: paired-stimulus, per-unit attention probes for diffusion transformers.

The public API is what this module exports (docs/python-api.md for notebooks,
docs/writing-a-plugin.md for plugin authors). Importing it is cheap: numpy, torch and
diffusers are imported only when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

import pluggy

from .errors import (ConfoundWarning, PlantainError, PlantainWarning, PluginError, SmallSampleWarning, SpecError,
                     SpecificityWarning, TruncationWarning)
from .hookspecs import PROJECT
from .report.interpretation import Interpretation, Section
from .spec.probe_spec import ModelSettings, ProbeSpec
from .spec.stimuli import ImageSource, Pair, Stimulus

__version__ = "0.1.0"

#: Marker for plugin hook implementations (project name ``plantain``).
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Public names loaded on first use (they import numpy or more): name -> module.
_LAZY = {
    "probe": "api", "run": "api", "load_run": "api", "Run": "api", "Captures": "api", "load_model": "api",
    "compare": "api", "sweep": "api", "load_sweep": "api", "Sweep": "api",
    "Probe": "spec.probes", "RunConfig": "config", "ConfigError": "config", "InterpreterFailed": "execute",
    "ProbeResult": "report.analysis", "LayoutStats": "stats.engine", "BlockStats": "stats.engine",
    "read_pairs": "spec.pairfile", "RawPair": "spec.pairtable", "check_text": "spec.pairtable",
    "ModelFamily": "models.family", "TEXT_KINDS": "models.family", "IMAGE_KINDS": "models.family",
    "ALL_KINDS": "models.family", "LoadedModel": "models.loaders", "TinyModel": "models.loaders",
    "TinyLoader": "models.loaders", "HubLoader": "models.loaders", "BlockInfo": "models.layouts",
    "Site": "models.layouts",
}


#: Modules of 0.1 that moved into packages: old name -> where its names live now (a leading
#: dot: inside plantain_core). Importing an old name works until 0.3, with a DeprecationWarning.
_MOVED = {
    "spec": ('.spec.probe_spec',),
    "pairfile": ('.spec.pairfile',),
    "pairtable": ('.spec.pairtable', '.spec.pairfile'),
    "catalog": ('.spec.catalog',),
    "probes": ('.spec.probes',),
    "stimuli": ('.spec.stimuli',),
    "family": ('.models.family', '.models.lookup'),
    "devices": ('.models.devices',),
    "early_exit": ('.models.early_exit',),
    "capture": ('.capture.hooks',),
    "passes": ('.capture.passes',),
    "runner": ('.capture.runner', '.capture.prepare'),
    "run_records": ('.capture.run_records',),
    "trajectory": ('.capture.trajectory',),
    "placebo": ('.capture.placebo', '.report.analysis'),
    "images": ('.capture.images',),
    "distributed": ('.capture.distributed',),
    "stats": ('.stats.engine',),
    "checks": ('.stats.checks',),
    "common_mode": ('.stats.common_mode',),
    "freedman_lane": ('.stats.freedman_lane',),
    "power": ('.stats.power',),
    "splithalf": ('.stats.splithalf',),
    "across_steps": ('.stats.across_steps',),
    "trends": ('.stats.trends',),
    "results": ('.stats.results', '.stats.engine'),
    "analysis": ('.report.analysis',),
    "compare": ('.report.compare',),
    "interpretation": ('.report.interpretation',),
    "causal": ('.causal.effects',),
    "causal_check": ('.causal.check',),
    "causal_stats": ('.causal.stats',),
    "causal_plan": ('.causal.plan',),
    "attribution": ('.causal.attribution',),
    "unit_sets": ('.causal.unit_sets',),
    "sweep": ('.sweep.run',),
    "sweep_exec": ('.sweep.execute',),
    "sweep_grid": ('.sweep.grid',),
    "sweep_plan": ('.sweep.plan',),
    "sweep_report": ('.sweep.report',),
    "sweep_state": ('.sweep.state',),
    "runfolder": ('.rundir.folder',),
    "manifest": ('.rundir.manifest',),
    "fsutil": ('.rundir.fsutil',),
    "models.flux1": ("plantain_plugins.families.flux1",), "models.flux2": ("plantain_plugins.families.flux2",),
    "models.sd3": ("plantain_plugins.families.sd3",),
    "models.builtin": ("plantain_plugins.families.builtin",),
}

#: Old modules whose name is now a package's: the package's ``__getattr__`` finds their names.
_SAME_NAME = {"spec", "capture", "stats", "causal", "sweep"}


def _warn_moved(old: str) -> None:
    where = " or ".join(f"{__name__}{new}" if new.startswith(".") else new for new in _MOVED[old])
    warnings.warn(f"{__name__}.{old} is deprecated and goes in 0.3; import from {where}",
                  DeprecationWarning, stacklevel=3)


def _moved_module(old: str):
    """A stand-in for the 0.1 module ``plantain_core.<old>``: the module it became, or, when
    its names went to several modules, a module that looks them up there."""
    _warn_moved(old)
    targets = [importlib.import_module(new, __name__) for new in _MOVED[old]]
    if len(targets) == 1:
        return targets[0]
    alias = types.ModuleType(f"{__name__}.{old}", targets[0].__doc__)

    def find(name: str):
        for target in targets:
            if hasattr(target, name):
                return getattr(target, name)
        raise AttributeError(f"module {alias.__name__!r} has no attribute {name!r}")

    alias.__getattr__ = find
    alias.__dir__ = lambda: sorted({n for target in targets for n in dir(target)})
    return alias


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the 0.1 module paths (``import plantain_core.runner``) that are no package now."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.partition(f"{__name__}.")[2]
        if fullname.startswith(f"{__name__}.") and old in _MOVED and old not in _SAME_NAME:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return _moved_module(spec.name.partition(".")[2])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedFinder())


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plantain_core' has no attribute {name!r}")


def _moved_attr(package: str, name: str):
    """``name`` of the 0.1 module that a package of the same name replaced (``plantain_core.stats``
    was a module): for the package's ``__getattr__``, with a DeprecationWarning. A submodule's
    name is left to the import system (``from plantain_core.stats import engine`` asks here first)."""
    old = package.partition(".")[2]
    if old in _MOVED and not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is None:
        for new in _MOVED[old]:
            target = importlib.import_module(new, __name__)
            if hasattr(target, name):
                _warn_moved(old)
                return getattr(target, name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


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
    "compare",
    "load_model",
    "load_run",
    "load_sweep",
    "sweep",
    "Sweep",
    "PlantainWarning",
    "ConfoundWarning",
    "TruncationWarning",
    "SmallSampleWarning",
    "SpecificityWarning",
    "probe",
    "read_pairs",
    "run",
    "__version__",
]
