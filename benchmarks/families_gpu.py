"""``python -m benchmarks.families_gpu``: full-size FLUX.1 [dev] and SD3.5 large probe passes
on a GPU — passes/s, MFU and capture overhead through each family's capture sites.

Each transformer is built from its bundled preset with random bf16 weights on the GPU (no
download). Inputs have the shapes the family's pipeline gives its transformer at
``--size`` (FLUX.1: 512 T5 tokens, packed latents, pooled CLIP, embedded guidance; SD3:
333 text tokens, unpatchified latents, pooled CLIPs). Forwards run bare and inside
``capture_units`` (``heads`` + ``slices16``, the family's sites), interleaved, CUDA-
synchronised. FLOPs per pass are counted by ``torch.utils.flop_counter`` on one forward
(matrix products and attention), so MFU = FLOPs × passes/s ÷ the GPU's dense bf16 peak.
Without CUDA it records why it was skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .common import log, quantiles
from .klein_gpu import peak_tflops

MODELS = {"flux1-dev": "black-forest-labs/FLUX.1-dev", "sd3.5-large": "stabilityai/stable-diffusion-3.5-large"}


def _inputs(family: str, transformer, batch: int, size: int):
    import torch

    dev, dt = transformer.device, transformer.dtype
    cfg = transformer.config
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dev, dt)

    if family == "flux1":
        n = (size // 16) ** 2
        return dict(hidden_states=rand(batch, n, cfg.in_channels), encoder_hidden_states=rand(batch, 512, cfg.joint_attention_dim),
                    pooled_projections=rand(batch, cfg.pooled_projection_dim),
                    timestep=torch.full((batch,), 1.0, device=dev, dtype=dt),
                    guidance=torch.full((batch,), 3.5, device=dev, dtype=torch.float32) if cfg.guidance_embeds else None,
                    txt_ids=torch.zeros(512, 3, device=dev, dtype=dt),
                    img_ids=torch.zeros(n, 3, device=dev, dtype=dt), return_dict=False)
    side = size // 8
    return dict(hidden_states=rand(batch, cfg.in_channels, side, side), encoder_hidden_states=rand(batch, 333, cfg.joint_attention_dim),
                pooled_projections=rand(batch, cfg.pooled_projection_dim),
                timestep=torch.full((batch,), 1000.0, device=dev, dtype=dt), return_dict=False)


def run_model(key: str, batch: int, size: int, rounds: int, per: int, peak: float | None,
              compile: bool = True) -> dict[str, Any]:
    import diffusers
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from plantain_core.capture.hooks import capture_units
    from plantain_core.models.lookup import family_for_class
    from plantain_core.models.hub import transformer_config

    cfg, source = transformer_config(MODELS[key])
    family = family_for_class(cfg["_class_name"])
    params = {k: v for k, v in cfg.items() if not k.startswith("_")}
    log(f"families-gpu: building {source} ({family.name}) with random bf16 weights")
    with torch.device("cuda"):
        torch.manual_seed(0)
        tr = getattr(diffusers, cfg["_class_name"])(**params).to(torch.bfloat16).eval()
    kw = _inputs(family.name, tr, batch, size)
    with torch.inference_mode():
        tr(**kw)
        with FlopCounterMode(display=False) as counter:
            tr(**kw)
    flops = counter.get_total_flops() / batch

    def timed(hooked: bool) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            if hooked:
                with capture_units(tr, ("heads", "slices16"), "all", family=family) as cap:
                    for _ in range(per):
                        tr(**kw)
                        cap.take()
            else:
                for _ in range(per):
                    tr(**kw)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / per

    def arms() -> dict[str, Any]:
        timed(True), timed(False)  # warm-up (and, compiled, the two graphs)
        bare, hooked = [], []
        for _ in range(rounds):
            bare.append(timed(False))
            hooked.append(timed(True))
        pps = batch / quantiles(hooked)["median"]
        return {"passes_per_s_hooked": round(pps, 2), "passes_per_s_bare": round(batch / quantiles(bare)["median"], 2),
                "hooked_over_bare": round(quantiles(hooked)["median"] / quantiles(bare)["median"], 3),
                "mfu_hooked": round(flops * pps / (peak_tf * 1e12), 3) if peak_tf else None,
                "mfu_bare": round(flops * batch / quantiles(bare)["median"] / (peak_tf * 1e12), 3) if peak_tf else None}

    name = torch.cuda.get_device_name()
    peak_tf, peak_src = peak_tflops(name, peak)
    out = {"preset": source, "family": family.name, "device": name, "params_b": round(sum(p.numel() for p in tr.parameters()) / 1e9, 2),
           "batch": batch, "size": size, "tflop_per_pass": round(flops / 1e12, 2), **arms(), "peak_source": peak_src}
    if compile:  # hooked and bare MFU, compiled, beside the eager ones
        from plantain_core.capture.compiled import compiled, graph_breaks

        with compiled(tr, True):
            out["compiled"] = arms()
        out["compiled"]["graph_breaks"] = graph_breaks()
    return out  # the transformer goes with this frame; the caller empties the CUDA cache


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.families_gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile arms")
    ap.add_argument("--out", default=None, help="JSON output (default: print only; a GPU run also writes "
                                                "benchmarks/results/families-gpu-<gpu>.json with its machine stamp)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        result: dict[str, Any] = {"status": "skipped", "reason": "no CUDA device"}
    else:
        models = {}
        for m in args.models.split(","):
            models[m.strip()] = run_model(m.strip(), args.batch, args.size, args.rounds, args.per, args.peak_tflops,
                                          not args.no_compile)
            torch.cuda.empty_cache()
        result = {"status": "ran", "models": models}
        from .common import write_device_json

        result["device_json"] = write_device_json("families-gpu", result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
