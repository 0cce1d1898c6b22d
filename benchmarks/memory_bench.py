"""Figure 4 — memory: the capture keeps O(units) per pass, never per-token activations.

Four measurements:

1. **Host bytes per pass**: what ``cap.take()`` returns for one stimulus (float64 per
   unit, all layouts) on ``tiny`` and the ``wide`` config, against ``units × 8``; and the
   same count for FLUX.2 Klein 4B from its preset (transformer on the meta device).
2. **Device-side capture state per stimulus**: the float32 per-feature sums the pre-hooks
   keep until the forward ends (``Σ sites' features × 4`` bytes), against the size of
   one single-block projection input (tokens × features), which the capture never keeps.
3. **Peak RSS of a full ``run_probe``** on ``tiny`` in a fresh process per run (so
   ``ru_maxrss`` is that run's own high-water mark): a warm-up run of 1 pair at the same
   batch size first, then the measured run of N pairs; the growth of the high-water mark
   over the warm-up's is what N pairs add. N = 3 and N = 25 at a fixed batch size (so
   the activations per forward are equal), plus ``tracemalloc``'s peak for Python/numpy
   allocations. What should grow with N: the capture arrays (2 × N × units × 8 bytes)
   and the prompt embeddings the runner keeps for the whole run
   (prompts × 512 × joint_attention_dim × itemsize).

   A control repeats the runs with the same two prompts in every pair: then nothing but
   the capture arrays should grow with N.

4. **Prompt embeddings**: encoding 100 prompts (chunks of 8, ``pipe.encode_prompt``)
   keeping every chunk's embeddings, as the runner does, vs dropping each chunk after
   use, in a fresh process: RSS high-water growth and the exact live bytes kept.

Worker modes (used by ``run``): ``python -m benchmarks.memory_bench worker PAIRS BATCH
THREADS distinct|same`` and ``python -m benchmarks.memory_bench embed PROMPTS THREADS``.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from .common import log

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _rss_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; never reset


def _hwm_kb() -> int | None:
    """The process's RSS high-water mark (VmHWM), resettable by :func:`_reset_hwm`."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _pairs(n: int, distinct: bool):
    from plantain_core import Pair, Stimulus

    from .throughput_bench import make_pairs

    if distinct:
        return make_pairs(n)
    return [Pair(f"p{i:02d}", Stimulus("a photo of a large grey object"), Stimulus("a photo of a small grey object"))
            for i in range(n)]


def worker(n_pairs: int, batch: int, threads: int, distinct: bool = True) -> dict[str, Any]:
    import tracemalloc

    import torch

    torch.set_num_threads(threads)
    from plantain_core import ProbeSpec, RunConfig
    from plantain_core.spec.probes import Probe
    from plantain_core.models import TinyLoader
    from plantain_core.models.lookup import transformer_layouts
    from plantain_plugins.families.flux2 import FLUX2_KLEIN
    from plantain_core.capture.runner import run_probe

    bundle = TinyLoader().load("tiny", "cpu")
    spec = ProbeSpec(name="bench", generator="text-pair", stimuli={"pairs": []})
    layouts = ("heads", "slices16")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="plantain-mem-"))
    config = RunConfig(probe=spec.name, layouts=layouts, batch_size=batch)
    run_probe(Probe.from_pairs(spec, _pairs(1, distinct)), tmp / "warm", config, model=bundle, progress=False)
    reset = _reset_hwm()
    base_max, base_rss = (_hwm_kb() if reset else _maxrss_kb()), _rss_kb()
    tracemalloc.start()
    manifest = run_probe(Probe.from_pairs(spec, _pairs(n_pairs, distinct)), tmp / "run", config, model=bundle,
                         progress=False)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _hwm_kb() if reset else _maxrss_kb()
    units = sum(len(lay) for lay in transformer_layouts(bundle.pipeline.transformer, layouts).values())
    prompts = len({s.prompt for p in _pairs(n_pairs, distinct) for s in p.stimuli()})
    cfg = bundle.pipeline.transformer.config
    return {
        "pairs": n_pairs,
        "distinct_prompts": prompts,
        "batch_size": manifest["batch_size"],
        "units": units,
        "high_water_mark": "VmHWM reset after the warm-up" if reset else "ru_maxrss (could not reset VmHWM)",
        "rss_before_mb": round(base_rss / 1024, 2),
        "peak_rss_mb": round(peak / 1024, 2),
        "peak_growth_mb": round((peak - base_max) / 1024, 2),
        "rss_after_mb": round(_rss_kb() / 1024, 2),
        "tracemalloc_peak_mb": round(traced_peak / 2**20, 3),
        "expected_capture_arrays_mb": round(2 * n_pairs * units * 8 / 2**20, 4),
        "expected_prompt_embeddings_mb": round(prompts * FLUX2_KLEIN.text_tokens * cfg.joint_attention_dim * 4 / 2**20, 2),
    }


