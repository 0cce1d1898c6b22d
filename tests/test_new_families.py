"""Qwen-Image, Z-Image and PixArt-Sigma: each equals its own pipeline's ``__call__`` through
the conformance kit (tests/test_conformance.py proves all three; here what each needed of
the kit, and the capture sites named from diffusers' module tree by hand, which the kit
cannot check); seed probes run or are refused by kind; the presets count offline;
``plantain run ray`` writes a card whose text is the family's own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.models.loaders import TinyLoader
from plantain_core.testing import prove_family
from plantain_plugins.families.builtin import TINY_PIXART_SIGMA, TINY_QWEN_IMAGE, TINY_Z_IMAGE

FAMILIES = {"tiny-qwen-image": TINY_QWEN_IMAGE, "tiny-z-image": TINY_Z_IMAGE, "tiny-pixart-sigma": TINY_PIXART_SIGMA}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def bundle(request):
    return TinyLoader(FAMILIES[request.param]).load(request.param, "cpu")


# -- the kit proves each against its own __call__; here what it cannot see or what it needed ---------------
def _site_modules(name: str, transformer):
    """(unit-name prefix, output projection) in forward order, named from diffusers' module tree by hand."""
    if name == "tiny-qwen-image":
        return [(f"joint[{i}]", proj) for i, b in enumerate(transformer.transformer_blocks)
                for proj in (b.attn.to_out[0], b.attn.to_add_out)]
    if name == "tiny-z-image":
        return [(f"{kind}[{i}]", b.attention.to_out[0])
                for kind, blocks in (("noise_refiner", transformer.noise_refiner),
                                     ("context_refiner", transformer.context_refiner), ("layer", transformer.layers))
                for i, b in enumerate(blocks)]
    return [(f"{kind}[{i}]", attn.to_out[0]) for i, b in enumerate(transformer.transformer_blocks)
            for kind, attn in (("self", b.attn1), ("cross", b.attn2))]


def test_the_capture_sites_are_every_attention_output_projection(bundle):
    """What the kit cannot catch (both of its sides hook the family's sites): a site left out."""
    transformer = bundle.pipeline.transformer
    sites = bundle.family.sites(transformer)
    expected = _site_modules(bundle.name, transformer)
    assert [s.module for s in sites] == [m for _, m in expected]
    assert [s.block.name for s in sites] == [p for p, _ in expected]


def test_qwen_images_probe_pass_is_step_0_of_its_two_step_call():
    """Qwen-Image's __call__ at one step divides 0/0 (shift_terminal): the kit compares the
    probe pass with step 0 of a reference_steps_for_one = 2 call, and its guidance 3 runs no
    CFG (no negative prompt); compared with the one-step call, as before, it is NaN."""
    from plantain_plugins.families.qwen_image import QwenImageFamily

    class OneStep(QwenImageFamily):
        name = "qwen-image-one-step"
        reference_steps_for_one = 1

    bundle = TinyLoader(TINY_QWEN_IMAGE).load("tiny-qwen-image", "cpu")
    report = prove_family(bundle, steps=(1,), guidance=(1.0, 3.0))
    assert report.max_rel <= 1e-5 and {c.cfg for c in report.cases} == {False}
    bad = prove_family(bundle, family=OneStep(), steps=(1,), guidance=(1.0,), check=False)
    assert not bad.ok and np.isnan(bad.max_rel)


def test_z_images_forward_and_guidance_convention_through_the_kit():
    """ZImagePipeline calls its transformer positionally with a list of caption features (the
    capture hooks ask the family for the text length) and takes guidance_scale = plantain's
    guidance - 1: with the default mapping its guidance 1 would run CFG where plantain runs none."""
    from plantain_plugins.families.z_image import ZImageFamily

    class PlainGuidance(ZImageFamily):
        name = "z-image-plain-guidance"

        def pipeline_guidance(self, guidance):
            return {"guidance_scale": guidance}

    bundle = TinyLoader(TINY_Z_IMAGE).load("tiny-z-image", "cpu")
    report = prove_family(bundle, steps=(1,), guidance=(1.0, 3.0))
    assert report.max_rel <= 1e-5 and [c.cfg for c in report.cases] == [False, False, True, True]
    bad = prove_family(bundle, family=PlainGuidance(), steps=(1,), guidance=(1.0,), check=False)
    assert not bad.ok and all("the pipeline runs 2 rows per step" in c.problem for c in bad.cases)


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
