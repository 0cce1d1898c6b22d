"""Qwen-Image, Z-Image and PixArt-Sigma: plantain's captures equal forward pre-hooks on the
same modules inside each pipeline's own ``__call__`` (1 step, 3 steps, with and without
CFG where the family runs it); seed probes run or are refused by kind; the presets count
offline; ``plantain run ray`` writes a card whose text is the family's own.

The reference names the capture sites from diffusers' module tree by hand (not through
plantain's families) and computes each head's RMS in float64 from the raw hooked inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core import Pair, Stimulus
from plantain_core.capture.passes import noise_seed
from plantain_core.capture.runner import run_probe
from plantain_core.cli import main
from plantain_core.config import RunConfig
from plantain_core.models.loaders import TinyLoader
from plantain_core.spec.probe_spec import ProbeSpec
from plantain_core.spec.probes import Probe
from plantain_plugins.families.builtin import TINY_PIXART_SIGMA, TINY_QWEN_IMAGE, TINY_Z_IMAGE

FAMILIES = {"tiny-qwen-image": TINY_QWEN_IMAGE, "tiny-z-image": TINY_Z_IMAGE, "tiny-pixart-sigma": TINY_PIXART_SIGMA}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def bundle(request):
    return TinyLoader(FAMILIES[request.param]).load(request.param, "cpu")


def _pairs(n: int = 3) -> list[Pair]:
    # prompts of different lengths: Qwen-Image and Z-Image keep each prompt's own length
    words = [("red", "deep blue"), ("a cat", "a dog"), ("morning light", "night")][:n]
    return [Pair(f"p{i}", Stimulus(f"a photo of {a}"), Stimulus(f"a photo of {b}")) for i, (a, b) in enumerate(words)]


def _probe(pairs) -> Probe:
    return Probe(ProbeSpec(name="fam", description="family test", generator="text-pair", stimuli={}), tuple(pairs), {})


# -- the reference: hooks inside __call__ on modules named by hand ------------------------------------------
def _site_modules(name: str, transformer):
    """(unit-name prefix, output projection, its attention) in forward order."""
    if name == "tiny-qwen-image":
        return [(f"joint[{i}]", proj, b.attn) for i, b in enumerate(transformer.transformer_blocks)
                for proj in (b.attn.to_out[0], b.attn.to_add_out)]
    if name == "tiny-z-image":
        return [(f"{kind}[{i}]", b.attention.to_out[0], b.attention)
                for kind, blocks in (("noise_refiner", transformer.noise_refiner),
                                     ("context_refiner", transformer.context_refiner), ("layer", transformer.layers))
                for i, b in enumerate(blocks)]
    return [(f"{kind}[{i}]", attn.to_out[0], attn) for i, b in enumerate(transformer.transformer_blocks)
            for kind, attn in (("self", b.attn1), ("cross", b.attn2))]


def _call(bundle, prompt: str, seed: int, pair_index: int, steps: int, guidance: float):
    """The pipeline's own __call__ as plantain describes it: Qwen-Image without a negative
    prompt (so no CFG); Z-Image's guidance_scale = plantain's guidance - 1; PixArt without
    resolution binning."""
    kwargs = dict(prompt=prompt, height=128, width=128, num_inference_steps=steps, output_type="latent",
                  generator=torch.Generator().manual_seed(noise_seed(seed, pair_index)))
    if bundle.name == "tiny-qwen-image":
        kwargs.update(true_cfg_scale=guidance, guidance_scale=None)
    elif bundle.name == "tiny-z-image":
        kwargs.update(guidance_scale=guidance - 1.0)
    else:
        kwargs.update(guidance_scale=guidance, use_resolution_binning=False)
    bundle.pipeline(**kwargs)


def _pipeline_heads(bundle, prompt, seed, pair_index, steps=1, guidance=1.0) -> list[dict[str, float]]:
    """Per-head RMS of the conditional row at every forward of the pipeline's __call__."""
    transformer = bundle.pipeline.transformer
    sites = _site_modules(bundle.name, transformer)
    forwards, handles = [], [transformer.register_forward_pre_hook(lambda mod, args: forwards.append({}))]
    for k, (_prefix, module, _attn) in enumerate(sites):
        handles.append(module.register_forward_pre_hook(lambda mod, args, k=k: forwards[-1].__setitem__(k, args[0])))
    try:
        with torch.inference_mode():
            _call(bundle, prompt, seed, pair_index, steps, guidance)
    finally:
        for h in handles:
            h.remove()
    # CFG batches: PixArt [uncond, cond] (the last row), Z-Image [cond, uncond] (the first)
    row = 0 if bundle.name == "tiny-z-image" else -1
    out = []
    for inputs in forwards:
        sums, counts = {}, {}
        for k, (prefix, _module, attn) in enumerate(sites):
            x = inputs[k][row].double()
            d = attn.inner_dim // attn.heads
            for h in range(attn.heads):
                key = f"{prefix}.h{h:02d}"
                part = x[:, h * d:(h + 1) * d]
                sums[key] = sums.get(key, 0.0) + float(part.square().sum())
                counts[key] = counts.get(key, 0) + part.numel()
        out.append({key: (sums[key] / counts[key]) ** 0.5 for key in sums})
    return out


