"""Pairs from a file next to the spec: ``pairs_file = "pairs.csv"`` (CSV, TSV or JSON Lines).

CSV and TSV: a header row naming the columns ``id``, the generator's fields (``a``,
``b``, ...) and any others, which become the pair's ``meta`` (a cell that reads as a
number becomes one). An empty cell is a field not given. JSON Lines: one object per
line with ``id``, the fields, and optionally ``meta`` (an object); other keys go to
``meta`` too. Every problem names the file and the line.

The file is spec data, so it is held to the spec's folder: a relative path that stays
inside it, no links out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import re
from typing import Any

from .pairtable import Problem, RawPair, expand_template, read_rows

FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}
MAX_BYTES = 512 * 2**20


def _locate(value: Any, key: str, spec_dir) -> tuple[pathlib.Path | None, list[Problem]]:
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        return None, [(key, "expected a file name like \"pairs.csv\"")]
    if spec_dir is None:
        return None, [(key, "a pairs file needs a spec file to sit next to")]
    rel = pathlib.PurePath(value)
    if rel.is_absolute() or ".." in rel.parts:
        return None, [(key, f"{value!r} must be a relative path inside the spec's folder")]
    if rel.suffix.lower() not in FORMATS:
        return None, [(key, f"{value!r}: unknown format; use .csv, .tsv or .jsonl")]
    base = pathlib.Path(spec_dir).resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        return None, [(key, f"{value!r} leads out of the spec's folder (a link?)")]
    if not path.exists():
        return None, [(key, f"pairs file not found: {base / rel}")]
    if not path.is_file():
        return None, [(key, f"{value!r} is not a regular file")]
    if path.stat().st_size > MAX_BYTES:
        return None, [(key, f"{value!r} is larger than {MAX_BYTES // 2**20} MiB")]
    return path, []


def pairs_file_path(value: Any, spec_dir) -> pathlib.Path | None:
    """The file a ``pairs_file`` value names, or None where the spec could not use it."""
    return _locate(value, "pairs_file", spec_dir)[0]


def read_pairs_file(value: Any, fields: tuple[str, ...], *, key: str, spec_dir) -> tuple[list[RawPair], list[Problem]]:
    """The pairs of ``pairs_file`` ``value`` (relative to ``spec_dir``) and the problems found."""
    path, problems = _locate(value, key, spec_dir)
    if path is None:
        return [], problems
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [(key, f"cannot read {value}: {exc}")]
    delimiter = FORMATS[path.suffix.lower()]
    records, lines, problems = (_jsonl(text, value, fields) if delimiter is None else _table(text, value, delimiter, fields))
    sep = ", key " if delimiter is None else ", column "
    rows, row_problems = read_rows(records, fields, key, where=lambda i: f"{value} line {lines[i]}", sep=sep)
    if not rows and not problems and not row_problems:
        problems.append((key, f"{value} holds no pairs"))
    return rows, problems + row_problems


INT_RE = re.compile(r"-?[0-9]+")
FLOAT_RE = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?")


def _number(cell: str) -> Any:
    """A cell that reads as a plain decimal number becomes one ("1_000", " 7 " and other
    digits than 0-9 stay text); anything else stays text."""
    if INT_RE.fullmatch(cell):
        return int(cell)
    if FLOAT_RE.fullmatch(cell) and math.isfinite(float(cell)):
        return float(cell)
    return cell


def _table(text: str, name: str, delimiter: str, fields: tuple[str, ...]):
    # only \n and \r\n end a row (str.splitlines would also split on U+2028, form feeds, ...)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[dict] = []
    lines: list[int] = []
    try:
        header = next(reader, None)
        if header is None:
            return [], [], [(f"{name} line 1", "empty file; expected a header row with id, a, b")]
        header = [h.strip() for h in header]
        if "" in header:
            return [], [], [(f"{name} line 1", f"header: column {header.index('') + 1} has no name")]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes or "id" not in header:
            why = f"column {dupes[0]!r} appears twice" if dupes else "no 'id' column"
            return [], [], [(f"{name} line 1", f"header: {why}; expected columns id, {', '.join(fields)}")]
        start = reader.line_num + 1
        for cells in reader:
            if not any(c.strip() for c in cells):
                start = reader.line_num + 1
                continue
            if len(cells) != len(header):
                return records, lines, [(f"{name} line {start}", f"{len(cells)} cells, but the header has {len(header)}")]
            row: dict[str, Any] = {"meta": {}}
            for col, cell in zip(header, cells):
                if col == "id" or col in fields:
                    if cell != "":
                        row[col] = cell
                elif cell != "":
                    row["meta"][col] = _number(cell)
            records.append(row)
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        return records, lines, [(f"{name} line {reader.line_num}", f"malformed: {exc}")]
    return records, lines, []


def _no_duplicate_keys(items):
    keys = [k for k, _ in items]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"key {dupes[0]!r} appears twice")
    return dict(items)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _jsonl(text: str, name: str, fields: tuple[str, ...]):
    records: list[dict] = []
    lines: list[int] = []
    problems: list[Problem] = []
    # JSON Lines ends a record at \n only: U+2028 and friends may sit inside a string
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
        except (ValueError, RecursionError) as exc:
            problems.append((f"{name} line {number}", f"invalid JSON: {type(exc).__name__ if isinstance(exc, RecursionError) else exc}"))
            continue
        if not isinstance(obj, dict):
            problems.append((f"{name} line {number}", "expected a JSON object like {\"id\": ..., \"a\": ..., \"b\": ...}"))
            continue
        extra = {k: obj.pop(k) for k in list(obj) if k not in ("id", "meta") + fields}
        if extra and isinstance(obj.setdefault("meta", {}), dict):
            obj["meta"] = {**extra, **obj["meta"]}
        records.append(obj)
        lines.append(number)
    return records, lines, problems


def read_pairs(stimuli: dict[str, Any], fields: tuple[str, ...], *, key: str = "stimuli",
               spec_dir=None) -> tuple[list[RawPair], list[Problem]]:
    """The pairs of a stimulus table, from ``pairs``, ``template`` + ``items`` or ``pairs_file``.

    ``fields`` are the keys a pair may carry besides ``id`` and ``meta`` (e.g. ``a``,
    ``b``, ``a_image``). ``key`` is the table's own key path (``stimuli``, or e.g.
    ``stimuli.conditions`` for a generator that keeps its pairs deeper), used in every
    problem. ``spec_dir`` is the spec's folder, where ``pairs_file`` is looked up
    (``spec.spec_dir``; a pairs file is refused without it). Returns the pairs and the
    problems found; only structural problems are reported here, the generator checks
    which fields are required.
    """
    given = [k for k in ("pairs", "pairs_file") if k in stimuli] + (
        ["template + items"] if "template" in stimuli or "items" in stimuli else [])
    if len(given) > 1:
        return [], [(f"{key}.pairs", f"give one of pairs, pairs_file or template + items, not {' and '.join(given)}")]
    if not given:
        return [], [(f"{key}.pairs", "required key is missing (or give pairs_file, or template + items)")]
    if "pairs_file" in stimuli:
        return read_pairs_file(stimuli["pairs_file"], fields, key=f"{key}.pairs_file", spec_dir=spec_dir)
    if given[0] != "pairs":
        return expand_template(stimuli, fields, key)
    return read_rows(stimuli["pairs"], fields, f"{key}.pairs")
