"""Reading the pair list of a stimulus table, for generators.

A spec lists its pairs directly::

    pairs = [ { id = "mm-km", a = "...", b = "...", meta = { scale_a_m = 1000.0 } } ]

as two templates filled from a list of items, so list-driven probes stay spec-only::

    template = { a = "Render this kitchen from the viewpoint of {creature}",
                 b = "Render this kitchen with {creature} in it" }
    items = [ { id = "human", creature = "a human", rank = 1 } ]

or from a file next to the spec (:mod:`plantain_core.spec.pairfile`: CSV, TSV or JSON Lines)::

    pairs_file = "pairs.csv"

Each item's fields fill ``{placeholders}``; the fields other than ``id`` become the
pair's ``meta``. Generators call :func:`~plantain_core.spec.pairfile.read_pairs` (which reads a
pairs file too) and get :class:`RawPair` values back
with the place each came from, so their own checks name it (``row.at("a")``).
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

import attrs

from ..errors import suggest

Problem = tuple[str, str]


@attrs.frozen
class RawPair:
    """One pair as written (or expanded from a template or read from a pairs file).

    ``key`` is where it came from (``stimuli.pairs[3]``, ``stimuli.items[0]`` or
    ``pairs.csv line 5``); ``fields`` holds the keys of ``fields`` that the row gives
    (``a``, ``b``, ...); ``meta`` the pair's free-form data.
    """

    key: str
    id: Any
    fields: dict[str, Any]
    meta: dict[str, Any]
    sep: str = "."  # between ``key`` and a field: "." in TOML, ", column " in a CSV file

    def at(self, field: str) -> str:
        """The key path of one field of this row, for a problem message."""
        return f"{self.key}{self.sep}{field}"


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


MAX_META_DEPTH = 32

#: The keys of a stimulus table that hold its pair list; a generator allows them all.
PAIR_KEYS = ("pairs", "template", "items", "pairs_file")


def read_rows(pairs: Any, fields: tuple[str, ...], key: str, where=None,
              sep: str = ".") -> tuple[list[RawPair], list[Problem]]:
    """Rows given as tables (a TOML array, CSV rows or JSON Lines objects). ``where(i)``
    names row ``i`` (default ``key[i]``); ``sep`` joins it to a field's name."""
    if not isinstance(pairs, list):
        return [], [(key, "expected an array of tables")]
    where = where or (lambda i: f"{key}[{i}]")
    out: list[RawPair] = []
    problems: list[Problem] = []
    allowed = ("id", "meta") + fields
    seen: dict[Any, int] = {}
    for i, row in enumerate(pairs):
        at = where(i)
        row_key = RawPair(at, None, {}, {}, sep)
        if not isinstance(row, dict):
            problems.append((at, "expected a table like { id = ..., a = ..., b = ... }"))
            continue
        for k in row:
            if k not in allowed:
                problems.append((row_key.at(k), "unknown key" + suggest(k, allowed)))
        problems += _check_id(row_key.at("id"), row)
        if isinstance(row.get("id"), str):
            if row["id"] in seen:
                problems.append((row_key.at("id"), f"duplicate pair id {row['id']!r} (also {where(seen[row['id']])})"))
            seen.setdefault(row["id"], i)
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            problems.append((row_key.at("meta"), "expected a table"))
            meta = {}
        problems += [(row_key.at(f"meta.{k}"), why) for k, why in meta_problems(meta)]
        out.append(RawPair(at, row.get("id"), {k: row[k] for k in fields if k in row}, dict(meta), sep))
    return out, problems


def meta_problems(meta: dict[str, Any]) -> list[Problem]:
    """Pair meta goes into JSON files (manifest, summary): finite numbers, strings,
    booleans, arrays and tables only. Returns (key, message) per bad value."""
    def bad(value, depth: int = 0) -> str | None:
        if depth > MAX_META_DEPTH:
            return f"nested deeper than {MAX_META_DEPTH} levels"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number (pair meta is written to JSON)"
        if isinstance(value, dict):
            if any(not isinstance(k, str) for k in value):
                return "a table whose keys are not all strings (pair meta is written to JSON)"
            return next((b for v in value.values() if (b := bad(v, depth + 1))), None)
        if isinstance(value, list):
            return next((b for v in value if (b := bad(v, depth + 1))), None)
        if value is None or isinstance(value, (str, int, float, bool)):
            return None
        return f"a {type(value).__name__} cannot be pair meta (use a string or a number)"

    return [(str(k), why) for k, v in meta.items() if (why := bad(v)) is not None]


def _check_id(key: str, row: dict) -> list[Problem]:
    """Ids name rows of arrays and files: non-empty printable strings (a NUL or newline in
    an id would collapse or split it there)."""
    if "id" not in row:
        return [(key, "required key is missing")]
    value = row["id"]
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        return [(key, f"expected a non-empty printable string, got {value!r}")]
    if value != value.strip():  # "r1" and "r1 " would be two pairs that read the same
        return [(key, f"{value!r} starts or ends with spaces")]
    return []


def expand_template(stimuli: dict[str, Any], fields: tuple[str, ...], key: str) -> tuple[list[RawPair], list[Problem]]:
    problems: list[Problem] = []
    template = stimuli.get("template")
    items = stimuli.get("items")
    if not isinstance(template, dict):
        return [], [(f"{key}.template", "expected a table of templates like { a = ..., b = ... }")]
    if not isinstance(items, list):
        return [], [(f"{key}.items", "expected an array of tables")]
    for k, v in template.items():
        if k not in fields:
            problems.append((f"{key}.template.{k}", "unknown key" + suggest(k, fields)))
        elif not isinstance(v, str):
            problems.append((f"{key}.template.{k}", "expected a string"))
        elif (why := _template_problem(v)) is not None:
            problems.append((f"{key}.template.{k}", why))
    if problems:
        return [], problems
    out: list[RawPair] = []
    seen: dict[Any, int] = {}
    for i, item in enumerate(items):
        at = f"{key}.items[{i}]"
        if not isinstance(item, dict):
            problems.append((at, "expected a table"))
            continue
        problems += _check_id(f"{at}.id", item)
        if isinstance(item.get("id"), str):
            if item["id"] in seen:
                problems.append((f"{at}.id", f"duplicate pair id {item['id']!r} (also {key}.items[{seen[item['id']]}])"))
            seen.setdefault(item["id"], i)
        filled: dict[str, Any] = {}
        item_ok = True
        for field, tmpl in template.items():
            missing = [p for p in _placeholders(tmpl) if p not in item]
            if missing:
                problems.append((at, f"template.{field} needs {', '.join(missing)}, missing in this item"))
                item_ok = False
            else:
                filled[field] = _fill(tmpl, item)
        if not item_ok:
            continue
        meta = {k: v for k, v in item.items() if k != "id"}
        problems += [(f"{at}.{k}", why) for k, why in meta_problems(meta)]
        out.append(RawPair(at, item.get("id"), filled, meta))
    return out, problems


def check_text(key: str, value: Any) -> list[Problem]:
    """A prompt must be a non-empty string the tokenizer can take: no NUL, valid Unicode
    (a lone surrogate from a JSON escape passes JSON but not the tokenizer)."""
    if not isinstance(value, str) or not value.strip():
        return [(key, "expected a non-empty string")]
    if "\x00" in value:
        return [(key, "contains a NUL character")]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return [(key, "is not valid Unicode (a lone surrogate such as \\ud800)")]
    return []
