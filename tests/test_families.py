"""Model families: every tiny family's runner captures equal hooks inside its own pipeline
``__call__``; seed probes run where the kind is supported and are refused where not;
``plantain units`` counts for the bundled presets equal counts worked out by hand."""

from __future__ import annotations

import json
import re

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core import ImageSource, Pair, Stimulus
from plantain_core.cli import main
from plantain_core.config import RunConfig
from plantain_core.errors import PlantainError
from plantain_core.capture.images import get_image
from plantain_plugins.families.builtin import TINY_FLUX1, TINY_FLUX1_KONTEXT, TINY_FLUX2_DEV, TINY_SD3
from plantain_core.models.loaders import TinyLoader
from plantain_core.capture.passes import noise_seed
from plantain_core.spec.probes import Probe
from plantain_core.capture.runner import run_probe
from plantain_core.spec.probe_spec import ProbeSpec

FAMILIES = {"tiny-flux1": TINY_FLUX1, "tiny-flux1-kontext": TINY_FLUX1_KONTEXT, "tiny-sd3": TINY_SD3,
            "tiny-flux2-dev": TINY_FLUX2_DEV}
IMAGE_FAMILIES = ("tiny-flux1-kontext", "tiny-flux2-dev")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def bundle(request):
    return TinyLoader(FAMILIES[request.param]).load(request.param, "cpu")


def _pairs(fixed_image: bool) -> list[Pair]:
    ref = ImageSource(prompt="a photo of a wooden chair", seed=3, steps=2, guidance=1.0) if fixed_image else None
    words = [("red", "blue"), ("a cat", "a dog"), ("morning light", "night")]
    return [Pair(f"p{i}", Stimulus(f"a photo of {a}", ref), Stimulus(f"a photo of {b}", ref))
            for i, (a, b) in enumerate(words)]


def _probe(pairs, generator="text-pair") -> Probe:
    spec = ProbeSpec(name="fam", description="family test", generator=generator, stimuli={})
    return Probe(spec, tuple(pairs), {})


# -- independent reference: hooks on the modules named here, inside __call__ ------------------------------
def _site_modules(transformer):
    """(unit-name prefix, module, owning attention) of every attention output projection,
    named from diffusers' module tree by hand (not by plantain's families)."""
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        out.append((f"joint[{i}]", block.attn.to_out[0], block.attn))
        if getattr(block.attn, "to_add_out", None) is not None:  # SD3's last block: context-pre-only
            out.append((f"joint[{i}]", block.attn.to_add_out, block.attn))
        if getattr(block, "attn2", None) is not None:  # SD3.5 medium's second attention
            out.append((f"attn2[{i}]", block.attn2.to_out[0], block.attn2))
    for i, block in enumerate(getattr(transformer, "single_transformer_blocks", [])):
        proj = block.proj_out if hasattr(block, "proj_out") else block.attn.to_out  # FLUX.1 / FLUX.2
        out.append((f"single[{i}]", proj, block.attn))
    return out


def _reference_heads(transformer, inputs, row: int) -> dict[str, float]:
    """Per-head RMS over every token of row ``row`` of the hooked inputs, float64, from the
    raw tensors: head h = features [h*d, (h+1)*d) with d = the attention width / heads."""
    sums, counts = {}, {}
    for k, (prefix, _module, attn) in enumerate(_site_modules(transformer)):
        x = inputs[k][row].double()  # (tokens, features)
        head_dim = attn.inner_dim // attn.heads
        for h in range(attn.heads):
            part = x[:, h * head_dim:(h + 1) * head_dim]
            key = f"{prefix}.h{h:02d}"
            sums[key] = sums.get(key, 0.0) + float(part.square().sum())
            counts[key] = counts.get(key, 0) + part.numel()
    return {k: (sums[k] / counts[k]) ** 0.5 for k in sums}


