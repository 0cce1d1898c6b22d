"""A probe ready to run: its spec, its pairs and who supplied each part.

:func:`load_probe` is what ``plantain run``, ``plantain show`` and the Python API's
``probe()`` use: it resolves a name or a spec path through the catalog, builds the
pairs with the spec's generator, checks the interpreter exists, and records the
providers (plugin, distribution, version) that the manifest and the card list.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterable

import attrs

from ..errors import PlantainError, PluginError
from ..plugins import Provider, Registry, get_registry
from .probe_spec import ProbeSpec
from .stimuli import Pair, check_plugin_pairs

#: The provider of a spec given as a file path or found through PLANTAIN_SPEC_PATH / --spec-dir.
LOCAL = Provider("local")


@attrs.frozen
class Probe:
    """A runnable probe: ``spec``, its ``pairs`` (a tuple, in capture order) and
    ``providers``: ``{"spec", "generator", "interpreter"}`` -> :class:`Provider`."""

    spec: ProbeSpec
    pairs: tuple[Pair, ...]
    providers: dict[str, Provider] = attrs.field(eq=False)
    #: how the probe was asked for (a name, or the spec path as given)
    reference: str = ""

    @classmethod
    def from_pairs(cls, spec: ProbeSpec, pairs, providers: dict[str, Provider] | None = None) -> "Probe":
        """A probe from a spec and pairs made in code (tests, embedding code); the pairs are checked."""
        return cls(spec, tuple(check_plugin_pairs(pairs, "pairs")), dict(providers or {}), spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    def provenance(self) -> dict[str, dict[str, Any]]:
        """``{part: {plugin, distribution, version}}`` for the manifest and the card."""
        return {part: {k: v for k, v in p.as_dict().items() if k != "module"} for part, p in self.providers.items()}

    def __repr__(self) -> str:
        return f"Probe({self.name!r}, {len(self.pairs)} pairs, generator {self.spec.generator!r})"


def outside_images(probe: Probe) -> list[str]:
    """``FILE: key: ...`` for every image file of ``probe`` that lies outside its spec's
    folder (an absolute, ``~`` or ``..`` path, or a link leading out). Pairs made in code,
    with no spec file, have no folder to be held to."""
    spec = probe.spec
    if spec.spec_dir is None:
        return []
    base = os.path.realpath(spec.spec_dir)
    st = spec.stimuli if isinstance(spec.stimuli, dict) else {}
    out: list[str] = []
    for i, pair in enumerate(probe.pairs):
        for side, stim in zip("ab", pair.stimuli()):
            path = stim.image.path if stim.image is not None else None
            if path is None or pathlib.Path(os.path.realpath(path)).is_relative_to(base):
                continue
            if "reference_image" in st:
                key = "stimuli.reference_image"
            elif "pairs_file" in st:
                key = f"stimuli.pairs_file {str(st['pairs_file'])!r}: pair {pair.id!r}: {side}_image"
            elif "pairs" in st:
                key = f"stimuli.pairs[{i}].{side}_image"
            else:
                key = f"stimuli: pair {pair.id!r}: {side} image"
            line = f"{spec.path}: {key}: image {path} is outside the spec's folder"
            if line not in out:
                out.append(line)
    return out


def check_images_inside(probe: Probe, allow_outside: bool) -> None:
    """Refuse, in one line, a probe that would read an image file from outside its spec's
    folder, unless ``allow_outside`` (``--allow-outside-images``): a spec from someone else
    must not pick files of yours to put into a run, its figures or what you publish."""
    lines = [] if allow_outside else outside_images(probe)
    if lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise PlantainError(f"{lines[0]}{more}; move it next to the spec, or pass --allow-outside-images "
                            "(allow_outside_images=True) to read it there")


def load_probe(name_or_path: str | os.PathLike, spec_dirs: Iterable[str | os.PathLike] = (),
               registry: Registry | None = None) -> Probe:
    """Resolve, validate and build a probe; every failure is one PlantainError that says why."""
    from .catalog import Catalog

    registry = registry or get_registry()
    reference = os.fspath(name_or_path)
    catalog = Catalog.build(registry, spec_dirs)
    spec = catalog.resolve(reference)
    entry = catalog.entries.get(spec.name)
    source = entry.source.provider if entry is not None and entry.path == pathlib.Path(spec.path or "") else None
    generator = registry.get("generator", spec.generator)
    interpreter = registry.get("interpreter", spec.interpreter)
    try:
        pairs = generator.obj.pairs(spec)
    except Exception as exc:  # validation built them once; a plugin that fails now is still named
        raise PluginError(f"generator {spec.generator!r} from plugin {generator.provider.label()} failed to build "
                          f"the pairs of {spec.path or spec.name}: {type(exc).__name__}: {exc}") from exc
    pairs = check_plugin_pairs(pairs, f"generator {spec.generator!r} from plugin {generator.provider.label()}")
    providers = {"spec": source or LOCAL, "generator": generator.provider, "interpreter": interpreter.provider}
    if not pairs:
        raise PlantainError(f"{spec.path or spec.name}: the generator built no pairs")
    return Probe(spec, tuple(pairs), providers, reference)
