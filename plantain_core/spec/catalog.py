"""Finding probe specs: built-in and plugin spec directories, ``PLANTAIN_SPEC_PATH``,
``--spec-dir`` options, or a direct path to a ``.toml`` file.

Directories are searched in that order. A probe name defined in two files is an error
naming both; it is listed as ERROR and cannot be run until one is renamed.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable

import attrs

from ..errors import PlantainError, SpecError, unknown
from ..plugins import Provider, Registry
from .probe_spec import ProbeSpec, load_spec

SPEC_PATH_ENV = "PLANTAIN_SPEC_PATH"


@attrs.frozen
class SpecSource:
    """Where a spec directory came from: a plugin, the environment, or the command line."""

    directory: pathlib.Path
    origin: str  # "plugin" | PLANTAIN_SPEC_PATH | "--spec-dir" | "file"
    provider: Provider | None = None

    def describe(self) -> dict:
        out = {"origin": self.origin, "directory": str(self.directory)}
        if self.provider is not None:
            out["plugin"] = self.provider.plugin
            out["distribution"] = self.provider.distribution
            out["version"] = self.provider.version
        return out


@attrs.define
class CatalogEntry:
    """One spec file: its probe (when valid) or the reason it is not."""

    name: str
    path: pathlib.Path
    source: SpecSource
    spec: ProbeSpec | None = None
    error: str | None = None
    problems: list[str] = attrs.field(factory=list)
    n_pairs: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _env_dirs() -> list[pathlib.Path]:
    raw = os.environ.get(SPEC_PATH_ENV, "")
    return [pathlib.Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def spec_sources(registry: Registry, spec_dirs: Iterable[str | os.PathLike] = ()) -> list[SpecSource]:
    sources = [SpecSource(pathlib.Path(d), "plugin", prov) for d, prov in registry.spec_dirs]
    sources += [SpecSource(d, SPEC_PATH_ENV) for d in _env_dirs()]
    sources += [SpecSource(pathlib.Path(d), "--spec-dir") for d in spec_dirs]
    return sources


@attrs.define
class Catalog:
    registry: Registry
    entries: dict[str, CatalogEntry] = attrs.field(factory=dict)

    @classmethod
    def build(cls, registry: Registry, spec_dirs: Iterable[str | os.PathLike] = ()) -> "Catalog":
        cat = cls(registry)
        seen_dirs: set[pathlib.Path] = set()
        for source in spec_sources(registry, spec_dirs):
            try:
                directory = source.directory.resolve()
                if directory in seen_dirs or not directory.is_dir():
                    continue
                seen_dirs.add(directory)
                paths = sorted(directory.glob("*.toml"))
            except (OSError, RuntimeError):  # a link loop or an unreadable folder hides only itself
                continue
            for path in paths:
                try:
                    resolved = path.resolve(strict=True)
                except (OSError, RuntimeError) as exc:
                    cat.entries.setdefault(path.stem, CatalogEntry(path.stem, path, source, error=f"cannot read: {exc}",
                                                                   problems=[f"{path}: cannot read: {exc}"]))
                    continue
                cat._add(resolved, source)
        return cat

    def _add(self, path: pathlib.Path, source: SpecSource) -> None:
        name = path.stem
        if name in self.entries:
            first = self.entries[name]
            first.spec = None
            first.error = f"probe {name!r} is defined twice: {first.path} and {path}"
            return
        entry = CatalogEntry(name, path, source)
        try:
            entry.spec = load_spec(path, self.registry)
            entry.n_pairs = len(self.registry.generators[entry.spec.generator].obj.pairs(entry.spec))
        except SpecError as exc:
            entry.problems = exc.problems
            prefix = f"{path}: "
            entry.error = "; ".join(p[len(prefix):] if p.startswith(prefix) else p for p in exc.problems)
        self.entries[name] = entry

    def resolve(self, name_or_path: str) -> ProbeSpec:
        """A probe by name, or a spec file by path. Raises a PlantainError that says why."""
        if name_or_path.endswith(".toml") or os.sep in name_or_path:
            path = pathlib.Path(name_or_path).expanduser()
            if not path.is_file():
                raise PlantainError(f"spec file not found: {path}")
            entry = self.entries.get(path.stem)
            if entry is not None and entry.path == path.resolve():
                return self.resolve(path.stem)  # a listed file keeps its source (plugin provenance)
            return load_spec(path, self.registry)
        entry = self.entries.get(name_or_path)
        if entry is None:
            raise PlantainError(str(unknown("probe", name_or_path, self.entries)) + self.registry.failure_note())
        if entry.spec is None:
            if entry.problems:
                raise SpecError(entry.problems)
            raise PlantainError(f"{entry.path}: {entry.error}")
        return entry.spec