def _call(bundle, stim, seed, pair_index, image, steps=1, guidance=1.0):
    name = bundle.name
    kwargs = dict(prompt=stim.prompt, height=128, width=128, num_inference_steps=steps, guidance_scale=guidance,
                  output_type="latent", generator=torch.Generator().manual_seed(noise_seed(seed, pair_index)))
    if name == "tiny-flux2-dev":
        kwargs["text_encoder_out_layers"] = bundle.text_encoder_out_layers
    if name == "tiny-flux1-kontext":
        kwargs.update(max_area=128 * 128, _auto_resize=False)
    if image is not None:
        kwargs["image"] = image
    bundle.pipeline(**kwargs)


def _pipeline_heads(bundle, stim, seed, pair_index, image=None, steps=1, guidance=1.0) -> list[dict[str, float]]:
    """Per-head RMS of the conditional pass at every step of the pipeline's own __call__."""
    transformer = bundle.pipeline.transformer
    inputs, handles = [], []
    sites = _site_modules(transformer)
    handles.append(transformer.register_forward_pre_hook(lambda mod, args: inputs.append({})))  # one per forward
    for k, (_prefix, module, _attn) in enumerate(sites):
        def hook(mod, args, k=k):
            inputs[-1][k] = args[0].detach()

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            _call(bundle, stim, seed, pair_index, image, steps, guidance)
    finally:
        for h in handles:
            h.remove()
    # SD3 batches CFG as [unconditional, conditional]: the conditional pass is the last row
    return [_reference_heads(transformer, forward, row=forward[0].shape[0] - 1) for forward in inputs]


@pytest.mark.parametrize("fixed_image", [False, True])
def test_runner_equals_hooks_inside_the_family_pipeline_call(bundle, tmp_path, fixed_image):
    if fixed_image and bundle.name not in IMAGE_FAMILIES:
        pytest.skip("the family takes no conditioning image")
    pairs = _pairs(fixed_image)
    generator = "fixed-image-text-pair" if fixed_image else "text-pair"
    config = RunConfig(probe="fam", seed=5, batch_size=4, layouts=("heads",))
    run_probe(_probe(pairs, generator), tmp_path, config, model=bundle, progress=False)
    with np.load(tmp_path / "captures" / "heads.npz", allow_pickle=False) as z:
        units, a, b = [str(u) for u in z["units"]], z["a"], z["b"]
    image = get_image(bundle, pairs[0].a.image, 128, 128)[0] if fixed_image else None
    for i, pair in enumerate(pairs):
        for rows, stim in zip((a, b), pair.stimuli()):
            (ref,) = _pipeline_heads(bundle, stim, 5, i, image)
            assert sorted(ref) == sorted(units)
            np.testing.assert_allclose(rows[i], [ref[u] for u in units], rtol=2e-5, atol=1e-9)
    assert not np.allclose(a, b)  # the prompts differ, so do the captures


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_trajectory_steps_equal_hooks_inside_the_family_pipeline_call(bundle, tmp_path, guidance):
    pairs = _pairs(False)[:2]
    config = RunConfig(probe="fam", seed=5, batch_size=2, layouts=("heads",), steps=3, guidance=guidance)
    manifest = run_probe(_probe(pairs), tmp_path, config, model=bundle, progress=False)
    # SD3 runs CFG above guidance 1; FLUX.1 and FLUX.2 [dev] embed the guidance instead
    assert manifest["cfg"] is (bundle.name == "tiny-sd3" and guidance > 1)
    assert manifest["guidance_embedded"] is (bundle.name != "tiny-sd3")
    with np.load(tmp_path / "captures" / "heads.npz", allow_pickle=False) as z:
        units, a = [str(u) for u in z["units"]], z["a"]
    for i, pair in enumerate(pairs):
        per_step = _pipeline_heads(bundle, pair.a, 5, i, steps=3, guidance=guidance)
        assert len(per_step) == 3
        for step, ref in enumerate(per_step):
            np.testing.assert_allclose(a[i, step], [ref[u] for u in units], rtol=1e-4, atol=1e-9)


