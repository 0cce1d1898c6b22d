"""The warnings a run's statistics carry, in one place: the CLI prints them as
``warning:`` lines and the Python API raises them as :mod:`warnings` of plantain's
classes, so a notebook shows the same sentences a terminal does."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

from ..errors import ConfoundWarning, PlantainWarning, SmallSampleWarning, SpecificityWarning
from .checks_section import length_sentence, small_n_line


def advisories(summary: Mapping[str, Any]) -> list[tuple[type[PlantainWarning], str]]:
    """``(category, sentence)`` for every warning ``summary`` (summary.json's content) carries."""
    out: list[tuple[type[PlantainWarning], str]] = []
    for name, s in (summary.get("layouts") or {}).items():
        line = small_n_line(s, summary.get("n_pairs"))
        if line:
            out.append((SmallSampleWarning, f"{name}: {line}"))
    tc = (summary.get("confounds") or {}).get("token_counts") or {}
    if tc.get("constant_diff"):
        out.append((ConfoundWarning, f"condition and prompt length are confounded ({length_sentence(tc)})"))
    for name, s in (summary.get("layouts") or {}).items():
        sp = s.get("specificity") or {}
        raw, specific = sp.get("raw_p_fwer_lt_0.05"), sp.get("p_fwer_lt_0.05")
        if isinstance(raw, int) and isinstance(specific, int) and raw > specific:
            mde = sp.get("mde_dz")
            power = f"; the test detects |d_z| ≥ {mde:.2f} with 80% power" if isinstance(mde, (int, float)) else ""
            out.append((SpecificityWarning, f"{name}: for {raw - specific:,} of {raw:,} raw hits the data cannot tell "
                                            f"whether they are unit-specific or the common mode{power}"))
    return out


def warn_advisories(summary: Mapping[str, Any], stacklevel: int = 3) -> None:
    """Raise each of :func:`advisories` as a Python warning."""
    for category, text in advisories(summary):
        warnings.warn(text, category, stacklevel=stacklevel)
