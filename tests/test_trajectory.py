"""The denoising trajectory (--steps K): captures equal hooks inside the pipeline's own
__call__ at every step, statistics find effects at the steps where they are planted and
keep the family-wise error over units × steps, resume works across steps, and the CLI
writes the step-resolved folder and card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core import ImageSource, Pair, ProbeSpec, Stimulus
from plantain_core.stats.across_steps import across_steps
from plantain_core.capture.hooks import capture_units
from plantain_core.cli import main
from plantain_core.config import RunConfig
from plantain_core.capture.images import get_image
from plantain_core.models import TinyLoader
from plantain_core.spec.probes import Probe
from plantain_core.capture.runner import noise_seed, run_probe
from plantain_core.stats.engine import StatsOptions, compute_layout_stats
from plantain_core.testing import spec_data, write_spec

LAYOUTS = ("heads", "slices16")


@pytest.fixture(scope="module")
def bundle():
    return TinyLoader().load("tiny", "cpu")


def _pairs(kind: str):
    ref = ImageSource(prompt="A neutral matte rounded grey object on a neutral grey background", seed=3)
    image = ref if kind == "fixed-image" else None
    return [Pair(f"p{i}", Stimulus(f"a {i + 1}-kilometer object", image), Stimulus(f"a {i + 1}-millimeter object", image))
            for i in range(3)]


def _pipeline_steps(bundle, pair_index, stim, seed, steps, guidance, image=None):
    """Per-step unit rows recorded while the pipeline's own __call__ denoises one stimulus."""
    out = []
    with capture_units(bundle.pipeline.transformer, LAYOUTS) as cap:
        def on_step_end(pipe, i, t, kwargs):
            out.append(cap.take())  # this step's forwards: the conditional one, then (CFG) the unconditional
            return kwargs

        bundle.pipeline(image=image, prompt=stim.prompt, height=128, width=128, num_inference_steps=steps,
                        guidance_scale=guidance, output_type="latent",
                        generator=torch.Generator().manual_seed(noise_seed(seed, pair_index)),
                        text_encoder_out_layers=bundle.text_encoder_out_layers, callback_on_step_end=on_step_end)
    return out


@pytest.mark.parametrize("kind,guidance", [("text", 1.0), ("fixed-image", 1.0), ("text", 2.5)])
def test_every_step_equals_hooks_inside_the_pipeline_call(bundle, tmp_path, monkeypatch, kind, guidance):
    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(tmp_path / "cache"))
    pairs = _pairs(kind)
    spec = ProbeSpec(name="traj", generator="text-pair", stimuli={"pairs": []})
    config = RunConfig(probe="traj", steps=4, guidance=guidance, seed=5, batch_size=2)
    manifest = run_probe(Probe.from_pairs(spec, pairs), tmp_path / "run", config, model=bundle, progress=False)
    assert [s["index"] for s in manifest["trajectory"]] == [0, 1, 2, 3]
    assert manifest["trajectory"][0]["sigma"] == pytest.approx(1.0) and manifest["steps"] == 4
    image = get_image(bundle, pairs[0].a.image, 128, 128)[0] if kind == "fixed-image" else None
    caps = {name: np.load(tmp_path / "run" / "captures" / f"{name}.npz") for name in LAYOUTS}
    assert caps["heads"]["a"].shape == (3, 4, 16) and list(caps["heads"]["steps"]) == [0, 1, 2, 3]
    for i, pair in enumerate(pairs):
        for side, stim in zip("ab", pair.stimuli()):
            per_step = _pipeline_steps(bundle, i, stim, 5, 4, guidance, image)
            for k, rows in enumerate(per_step):
                n_forwards = 2 if guidance > 1 else 1
                for name in LAYOUTS:
                    assert rows[name].shape[0] == n_forwards
                    # row 0: the conditional pass (the only one plantain captures)
                    np.testing.assert_allclose(caps[name][side][i, k], rows[name][0], rtol=1e-6, atol=1e-9)
    # A and B share only the start: later steps follow their own latents
    assert not np.allclose(caps["heads"]["a"][:, 3], caps["heads"]["b"][:, 3])


def test_capture_steps_keep_only_those(bundle, tmp_path):
    pairs = _pairs("text")
    spec = ProbeSpec(name="traj", generator="text-pair", stimuli={"pairs": []})
    full = run_probe(Probe.from_pairs(spec, pairs), tmp_path / "full", RunConfig(probe="traj", steps=4),
                     model=bundle, progress=False)
    some = run_probe(Probe.from_pairs(spec, pairs), tmp_path / "some", RunConfig(probe="traj", steps=4,
                                                                                  capture_steps=(1, 3)),
                     model=bundle, progress=False)
    assert [s["index"] for s in some["trajectory"]] == [1, 3] and len(full["trajectory"]) == 4
    a_full = np.load(tmp_path / "full" / "captures" / "heads.npz")["a"]
    a_some = np.load(tmp_path / "some" / "captures" / "heads.npz")["a"]
    np.testing.assert_array_equal(a_some, a_full[:, [1, 3]])


