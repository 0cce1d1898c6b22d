"""The plugin manager: entry-point loading, registration with provenance, failures.

Plugins are modules (or objects) exposing ``plantain_*`` hook implementations, found
through the entry-point group ``plantain``. Built-in plugins are registered there too,
exactly as a third party's would be.

Each entry point is loaded and each of its hooks called on its own, inside try/except,
so one broken plugin is recorded and shown by ``plantain list`` while the rest keep
working. ``PLANTAIN_STRICT_PLUGINS=1`` makes any such failure fatal;
``PLANTAIN_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import traceback
from importlib import metadata
from typing import Any, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError, unknown

ENTRY_POINT_GROUP = "plantain"
STRICT_ENV = "PLANTAIN_STRICT_PLUGINS"
DISABLE_ENV = "PLANTAIN_DISABLE_PLUGINS"
DEBUG_ENV = "PLANTAIN_DEBUG"

#: The registries a plugin can add to, keyed by the hook that fills each.
KINDS = {
    "generator": "plantain_register_generators",
    "interpreter": "plantain_register_interpreters",
    "model": "plantain_register_models",
    "family": "plantain_register_families",
}


@attrs.frozen
class Provider:
    """Who supplied something: plugin (entry-point) name, distribution and version, module."""

    plugin: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None

    def label(self) -> str:
        dist = self.distribution or "?"
        return f"{self.plugin} ({dist} {self.version or '?'})"

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Entry:
    """A registered generator, interpreter or model loader and who provided it."""

    name: str
    obj: Any
    provider: Provider


@attrs.frozen
class PluginFailure:
    """A plugin that could not be imported or whose hook raised; ``traceback`` is shown
    under ``--debug`` / ``PLANTAIN_DEBUG=1``."""

    provider: Provider
    stage: str  # "import", "register" or the hook name
    error: str
    traceback: str = ""

    @property
    def plugin(self) -> str:
        return self.provider.plugin

    def describe(self) -> str:
        return f"plugin {self.provider.label()} failed at {self.stage}: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "distribution": self.provider.distribution, "version": self.provider.version,
                "stage": self.stage, "error": self.error}


@attrs.define
class PluginInfo:
    """One loaded plugin: provenance and the hooks it implements."""

    provider: Provider
    hooks: list[str]
    status: str = "loaded"  # loaded | failed | disabled


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def strict_mode() -> bool:
    return _env_flag(STRICT_ENV)


def debug_mode() -> bool:
    """Tracebacks of plugin errors are shown: ``PLANTAIN_DEBUG=1``, or ``--debug`` on the
    command being run (kept in click's context, so it ends with the command)."""
    if _env_flag(DEBUG_ENV):
        return True
    import click

    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().meta.get(DEBUG_ENV))


def disabled_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _module_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__module__


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


