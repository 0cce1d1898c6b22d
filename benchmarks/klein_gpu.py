"""``--full-klein``: FLUX.2 Klein 4B probe passes on a GPU — passes/s, MFU, capture overhead.

Builds the full Klein 4B transformer (``Flux2Transformer2DModel`` from the bundled preset
``plantain_core/models/presets/FLUX.2-klein-base-4B.json``: 5 joint + 20 single blocks,
24 heads × 128) with random bf16 weights directly on the GPU (no download, ~8 GB), and
times probe passes — one transformer forward per stimulus — at 512² and 1024², text-to-
image (512 text + (size/16)² latent tokens) and image-conditioned (as many tokens again
for the reference image), bare and inside ``capture_units`` (``heads`` + ``slices16``),
interleaved, CUDA-synchronised.

MFU = analytic FLOPs per pass (``benchmarks.inputs.forward_flops``: all linear layers,
QKᵀ and AV of every block, embedders, output projection) × passes/s ÷ the GPU's dense
bf16 peak (a table of known GPUs, or ``--peak-tflops``). Klein 4B: 10.2 TFLOP per
text-to-image pass at 512², 17.7 TFLOP image-conditioned. Target: ≥ 50 % MFU.

It never runs on a CPU by default: without CUDA it records why it was skipped.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .common import log, quantiles
from .inputs import build_transformer, forward_flops, forward_kwargs

PRESET = "black-forest-labs/FLUX.2-klein-base-4B"
TARGET_MFU = 0.5
#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "RTX 6000 Ada": 364.2,
}


def peak_tflops(name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return float(override), "--peak-tflops"
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # most specific first
        if key.lower() in name.lower():
            return PEAK_BF16_TFLOPS[key], f"table entry {key!r}"
    return None, "unknown GPU: pass --peak-tflops"


def flops_table(config: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for size in (512, 1024):
        n = (size // 16) ** 2
        out[f"{size}px_text_to_image"] = forward_flops(config, n)
        out[f"{size}px_image_conditioned"] = forward_flops(config, 2 * n)
    return out


def _sumsq_norm(x, start: int, stop: int):
    """Candidate replacement of ``capture._sumsq`` for CUDA: one fused reduction
    (``vector_norm`` with float32 accumulation) instead of float copy + square + sum,
    so no float32 temporaries of the projection input are made."""
    import torch

    return torch.linalg.vector_norm(x[:, start:stop], ord=2, dim=1, dtype=torch.float32).square()


def run(*, device: str = "cuda", sizes=(512, 1024), batch: int = 4, rounds: int = 5, per: int = 3,
        peak: float | None = None, config_overrides: dict | None = None, variant: bool = True,
        encoder: bool = True, encoder_overrides: dict | None = None, compile: bool = True) -> dict[str, Any]:
    import torch

    from plantain_core.capture import hooks as capture
    from plantain_core.models.hub import transformer_config

    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device (no CPU fallback; --klein-device cpu forces one)"}
    cfg, source = transformer_config(PRESET)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(config_overrides or {})
    dtype = torch.bfloat16
    log(f"full Klein: building {source} with random bf16 weights on {device}")
    t0 = time.perf_counter()
    tr = build_transformer(cfg, device=device, dtype=dtype)
    build_s = time.perf_counter() - t0
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(torch.device(device)) if cuda else "cpu"
    peak_tf, peak_src = peak_tflops(name, peak) if cuda else (peak, "--peak-tflops" if peak else "cpu: none")

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    results: dict[str, Any] = {
        "status": "ran", "device": name, "dtype": "bf16", "preset": source, "config_overrides": config_overrides or {},
        "params_b": round(sum(p.numel() for p in tr.parameters()) / 1e9, 3), "build_s": round(build_s, 1),
        "batch": batch, "rounds": rounds, "forwards_per_round": per,
        "peak_tflops": peak_tf, "peak_source": peak_src, "target_mfu": TARGET_MFU, "cases": {},
    }
    for size in sizes:
        for conditioned in (False, True):
            key = f"{size}px_{'image_conditioned' if conditioned else 'text_to_image'}"
            side = size // 16
            kw = forward_kwargs(tr, batch, side, conditioned=conditioned)
            n_img = kw["hidden_states"].shape[1]
            flops = forward_flops(cfg, n_img)["total"]
            log(f"full Klein: {key}, batch {batch}, {512 + n_img} tokens")
            case = _rates(_time_case(tr, kw, rounds, per, sync, capture, variant, cuda, device), batch, flops, peak_tf)
            if compile:  # the same arms with the transformer compiled (capture traced into the graph)
                from plantain_core.capture.compiled import compiled, graph_breaks

                with compiled(tr, True):
                    case["compiled"] = _rates(_time_case(tr, kw, rounds, per, sync, capture, False, cuda, device),
                                              batch, flops, peak_tf)
                case["compiled"]["graph_breaks"] = graph_breaks()
            case["tflop_per_pass"] = round(flops / 1e12, 2)
            case["tokens"] = 512 + n_img
            mfu = case.get("mfu", {}).get("hooked")
            case["met"] = mfu is not None and mfu >= TARGET_MFU
            results["cases"][key] = case
            del kw
            if cuda:
                torch.cuda.empty_cache()
    if encoder:
        del tr
        if cuda:
            torch.cuda.empty_cache()
        results["text_encoder"] = encoder_case(device, rounds, sync, encoder_overrides)
    return results


def encoder_case(device, rounds, sync, overrides=None, prompts: int = 8, real_tokens: int = 40) -> dict[str, Any]:
    """Qwen3-4B (random bf16 weights): the pipeline's full encoder call vs the early exit
    of ``benchmarks.encode_bench`` on 8 prompts padded to 512 tokens."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from .encode_bench import OUT_LAYERS, QWEN3_4B, encode_early_exit, encode_reference, klein_encoder_flops

    cfg = dict(QWEN3_4B, **(overrides or {}))
    log(f"full Klein: text encoder (Qwen3-4B shape, {cfg['num_hidden_layers']} layers), full call vs early exit")
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        try:
            enc = Qwen3ForCausalLM(Qwen3Config(**cfg)).eval().requires_grad_(False)
        finally:
            torch.set_default_dtype(previous)
    gen = torch.Generator("cpu").manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (prompts, 512), generator=gen).to(device)
    mask = torch.zeros(prompts, 512, dtype=torch.long)
    mask[:, :real_tokens] = 1
    mask = mask.to(device)
    layers = tuple(k for k in OUT_LAYERS if k <= cfg["num_hidden_layers"]) or (cfg["num_hidden_layers"],)
    times = {"full": [], "early_exit": []}
    fns = {"full": encode_reference, "early_exit": encode_early_exit}
    with torch.inference_mode():
        ref = encode_reference(enc, ids, mask, layers)
        new = encode_early_exit(enc, ids, mask, layers)
        diff = float((ref.float() - new.float()).abs().max())
        for r in range(rounds + 1):
            for arm in (("full", "early_exit") if r % 2 == 0 else ("early_exit", "full")):
                sync()
                t0 = time.perf_counter()
                fns[arm](enc, ids, mask, layers)
                sync()
                if r:  # round 0 is the warm-up
                    times[arm].append((time.perf_counter() - t0) / prompts)
    del enc
    return {
        "prompts_per_call": prompts, "real_tokens": real_tokens, "out_layers": list(layers),
        "s_per_prompt": {a: quantiles(t) for a, t in times.items()},
        "ratio_full_over_early_exit": quantiles(f / e for f, e in zip(times["full"], times["early_exit"])),
        "max_abs_diff": diff,
        "analytic": {k: round(v, 3) for k, v in klein_encoder_flops(layers=layers, cfg=cfg).items()},
    }


