"""Figure 2 — probe throughput: plantain's runner vs the loop a researcher would write.

Same pairs, same loaded ``tiny`` bundle (one model object), interleaved rounds:

- ``plantain``: ``run_probe(probe, fresh_dir, config, model=bundle)`` — the whole run as
  ``plantain run`` does it (prompts encoded once, batched passes, captures flushed to
  ``captures/*.npz`` after every batch, manifest), layouts ``heads`` + ``slices16``;
- ``naive``: ``capture_units`` installed once, then for every stimulus the pipeline's own
  ``__call__(prompt=..., num_inference_steps=1, guidance_scale=1.0, generator=<the
  pair's seed>, text_encoder_out_layers=bundle.text_encoder_out_layers)`` with the
  default ``output_type="pil"`` (VAE decode + PIL conversion) and ``cap.take()``; every
  call encodes its prompt again;
- ``naive_latent`` (full runs only): the same loop with ``output_type="latent"``, to
  split the gain between "no decode" and "batching + encoding once";
- ``floor``: only the model compute that no runner can skip — every prompt encoded once
  (``pipe.encode_prompt``, chunks of 8) and one bare batched transformer forward per
  ``batch_size`` stimuli (no hooks, no noise generation, no files). ``naive / floor`` is
  the ceiling of any runner's speed-up on this model and machine; ``plantain / floor``
  is what plantain's runner adds on top of the model.

Ratio = naive time / plantain time for the same N pairs (target ≥ 3). The captures of
both are compared (they must agree: same noise, same prompts, one step).
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from .common import arm_summary, interleaved, log, quantiles, ratio
from .inputs import forward_kwargs

TARGET = 3.0
LAYOUTS = ("heads", "slices16")


def make_pairs(n: int):
    from plantain_core import Pair, Stimulus

    return [Pair(f"p{i:02d}", Stimulus(f"a photo of a {i + 1}-kilometer wide grey object on a plain background"),
                 Stimulus(f"a photo of a {i + 1}-millimeter wide grey object on a plain background"))
            for i in range(n)]


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from plantain_core import ProbeSpec, RunConfig
    from plantain_core.spec.probes import Probe
    from plantain_core.capture.hooks import capture_units
    from plantain_core.models import TinyLoader
    from plantain_core.capture.runner import noise_seed, run_probe

    n_pairs = 8 if quick else 25
    rounds = 3 if quick else 5
    seed = 0
    bundle = TinyLoader().load("tiny", "cpu")
    pipe = bundle.pipeline
    spec = ProbeSpec(name="bench", generator="text-pair", stimuli={"pairs": []})
    pairs = make_pairs(n_pairs)
    size = bundle.default_size
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="plantain-bench-"))
    runs: list[dict] = []
    naive_rows: dict[str, list] = {}

    def plantain():
        out = tmp / f"run{len(runs)}"
        manifest = run_probe(Probe.from_pairs(spec, pairs), out, RunConfig(probe=spec.name, layouts=LAYOUTS, seed=seed),
                             model=bundle, progress=False)
        caps = {}
        for name in LAYOUTS:
            with np.load(out / "captures" / f"{name}.npz") as z:
                caps[name] = (z["a"].copy(), z["b"].copy())
        runs.append({"timings": manifest["timings"], "batch_size": manifest["batch_size"], "caps": caps})
        shutil.rmtree(out, ignore_errors=True)

    def naive_loop(output_type):
        def loop():
            rows = {name: [[], []] for name in LAYOUTS}
            with capture_units(pipe.transformer, LAYOUTS, "all") as cap:
                for i, pair in enumerate(pairs):
                    for side, stim in enumerate(pair.stimuli()):
                        pipe(prompt=stim.prompt, height=size, width=size, num_inference_steps=1, guidance_scale=1.0,
                             generator=torch.Generator("cpu").manual_seed(noise_seed(seed, i)),
                             output_type=output_type, text_encoder_out_layers=bundle.text_encoder_out_layers)
                        got = cap.take()
                        for name in LAYOUTS:
                            rows[name][side].append(got[name][0])
            naive_rows[output_type] = rows
        return loop

    prompts = list(dict.fromkeys(s.prompt for p in pairs for s in p.stimuli()))
    batch = 16  # plantain's automatic batch size for tiny (checked against the manifest below)

    def floor():
        embeds = []
        with torch.inference_mode():
            for k in range(0, len(prompts), 8):
                pe, _ = pipe.encode_prompt(prompt=prompts[k:k + 8], device=pipe.device, max_sequence_length=512,
                                           text_encoder_out_layers=tuple(bundle.text_encoder_out_layers))
                embeds.append(pe)
            embeds = torch.cat(embeds)
            for k in range(0, passes, batch):
                n = min(batch, passes - k)
                kw = dict(base_kwargs)
                kw["hidden_states"] = kw["hidden_states"][:n]
                kw["encoder_hidden_states"] = embeds[torch.arange(k, k + n) % len(embeds)]
                kw["timestep"], kw["img_ids"], kw["txt_ids"] = kw["timestep"][:n], kw["img_ids"][:n], kw["txt_ids"][:n]
                pipe.transformer(**kw)

    passes = 2 * n_pairs
    base_kwargs = forward_kwargs(pipe.transformer, batch, size // (pipe.vae_scale_factor * 2))
    arms = {"plantain": plantain, "naive": naive_loop("pil")}
    if not quick:
        arms["naive_latent"] = naive_loop("latent")
    arms["floor"] = floor
    log(f"probe throughput: {n_pairs} pairs, {rounds} rounds, arms {', '.join(arms)}")
    try:
        times = interleaved(arms, rounds=rounds, warmup=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # agreement of the captures (the last plantain run against the last naive loop)
    agree = {}
    for name in LAYOUTS:
        a, b = runs[-1]["caps"][name]
        na = np.asarray(naive_rows["pil"][name][0])
        nb = np.asarray(naive_rows["pil"][name][1])
        ref = np.concatenate([na, nb])
        got = np.concatenate([a, b])
        agree[name] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))
    result: dict[str, Any] = {
        "model": "tiny", "pairs": n_pairs, "passes": passes, "size": size, "layouts": list(LAYOUTS),
        "plantain_batch_size": runs[-1]["batch_size"],
        "ratio": ratio(times, "naive", "plantain"),
        "plantain_passes_per_s": _rate(times["plantain"], passes),
        "naive_passes_per_s": _rate(times["naive"], passes),
        "plantain_timings_last_run": runs[-1]["timings"],
        "max_rel_diff_captures": agree,
        "target_min": TARGET,
    }
    result["ratio_naive_over_floor"] = ratio(times, "naive", "floor")
    result["ratio_plantain_over_floor"] = ratio(times, "plantain", "floor")
    if runs[-1]["batch_size"] != batch:
        result["note"] = f"plantain chose batch {runs[-1]['batch_size']}, the floor arm used {batch}"
    if "naive_latent" in times:
        result["ratio_naive_latent"] = ratio(times, "naive_latent", "plantain")
        result["naive_latent_passes_per_s"] = _rate(times["naive_latent"], passes)
    result["s_per_run"] = {name: arm_summary(t) for name, t in times.items()}
    med = result["ratio"]["wall"]["median"]
    result["met"] = med is not None and med >= TARGET
    return result


def _rate(t: dict[str, list[float]], passes: int) -> dict[str, Any]:
    return quantiles(passes / np.asarray(t["wall"]))
