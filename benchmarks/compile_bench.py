"""Figure ``compile`` — capture overhead inside ``torch.compile``: the compiled transformer with
plantain's capture in the graph vs the same compiled transformer bare.

Arms (interleaved, same inputs, same module, ``forward`` compiled once by
``plantain_core.capture.compiled.compiled`` with inductor):

- ``bare``:   the compiled forward with no hooks installed;
- ``hooked``: the compiled forward inside ``capture_units`` (``heads`` + ``slices16``, scope
  ``all``) followed by ``cap.take()``: the pre-hooks traced into the graph, the unit sums,
  one host transfer, the float64 RMS;
- ``hooked_norm``: the same with capture method ``norm-v2`` (one fused ``vector_norm``).

dynamo guards on the installed hooks, so each arm has its own graph; both are compiled in
the warm-up (not timed) and reused after. Also recorded: the eager hooked / bare ratio of the
same model in the same process (the ``capture`` figure's measure), compiled / eager time per
forward of each arm, the graph-break count (target 0) and the graphs compiled.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .common import arm_summary, interleaved, log, ratio
from .inputs import WIDE_CONFIG, build_transformer, forward_kwargs

LAYOUTS = ("heads", "slices16")
TARGET = 1.05


def arms(transformer, kwargs: dict[str, Any], method: str = "sumsq-v1") -> dict[str, Any]:
    """``bare`` and ``hooked`` arms of one transformer (compiled or not, as it is now)."""
    import torch

    from plantain_core.capture.hooks import capture_units

    state: dict[str, Any] = {}

    def bare():
        with torch.inference_mode():
            transformer(**kwargs)

    def setup():
        state["stack"] = stack = contextlib.ExitStack()
        state["cap"] = stack.enter_context(capture_units(transformer, LAYOUTS, "all", method=method))

    def hooked():
        with torch.inference_mode():
            transformer(**kwargs)
        state["cap"].take()

    return {"bare": bare, "hooked": (setup, hooked, lambda: state.pop("stack").close())}


def run(quick: bool = False) -> dict[str, Any]:
    import torch._dynamo
    from torch._dynamo.utils import counters

    from plantain_core.capture.compiled import compiled, graph_breaks

    side = 16 if quick else 32
    rounds = 6 if quick else 10
    log(f"compile: wide ({side * side} image tokens), inductor")
    wide = build_transformer(WIDE_CONFIG)
    kw = forward_kwargs(wide, batch=1, image_side=side)
    eager_times = interleaved(arms(wide, kw), rounds=rounds, warmup=1)
    torch._dynamo.reset()
    counters.clear()
    with compiled(wide, True, "inductor"):
        both = arms(wide, kw)
        both["hooked_norm"] = arms(wide, kw, "norm-v2")["hooked"]  # the fused capture method, compiled
        times = interleaved(both, rounds=rounds, warmup=2)
    breaks = graph_breaks()
    result: dict[str, Any] = {
        "layouts": list(LAYOUTS), "token_scope": "all", "backend": "inductor", "target_max": TARGET,
        "ratio": ratio(times, "hooked", "bare"),
        "norm_v2_ratio": ratio(times, "hooked_norm", "bare"),
        "eager_ratio": ratio(eager_times, "hooked", "bare"),
        "bare_s_per_forward": arm_summary(times["bare"]),
        "hooked_s_per_forward": arm_summary(times["hooked"]),
        "eager_bare_s_per_forward": arm_summary(eager_times["bare"]),
        "eager_hooked_s_per_forward": arm_summary(eager_times["hooked"]),
        "graph_breaks": breaks,
        "graphs_compiled": int(counters["stats"]["unique_graphs"]),
        "tokens": {"text": kw["encoder_hidden_states"].shape[1], "image": kw["hidden_states"].shape[1]},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in WIDE_CONFIG.items()},
    }
    med = result["ratio"]["wall"]["median"]
    result["met"] = med is not None and med <= TARGET and breaks == 0
    return result
