"""Figure 1 — capture overhead: a transformer forward with plantain's capture hooks vs bare.

Arms (interleaved, same inputs, same module object):

- ``bare``:   ``transformer(**inputs)`` with no hooks;
- ``hooked``: the same forward inside ``plantain_core.capture.hooks.capture_units`` (layouts
  ``heads`` and ``slices16``, token scope ``all``: what ``plantain run`` captures by
  default) followed by ``cap.take()``, i.e. everything a probe pass adds: the pre-hooks'
  float32 sums of squares, the per-unit sums on the device, the one host transfer and
  the float64 RMS. The hooks are installed once (a run installs them once too).

Ratio = hooked / bare time per round. Two models: the embedded ``tiny`` (4 heads × 16,
576 tokens: Python overhead of the hooks is visible) and the ``wide`` config of
``benchmarks.inputs.WIDE_CONFIG`` (head dim 128, 512 text + 1024 image tokens), where
the target is ≤ 1.03.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .common import arm_summary, interleaved, log, quantiles, ratio
from .inputs import WIDE_CONFIG, build_transformer, forward_kwargs

LAYOUTS = ("heads", "slices16")
TARGET = 1.03


def overhead(transformer, kwargs: dict[str, Any], *, rounds: int, per: int, sumsq=None) -> dict[str, Any]:
    """Interleaved bare vs hooked forwards; ``per`` forwards per timed call.

    The hooks are installed (``capture_units`` entered) before the timed part of the
    hooked arm and removed after it, so the bare arm runs the same module with no hooks.
    Inside the hooked arm a :func:`hook_clock` adds up the time spent in the capture's
    hooks and ``take()``: ``self_time_ratio`` = hooked time / (hooked time − that), a
    within-forward figure that the machine's noise hardly touches.
    ``sumsq`` (optional) replaces ``plantain_core.capture.hooks._sumsq`` in an extra arm, to
    measure a candidate change without editing product code.
    """
    import torch

    from plantain_core.capture import hooks as capture

    state: dict[str, Any] = {}
    rows_bytes: list[int] = []
    units: dict[str, int] = {}
    hook_s: dict[str, list[float]] = {"hooked": [], "variant": []}
    original = capture._sumsq

    def bare():
        with torch.inference_mode():
            for _ in range(per):
                transformer(**kwargs)

    def enter(name, fn):
        def setup():
            capture._sumsq = fn
            state["name"] = name
            state["stack"] = stack = contextlib.ExitStack()
            state["cap"] = cap = stack.enter_context(capture.capture_units(transformer, LAYOUTS, "all"))
            state["clock"] = stack.enter_context(hook_clock(transformer, [site.module for site in cap.sites]))
        return setup

    def leave():
        capture._sumsq = original
        cap = state.pop("cap")
        units.update({name: len(lay) for name, lay in cap.layouts.items()})
        state.pop("clock")
        state.pop("stack").close()

    def hooked():
        cap, clock = state["cap"], state["clock"]
        clock.total = 0.0
        with torch.inference_mode():
            for _ in range(per):
                transformer(**kwargs)
                t0 = time.perf_counter()
                rows = cap.take()
                clock.total += time.perf_counter() - t0
        rows_bytes.append(sum(v.nbytes for v in rows.values()))
        hook_s[state["name"]].append(clock.total)

    arms: dict[str, Any] = {"bare": bare, "hooked": (enter("hooked", original), hooked, leave)}
    if sumsq is not None:
        arms["variant"] = (enter("variant", sumsq), hooked, leave)
    try:
        times = interleaved(arms, rounds=rounds, warmup=1)
    finally:
        capture._sumsq = original
    batch = kwargs["hidden_states"].shape[0]

    def self_time(name):
        own = hook_s[name][1:]  # the first call was the warm-up
        return quantiles(w / max(w - h, 1e-12) for w, h in zip(times[name]["wall"], own)), own

    self_ratio, own = self_time("hooked")
    out = {
        "ratio": ratio(times, "hooked", "bare"),
        "self_time_ratio": self_ratio,
        "hook_s_per_forward": quantiles(h / per for h in own),
        "bare_s_per_forward": arm_summary(times["bare"], per),
        "hooked_s_per_forward": arm_summary(times["hooked"], per),
        "forwards_per_call": per,
        "batch": batch,
        "tokens": {"text": kwargs["encoder_hidden_states"].shape[1], "image": kwargs["hidden_states"].shape[1]},
        "units": units,
        "host_bytes_per_pass": rows_bytes[-1] // batch if rows_bytes else None,
    }
    if sumsq is not None:
        out["variant_ratio"] = ratio(times, "variant", "bare")
        out["variant_self_time_ratio"] = self_time("variant")[0]
    return out


class _Clock:
    def __init__(self):
        self.total = 0.0
        self._t0 = 0.0


@contextlib.contextmanager
def hook_clock(transformer, modules):
    """Adds up the time spent inside the hooks already on ``modules`` and ``transformer``:
    a timing hook is put in front of them (prepend) and one behind them. Only public
    torch hook APIs; the timing hooks add a few microseconds per site, counted as capture
    time (so the self-time ratio errs high, never low)."""
    clock = _Clock()

    def start(*_args, **_kw):
        clock._t0 = time.perf_counter()

    def stop(*_args, **_kw):
        clock.total += time.perf_counter() - clock._t0

    handles = []
    for m in modules:  # the capture's pre-hooks on the output projections
        handles.append(m.register_forward_pre_hook(start, prepend=True))
        handles.append(m.register_forward_pre_hook(stop))
    # the capture's pre-hook (text length) and forward hook (unit sums, host transfer, RMS)
    handles.append(transformer.register_forward_pre_hook(start, prepend=True))
    handles.append(transformer.register_forward_pre_hook(stop))
    handles.append(transformer.register_forward_hook(start, prepend=True))
    handles.append(transformer.register_forward_hook(stop))
    try:
        yield clock
    finally:
        for h in handles:
            h.remove()


def run(quick: bool = False) -> dict[str, Any]:
    from plantain_core.models import TinyLoader

    result: dict[str, Any] = {"layouts": list(LAYOUTS), "token_scope": "all", "target_max": TARGET}
    log("capture overhead: tiny")
    tiny = TinyLoader().load("tiny", "cpu").pipeline.transformer
    kw = forward_kwargs(tiny, batch=2, image_side=8)  # 128×128: 64 image tokens, one pair per forward
    result["tiny"] = overhead(tiny, kw, rounds=8 if quick else 12, per=3)
    result["tiny"]["config"] = "embedded tiny (2 joint + 2 single blocks, 4 heads × 16), batch 2, 512 + 64 tokens"

    side = 16 if quick else 32
    log(f"capture overhead: wide ({side * side} image tokens)")
    wide = build_transformer(WIDE_CONFIG)
    kw = forward_kwargs(wide, batch=1, image_side=side)
    # third arm: the CUDA candidate (vector_norm sums), to show it must stay CUDA-only
    from .klein_gpu import _sumsq_norm

    result["wide"] = overhead(wide, kw, rounds=6 if quick else 8, per=1, sumsq=None if quick else _sumsq_norm)
    if not quick:
        result["wide"]["variant"] = "capture._sumsq replaced by torch.linalg.vector_norm(..., dtype=float32).square()"
    result["wide"]["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in WIDE_CONFIG.items()}
    result["wide"]["params_m"] = round(sum(p.numel() for p in wide.parameters()) / 1e6, 2)
    med = result["wide"]["ratio"]["wall"]["median"]
    result["met"] = med is not None and med <= TARGET
    return result