def test_sd3_units_follow_its_blocks(tmp_path):
    bundle = TinyLoader(TINY_SD3).load("tiny-sd3", "cpu")
    pairs = _pairs(False)
    run_probe(_probe(pairs), tmp_path / "all", RunConfig(probe="fam", layouts=("heads",)), model=bundle, progress=False)
    run_probe(_probe(pairs), tmp_path / "text", RunConfig(probe="fam", layouts=("heads",), token_scope="text"), model=bundle,
              progress=False)
    with np.load(tmp_path / "all" / "captures" / "heads.npz") as z:
        every = [str(u) for u in z["units"]]
    with np.load(tmp_path / "text" / "captures" / "heads.npz") as z:
        text = [str(u) for u in z["units"]]
    # 3 joint blocks + attn2 of block 0, 4 heads each; the last block and attn2 read no text
    assert len(every) == 16 and [u for u in every if u.startswith("attn2[0]")] == [f"attn2[0].h0{k}" for k in range(4)]
    assert text == [f"joint[{i}].h0{k}" for i in (0, 1) for k in range(4)]


# -- seed probes on every tiny family -----------------------------------------------------------------------------
SEEDS = {"ray": "text-pair", "dense": "text-pair", "measure": "fixed-image-text-pair",
         "otherview": "fixed-image-text-pair", "after": "image-pair"}


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_seed_probes_run_or_are_refused_by_kind(model, tmp_path):
    runner = CliRunner()
    for probe, kind in SEEDS.items():
        out = tmp_path / probe
        result = runner.invoke(main, ["run", probe, "--model", model, "--out", str(out), "--no-progress",
                                      "--no-figures", "--flips", "50", "--splits", "10"])
        if kind == "text-pair" or model in IMAGE_FAMILIES:
            assert result.exit_code == 0, (probe, result.output)
            summary = json.loads((out / "summary.json").read_text())
            assert summary["layouts"]["heads"]["n_units"] > 0 and (out / "README.md").is_file()
        else:
            assert result.exit_code == 1
            family = "sd3" if model == "tiny-sd3" else "flux1"
            assert f"model family {family}" in result.output and f"{family} runs: text-pair" in result.output
            assert kind in result.output and result.output.count("Error") == 1
            assert not out.exists()  # refused before any work


def test_kind_check_judges_third_party_kinds_by_their_images():
    from plantain_plugins.families.flux1 import FLUX1
    from plantain_plugins.families.flux2 import FLUX2_KLEIN

    FLUX1.check_kind("my-text-kind", has_images=False)
    FLUX2_KLEIN.check_kind("my-image-kind", has_images=True)
    with pytest.raises(PlantainError, match="my-image-kind .conditioning images.*flux1 runs: text-pair"):
        FLUX1.check_kind("my-image-kind", has_images=True, probe="x")


