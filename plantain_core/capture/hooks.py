"""Per-unit RMS capture with torch forward pre-hooks on the attention output projections.

The projections are the model family's capture sites (:meth:`ModelFamily.sites
<plantain_core.models.family.ModelFamily.sites>`); the table below names FLUX.2's.

(Named ``capture`` so it is not confused with pluggy's plugin hooks.)

For every hooked projection input ``x`` (batch, tokens, features) the pre-hook adds up
``x**2`` over the tokens of the requested scope, per batch element and per feature, in
float32 on the device. When the transformer's forward returns, each layout's unit sums
are formed on the device, every layout is stacked into one tensor and moved to the host
once; there they become RMS = sqrt(sum(x^2) / (tokens * unit features)) in float64.

Sites and token scopes (the text stream is always first in the single-block sequence,
``torch.cat([encoder_hidden_states, hidden_states])`` in diffusers):

============  ======================  ========================  ======================
scope         joint ``heads``         joint ``slices16``        single blocks
============  ======================  ========================  ======================
``all``       to_out[0] + to_add_out  to_out[0] (cards' unit)   every token
``image``     to_out[0]               to_out[0]                 tokens [text_len:]
``text``      to_add_out              to_add_out                tokens [:text_len]
============  ======================  ========================  ======================

"image" tokens are the noisy latent followed by any conditioning-image tokens.

Interventions: each pre-hook first offers its input to an optional
``editor(site, x, text_len)``; a tensor it returns replaces the projection input and is
what gets captured. :class:`SliceEditor` is the one mechanism that reads and writes the
units' slices: :func:`unit_features` maps units of a layout to the projection-input
features they cover at each site, and :func:`token_range` gives the tokens of the run's
scope, the same ones the capture sums over. ``plantain causal`` (``causal.py``) builds
its mean/zero ablations and activation patches on it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any, Callable, Iterator

import attrs
import numpy as np

from ..models.family import ModelFamily
from ..models.layouts import LAYOUT_NAMES, BlockInfo, Layout, Site, block_streams, blocks_of, build_layouts, check_scope
from ..errors import PlantainError

# Bound the float32 temporary of a projection input (elements): long single-block
# sequences of the 4B model at 1024px would otherwise double activation memory.
_CHUNK_ELEMENTS = 1 << 26


Editor = Callable[[Site, Any, int], Any]  # (site, x, text_len) -> replacement x or None
SiteKey = tuple[BlockInfo, str]  # (block, stream): one hooked projection


def token_range(stream: str, scope: str, n_tokens: int, text_len: int | None) -> tuple[int, int]:
    """Tokens [start, stop) of one projection input that a unit covers under ``scope``:
    every token of a joint stream; in single blocks text first, then image tokens."""
    if stream != "single" or scope == "all":
        return 0, n_tokens
    if text_len is None:
        raise RuntimeError(f"--token-scope {scope} on a single-stream site needs the text length, which the model "
                           "family's text_length() does not give for this forward (Z-Image's layers put the image "
                           "first): this model family runs --token-scope all only")
    return (text_len, n_tokens) if scope == "image" else (0, text_len)


def unit_features(layout: Layout, indices, token_scope: str) -> dict[SiteKey, np.ndarray]:
    """Projection-input features (sorted int64) that units ``indices`` of ``layout`` cover,
    per site. A joint ``heads`` unit under scope ``all`` covers both streams."""
    span_of = layout.block_index()
    out: dict[SiteKey, list[int]] = {}
    for u in np.asarray(indices, dtype=np.int64).ravel():
        span = layout.spans[span_of[u]]
        first = int(u - span.start) * span.width
        for stream in block_streams(span.block, layout.name, token_scope):
            out.setdefault((span.block, stream), []).extend(range(first, first + span.width))
    return {key: np.unique(np.asarray(v, dtype=np.int64)) for key, v in out.items()}


def merge_features(*maps: dict[SiteKey, np.ndarray]) -> dict[SiteKey, np.ndarray]:
    out: dict[SiteKey, np.ndarray] = {}
    for m in maps:
        for key, feats in m.items():
            out[key] = np.union1d(out[key], feats) if key in out else np.asarray(feats, dtype=np.int64)
    return out


class SliceEditor:
    """An ``editor`` for :func:`capture_units` that reads and/or writes units' slices.

    ``features`` maps each site (block, stream) to the projection-input features of the
    chosen units (:func:`unit_features`); the tokens are the run's scope
    (:func:`token_range`). At every hooked projection with chosen features, the slice
    ``x[:, start:stop, features]`` (batch, tokens, features) goes to ``read(key, part)``
    if given; if ``write`` is given, ``write(key, part)`` returns its replacement and
    the projection sees a copy of ``x`` with that slice replaced. Sites without chosen
    features are left alone.
    """

    def __init__(self, features: dict[SiteKey, np.ndarray], token_scope: str, *, read=None, write=None):
        check_scope(token_scope)
        self.features = {k: np.asarray(v, dtype=np.int64) for k, v in features.items() if len(v)}
        self.token_scope = token_scope
        self.read, self.write = read, write
        self._index: dict[tuple[SiteKey, Any], Any] = {}
        self.calls = 0

    def index(self, key: SiteKey, device):
        """The features of ``key`` as a long tensor on ``device`` (cached)."""
        import torch

        cached = self._index.get((key, device))
        if cached is None:
            cached = self._index[(key, device)] = torch.as_tensor(self.features[key], device=device)
        return cached

    def __call__(self, site: Site, x, text_len):
        key = (site.block, site.stream)
        if key not in self.features:
            return None
        self.calls += 1
        start, stop = token_range(site.stream, self.token_scope, x.shape[1], text_len)
        feats = self.index(key, x.device)
        part = x[:, start:stop].index_select(-1, feats)
        if self.read is not None:
            self.read(key, part)
        if self.write is None:
            return None
        new = self.write(key, part)
        if tuple(new.shape) != tuple(part.shape):
            raise RuntimeError(f"{site.block.name}/{site.stream}: replacement {tuple(new.shape)} for a slice "
                               f"{tuple(part.shape)}")
        out = x.clone()
        out[:, start:stop, feats] = new.to(dtype=x.dtype, device=x.device)
        return out


def _sumsq(x, start: int, stop: int):
    """sum over tokens [start, stop) of x**2 -> (batch, features) float32, chunked."""
    import torch

    x = x[:, start:stop]
    batch, tokens, feats = x.shape
    out = torch.zeros(batch, feats, dtype=torch.float32, device=x.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, batch * feats))
    for i in range(0, tokens, step):
        out += x[:, i:i + step].float().square().sum(dim=1)
    return out


def _normsq(x, start: int, stop: int):
    """``norm-v2``: the same sums as one fused ``vector_norm`` reduction, squared (equal to
    float tolerance, not bit-equal: the norm's sqrt and the square round)."""
    import torch

    return torch.linalg.vector_norm(x[:, start:stop], ord=2, dim=1, dtype=torch.float32).square()


#: capture method names (RunConfig.capture_method), see :func:`reduction`
REDUCTIONS = ("sumsq-v1", "norm-v2")


def reduction(method: str):
    """The reduction of capture method ``method``: (x, start, stop) -> (batch, features) float32
    sums of x**2. Module globals looked up when called: a benchmark may swap a function in
    (benchmarks/capture_bench.py), and dynamo traces the lookup (``globals()`` would break the graph)."""
    return _normsq if method == "norm-v2" else _sumsq


class SliceMeans:
    """A ``read`` callback of :class:`SliceEditor`: the slices' sum per (site, token
    count) over every row read, in float32; ``mean(key, tokens)`` is their mean
    (per token position and feature), what mean ablation writes."""

    def __init__(self):
        self.sums: dict[Any, Any] = {}
        self.counts: dict[Any, int] = {}

    def __call__(self, key, part) -> None:
        k = (key, part.shape[1])
        s = part.float().sum(dim=0)
        self.sums[k] = s if k not in self.sums else self.sums[k] + s
        self.counts[k] = self.counts.get(k, 0) + part.shape[0]

    def mean(self, key, tokens: int):
        if (key, tokens) not in self.sums:
            raise RuntimeError(f"no mean for {key[0].name}/{key[1]} at {tokens} tokens: no pass of that shape was read")
        return self.sums[(key, tokens)] / self.counts[(key, tokens)]

    @property
    def shapes(self) -> int:
        """The most token counts seen at one site (1: every pass had the same shape)."""
        return max(Counter(key for key, _ in self.sums).values(), default=0)


@attrs.define(eq=False)
class UnitCapture:
    """Live capture state; use :func:`capture_units`. ``take()`` returns what was captured."""

    transformer: Any
    layouts: dict[str, Layout]
    token_scope: str
    sites: list[Site]  # the family's capture sites of ``transformer``
    editor: Editor | None = None
    measure: bool = True  # False: apply the editor only, capture nothing (intervention passes)
    family: Any = None  # the model family whose sites these are (None: the contract's defaults)
    method: str = "sumsq-v1"  # a key of REDUCTIONS
    _handles: list[Any] = attrs.field(factory=list)
    _text_len: int | None = None
    _sums: dict[SiteKey, Any] = attrs.field(factory=dict)
    _tokens: dict[SiteKey, int] = attrs.field(factory=dict)
    _done: list[dict[str, np.ndarray]] = attrs.field(factory=list)
    forwards: int = 0

    # -- which tokens each site contributes -------------------------------------------
    def _needed(self, site: Site) -> bool:
        return any(site.stream in block_streams(site.block, name, self.token_scope) for name in self.layouts)

    def _token_range(self, site: Site, n_tokens: int) -> tuple[int, int]:
        return token_range(site.stream, self.token_scope, n_tokens, self._text_len)

    # -- hooks -------------------------------------------------------------------------
    def _on_transformer_start(self, module, args, kwargs):
        if self.editor is not None and getattr(module, "_plantain_compiled", False):
            raise PlantainError("causal interventions (SliceEditor) run eagerly only: run them without --compile")
        # the family reads its own forward's arguments: a pipeline may pass the text positionally,
        # as a list or under another name (Z-Image's cap_feats), where plantain passes keywords
        self._text_len = (ModelFamily.text_length(None, args, kwargs) if self.family is None
                          else self.family.text_length(args, kwargs))
        self._sums.clear()  # a forward that raised leaves partial sums behind
        self._tokens.clear()

    def _on_transformer_end(self, module, args, kwargs, output):
        if self.measure:
            self._done.append(self._finish())
        self.forwards += 1

    def _make_pre_hook(self, site: Site):
        import torch

        def hook(module, args):
            x = args[0]
            replaced = None
            if self.editor is not None:
                replaced = self.editor(site, x, self._text_len)
                if replaced is not None:
                    x = replaced
            if self.measure and self._needed(site):
                start, stop = self._token_range(site, x.shape[1])
                with torch.no_grad():
                    self._sums[(site.block, site.stream)] = reduction(self.method)(x.detach(), start, stop)
                self._tokens[(site.block, site.stream)] = stop - start
            return None if replaced is None else (replaced, *args[1:])

        return hook

    def _finish(self) -> dict[str, np.ndarray]:
        """Unit sums for every layout on the device, one transfer, RMS in float64."""
        import torch

        pieces, denoms, sizes = [], [], []
        for name, layout in self.layouts.items():
            n = 0
            for span in layout.spans:
                total, tokens = None, 0
                for stream in block_streams(span.block, name, self.token_scope):
                    ss = self._sums[(span.block, stream)][:, :span.features]
                    total = ss if total is None else total + ss
                    tokens += self._tokens[(span.block, stream)]
                units = span.stop - span.start
                pieces.append(total.reshape(total.shape[0], units, span.width).sum(dim=-1))
                denoms.append(np.full(units, float(tokens * span.width)))
                n += units
            sizes.append(n)
        with torch.no_grad():
            sums = torch.cat(pieces, dim=1).cpu().numpy().astype(np.float64)  # the one host transfer
        rms = np.sqrt(sums / np.concatenate(denoms)[None, :])
        out, start = {}, 0
        for name, n in zip(self.layouts, sizes):
            out[name] = rms[:, start:start + n]
            start += n
        self._sums.clear()
        self._tokens.clear()
        return out

    def take(self) -> dict[str, np.ndarray]:
        """RMS per layout, (rows, units) float64: one row per batch element of every
        transformer forward since the last ``take()``, in call order."""
        done, self._done = self._done, []
        if not done:
            return {name: np.zeros((0, len(layout)), dtype=np.float64) for name, layout in self.layouts.items()}
        return {name: np.concatenate([d[name] for d in done], axis=0) for name in self.layouts}

    # -- install / remove --------------------------------------------------------------
    def install(self) -> None:
        self._handles.append(self.transformer.register_forward_pre_hook(self._on_transformer_start, with_kwargs=True))
        self._handles.append(self.transformer.register_forward_hook(self._on_transformer_end, with_kwargs=True))
        for site in self.sites:
            self._handles.append(site.module.register_forward_pre_hook(self._make_pre_hook(site)))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()


@contextlib.contextmanager
def capture_units(
    transformer,
    layouts=LAYOUT_NAMES,
    token_scope: str = "all",
    editor: Editor | None = None,
    measure: bool = True,
    family=None,
    method: str = "sumsq-v1",
) -> Iterator[UnitCapture]:
    """Capture per-unit RMS of every attention output projection input while inside.

    ``layouts`` is a sequence of layout names (``heads``, ``slices16``); ``token_scope``
    is ``all``, ``image`` or ``text``. Yields a :class:`UnitCapture`; call ``take()``
    after each transformer forward. The hooks are removed on exit, also on error.
    ``editor`` (e.g. a :class:`SliceEditor`) and ``measure`` may be changed between
    forwards on the yielded object. ``family``: the model family whose capture sites
    to hook (default: the one registered for the transformer's class). ``method``: the
    capture method, a key of :data:`REDUCTIONS`.
    """
    from ..models.family import checked_sites
    from ..models.lookup import family_for_transformer

    check_scope(token_scope)
    family = family or family_for_transformer(transformer)
    sites = checked_sites(family, transformer)
    built = build_layouts(layouts, blocks_of(sites), token_scope)
    if method not in REDUCTIONS:
        raise ValueError(f"unknown capture method {method!r}; choose from {', '.join(REDUCTIONS)}")
    cap = UnitCapture(transformer, built, token_scope, sites, editor, measure, family, method)
    try:
        cap.install()
        yield cap
    finally:
        cap.remove()