def _compare(captured, units, reference) -> float:
    ref = np.array([reference[u] for u in units])
    assert sorted(reference) == sorted(units)
    return float(np.max(np.abs(captured - ref) / np.abs(ref)))


def test_one_step_captures_equal_hooks_inside_the_pipeline_call(bundle, tmp_path):
    pairs = _pairs()
    config = RunConfig(probe="fam", seed=5, batch_size=6, layouts=("heads",))
    run_probe(_probe(pairs), tmp_path, config, model=bundle, progress=False)
    with np.load(tmp_path / "captures" / "heads.npz", allow_pickle=False) as z:
        units, a, b = [str(u) for u in z["units"]], z["a"], z["b"]
    worst = 0.0
    for i, pair in enumerate(pairs):
        for rows, stim in zip((a, b), pair.stimuli()):
            # Qwen-Image's one-step schedule is 0/0 in __call__ (NaN): its probe pass is step 0 of any longer one
            steps = 2 if bundle.name == "tiny-qwen-image" else 1
            ref = _pipeline_heads(bundle, stim.prompt, 5, i, steps=steps)[0]
            worst = max(worst, _compare(rows[i], units, ref))
    print(f"\n{bundle.name} 1 step: max rel diff {worst:.2e}")
    assert worst <= 1e-5
    assert not np.allclose(a, b)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_trajectory_equals_hooks_inside_the_pipeline_call(bundle, tmp_path, guidance):
    pairs = _pairs(2)
    config = RunConfig(probe="fam", seed=5, batch_size=4, layouts=("heads",), steps=3, guidance=guidance)
    manifest = run_probe(_probe(pairs), tmp_path, config, model=bundle, progress=False)
    # Qwen-Image's __call__ runs CFG only with a negative prompt, and plantain gives none
    assert manifest["cfg"] is (guidance > 1 and bundle.name != "tiny-qwen-image")
    with np.load(tmp_path / "captures" / "heads.npz", allow_pickle=False) as z:
        units, a = [str(u) for u in z["units"]], z["a"]
    worst = 0.0
    for i, pair in enumerate(pairs):
        per_step = _pipeline_heads(bundle, pair.a.prompt, 5, i, steps=3, guidance=guidance)
        assert len(per_step) == 3  # one forward per step: CFG rows ride in the same batch
        for step, ref in enumerate(per_step):
            worst = max(worst, _compare(a[i, step], units, ref))
    print(f"\n{bundle.name} 3 steps guidance {guidance}: max rel diff {worst:.2e}")
    assert worst <= 1e-5


# -- seed probes, cards, units ------------------------------------------------------------------------------
SEEDS = {"ray": "text-pair", "dense": "text-pair", "measure": "fixed-image-text-pair",
         "otherview": "fixed-image-text-pair", "after": "image-pair"}


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_seed_probes_run_or_are_refused_by_kind_and_the_card_is_the_familys(model, tmp_path):
    runner = CliRunner()
    family = FAMILIES[model].family.name
    for probe, kind in SEEDS.items():
        out = tmp_path / probe
        result = runner.invoke(main, ["run", probe, "--model", model, "--out", str(out), "--no-progress",
                                      "--no-figures", "--flips", "50", "--splits", "10"])
        if kind != "text-pair":
            assert result.exit_code == 1, (probe, result.output)
            assert f"model family {family}" in result.output and f"{family} runs: text-pair" in result.output
            assert not out.exists()
            continue
        assert result.exit_code == 0, (probe, result.output)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["layouts"]["heads"]["n_units"] == {"qwen-image": 8, "z-image": 16, "pixart-sigma": 16}[family]
        card = (out / "README.md").read_text()
        assert "FLUX" not in card, card
        assert "MLP" not in card  # none of the three has MLP units
        assert FAMILIES[model].family.padding_note() in card