@attrs.define
class Registry:
    """Everything the loaded plugins supplied, with provenance, plus their failures."""

    pm: pluggy.PluginManager
    generators: dict[str, Entry] = attrs.field(factory=dict)
    interpreters: dict[str, Entry] = attrs.field(factory=dict)
    models: dict[str, Entry] = attrs.field(factory=dict)
    families: dict[str, Entry] = attrs.field(factory=dict)
    spec_dirs: list[tuple[pathlib.Path, Provider]] = attrs.field(factory=list)
    plugins: dict[str, PluginInfo] = attrs.field(factory=dict)
    failures: list[PluginFailure] = attrs.field(factory=list)
    #: (kind, name) claimed by two plugins -> the message naming both; using it is an error.
    conflicts: dict[tuple[str, str], str] = attrs.field(factory=dict)

    def table(self, kind: str) -> dict[str, Entry]:
        return {"generator": self.generators, "interpreter": self.interpreters, "model": self.models,
                "family": self.families}[kind]

    def problem(self, kind: str, name: str) -> str | None:
        """Why ``name`` cannot be used as a ``kind`` (claimed twice, or unknown), else None."""
        if (kind, name) in self.conflicts:
            return self.conflicts[(kind, name)] + "; it cannot be used until one plugin is removed or disabled"
        if name not in self.table(kind):
            return str(unknown(kind, name, self.table(kind))) + self.failure_note()
        return None

    def get(self, kind: str, name: str) -> Entry:
        why = self.problem(kind, name)
        if why is not None:
            raise PluginError(why)
        return self.table(kind)[name]

    def failure_note(self) -> str:
        """``"; plugins that failed to load: ..."`` (and disabled ones) when any did: the
        likely cause of a missing name."""
        note = "; plugins that failed to load: " + "; ".join(f.describe() for f in self.failures) if self.failures else ""
        off = sorted(name for name, info in self.plugins.items() if info.status == "disabled")
        if off:
            note += f"; plugins disabled by {DISABLE_ENV}: {', '.join(off)}"
        return note

    def _fail(self, failure: PluginFailure, exc: BaseException | None = None) -> None:
        if exc is not None and not failure.traceback:
            failure = attrs.evolve(failure, traceback="".join(traceback.format_exception(exc)))
        self.failures.append(failure)
        if failure.plugin in self.plugins:
            self.plugins[failure.plugin].status = "failed"
        if strict_mode():
            raise PluginError(f"{failure.describe()} [{STRICT_ENV} is set]") from exc

    def add_plugin(self, plugin: Any, provider: Provider) -> None:
        """Register one plugin object and collect what each of its hooks supplies."""
        try:
            self.pm.register(plugin, name=provider.plugin)
        except (Exception, SystemExit) as exc:  # pluggy validates hook signatures here; SystemExit: sys.exit() in a plugin
            self._fail(PluginFailure(provider, "register", _describe(exc)), exc)
            return
        hooks = sorted(
            h for h in dir(plugin) if h.startswith("plantain_") and callable(getattr(plugin, h, None))
        )
        self.plugins[provider.plugin] = PluginInfo(provider, hooks)
        for kind, hook in KINDS.items():
            if hook in hooks:
                self._collect(plugin, provider, kind, hook)
        if "plantain_spec_dirs" in hooks:
            try:
                dirs = getattr(plugin, "plantain_spec_dirs")() or []
                for d in dirs:
                    self.spec_dirs.append((pathlib.Path(d), provider))
            except (Exception, SystemExit) as exc:
                self._fail(PluginFailure(provider, "plantain_spec_dirs", _describe(exc)), exc)

    def _collect(self, plugin: Any, provider: Provider, kind: str, hook: str) -> None:
        table = self.table(kind)
        staged: dict[str, Entry] = {}

        def register(name: str, obj: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{kind} name must be a non-empty string, got {name!r}")
            if kind == "family":
                from .models.family import contract_problem

                why = contract_problem(obj)
                if why is None and obj.name != name:  # lookups by either name must find the same family
                    why = f"it is registered under another name than its `name` {obj.name!r}"
                if why is not None:
                    raise PluginError(f"model family {name!r}: {why}")
            if name in table or name in staged:
                other = (table.get(name) or staged[name]).provider
                message = f"duplicate {kind} name {name!r}: provided by {other.label()} and by {provider.label()}"
                self.conflicts[(kind, name)] = message
                self._fail(PluginFailure(provider, hook, message))
                return
            staged[name] = Entry(name, obj, provider)

        try:
            getattr(plugin, hook)(register=register)
        except (Exception, SystemExit) as exc:
            self._fail(PluginFailure(provider, hook, _describe(exc)), exc)
            return
        table.update(staged)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    # One entry point per name: the same distribution can be seen twice on sys.path
    # (an editable install plus a build folder); the first one wins, as import would.
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in eps:
        seen.setdefault(ep.name, ep)
    # plantain's own plugins first: a third-party name that collides with a built-in one is
    # then the duplicate that is reported, never the built-in
    return sorted(seen.values(), key=lambda ep: (ep.name != "core", _distribution_of(ep)[0] != "plantain", ep.name))


def load_registry(extra: Iterable[tuple[str, Any]] = (), use_entry_points: bool = True) -> Registry:
    """Load every plugin of the ``plantain`` entry-point group, then ``extra`` plugins
    given as ``(name, plugin_object)`` (used by tests and embedding code)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm)
    blocked = disabled_plugins()
    if use_entry_points:
        for ep in entry_points():
            _load_entry_point(reg, ep, blocked)
    for name, plugin in extra:
        if name in blocked:
            continue
        reg.add_plugin(plugin, Provider(name, None, None, _module_name(plugin)))
    return reg


def _load_entry_point(reg: Registry, ep: metadata.EntryPoint, blocked) -> None:
    dist, version = _distribution_of(ep)
    provider = Provider(ep.name, dist, version, ep.value)
    if ep.name in blocked:
        reg.plugins[ep.name] = PluginInfo(provider, [], status="disabled")
        return
    try:
        plugin = ep.load()
    except (Exception, SystemExit) as exc:
        reg.plugins[ep.name] = PluginInfo(provider, [], status="failed")
        reg._fail(PluginFailure(provider, "import", _describe(exc)), exc)
        return
    reg.add_plugin(plugin, provider)


#: The distribution whose entry points are plantain's own (built-in) plugins.
DISTRIBUTION = "plantain"
_builtin: Registry | None = None


def builtin_registry() -> Registry:
    """plantain's own plugins alone (this distribution's entry points, none disabled): the
    model loaders and families a registry that supplies none falls back on. They are
    found as any plugin is, so the core imports no built-in family."""
    global _builtin
    if _builtin is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        reg = Registry(pm)
        for ep in entry_points():
            if _distribution_of(ep)[0] == DISTRIBUTION:
                _load_entry_point(reg, ep, ())
        _builtin = reg
    return _builtin


_cached: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _cached
    if _cached is None:
        _cached = load_registry()
    return _cached


def reset_registry() -> None:
    global _cached
    _cached = None


@contextlib.contextmanager
def using_registry(registry: Registry):
    """Make ``registry`` the process-wide one for the block (tests, embedding code)."""
    global _cached
    previous, _cached = _cached, registry
    try:
        yield registry
    finally:
        _cached = previous