def _rates(case: dict[str, Any], batch: int, flops: float, peak_tf) -> dict[str, Any]:
    """Passes/s and MFU of every timed arm of ``case`` (medians)."""
    for arm in list(case["s_per_forward"]):
        s = case["s_per_forward"][arm]["median"]
        pps = batch / s if s else None
        case.setdefault("passes_per_s", {})[arm] = round(pps, 3) if pps else None
        if pps and peak_tf:
            case.setdefault("mfu", {})[arm] = round(flops * pps / (peak_tf * 1e12), 4)
    return case


def _time_case(tr, kw, rounds, per, sync, capture, variant, cuda, device) -> dict[str, Any]:
    import torch

    original = capture._sumsq
    arms = ["bare", "hooked"] + (["hooked_norm"] if variant else [])
    times = {a: [] for a in arms}
    peaks = {}
    ctx: dict[str, Any] = {}

    def enter(arm):
        if arm == "bare":
            return
        if arm == "hooked_norm":
            capture._sumsq = _sumsq_norm
        ctx["stack"] = stack = contextlib.ExitStack()
        ctx["cap"] = stack.enter_context(capture.capture_units(tr, ("heads", "slices16"), "all"))

    def leave(arm):
        capture._sumsq = original
        if "stack" in ctx:
            ctx.pop("stack").close()
            ctx.pop("cap")

    def once(arm, record):
        enter(arm)
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            sync()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for _ in range(per):
                    tr(**kw)
                    if arm != "bare":
                        rows = ctx["cap"].take()
            sync()
            dt = time.perf_counter() - t0
            if record:
                times[arm].append(dt / per)
                if cuda:
                    peaks[arm] = max(peaks.get(arm, 0), torch.cuda.max_memory_allocated(device))
                if arm != "bare":
                    ctx.setdefault("finite", []).append(all(bool(torch.isfinite(torch.as_tensor(v)).all())
                                                            for v in rows.values()))
        finally:
            leave(arm)

    for arm in arms:  # warm-up (kernels, allocator)
        once(arm, False)
    for r in range(rounds):
        for arm in (arms if r % 2 == 0 else arms[::-1]):
            once(arm, True)
    out: dict[str, Any] = {"s_per_forward": {a: quantiles(t) for a, t in times.items()}}
    out["overhead_hooked_over_bare"] = quantiles(h / b for h, b in zip(times["hooked"], times["bare"]))
    if variant:
        out["overhead_hooked_norm_over_bare"] = quantiles(h / b for h, b in zip(times["hooked_norm"], times["bare"]))
    if peaks:
        out["peak_allocated_gib"] = {a: round(v / 2**30, 2) for a, v in peaks.items()}
    out["captures_finite"] = all(ctx.get("finite", [True]))
    return out