def _spawn(n_pairs: int, batch: int, threads: int, distinct: bool = True) -> dict[str, Any]:
    return _spawn_args(["worker", str(n_pairs), str(batch), str(threads), "distinct" if distinct else "same"])


def _spawn_args(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_bench", *args], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capture_state(transformer, layouts=("heads", "slices16"), tokens: int | None = None,
                  itemsize: int = 2) -> dict[str, Any]:
    """Analytic per-stimulus sizes for ``transformer`` (may be on the meta device)."""
    from plantain_core.models.lookup import describe_blocks, transformer_layouts

    blocks = describe_blocks(transformer)
    units = {name: len(lay) for name, lay in transformer_layouts(transformer, layouts).items()}
    # one float32 sum per projection-input feature: joint blocks 2 sites (image, text), single 1
    feats = sum(b.proj_in * (2 if b.kind == "joint" else 1) for b in blocks)
    out = {
        "units": units,
        "host_bytes_per_pass": 8 * sum(units.values()),
        "device_state_bytes_per_stimulus": 4 * feats,
    }
    if tokens is not None:
        widest = max(b.proj_in for b in blocks)
        out["one_single_block_input_bytes"] = tokens * widest * itemsize
        out["tokens"] = tokens
    return out


def steady_state(transformer, kwargs, forwards: int) -> dict[str, Any]:
    """RSS growth over ``forwards`` hooked forwards (after two warm-up ones), each
    followed by ``take()`` with the rows kept, as a run keeps them; against what keeping
    every hooked projection input (per-token activations) would cost."""
    import torch

    from plantain_core.capture.hooks import capture_units
    from plantain_core.models.lookup import describe_blocks

    kept = []
    with capture_units(transformer, ("heads", "slices16")) as cap, torch.inference_mode():
        for _ in range(2):
            transformer(**kwargs)
            cap.take()
        reset = _reset_hwm()
        before = _rss_kb()
        for _ in range(forwards):
            transformer(**kwargs)
            kept.append(cap.take())
        peak = _hwm_kb() if reset else None
        after = _rss_kb()
    batch = kwargs["hidden_states"].shape[0]
    tokens = kwargs["hidden_states"].shape[1] + kwargs["encoder_hidden_states"].shape[1]
    n_img, n_txt = kwargs["hidden_states"].shape[1], kwargs["encoder_hidden_states"].shape[1]
    per_token = 0
    for b in describe_blocks(transformer):
        per_token += b.proj_in * (n_img + n_txt) if b.kind == "joint" else b.proj_in * tokens
    itemsize = next(transformer.parameters()).element_size()
    return {
        "forwards": forwards,
        "batch": batch,
        "rss_growth_mb": round((after - before) / 1024, 3),
        "peak_over_start_mb": round((peak - before) / 1024, 3) if peak is not None else None,
        "rows_kept_bytes": sum(v.nbytes for rows in kept for v in rows.values()),
        "if_inputs_were_kept_mb": round(forwards * batch * per_token * itemsize / 2**20, 1),
    }


