"""Untrusted text on a card: what a spec, a plugin or a received manifest supplies is
shown as text, never as Markdown or HTML.

A card is rendered by the hub and by GitHub (CommonMark with raw HTML allowed), so a
spec's title could otherwise start a block (a newline then ``---`` or ``#``), inject
``<script>`` or an ``<img>``, or make every reader's viewer fetch a remote image
(``![x](http://...)``). Every string that enters the card from outside plantain goes
through one of these three functions where it is placed:

- :func:`md_text`: inline text (titles, prompts, pair ids, meta, names);
- :func:`md_code`: a code span (model ids, unit names, file names);
- :func:`md_prose`: an interpreter's section body, which may keep ``**bold**``,
  ``_emphasis_`` and code spans but no HTML, link, image, table or block structure.
"""

from __future__ import annotations

import re

#: Characters with a meaning in CommonMark/GFM inline or table syntax; escaped with a backslash.
_TEXT_SPECIAL = re.compile(r"([\\`*\[\]<>#!|~&$])")
#: An underscore that could open or close emphasis: one not between two letters or digits
#: (``proj_out`` renders as written, so it stays readable in the raw card and in a search).
_LOOSE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
#: What interpreter prose may not use: HTML, entities, links and images, tables.
_PROSE_SPECIAL = re.compile(r"([\\<>&\[\]!|$])")
_SPACES = re.compile(r"\s+")
#: A line that would start a block: heading, quote, list item, thematic break, setext underline.
_BLOCK_START = re.compile(r"^(?:[-+*](?=\s|$)|[-=_*\s]+$|[#>]|[~`]{3}|\d{1,9}(?=[.)](?:\s|$)))")


def _one_line(text) -> str:
    """Every kind of line break (\\r, U+2028, form feed, ...) and run of whitespace is one
    space, and control characters are dropped: nothing can start a new block."""
    text = "".join(ch for ch in str(text) if ch.isprintable() or ch.isspace())
    return _SPACES.sub(" ", text).strip()


def _guard_start(line: str) -> str:
    match = _BLOCK_START.match(line)
    if match is None:
        return line
    end = match.end()
    if line[:end].isdigit():  # "1." / "1)": escape the list marker's punctuation
        return line[:end] + "\\" + line[end:]
    return "\\" + line


def md_text(text, limit: int | None = None) -> str:
    """``text`` as one line of inline Markdown that renders as exactly that text.
    ``limit`` cuts the text (before escaping) with an ellipsis."""
    line = _one_line(text)
    if limit is not None and len(line) > limit:
        line = line[:limit].rstrip() + "…"
    return _guard_start(_LOOSE_UNDERSCORE.sub(r"\\_", _TEXT_SPECIAL.sub(r"\\\1", line)))


def md_code(text, limit: int | None = None) -> str:
    """``text`` as an inline code span: a fence longer than any backtick run inside, so
    the text cannot close it."""
    line = _one_line(text)
    if limit is not None and len(line) > limit:
        line = line[:limit].rstrip() + "…"
    if not line:
        return "``"
    fence = "`" * (max((len(r) for r in re.findall(r"`+", line)), default=0) + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def md_prose(text) -> str:
    """An interpreter's Markdown body as paragraphs of text with emphasis and code spans
    only: paragraphs (blank-line separated) are kept, each on one line; HTML, entities,
    links, images and tables are escaped, and no line can open a block."""
    paragraphs = [_one_line(p) for p in re.split(r"\n[ \t]*\n", str(text).replace("\r\n", "\n"))]
    return "\n\n".join(_guard_start(_PROSE_SPECIAL.sub(r"\\\1", p)) for p in paragraphs if p)
