"""Atomic file writes: a reader never sees a half-written file, even after a kill."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> pathlib.Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; results should be as readable as any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=None if "b" in mode else "") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    return atomic_write(path, lambda fh: fh.write(data), "wb")


def atomic_write_text(path, text: str) -> pathlib.Path:
    return atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_json(path, obj: Any) -> pathlib.Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n")