def embedding_retention(n_prompts: int, threads: int) -> dict[str, Any]:
    """RSS high-water growth of encoding ``n_prompts`` prompts in chunks of 8 with
    ``pipe.encode_prompt`` while keeping every chunk's embeddings (as the runner does) vs
    dropping each chunk after use (as a per-batch encoder would)."""
    import torch

    torch.set_num_threads(threads)
    from plantain_core.models import TinyLoader

    from .throughput_bench import make_pairs

    bundle = TinyLoader().load("tiny", "cpu")
    pipe = bundle.pipeline
    prompts = [s.prompt for p in make_pairs((n_prompts + 1) // 2) for s in p.stimuli()][:n_prompts]

    def encode(chunk):
        return pipe.encode_prompt(prompt=chunk, device=pipe.device, max_sequence_length=512,
                                  text_encoder_out_layers=tuple(bundle.text_encoder_out_layers))[0]

    out, live = {}, 0
    with torch.inference_mode():
        encode(prompts[:8])  # warm-up
        for mode in ("keep", "drop"):
            reset = _reset_hwm()
            before = _rss_kb()
            kept = []
            for k in range(0, len(prompts), 8):
                pe = encode([p + f" ({mode})" for p in prompts[k:k + 8]])
                if mode == "keep":
                    kept.append(pe)
            peak = _hwm_kb() if reset else _maxrss_kb()
            out[mode] = round((peak - before) / 1024, 2)
            if mode == "keep":
                live = sum(t.untyped_storage().nbytes() for t in kept)
            del kept
    cfg = pipe.transformer.config
    return {
        "prompts": len(prompts),
        "peak_growth_keep_all_mb": out["keep"],
        "peak_growth_drop_per_chunk_mb": out["drop"],
        "live_bytes_kept_mb": round(live / 2**20, 2),
        "expected_keep_all_mb": round(len(prompts) * 512 * cfg.joint_attention_dim * 4 / 2**20, 2),
        "note": "RSS growth underestimates what is kept when the allocator reuses memory freed by earlier "
                "temporaries; live_bytes_kept is exact",
        "klein_4b_bf16_mib_per_prompt": round(512 * 7680 * 2 / 2**20, 2),
    }


def run(quick: bool = False, threads: int = 1) -> dict[str, Any]:
    import torch
    from diffusers import Flux2Transformer2DModel

    from plantain_core.capture.hooks import capture_units
    from plantain_core.models import TinyLoader
    from plantain_core.models.hub import transformer_config

    from .inputs import WIDE_CONFIG, build_transformer, forward_kwargs

    result: dict[str, Any] = {}
    # 1. host bytes per pass, measured
    measured = {}
    for name, tr, side, batch in (("tiny", TinyLoader().load("tiny", "cpu").pipeline.transformer, 8, 2),
                                  ("wide", build_transformer(WIDE_CONFIG), 32, 1)):
        kw = forward_kwargs(tr, batch=batch, image_side=side)
        with capture_units(tr, ("heads", "slices16")) as cap, torch.inference_mode():
            tr(**kw)
            rows = cap.take()
        got = sum(v.nbytes for v in rows.values()) // batch
        est = capture_state(tr, tokens=kw["hidden_states"].shape[1] + kw["encoder_hidden_states"].shape[1],
                            itemsize=4)
        measured[name] = {"host_bytes_per_pass": got, "units_x8": est["host_bytes_per_pass"],
                          "units": est["units"], "device_state_bytes_per_stimulus": est["device_state_bytes_per_stimulus"],
                          "one_single_block_input_bytes": est["one_single_block_input_bytes"], "tokens": est["tokens"]}
        measured[name]["steady_state"] = steady_state(tr, kw, forwards=40 if name == "tiny" else 6)
    result["per_pass"] = measured
    # 2. FLUX.2 Klein 4B, analytic from the preset (meta device: no weights)
    cfg, source = transformer_config("black-forest-labs/FLUX.2-klein-base-4B")
    with torch.device("meta"):
        klein = Flux2Transformer2DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    result["klein_4b"] = {"source": source, **{f"{s}px": capture_state(klein, tokens=512 + (s // 16) ** 2, itemsize=2)
                                               for s in (512, 1024)}}
    # 3. what keeping every prompt's embeddings costs (the runner does; public pipeline API)
    log("memory: encoding 100 prompts, keeping vs dropping the embeddings, in a fresh process")
    result["prompt_embeddings"] = _spawn_args(["embed", "100", str(threads)])
    # 4. peak RSS of full runs, one fresh process each; distinct prompts, then the control
    batch = 2
    sizes = (3, 12) if quick else (3, 25)
    for label, distinct in (("run_probe", True), ("run_probe_same_prompts", False)):
        repeats = 2 if distinct and not quick else 1
        runs = []
        for n in sizes:
            reps = []
            for _ in range(repeats):
                log(f"memory: run_probe of {n} pairs ({'distinct' if distinct else 'the same two'} prompts), "
                    f"batch {batch}, in a fresh process")
                reps.append(_spawn(n, batch, threads, distinct))
            summary = dict(reps[-1])
            summary["peak_growth_mb"] = round(float(np.median([r["peak_growth_mb"] for r in reps])), 2)
            summary["peak_growth_mb_repeats"] = [r["peak_growth_mb"] for r in reps]
            runs.append(summary)
        small, big = runs
        explained = (big["expected_capture_arrays_mb"] - small["expected_capture_arrays_mb"]
                     + big["expected_prompt_embeddings_mb"] - small["expected_prompt_embeddings_mb"])
        dn = big["pairs"] - small["pairs"]
        result[label] = {
            "runs": runs,
            "growth_per_pair_mb": round((big["peak_growth_mb"] - small["peak_growth_mb"]) / dn, 3),
            "expected_per_pair_mb": round(explained / dn, 3),
            "growth_difference_mb": round(big["peak_growth_mb"] - small["peak_growth_mb"], 2),
            "explained_by_captures_and_prompt_embeddings_mb": round(explained, 2),
        }
    result["run_probe_note"] = (
        "peak_growth = the measured run's RSS high-water mark minus the RSS before it (after a 1-pair warm-up run "
        "at the same batch size, in the same fresh process; median of the repeats); tiny model, fp32, CPU. "
        "The runner keeps every prompt's embeddings (512 x joint_attention_dim) for the whole run.")
    return result


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "worker":
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "distinct")))
    elif len(sys.argv) == 4 and sys.argv[1] == "embed":
        print(json.dumps(embedding_retention(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        sys.exit("usage: python -m benchmarks.memory_bench worker PAIRS BATCH THREADS distinct|same\n"
                 "       python -m benchmarks.memory_bench embed PROMPTS THREADS")
