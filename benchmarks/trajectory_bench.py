"""Trajectory throughput: a K = 8 step-resolved run against the loop a researcher would write.

Same pairs, same loaded ``tiny`` bundle, interleaved rounds:

- ``plantain``: ``run_probe(probe, fresh_dir, RunConfig(steps=8), model=bundle)``, layouts
  ``heads`` + ``slices16``: every step captured, flushed per batch, manifest;
- ``loop``: ``capture_units`` installed once, then for every stimulus the pipeline's own
  ``__call__(num_inference_steps=8, guidance_scale=1.0, output_type="latent")`` with
  ``cap.take()`` at every step (``callback_on_step_end``); every call encodes its prompt;
- ``loop_bare``: the same loop without the capture hooks (capture overhead = loop / bare);
- ``floor``: the model compute no runner can skip: prompts encoded once and the 8-step
  denoising loop on batches of ``batch_size`` stimuli, no hooks, no files.

Targets: plantain / floor ≤ 1.1; capture overhead ≤ 3% per step.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from typing import Any

from .common import interleaved, log, ratio

STEPS = 8
TARGET_FLOOR = 1.1
TARGET_CAPTURE = 1.03
LAYOUTS = ("heads", "slices16")


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from plantain_core import ProbeSpec, RunConfig
    from plantain_core.capture.hooks import capture_units
    from plantain_core.models import TinyLoader
    from plantain_core.capture.passes import PassInputs
    from plantain_core.spec.probes import Probe
    from plantain_core.capture.runner import noise_seed, run_probe
    from plantain_core.capture.trajectory import run_trajectory

    from .throughput_bench import make_pairs

    n_pairs = 4 if quick else 8
    rounds = 2 if quick else 3
    bundle = TinyLoader().load("tiny", "cpu")
    pipe = bundle.pipeline
    pairs = make_pairs(n_pairs)
    spec = ProbeSpec(name="bench", generator="text-pair", stimuli={"pairs": []})
    probe = Probe.from_pairs(spec, pairs)
    config = RunConfig(probe="bench", layouts=LAYOUTS, steps=STEPS, batch_size=16)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="plantain-traj-"))
    stimuli = [(i, s) for i, p in enumerate(pairs) for s in p.stimuli()]

    def plantain():
        out = tmp / "run"
        shutil.rmtree(out, ignore_errors=True)
        run_probe(probe, out, config, model=bundle, progress=False)

    def loop(hooked: bool):
        def go():
            def one(i, stim, take):
                pipe(prompt=stim.prompt, height=128, width=128, num_inference_steps=STEPS, guidance_scale=1.0,
                     output_type="latent", generator=torch.Generator().manual_seed(noise_seed(0, i)),
                     text_encoder_out_layers=bundle.text_encoder_out_layers,
                     callback_on_step_end=lambda p, k, t, kw: (take(), kw)[1])
            if hooked:
                with capture_units(pipe.transformer, LAYOUTS) as cap:
                    for i, stim in stimuli:
                        one(i, stim, cap.take)
            else:
                for i, stim in stimuli:
                    one(i, stim, lambda: None)
        return go

    def floor():
        with torch.inference_mode():
            inputs = PassInputs.prepare(bundle, pairs, range(len(pairs)), 0, (128, 128))
            items = [(i, s) for i in range(len(pairs)) for s in (0, 1)]
            for k in range(0, len(items), 16):
                run_trajectory(inputs, items[k:k + 16], STEPS, 1.0, lambda step, cond: None)

    arms = {"plantain": plantain, "loop": loop(True), "loop_bare": loop(False), "floor": floor}
    try:
        times = interleaved(arms, rounds=rounds, warmup=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "pairs": n_pairs, "steps": STEPS, "passes": 2 * n_pairs * STEPS, "rounds": rounds,
        "ratio_plantain_over_floor": ratio(times, "plantain", "floor"),
        "ratio_loop_over_plantain": ratio(times, "loop", "plantain"),
        "capture_overhead": ratio(times, "loop", "loop_bare"),
        "target_floor_max": TARGET_FLOOR, "target_capture_max": TARGET_CAPTURE,
    }
    result["met_floor"] = result["ratio_plantain_over_floor"]["wall"]["median"] <= TARGET_FLOOR
    result["met_capture"] = result["capture_overhead"]["wall"]["median"] <= TARGET_CAPTURE
    log(f"trajectory: plantain/floor {result['ratio_plantain_over_floor']['wall']['median']:.3f}, "
        f"loop/plantain {result['ratio_loop_over_plantain']['wall']['median']:.2f}, "
        f"capture overhead {result['capture_overhead']['wall']['median']:.3f}")
    return result
