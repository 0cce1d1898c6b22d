"""Figure 5 — the same capture with nnsight, as a peer (if nnsight is installed).

On the ``tiny`` transformer, batch 2 (one pair), interleaved arms:

- ``bare``: the forward with no hooks;
- ``plantain``: the forward inside ``capture_units`` (``heads`` + ``slices16``, scope
  ``all``) + ``take()``;
- ``nnsight``: ``NNsight(transformer).trace(**inputs)`` saving, at every hooked
  projection, the float32 sum over tokens of ``input²`` (the same reduction plantain's
  pre-hooks do, written inside the trace so only (batch, features) leaves the model),
  then the same per-unit sums and RMS on the host. nnsight wraps its own deep copy of
  the transformer (same weights), so the other arms run an untouched module.

Reported: time per capture pass of nnsight and of plantain relative to the bare forward
and to each other, and the largest relative difference between their unit values.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .common import arm_summary, interleaved, log, ratio
from .inputs import forward_kwargs

LAYOUTS = ("heads", "slices16")


def _available() -> tuple[bool, str]:
    try:
        import nnsight  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return False, f"nnsight not importable: {type(exc).__name__}: {exc}"
    return True, getattr(nnsight, "__version__", "unknown")


def units_from_sums(layouts, sums: dict, tokens: dict, scope_streams) -> dict[str, np.ndarray]:
    """Per-unit RMS from per-site sums of squares (batch, features), independently of
    plantain's capture code: joint ``heads`` cover both streams under scope ``all``,
    joint ``slices16`` the image stream, single blocks every token."""
    out = {}
    for name, layout in layouts.items():
        cols = []
        for span in layout.spans:
            streams = ("single",) if span.block.kind == "single" else scope_streams(name)
            total = sum(sums[(span.block.kind, span.block.index, s)][:, :span.features] for s in streams)
            n_tok = sum(tokens[(span.block.kind, span.block.index, s)] for s in streams)
            units = span.stop - span.start
            ss = total.reshape(total.shape[0], units, span.width).sum(-1)
            cols.append(np.sqrt(ss / (n_tok * span.width)))
        out[name] = np.concatenate(cols, axis=1)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    ok, info = _available()
    if not ok:
        return {"available": False, "reason": info}
    import torch
    from nnsight import NNsight

    from plantain_core.capture.hooks import capture_units
    from plantain_core.models import TinyLoader
    from plantain_core.models.lookup import describe_blocks, transformer_layouts

    log(f"nnsight {info}: capture pass on tiny")
    tr = TinyLoader().load("tiny", "cpu").pipeline.transformer
    kw = forward_kwargs(tr, batch=2, image_side=8)
    twin = copy.deepcopy(tr)
    model = NNsight(twin)
    layouts = transformer_layouts(tr, LAYOUTS)
    blocks = describe_blocks(tr)
    n_img, n_txt = kw["hidden_states"].shape[1], kw["encoder_hidden_states"].shape[1]

    def scope_streams(name):
        return ("image", "text") if name == "heads" else ("image",)

    def sites(envoy):
        # nnsight (≥ 0.5) needs the modules in execution order: diffusers' joint processor
        # calls to_add_out (text) before to_out[0] (image)
        for b in blocks:
            if b.kind == "joint":
                attn = envoy.transformer_blocks[b.index].attn
                yield ("joint", b.index, "text"), attn.to_add_out, n_txt
                yield ("joint", b.index, "image"), attn.to_out[0], n_img
            else:
                yield ("single", b.index, "single"), envoy.single_transformer_blocks[b.index].attn.to_out, n_img + n_txt

    per = 3
    last: dict[str, Any] = {}

    def nnsight_pass():
        with torch.inference_mode():
            for _ in range(per):
                saved, tokens = {}, {}
                with model.trace(**kw):
                    for key, module, n_tok in sites(model):
                        saved[key] = module.input.float().square().sum(dim=1).save()
                        tokens[key] = n_tok
                sums = {k: v.cpu().numpy().astype(np.float64) for k, v in saved.items()}
                last["nnsight"] = units_from_sums(layouts, sums, tokens, scope_streams)

    state: dict[str, Any] = {}

    def enter():
        state["ctx"] = capture_units(tr, LAYOUTS, "all")
        state["cap"] = state["ctx"].__enter__()

    def leave():
        state.pop("cap")
        state.pop("ctx").__exit__(None, None, None)

    def plantain_pass():
        with torch.inference_mode():
            for _ in range(per):
                tr(**kw)
                last["plantain"] = state["cap"].take()

    def bare():
        with torch.inference_mode():
            for _ in range(per):
                tr(**kw)

    rounds = 6 if quick else 12
    times = interleaved({"bare": bare, "plantain": (enter, plantain_pass, leave), "nnsight": nnsight_pass},
                        rounds=rounds, warmup=1)
    diff = {name: float(np.max(np.abs(last["nnsight"][name] - last["plantain"][name])
                               / np.maximum(np.abs(last["plantain"][name]), 1e-12))) for name in LAYOUTS}
    return {
        "available": True,
        "version": info,
        "model": "tiny", "batch": 2, "forwards_per_call": per,
        "ratio_nnsight_over_plantain": ratio(times, "nnsight", "plantain"),
        "ratio_nnsight_over_bare": ratio(times, "nnsight", "bare"),
        "ratio_plantain_over_bare": ratio(times, "plantain", "bare"),
        "s_per_pass": {name: arm_summary(t, per) for name, t in times.items()},
        "max_rel_diff": diff,
        "values_agree": all(v < 1e-5 for v in diff.values()),
        "how": "nnsight trace saving input.float().square().sum(dim=1) at every to_out[0] / to_add_out / "
               "single to_out; per-unit RMS on the host",
    }
