"""The example package's model family, Chroma, checked as plantain checks its built-in ones
(plantain's tests/test_families.py): a text-pair probe runs on ``tiny-chroma`` and writes
its card; the runner's ``heads`` captures equal per-head RMS from hooks placed by hand on
the projection modules while ``ChromaPipeline.__call__`` itself runs (one step, and a
K-step trajectory); probes the family cannot run are refused before any work.

Run after installing the package (``pip install ./examples/plantain-example``):
``python -m pytest examples/plantain-example/tests``.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from plantain_core import Pair, ProbeSpec, Stimulus  # noqa: E402
from plantain_core.cli import main  # noqa: E402
from plantain_core.config import RunConfig  # noqa: E402
from plantain_core.models.loaders import load_model, resolve_loader  # noqa: E402
from plantain_core.capture.passes import noise_seed  # noqa: E402
from plantain_core.plugins import get_registry  # noqa: E402
from plantain_core.spec.probes import Probe  # noqa: E402
from plantain_core.capture.runner import run_probe  # noqa: E402
from plantain_core.testing import FAST  # noqa: E402

SIZE = 128
FAST_ARGS = ["--no-progress", "--no-figures", "--flips", str(FAST["flips"]), "--splits", str(FAST["splits"])]


@pytest.fixture(scope="module")
def bundle():
    # through plantain's own loader resolution: the name is this package's registration
    return load_model("tiny-chroma", "cpu")


def test_the_family_and_its_loaders_are_registered_from_this_package():
    registry = get_registry()
    family = registry.families["chroma"]
    assert family.provider.distribution == "plantain-example"
    assert family.obj.kinds == ("text-pair",) and family.obj.pipeline_class == "ChromaPipeline"
    for name in ("tiny-chroma", "chroma"):
        assert registry.models[name].provider.distribution == "plantain-example"
        assert registry.models[name].obj.family is family.obj
    assert resolve_loader("lodestones/Chroma1-HD")[0] == "chroma"
    assert resolve_loader("tiny-chroma-weights3")[0] == "tiny-chroma"
    assert resolve_loader("black-forest-labs/FLUX.1-dev")[0] == "flux1"


def test_tiny_chroma_is_deterministic_per_seed_and_leaves_the_global_rng_alone():
    from plantain_example.chroma import build_tiny_chroma_pipeline

    state = torch.random.get_rng_state()
    one, again, other = (build_tiny_chroma_pipeline(seed=s).transformer.state_dict() for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(one[k], again[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)


# -- (a) a text-pair probe on tiny-chroma, from the command line --------------------------------------------
def test_a_text_pair_probe_runs_on_tiny_chroma_and_writes_its_card(tmp_path):
    out = tmp_path / "warmth"
    result = CliRunner().invoke(main, ["run", "warmth", "--model", "tiny-chroma", "--out", str(out), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # 2 joint + 2 single blocks, 4 heads each
    assert summary["layouts"]["heads"]["n_units"] == 16
    card = (out / "README.md").read_text()
    assert "plantain/tiny-chroma" in card and "## Limitations" in card
    assert "Model family `chroma`" in card and "proj_out takes the attention output" in card  # its unit_notes
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "tiny-chroma" and manifest["model"]["revision"] == "tiny-chroma-1"
    assert manifest["model"]["family"] == "chroma"


# -- (b) runner captures == hooks placed by hand inside ChromaPipeline.__call__ ------------------------------
def _site_modules(transformer):
    """(unit-name prefix, module, owning attention) of every attention output projection,
    named from diffusers' ChromaTransformer2DModel module tree by hand (not by the family)."""
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        out.append((f"joint[{i}]", block.attn.to_out[0], block.attn))
        out.append((f"joint[{i}]", block.attn.to_add_out, block.attn))
    for i, block in enumerate(transformer.single_transformer_blocks):
        out.append((f"single[{i}]", block.proj_out, block.attn))  # input: attention output ‖ MLP activations
    return out


def _heads(transformer, inputs) -> dict[str, float]:
    """Per-head RMS over every token of the hooked inputs (batch 1), float64: head h =
    features [h*d, (h+1)*d) with d = to_q's width / heads."""
    sums, counts = {}, {}
    for k, (prefix, _module, attn) in enumerate(_site_modules(transformer)):
        x = inputs[k][0].double()
        head_dim = attn.to_q.out_features // attn.heads
        for h in range(attn.heads):
            part = x[:, h * head_dim:(h + 1) * head_dim]
            key = f"{prefix}.h{h:02d}"
            sums[key] = sums.get(key, 0.0) + float(part.square().sum())
            counts[key] = counts.get(key, 0) + part.numel()
    return {k: (sums[k] / counts[k]) ** 0.5 for k in sums}


