"""Exceptions with messages meant for the user.

Anything raised as a :class:`PlantainError` is printed by the CLI as one line, without a
traceback, and makes the command exit non-zero. Everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib


class PlantainError(Exception):
    """A user-facing error: bad input, missing file, unknown name."""


class SpecError(PlantainError):
    """One or more problems in a spec file, reported together as ``FILE: key.path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(PlantainError):
    """A plugin failed to load or register, or two plugins claim one name."""


class PlantainWarning(UserWarning):
    """Something a run's reader must weigh: what the CLI prints as ``warning:``. A notebook
    shows it; ``warnings.simplefilter("error", pt.PlantainWarning)`` makes it fatal."""


class ConfoundWarning(PlantainWarning):
    """A/B differ in something besides the condition (prompt length in every pair)."""


class TruncationWarning(PlantainWarning):
    """A prompt longer than the text encoder reads was cut."""


class SmallSampleWarning(PlantainWarning):
    """Too few pairs for a test to reach its level (no unit can pass p_fwer < 0.05)."""


class SpecificityWarning(PlantainWarning):
    """Raw hits that the data cannot tell unit-specific from the common mode."""


def suggest(name: str, candidates) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidates, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def unknown(what: str, name: str, candidates) -> PlantainError:
    """An 'unknown X' error with close-match suggestions and the known names."""
    known = sorted(str(c) for c in candidates)
    hint = suggest(name, known)
    listing = ", ".join(known) if known else "none"
    return PlantainError(f"unknown {what} {name!r}{hint}; known: {listing}")


def plugin_call(where: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` of a plugin's code, whose failure (even ``SystemExit``) is
    one PlantainError ``"{where} failed: Type: message"``. A PlantainError passes as it is,
    and so does running out of memory: that is the machine's, not the plugin's."""
    try:
        return fn(*args, **kwargs)
    except PlantainError:
        raise
    except (Exception, SystemExit) as exc:
        if is_out_of_memory(exc):
            raise
        raise PlantainError(f"{where} failed: {type(exc).__name__}: {exc}") from exc


def is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch's (CUDA) OutOfMemoryError, or torch's CPU allocator
    failing (a RuntimeError "can't allocate memory")."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc)))
