"""Parameter types and callbacks shared by ``run``, ``report`` and ``causal``."""

from __future__ import annotations

import math
import re

import click

from ..errors import suggest
from ..models.devices import DTYPE_ALIASES
from ..models.layouts import LAYOUT_NAMES

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class NumberList(click.ParamType):
    """Comma-separated positive numbers (``float``) or integers (``int``), e.g. ``3,5``."""

    def __init__(self, kind: type, what: str, example: str):
        self.kind, self.what, self.example = kind, what, example
        self.name = what.upper()

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        noun = "numbers" if self.kind is float else "integers"
        try:
            out = tuple(self.kind(x) for x in str(value).split(",") if x.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {noun} (e.g. {self.example})", param, ctx)
        if not out or any(not math.isfinite(x) or x <= 0 for x in out):
            self.fail(f"{value!r}: {self.what} must be positive {noun} (e.g. {self.example})", param, ctx)
        return out


THRESHOLDS = NumberList(float, "thresholds", "3,5")
DOSES = NumberList(int, "doses", "1,4,16,64")


class LayoutList(click.ParamType):
    name = "LAYOUTS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(v.strip() for v in str(value).split(",") if v.strip())
        choices = ", ".join(LAYOUT_NAMES)
        if not names:
            self.fail(f"{value!r}: no unit layout given; choose from {choices}", param, ctx)
        bad = [n for n in names if n not in LAYOUT_NAMES]
        if bad:
            self.fail(f"{value!r}: unknown unit layout {bad[0]!r}{suggest(bad[0], LAYOUT_NAMES)}; choose from {choices}",
                      param, ctx)
        return tuple(dict.fromkeys(names))


def check_device(ctx, param, value):
    if not DEVICE_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps", ctx, param)
    return value


def check_dtype(ctx, param, value):
    if value is None:
        return None
    if value.lower() not in DTYPE_ALIASES:
        raise click.BadParameter(f"{value!r} is not a dtype; use bf16, fp16 or fp32", ctx, param)
    return DTYPE_ALIASES[value.lower()]


def check_size(ctx, param, value):
    """``--height`` / ``--width``: the run configuration's rule (a multiple of 16), as a usage error."""
    from ..config import ConfigError, RunConfig

    if value is None:
        return None
    try:
        RunConfig(probe="-", **{param.name: value})
    except ConfigError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1], ctx, param) from None
    return value