def _pipeline_heads(bundle, prompt, seed, pair_index, steps=1, drop_mask=False, guidance=1.0) -> list[dict[str, float]]:
    """Per-step heads of the conditional pass of ``ChromaPipeline.__call__`` denoising
    ``prompt`` (with CFG above guidance 1: the conditional forward runs first each step)."""
    pipe = bundle.pipeline
    transformer = pipe.transformer
    forwards, per_step, handles, masks = [], [], [], []
    for k, (_prefix, module, _attn) in enumerate(_site_modules(transformer)):
        def hook(mod, args, k=k):
            forwards[-1][k] = args[0].detach()

        handles.append(module.register_forward_pre_hook(hook))

    def see_mask(mod, args, kwargs):
        forwards.append({})
        masks.append(kwargs["attention_mask"])
        if drop_mask:
            return args, {**kwargs, "attention_mask": None}
        return None

    handles.append(transformer.register_forward_pre_hook(see_mask, with_kwargs=True))

    def on_step_end(_pipe, i, t, kwargs):
        per_step.append(_heads(transformer, forwards[-2 if guidance > 1 else -1]))
        return kwargs

    try:
        with torch.inference_mode():
            pipe(prompt=prompt, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                 output_type="latent", generator=torch.Generator().manual_seed(noise_seed(seed, pair_index)),
                 callback_on_step_end=on_step_end)
    finally:
        for h in handles:
            h.remove()
    # the pipeline masks the text padding (all but its first token), never the image tokens
    assert len(masks) == steps * (2 if guidance > 1 else 1) and masks[0] is not None and masks[0].shape[1] == 512 + (SIZE // 16) ** 2
    assert (masks[0][0, :512] == 0).any() and bool(masks[0][0, 512:].all())
    return per_step


PAIRS = [Pair("p0", Stimulus("a photo of a red cube"), Stimulus("a photo of a small blue sphere on a table")),
         Pair("p1", Stimulus("a cat"), Stimulus("a dog asleep in the morning light")),
         Pair("p2", Stimulus("night"), Stimulus("a bright sunny day at the beach"))]


def _run(bundle, out, **config):
    spec = ProbeSpec(name="chroma-test", generator="text-pair", stimuli={"pairs": []})
    # batch 4: two pairs per forward, so rows with different masks share a batch
    config = RunConfig(probe=spec.name, layouts=("heads",), batch_size=4, height=SIZE, width=SIZE, **config)
    run_probe(Probe.from_pairs(spec, PAIRS), out, config, model=bundle, progress=False)
    with np.load(out / "captures" / "heads.npz", allow_pickle=False) as z:
        return [str(u) for u in z["units"]], z["a"], z["b"]


def test_runner_equals_hooks_inside_the_chroma_pipeline_call(bundle, tmp_path):
    units, a, b = _run(bundle, tmp_path / "run", seed=5)
    assert len(units) == 16 and a.shape == (3, 16)
    for i, pair in enumerate(PAIRS):
        for rows, stim in zip((a, b), pair.stimuli()):
            ref = _pipeline_heads(bundle, stim.prompt, 5, i)[0]
            assert sorted(ref) == sorted(units)
            np.testing.assert_allclose(rows[i], [ref[u] for u in units], rtol=2e-5, atol=1e-9)
    assert not np.allclose(a, b)
    # the comparison sees the attention mask: without it the pipeline's heads are others
    unmasked = _pipeline_heads(bundle, PAIRS[0].a.prompt, 5, 0, drop_mask=True)[0]
    assert not np.allclose(a[0], [unmasked[u] for u in units], rtol=1e-3)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_every_trajectory_step_equals_hooks_inside_the_chroma_pipeline_call(bundle, tmp_path, guidance):
    """Also with CFG: the unconditional pass runs with the empty prompt's own mask, as in the pipeline."""
    steps = 3
    units, a, b = _run(bundle, tmp_path / "run", seed=2, steps=steps, guidance=guidance)
    assert a.shape == (3, steps, 16)
    for i, pair in enumerate(PAIRS):
        for rows, stim in zip((a, b), pair.stimuli()):
            per_step = _pipeline_heads(bundle, stim.prompt, 2, i, steps=steps, guidance=guidance)
            assert len(per_step) == steps
            for k, ref in enumerate(per_step):
                np.testing.assert_allclose(rows[i, k], [ref[u] for u in units], rtol=2e-5, atol=1e-9)


def test_a_local_chroma_folder_loads_through_the_chroma_hub_loader(bundle, tmp_path):
    """The real-checkpoint path offline: tiny-chroma saved as a diffusers folder is taken by
    the ``chroma`` loader (ChromaPipeline.from_pretrained), counted by ``plantain units``
    from its transformer/config.json, and captures exactly what tiny-chroma does."""
    folder = tmp_path / "chroma-folder"
    bundle.pipeline.save_pretrained(folder)
    assert resolve_loader(str(folder))[0] == "chroma"
    units = CliRunner().invoke(main, ["units", str(folder), "--json"])
    assert units.exit_code == 0, units.output
    report = json.loads(units.output)
    assert report["family"] == "chroma" and report["layouts"]["heads"]["units"] == 16
    local = load_model(str(folder), "cpu", "fp32")
    assert local.family is bundle.family and local.name == "chroma"
    _, a_local, b_local = _run(local, tmp_path / "local", seed=1)
    _, a_tiny, b_tiny = _run(bundle, tmp_path / "tiny", seed=1)
    np.testing.assert_array_equal(a_local, a_tiny)
    np.testing.assert_array_equal(b_local, b_tiny)


# -- what the family refuses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("probe,kind", [("measure", "fixed-image-text-pair"), ("after", "image-pair")])
def test_an_image_probe_is_refused_naming_the_family(probe, kind, tmp_path):
    out = tmp_path / probe
    result = CliRunner().invoke(main, ["run", probe, "--model", "tiny-chroma", "--out", str(out), *FAST_ARGS])
    assert result.exit_code == 1
    assert "model family chroma" in result.output and "chroma runs: text-pair" in result.output
    assert kind in result.output and result.output.count("Error") == 1
    assert not out.exists()  # refused before any work
