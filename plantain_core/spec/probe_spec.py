"""Probe specs: the attrs classes, TOML loading and validation.

A spec file describes one probe. Every problem of a file is collected and reported at
once, one per line, as ``FILE: key.path: message``; unknown keys get "did you mean".
Stimulus-table rules belong to the spec's generator (``generator.validate``); the rules
every probe shares (unique pair ids, at least three pairs, A differs from B) are checked
here on the pairs the generator produces.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import tomllib
from typing import Any

import attrs

from ..errors import PluginError, SpecError, suggest
from .stimuli import check_plugin_pairs

SCHEMA_VERSION = 1
MIN_PAIRS = 3
DEFAULT_MODEL_ID = "black-forest-labs/FLUX.2-klein-base-4B"
DEFAULT_INTERPRETER = "default"

Problem = tuple[str, str]  # (key.path, message)


@attrs.frozen
class ModelSettings:
    """The ``[model]`` table: defaults a probe suggests; CLI flags override them."""

    id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    height: int | None = None
    width: int | None = None


@attrs.frozen
class ProbeSpec:
    """One validated probe spec. ``stimuli`` is the raw ``[stimuli]`` table, which the
    spec's generator interprets."""

    name: str
    generator: str
    stimuli: dict[str, Any] = attrs.field(eq=False, hash=False)
    title: str = ""
    description: str = ""
    interpreter: str = DEFAULT_INTERPRETER
    direction: tuple[str, str] = ("A", "B")
    tags: tuple[str, ...] = ()
    model: ModelSettings = ModelSettings()
    schema: int = SCHEMA_VERSION
    path: str | None = None

    @property
    def spec_dir(self) -> pathlib.Path | None:
        return pathlib.Path(self.path).parent if self.path else None

    def sha256(self) -> str | None:
        if not self.path:
            return None
        return hashlib.sha256(pathlib.Path(self.path).read_bytes()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """The resolved spec as TOML-shaped data (defaults filled in)."""
        model = {k: v for k, v in attrs.asdict(self.model).items() if v is not None}
        return {
            "schema": self.schema,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "generator": self.generator,
            "interpreter": self.interpreter,
            "direction": list(self.direction),
            "tags": list(self.tags),
            "model": model,
            "stimuli": self.stimuli,
        }


# key -> (python type(s), type name for messages, required)
_TOP: dict[str, tuple[Any, str, bool]] = {
    "schema": (int, "an integer", True),
    "name": (str, "a string", True),
    "title": (str, "a string", False),
    "description": (str, "a string", False),
    "generator": (str, "a string", True),
    "interpreter": (str, "a string", False),
    "direction": (list, "a list of two strings", False),
    "tags": (list, "a list of strings", False),
    "model": (dict, "a table", False),
    "stimuli": (dict, "a table", True),
}
_MODEL: dict[str, tuple[Any, str, bool]] = {
    "id": (str, "a string", False),
    "revision": (str, "a string", False),
    "height": (int, "an integer", False),
    "width": (int, "an integer", False),
}


def type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def check_table(table: dict, schema: dict[str, tuple[Any, str, bool]], prefix: str) -> list[Problem]:
    """Unknown keys (with suggestions), missing required keys and wrong types of one table."""
    problems: list[Problem] = []
    dot = f"{prefix}." if prefix else ""
    for key in table:
        if key not in schema:
            problems.append((f"{dot}{key}", "unknown key" + suggest(key, schema)))
    for key, (typ, what, required) in schema.items():
        if key not in table:
            if required:
                problems.append((f"{dot}{key}", "required key is missing"))
            continue
        value = table[key]
        # TOML booleans are ints to isinstance; a spec never means True as 1.
        if isinstance(value, bool) and typ is not bool or not isinstance(value, typ):
            problems.append((f"{dot}{key}", f"expected {what}, got {type_name(value)}"))
    return problems


def read_toml(path: pathlib.Path) -> dict[str, Any]:
    """Parse one TOML file (TOML 1.0, the standard library's linear-time parser); a syntax
    or read error becomes a SpecError naming the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM from an editor is not an error
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read file: {exc}"]) from exc
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise SpecError([f"{path}: invalid TOML: nested too deeply"]) from None
    except tomllib.TOMLDecodeError as exc:
        where = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc), re.S)
        text = f"line {where[2]}, column {where[3]}: invalid TOML: {where[1]}" if where else f"invalid TOML: {exc}"
        raise SpecError([f"{path}: {text}"]) from exc


def load_spec(path: str | pathlib.Path, registry) -> ProbeSpec:
    """Load and fully validate a spec file against the registry's generators and interpreters."""
    path = pathlib.Path(path).resolve()
    data = read_toml(path)
    spec, problems = parse_spec(data, path, registry)
    if problems:
        raise SpecError([f"{path}: {key}: {msg}" for key, msg in problems])
    assert spec is not None
    return spec


def parse_spec(data: dict[str, Any], path: pathlib.Path, registry) -> tuple[ProbeSpec | None, list[Problem]]:
    problems = check_table(data, _TOP, "")
    model = data.get("model", {})
    if isinstance(model, dict):
        problems += check_table(model, _MODEL, "model")
        for key in ("height", "width"):
            value = model.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and (value <= 0 or value % 16):
                problems.append((f"model.{key}", f"must be a positive multiple of 16, got {value}"))

    if isinstance(data.get("schema"), int) and data["schema"] != SCHEMA_VERSION:
        problems.append(("schema", f"unsupported schema version {data['schema']}; this plantain reads {SCHEMA_VERSION}"))
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append(("name", f"{name!r} must equal the file name stem {path.stem!r}"))
    direction = data.get("direction")
    if isinstance(direction, list) and (len(direction) != 2 or not all(isinstance(d, str) and d for d in direction)):
        problems.append(("direction", "expected two non-empty strings: the names of condition A and B"))
    tags = data.get("tags")
    if isinstance(tags, list) and not all(isinstance(t, str) for t in tags):
        problems.append(("tags", "expected a list of strings"))

    generator = None
    gen_name = data.get("generator")
    if isinstance(gen_name, str):
        why = registry.problem("generator", gen_name)
        if why is None:
            generator = registry.generators[gen_name]
        else:
            problems.append(("generator", why))
    interp = data.get("interpreter", DEFAULT_INTERPRETER)
    if isinstance(interp, str) and (why := registry.problem("interpreter", interp)) is not None:
        problems.append(("interpreter", why))

    stimuli = data.get("stimuli")
    stimuli_ok = isinstance(stimuli, dict)
    who = f"generator {gen_name!r} from plugin {generator.provider.label()}" if generator is not None else ""
    if stimuli_ok and generator is not None:
        try:
            gen_problems = _problems(generator.obj.validate(stimuli, path.parent), who)
        except Exception as exc:  # a plugin bug must still name the file and the plugin
            gen_problems = [("stimuli", f"{who} failed to validate: {type(exc).__name__}: {exc}")]
        problems += gen_problems
        stimuli_ok = not gen_problems

    if problems:
        return None, problems

    model_settings = ModelSettings(**model) if isinstance(model, dict) else ModelSettings()
    spec = ProbeSpec(
        name=data["name"],
        generator=data["generator"],
        stimuli=stimuli,
        title=data.get("title", data["name"]),
        description=data.get("description", ""),
        interpreter=data.get("interpreter", DEFAULT_INTERPRETER),
        direction=tuple(data.get("direction", ("A", "B"))),
        tags=tuple(data.get("tags", ())),
        model=model_settings,
        schema=data["schema"],
        path=str(path),
    )
    if stimuli_ok:
        try:
            pairs = check_plugin_pairs(generator.obj.pairs(spec), who)
        except PluginError as exc:
            return None, [("stimuli", str(exc))]
        except Exception as exc:
            return None, [("stimuli", f"{who} failed to build pairs: {type(exc).__name__}: {exc}")]
        problems += check_pairs(pairs, "stimuli.pairs" if "pairs" in stimuli else "stimuli")
    return (None if problems else spec), problems


def _problems(value, who: str) -> list[Problem]:
    """A generator's ``validate`` result, checked: a list of (key path, message) strings."""
    out = list(value or [])
    for item in out:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise TypeError(f"validate() must return (key path, message) string pairs, got {item!r}")
    return out


def check_pairs(pairs, key: str = "stimuli.pairs") -> list[Problem]:
    """The rules every probe shares, whatever its generator. ``key`` names where the pairs
    come from: ``stimuli.pairs`` when the spec lists them, else ``stimuli`` (a generator
    that builds them from something else)."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    listed = key.endswith(".pairs")
    for i, pair in enumerate(pairs):
        at = f"{key}[{i}]" if listed else f"{key} (pair {i})"
        if pair.id in seen:
            problems.append((f"{at}.id" if listed else at, f"duplicate pair id {pair.id!r} (also pair {seen[pair.id]})"
                             if not listed else f"duplicate pair id {pair.id!r} (also pairs[{seen[pair.id]}])"))
        else:
            seen[pair.id] = i
        if pair.a == pair.b:
            problems.append((at, f"A and B of pair {pair.id!r} are identical"))
    if len(pairs) < MIN_PAIRS:
        problems.append((key, f"at least {MIN_PAIRS} pairs are needed for a paired test, got {len(pairs)}"))
    return problems
