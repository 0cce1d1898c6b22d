"""Reading the pair list of a ``[stimuli]`` table, for generators.

A spec lists its pairs either directly::

    pairs = [ { id = "mm-km", a = "...", b = "...", meta = { scale_a_m = 1000.0 } } ]

or as two templates filled from a list of items, so list-driven probes stay spec-only::

    template = { a = "Render this kitchen from the viewpoint of {creature}",
                 b = "Render this kitchen with {creature} in it" }
    items = [ { id = "human", creature = "a human", rank = 1 } ]

Each item's fields fill ``{placeholders}``; the fields other than ``id`` become the
pair's ``meta``. Generators call :func:`read_pairs` and get plain dicts back with
the key path each came from, so their own checks name the right key.
"""

from __future__ import annotations

import re
import string
from typing import Any

import attrs

from .errors import suggest

Problem = tuple[str, str]


@attrs.frozen
class RawPair:
    """One pair as written (or expanded from a template): its fields, meta and key path."""

    key: str
    id: Any
    fields: dict[str, Any]
    meta: dict[str, Any]


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _template_problem(template: str) -> str | None:
    """Templates are data: only ``{name}`` placeholders, no attribute, index or format spec."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"invalid template: {exc}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not _IDENT.match(name) or spec or conversion:
            return f"placeholder {{{name}}} must be a plain {{name}}"
    return None


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _fill(template: str, item: dict[str, Any]) -> str:
    return "".join(
        literal + ("" if name is None else str(item[name])) for literal, name, _, _ in string.Formatter().parse(template)
    )


def read_pairs(stimuli: dict[str, Any], fields: tuple[str, ...]) -> tuple[list[RawPair], list[Problem]]:
    """The pairs of a ``[stimuli]`` table, from ``pairs`` or ``template`` + ``items``.

    ``fields`` are the keys a pair may carry besides ``id`` and ``meta`` (e.g. ``a``,
    ``b``, ``a_image``). Returns the pairs and the problems found; only structural
    problems are reported here, the generator checks which fields are required.
    """
    has_pairs = "pairs" in stimuli
    has_template = "template" in stimuli or "items" in stimuli
    if has_pairs and has_template:
        return [], [("stimuli.pairs", "give either pairs or template + items, not both")]
    if has_template:
        return _expand_template(stimuli, fields)
    if not has_pairs:
        return [], [("stimuli.pairs", "required key is missing (or give template + items)")]
    pairs = stimuli["pairs"]
    if not isinstance(pairs, list):
        return [], [("stimuli.pairs", "expected an array of tables")]
    out: list[RawPair] = []
    problems: list[Problem] = []
    allowed = ("id", "meta") + fields
    for i, row in enumerate(pairs):
        key = f"stimuli.pairs[{i}]"
        if not isinstance(row, dict):
            problems.append((key, "expected a table like { id = ..., a = ..., b = ... }"))
            continue
        for k in row:
            if k not in allowed:
                problems.append((f"{key}.{k}", "unknown key" + suggest(k, allowed)))
        problems += _check_id(key, row)
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            problems.append((f"{key}.meta", "expected a table"))
            meta = {}
        out.append(RawPair(key, row.get("id"), {k: row[k] for k in fields if k in row}, dict(meta)))
    return out, problems


def _check_id(key: str, row: dict) -> list[Problem]:
    if "id" not in row:
        return [(f"{key}.id", "required key is missing")]
    if not isinstance(row["id"], str) or not row["id"].strip():
        return [(f"{key}.id", "expected a non-empty string")]
    return []


def _expand_template(stimuli: dict[str, Any], fields: tuple[str, ...]) -> tuple[list[RawPair], list[Problem]]:
    problems: list[Problem] = []
    template = stimuli.get("template")
    items = stimuli.get("items")
    if not isinstance(template, dict):
        return [], [("stimuli.template", "expected a table of templates like { a = ..., b = ... }")]
    if not isinstance(items, list):
        return [], [("stimuli.items", "expected an array of tables")]
    for k, v in template.items():
        if k not in fields:
            problems.append((f"stimuli.template.{k}", "unknown key" + suggest(k, fields)))
        elif not isinstance(v, str):
            problems.append((f"stimuli.template.{k}", "expected a string"))
        elif (why := _template_problem(v)) is not None:
            problems.append((f"stimuli.template.{k}", why))
    if problems:
        return [], problems
    out: list[RawPair] = []
    for i, item in enumerate(items):
        key = f"stimuli.items[{i}]"
        if not isinstance(item, dict):
            problems.append((key, "expected a table"))
            continue
        problems += _check_id(key, item)
        filled: dict[str, Any] = {}
        item_ok = True
        for field, tmpl in template.items():
            missing = [p for p in _placeholders(tmpl) if p not in item]
            if missing:
                problems.append((key, f"template.{field} needs {', '.join(missing)}, missing in this item"))
                item_ok = False
            else:
                filled[field] = _fill(tmpl, item)
        if not item_ok:
            continue
        meta = {k: v for k, v in item.items() if k != "id"}
        out.append(RawPair(key, item.get("id"), filled, meta))
    return out, problems


def check_text(key: str, value: Any) -> list[Problem]:
    """A prompt must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        return [(key, "expected a non-empty string")]
    return []