@pytest.mark.parametrize("model, heads, slices, source", [
    ("Qwen/Qwen-Image", 60 * 24, 60 * 3072 // 16, "Qwen/Qwen-Image"),
    ("Tongyi-MAI/Z-Image-Turbo", (2 + 2 + 30) * 30, (2 + 2 + 30) * 3840 // 16, "Tongyi-MAI/Z-Image-Turbo"),
    ("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", 28 * 16 * 2, 28 * 2 * 1152 // 16, "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"),
    ("Z-Image-Turbo", (2 + 2 + 30) * 30, (2 + 2 + 30) * 3840 // 16, "Tongyi-MAI/Z-Image-Turbo"),  # a bare name
])
def test_units_of_the_new_presets_offline(model, heads, slices, source, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["units", model, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["layouts"]["heads"]["units"], report["layouts"]["slices16"]["units"]) == (heads, slices)
    assert report["layouts"]["slices16"]["mlp_units"] == 0
    assert report["config_source"] == f"preset {source} (model family {report['family']})"


def test_qwen_image_prints_1440_heads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = CliRunner().invoke(main, ["units", "Qwen/Qwen-Image"]).output
    assert "heads: 1,440 true attention heads = 60 x 24" in out


def test_a_third_party_family_brings_presets_and_the_error_lists_every_familys(monkeypatch):
    from plantain_core import hookimpl
    from plantain_core.plugins import load_registry, using_registry
    from plantain_plugins.families.pixart import PixArtSigmaFamily

    class AlphaFamily(PixArtSigmaFamily):
        name = "pixart-alpha-test"
        pipeline_class = "PixArtAlphaPipeline"

        def presets(self):
            return {"someone/PixArt-XL-2-512x512": {"_class_name": "PixArtTransformer2DModel", "num_layers": 3,
                                                   "num_attention_heads": 2, "attention_head_dim": 8,
                                                   "cross_attention_dim": 16, "caption_channels": 8,
                                                   "sample_size": 8, "norm_num_groups": 2}}

    class Plugin:
        @hookimpl
        def plantain_register_families(self, register):
            register("pixart-alpha-test", AlphaFamily())

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with using_registry(load_registry(extra=[("alpha", Plugin())])):
        report = json.loads(CliRunner().invoke(main, ["units", "someone/PixArt-XL-2-512x512", "--json"]).output)
        assert report["layouts"]["heads"]["units"] == 3 * 2 * 2 and report["family"] == "pixart-sigma"
        missing = CliRunner().invoke(main, ["units", "nobody/nothing"])
    assert missing.exit_code == 1
    for preset in ("someone/PixArt-XL-2-512x512", "Qwen/Qwen-Image", "Tongyi-MAI/Z-Image-Turbo", "FLUX.1-dev"):
        assert preset in missing.output


@pytest.mark.parametrize("model, tiny", [("Qwen/Qwen-Image", "tiny-qwen-image"), ("Tongyi-MAI/Z-Image-Turbo", "tiny-z-image"),
                                         ("black-forest-labs/FLUX.1-dev", "tiny-flux1"),
                                         ("black-forest-labs/FLUX.2-klein-base-4B", "tiny")])
def test_the_offline_error_suggests_the_familys_own_tiny_model(model, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = CliRunner().invoke(main, ["run", "ray", "--model", model, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.rstrip().endswith(f"or use --model {tiny}"), result.output


def test_sweep_plan_uses_the_benchmark_rate_only_for_the_model_it_measured(tmp_path):
    from plantain_core.sweep.plan import LATEST, plan_sweep

    assert LATEST.is_file()  # the checkout's benchmarks/results/latest.json (it was looked for inside plantain_core/)
    sweep = tmp_path / "s.toml"
    sweep.write_text('probes = ["ray"]\nmodels = ["tiny", "tiny-weights1", "tiny-qwen-image", "tiny-pixart-sigma"]\n'
                     'seeds = [0]\n')
    rates = {c["model"]: c["passes_per_second"] for c in plan_sweep(sweep)["cells"]}
    assert rates["tiny"] is not None and rates["tiny-weights1"] == rates["tiny"]
    assert rates["tiny-qwen-image"] is None and rates["tiny-pixart-sigma"] is None


@pytest.mark.parametrize("model, scope, message", [
    ("tiny-z-image", "image", "this model family runs --token-scope all only"),
    ("tiny-pixart-sigma", "text", "no block has units of layout 'heads' under token scope 'text'"),
])
def test_token_scopes_a_family_cannot_read_are_refused_with_one_error(model, scope, message, tmp_path):
    result = CliRunner().invoke(main, ["run", "ray", "--model", model, "--token-scope", scope, "--units", "heads",
                                       "--out", str(tmp_path / "run"), "--no-progress", "--no-figures"])
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.startswith("Error:") and len(result.output.strip().splitlines()) == 1  # no traceback


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_tiny_builders_are_seeded_and_leave_the_callers_rng_alone(model):
    tiny = FAMILIES[model]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first, again, other = tiny.build(0), tiny.build(0), tiny.build(1)
    assert torch.equal(torch.rand(3), before)
    for name in ("transformer", "text_encoder", "vae"):
        a, b, c = (dict(getattr(p, name).state_dict()) for p in (first, again, other))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)
    assert type(first).__name__ == tiny.family.pipeline_class
    assert type(first.transformer).__name__ == tiny.family.transformer_class