def _step_stats(diff_by_step, flips=100, seed=0):
    out = {}
    for s, d in diff_by_step.items():
        n, u = d.shape
        out[s] = compute_layout_stats(d, np.zeros_like(d), [f"joint[{k // 4}].h{k % 4:02d}" for k in range(u)],
                                      layout=f"heads@step{s}", options=StatsOptions(flips=flips, splits=5, seed=seed))
    return out


def test_an_effect_planted_at_late_steps_is_found_there_only():
    rng = np.random.default_rng(0)
    n, u = 20, 40
    diffs = {s: rng.normal(0, 1, size=(n, u)) for s in range(6)}
    for s in (4, 5):
        diffs[s][:, :5] += 1.5  # five units carry the axis near the image, not near noise
    fam = across_steps(_step_stats(diffs))
    sig = fam["p_fwer"] < 0.05
    assert sig[4:, :5].all() and not sig[:4].any() and not sig[:, 5:].any()
    s = fam["summary"]
    assert s["per_step"] == [0, 0, 0, 0, 5, 5] and s["early_share"] == 0.0
    assert (s["units_any_step"], s["stable_units"], s["transient_units"]) == (5, 0, 5)  # 2 of 6 steps: transient
    counts = dict(zip(s["steps"], s["peak_step_counts"]))
    assert {k for k, c in counts.items() if c} <= {4, 5} and s["peak_step"] in (4, 5)


def test_a_null_family_keeps_its_fwer_over_units_and_steps():
    rng = np.random.default_rng(1)
    hits = 0
    runs = 150
    for r in range(runs):
        base = rng.normal(0, 1, size=(12, 10))
        # steps are correlated, as along a real trajectory
        diffs = {s: base * 0.7 + rng.normal(0, 0.7, size=base.shape) for s in range(3)}
        fam = across_steps(_step_stats(diffs, flips=60, seed=r))
        hits += bool((fam["p_fwer"] < 0.05).any())
    assert hits / runs <= 0.1  # nominal 5%; 150 runs leave room for chance


def test_cli_steps_run_writes_step_resolved_results_and_resumes(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", n_pairs=4))
    out = tmp_path / "run"
    args = ["run", str(spec), "--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5",
            "--steps", "3", "--batch-size", "2", "--no-progress", "--tfce"]
    res = CliRunner().invoke(main, args + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "manifest.json").read_text())["config"]["tfce"] is True
    tfce_rows = (out / "tfce.csv").read_text().splitlines()
    assert tfce_rows[0] == "layout,unit,step,tfce,p_fwer" and len(tfce_rows) == 1 + 3 * 16
    assert (out / "clusters.csv").read_text().startswith("layout,unit,first_step,last_step,mass,p_fwer\n")
    units = (out / "units.csv").read_text()
    assert {line.split(",")[0] for line in units.splitlines()[1:]} == {"heads@step0", "heads@step1", "heads@step2"}
    steps_csv = (out / "steps.csv").read_text().splitlines()
    assert steps_csv[0] == "layout,unit,step,t,p_fwer_across,q_across" and len(steps_csv) == 1 + 3 * 16
    card = (out / "README.md").read_text()
    assert "## Across the trajectory" in card and "figures/heads_steps_blocks.png" in card
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trajectory"]["heads"]["steps"] == [0, 1, 2]
    full = np.load(out / "captures" / "heads.npz")["a"].copy()
    # killed after the first batch of pairs: resume finishes with the same numbers
    with np.load(out / "captures" / "heads.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["done"] = np.array([True, False, False, False])
    np.savez(out / "captures" / "heads.npz", **arrays)
    res = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--resume", "--no-progress"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.load(out / "captures" / "heads.npz")["a"], full)
    refused = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--resume", "--steps", "4"])
    assert refused.exit_code == 1 and "--steps: was 3, now 4" in refused.stderr
    causal = CliRunner().invoke(main, ["causal", str(out)])
    assert causal.exit_code == 1 and "is a trajectory run (--steps 3)" in causal.stderr


def test_tfce_needs_two_captured_steps_and_is_a_flag_of_the_command():
    from plantain_core.config import ConfigError

    with pytest.raises(ConfigError, match="--tfce: TFCE runs along the captured steps"):
        RunConfig(probe="p", tfce=True)
    with pytest.raises(ConfigError, match="--tfce"):
        RunConfig(probe="p", steps=4, capture_steps=(2,), tfce=True)
    config = RunConfig(probe="p", steps=4, tfce=True)
    assert "--tfce" in config.cli_args() and RunConfig.from_dict(config.as_dict()) == config


def test_steps_1_is_the_single_pass_format(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--flips", "20",
                                    "--splits", "5", "--steps", "1", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with np.load(out / "captures" / "heads.npz") as z:
        assert "steps" not in z.files and z["a"].ndim == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert "trajectory" not in manifest and manifest["steps"] == 1
    assert not (out / "steps.csv").exists() and "## Across the trajectory" not in (out / "README.md").read_text()
