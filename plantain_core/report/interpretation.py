"""What an interpreter returns: extra numbers for summary.json and sections for the card."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Section:
    """One card section: a heading and its markdown body."""

    title: str
    markdown: str


@attrs.frozen
class Interpretation:
    """``numbers`` go to ``summary.json`` under ``interpretation``; ``sections`` are
    appended to the card's Interpretation part in order."""

    numbers: dict[str, Any] = attrs.field(factory=dict)
    sections: tuple[Section, ...] = ()