# -- units of the published configs ---------------------------------------------------------------------------
# (heads, slices16, MLP slices), worked out by hand from each transformer/config.json:
# FLUX heads = (joint + single blocks) x heads; slices16 = joint x heads*dim/16 + single x (heads*dim + mlp)/16
PRESET_UNITS = {
    "black-forest-labs/FLUX.1-dev": (57 * 24, 19 * 3072 // 16 + 38 * (3072 + 4 * 3072) // 16, 38 * 4 * 3072 // 16),
    "black-forest-labs/FLUX.1-schnell": (57 * 24, 19 * 192 + 38 * 960, 38 * 768),
    "black-forest-labs/FLUX.1-Kontext-dev": (57 * 24, 19 * 192 + 38 * 960, 38 * 768),
    "black-forest-labs/FLUX.2-dev": (56 * 48, 8 * 6144 // 16 + 48 * (6144 + 3 * 6144) // 16, 48 * 3 * 6144 // 16),
    "black-forest-labs/FLUX.2-klein-4B": (25 * 24, 5 * 3072 // 16 + 20 * (3072 + 3 * 3072) // 16, 20 * 9216 // 16),
    # SD3: joint blocks only, heads x 64 features; SD3.5 medium adds attn2 in blocks 0-12
    "stabilityai/stable-diffusion-3-medium-diffusers": (24 * 24, 24 * 1536 // 16, 0),
    "stabilityai/stable-diffusion-3.5-large": (38 * 38, 38 * 2432 // 16, 0),
    "stabilityai/stable-diffusion-3.5-large-turbo": (38 * 38, 38 * 2432 // 16, 0),
    "stabilityai/stable-diffusion-3.5-medium": (24 * 24 + 13 * 24, (24 + 13) * 1536 // 16, 0),
}


@pytest.mark.parametrize("model", sorted(PRESET_UNITS))
def test_units_of_every_preset_equal_the_hand_count(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["units", model, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    heads, slices, mlp = PRESET_UNITS[model]
    assert report["layouts"]["heads"]["units"] == heads
    assert report["layouts"]["slices16"]["units"] == slices
    assert report["layouts"]["slices16"]["mlp_units"] == mlp
    assert report["config_source"].startswith("preset ")


def test_units_flux1_dev_prints_1368_heads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = CliRunner().invoke(main, ["units", "black-forest-labs/FLUX.1-dev"]).output
    assert "heads: 1,368 true attention heads = 19 x 24 + 38 x 24" in out
    assert "proj_out takes the attention output and the MLP's activations concatenated" in out


# -- a third party's family is untrusted ------------------------------------------------------------------------
class _Incomplete:
    name, description, pipeline_class, transformer_class = "half", "a family missing methods", "P", "T"
    kinds, text_tokens, prompt_limit = ("text-pair",), 512, 512


def test_a_family_missing_contract_methods_is_refused_when_registered():
    from plantain_core import hookimpl
    from plantain_core.plugins import load_registry

    class Plugin:
        @hookimpl
        def plantain_register_families(self, register):
            register("half", _Incomplete())

    registry = load_registry(extra=[("halfplug", Plugin())], use_entry_points=False)
    assert "half" not in registry.families
    (failure,) = registry.failures
    assert failure.plugin == "halfplug" and "model family 'half'" in failure.error and "does not implement" in failure.error


@pytest.mark.parametrize("bad,message", [
    (lambda sites: [object()], "not a plantain_core.Site"),
    (lambda sites: [], "non-empty list"),
    (lambda sites: [attrs.evolve(sites[0], block=attrs.evolve(sites[0].block, heads=0))], "heads, head_dim >= 1"),
    (lambda sites: [attrs.evolve(sites[0], block=attrs.evolve(sites[0].block, kind="../x"))], "short identifier"),
    (lambda sites: [attrs.evolve(sites[0], stream="audio")], "stream 'audio'"),
    (lambda sites: [attrs.evolve(sites[0], block=attrs.evolve(sites[0].block, mlp_dim=10_000))], "input features"),
    (lambda sites: 1 / 0, "sites() on Flux2Transformer2DModel failed: ZeroDivisionError"),
])
def test_malformed_capture_sites_are_one_clear_error(bad, message):
    from plantain_core.capture.hooks import capture_units
    from plantain_core.models.lookup import transformer_layouts
    from plantain_plugins.families.flux2 import Flux2KleinFamily
    from plantain_core.models.tiny import build_tiny_pipeline

    class Broken(Flux2KleinFamily):
        name = "broken"

        def sites(self, transformer):
            return bad(super().sites(transformer))

    transformer = build_tiny_pipeline().transformer
    with pytest.raises(PlantainError, match=re.escape(message)):
        transformer_layouts(transformer, family=Broken())
    with pytest.raises(PlantainError, match="model family 'broken'"):
        with capture_units(transformer, family=Broken()):
            pass
    assert not transformer._forward_pre_hooks  # nothing was left installed
