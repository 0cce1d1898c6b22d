"""Unit layouts: how the inputs of the attention output projections split into units.

A model family (:mod:`plantain_core.models.family`) names its capture sites: the projections
that take each attention's output. Joint (double-stream) blocks have one per stream
(FLUX: ``attn.to_out[0]`` for image tokens, ``attn.to_add_out`` for text tokens); single
blocks have one projection over the text tokens followed by the image tokens, whose
input is the attention output followed by the parallel MLP's hidden activations
(FLUX.2: ``attn.to_out``; FLUX.1: ``proj_out``). Two layouts:

``heads``     true attention heads: features [h*d, (h+1)*d) of the attention part.
``slices16``  16-feature slices of the whole projection input (joint: the image
              stream's; single: attention + MLP) -- the seed cards' "heads".

A block without the stream a token scope reads (SD3's last block has no text output;
SD3.5's second attention ``attn2`` reads image tokens only) has no units in that scope.
Layouts are read off the module objects (not the config), so what is counted is what
the capture hooks see; ``plantain units`` builds the transformer on the meta device.
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs
import numpy as np

from ..errors import PlantainError, suggest

LAYOUT_NAMES = ("heads", "slices16")
SLICE_WIDTH = 16
TOKEN_SCOPES = ("all", "image", "text")


STREAMS = ("image", "text", "single")


@attrs.frozen
class BlockInfo:
    """One attention of a transformer block as the capture sees it."""

    kind: str  # "joint", "single", or a family's own (SD3.5's "attn2")
    index: int
    heads: int
    head_dim: int
    attn_dim: int  # features of the attention part of the projection input
    mlp_dim: int  # MLP features after it (single blocks); 0 in joint blocks
    # its projections: ("image", "text") in joint blocks, ("single",) in single blocks
    streams: tuple[str, ...] = ("image", "text")

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.index}]"

    @property
    def proj_in(self) -> int:
        return self.attn_dim + self.mlp_dim


@attrs.frozen
class BlockSpan:
    """The units of one block in one layout: unit indices [start, stop), each unit
    summing ``width`` consecutive features of the first ``features`` projection inputs."""

    block: BlockInfo
    start: int
    stop: int
    width: int
    features: int
    mlp_units: int


@attrs.frozen
class Site:
    """One hooked projection: its block, stream ("image", "text" or "single") and module."""

    block: BlockInfo
    stream: str
    module: Any = attrs.field(eq=False, repr=False)


def blocks_of(sites: Iterable[Site]) -> list[BlockInfo]:
    """The blocks of ``sites`` in order, each once."""
    return list(dict.fromkeys(site.block for site in sites))


def joint_streams(layout: str, scope: str) -> tuple[str, ...]:
    """Which joint-block projections (``image`` = to_out[0], ``text`` = to_add_out) a
    unit of ``layout`` covers under token ``scope``."""
    if scope == "image":
        return ("image",)
    if scope == "text":
        return ("text",)
    return ("image", "text") if layout == "heads" else ("image",)


def block_streams(block: BlockInfo, layout: str, scope: str) -> tuple[str, ...]:
    """The projections a unit of ``block`` reads under ``layout`` and ``scope`` (empty:
    the block has no units there)."""
    if "single" in block.streams:
        return ("single",)
    if len(block.streams) == 1 and scope == "all":  # a one-stream block (Z-Image's caption refiner) is read whole
        return block.streams
    return tuple(s for s in joint_streams(layout, scope) if s in block.streams)


@attrs.define(eq=False)
class Layout:
    name: str
    units: tuple[str, ...]
    mlp: np.ndarray  # (U,) bool: unit reads MLP channels, not attention
    spans: tuple[BlockSpan, ...]

    def __len__(self) -> int:
        return len(self.units)

    @property
    def mlp_units(self) -> int:
        return int(self.mlp.sum())

    def block_index(self) -> np.ndarray:
        """(U,) ordinal of each unit's block in ``spans``."""
        out = np.empty(len(self.units), dtype=np.int64)
        for i, span in enumerate(self.spans):
            out[span.start:span.stop] = i
        return out

    def info(self) -> dict[str, Any]:
        return {"units": len(self.units), "mlp_units": self.mlp_units}

    def per_block(self) -> list[dict[str, Any]]:
        return [
            {"block": s.block.name, "units": s.stop - s.start, "mlp_units": s.mlp_units, "unit_features": s.width}
            for s in self.spans
        ]


def parse_layouts(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"heads,slices16"`` or a sequence -> validated, de-duplicated tuple."""
    if value is None:
        return LAYOUT_NAMES
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name not in LAYOUT_NAMES:
            raise PlantainError(f"unknown unit layout {name!r}{suggest(name, LAYOUT_NAMES)}; known: {', '.join(LAYOUT_NAMES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise PlantainError(f"no unit layout given; known: {', '.join(LAYOUT_NAMES)}")
    return tuple(names)


def check_scope(scope: str) -> str:
    if scope not in TOKEN_SCOPES:
        raise PlantainError(f"unknown token scope {scope!r}{suggest(scope, TOKEN_SCOPES)}; known: {', '.join(TOKEN_SCOPES)}")
    return scope


def build_layout(name: str, blocks: list[BlockInfo], token_scope: str = "all") -> Layout:
    blocks = [b for b in blocks if block_streams(b, name, token_scope)]
    if not blocks:
        raise PlantainError(f"no block has units of layout {name!r} under token scope {token_scope!r}")
    if name == "heads":
        groups = [(b, b.head_dim, b.attn_dim) for b in blocks]
        prefix, count = "h", max(b.heads for b in blocks)
    elif name == "slices16":
        for b in blocks:
            if b.attn_dim % SLICE_WIDTH or b.mlp_dim % SLICE_WIDTH:
                raise PlantainError(f"{b.name}: projection input {b.attn_dim}+{b.mlp_dim} is not a multiple of {SLICE_WIDTH}")
        # Joint blocks: to_out[0] input only (attention); single: attention + MLP.
        groups = [(b, SLICE_WIDTH, b.proj_in) for b in blocks]
        prefix, count = "s", max(b.proj_in // SLICE_WIDTH for b in blocks)
    else:
        parse_layouts([name])
        raise AssertionError(name)
    # zero-padded to the widest block so names sort and align within one model
    digits = max(2 if prefix == "h" else 4, len(str(count - 1)))
    units: list[str] = []
    mlp: list[bool] = []
    spans: list[BlockSpan] = []
    for block, width, features in groups:
        n = features // width
        start = len(units)
        units += [f"{block.name}.{prefix}{k:0{digits}d}" for k in range(n)]
        is_mlp = [k * width >= block.attn_dim for k in range(n)]
        mlp += is_mlp
        spans.append(BlockSpan(block, start, len(units), width, features, sum(is_mlp)))
    return Layout(name, tuple(units), np.asarray(mlp, dtype=bool), tuple(spans))


def build_layouts(names: Iterable[str], blocks: list[BlockInfo], token_scope: str = "all") -> dict[str, Layout]:
    check_scope(token_scope)
    return {name: build_layout(name, blocks, token_scope) for name in parse_layouts(names)}
