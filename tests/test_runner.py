"""The probe runner on the tiny model: equality with the pipeline's own call, resume, kinds."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch

from plantain_core import ImageSource, Pair, ProbeSpec, Stimulus
from plantain_core.capture.hooks import capture_units
from plantain_core.errors import PlantainError
from plantain_core.capture.images import get_image
from plantain_core.config import RunConfig
from plantain_core.models import LoadedModel, TinyLoader
from plantain_core.spec.probes import Probe
from plantain_core.capture.runner import noise_seed
from plantain_core.capture.runner import run_probe as _run_probe

FIXED_PROMPT = "Describe what is depicted in this image."
LAYOUTS = ("heads", "slices16")


@pytest.fixture(scope="module")
def bundle():
    return TinyLoader().load("tiny", "cpu")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "image-cache"
    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(path))
    return path


def run_probe(spec, pairs, out, *, model, resume=False, progress=False, **config):
    """The runner on pairs made in code: a model name goes into the config, a bundle is passed as is."""
    bundle = model if isinstance(model, LoadedModel) else None
    config = RunConfig(probe=spec.name, **config, **({} if bundle else {"model": model}))
    return _run_probe(Probe.from_pairs(spec, pairs), out, config, resume=resume, progress=progress, model=bundle)


def _spec(generator="text-pair"):
    return ProbeSpec(name="unit-test", generator=generator, stimuli={"pairs": []})


def _text_pairs(n=3):
    return [Pair(f"p{i}", Stimulus(f"a {i + 1}-kilometer object"), Stimulus(f"a {i + 1}-millimeter object"),
                 {"rank": i}) for i in range(n)]


def _fixed_pairs(n=3):
    ref = ImageSource(prompt="A neutral matte rounded grey object on a neutral grey background", seed=3)
    return [Pair(p.id, Stimulus(p.a.prompt, ref), Stimulus(p.b.prompt, ref)) for p in _text_pairs(n)]


def _load(run_dir, layout):
    with np.load(run_dir / "captures" / f"{layout}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _pipeline_rows(bundle, pair_index, stim, seed, image=None):
    """Units captured while the pipeline's own __call__ runs one step without CFG."""
    with capture_units(bundle.pipeline.transformer, LAYOUTS) as cap:
        bundle.pipeline(image=image, prompt=stim.prompt, height=128, width=128, num_inference_steps=1,
                        guidance_scale=1.0, output_type="latent",
                        generator=torch.Generator().manual_seed(noise_seed(seed, pair_index)),
                        text_encoder_out_layers=bundle.text_encoder_out_layers)
        return cap.take()


@pytest.mark.parametrize("kind", ["text", "fixed-image"])
def test_runner_equals_pipeline_call(bundle, tmp_path, kind):
    pairs = _text_pairs() if kind == "text" else _fixed_pairs()
    manifest = run_probe(_spec(), pairs, tmp_path, model=bundle, seed=7, batch_size=4, progress=False)
    assert manifest["status"] == "captured" and manifest["batch_size"] == 4
    image = None
    if kind == "fixed-image":
        image, record = get_image(bundle, pairs[0].a.image, 128, 128)
        assert record["cached"] is True  # the runner generated and cached it
    caps = {name: _load(tmp_path, name) for name in LAYOUTS}
    for i, pair in enumerate(pairs):
        for side, stim in zip("ab", pair.stimuli()):
            rows = _pipeline_rows(bundle, i, stim, seed=7, image=image)
            for name in LAYOUTS:
                np.testing.assert_allclose(caps[name][side][i], rows[name][0], rtol=1e-5, atol=1e-8)
    # A and B share the noise but not the prompt: the captures differ
    assert not np.allclose(caps["heads"]["a"], caps["heads"]["b"])


def test_capture_files_and_manifest(bundle, tmp_path):
    pairs = _text_pairs(4)
    manifest = run_probe(_spec(), pairs, tmp_path, model=bundle, progress=False)
    heads = _load(tmp_path, "heads")
    assert set(heads) >= {"a", "b", "units", "pair_ids", "done"}
    assert heads["a"].dtype == np.float64 and heads["a"].shape == (4, 16) and heads["done"].all()
    assert list(heads["pair_ids"]) == ["p0", "p1", "p2", "p3"] and heads["units"][5] == "joint[1].h01"
    assert np.isfinite(heads["a"]).all() and (heads["a"] > 0).all()
    slices = _load(tmp_path, "slices16")
    assert slices["a"].shape == (4, 40) and slices["mlp"].sum() == 24
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["layout_info"] == {"heads": {"units": 16, "mlp_units": 0},
                                       "slices16": {"units": 40, "mlp_units": 24}}
    assert (manifest["steps"], manifest["guidance"], manifest["image_steps"], manifest["image_guidance"]) == (1, 1.0, 14, 4.0)
    assert manifest["model"] == {"name": "tiny", "id": "plantain/tiny", "revision": "tiny-1", "family": "flux2-klein",
                                 "tiny": True}
    assert (manifest["height"], manifest["width"], manifest["dtype"], manifest["device"]) == (128, 128, "fp32", "cpu")
    # byte-level tokenizer: 5 special tokens + 20 template bytes + the prompt's bytes
    assert manifest["token_counts"][0] == {"id": "p0", "a": 25 + len("a 1-kilometer object"),
                                           "b": 25 + len("a 1-millimeter object")}
    assert manifest["pairs"][2]["meta"] == {"rank": 2} and manifest["pairs"][0]["a"]["image"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["spec_sha256"])
    assert manifest["timings"]["passes_per_second"] > 0
    with pytest.raises(PlantainError, match="already holds a run"):
        run_probe(_spec(), pairs, tmp_path, model=bundle, progress=False)


def test_deterministic_for_a_seed(bundle, tmp_path):
    pairs = _text_pairs()
    runs = [run_probe(_spec(), pairs, tmp_path / name, model=bundle, seed=s, batch_size=2, progress=False)
            for name, s in (("x", 1), ("y", 1), ("z", 2))]
    assert all(m["status"] == "captured" for m in runs)
    x, y, z = (_load(tmp_path / n, "slices16") for n in "xyz")
    np.testing.assert_array_equal(x["a"], y["a"])
    np.testing.assert_array_equal(x["b"], y["b"])
    assert not np.allclose(x["a"], z["a"])


def test_resume_reproduces_and_refuses_other_settings(bundle, tmp_path):
    pairs = _text_pairs(4)
    run_probe(_spec(), pairs, tmp_path, model=bundle, seed=3, batch_size=2, progress=False)
    full = {name: _load(tmp_path, name) for name in LAYOUTS}
    # Simulate an interruption after the first pair: later rows never written, not done.
    for name in LAYOUTS:
        z = dict(full[name])
        z["done"] = np.array([True, False, False, False])
        z["a"], z["b"] = z["a"].copy(), z["b"].copy()
        z["a"][1:] = np.nan
        z["b"][1:] = np.nan
        np.savez(tmp_path / "captures" / f"{name}.npz", **z)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["status"] = "running"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlantainError, match="seed: was 3, now 4"):
        run_probe(_spec(), pairs, tmp_path, model=bundle, seed=4, batch_size=2, progress=False, resume=True)
    with pytest.raises(PlantainError, match="--units: was heads,slices16, now heads"):
        run_probe(_spec(), pairs, tmp_path, model=bundle, seed=3, layouts=("heads",), progress=False, resume=True)
    resumed = run_probe(_spec(), pairs, tmp_path, model=bundle, seed=3, batch_size=2, progress=False, resume=True)
    assert resumed["status"] == "captured"
    for name in LAYOUTS:
        again = _load(tmp_path, name)
        assert again["done"].all()
        np.testing.assert_array_equal(again["a"], full[name]["a"])
        np.testing.assert_array_equal(again["b"], full[name]["b"])


def test_three_stimulus_kinds_run_on_tiny(bundle, tmp_path, cache_dir):
    from PIL import Image

    # kind 1: text prompt only; kind 2: fixed reference image + prompts
    text = run_probe(_spec(), _text_pairs(), tmp_path / "text", model=bundle, progress=False)
    fixed = run_probe(_spec("fixed-image-text-pair"), _fixed_pairs(), tmp_path / "fixed", model=bundle,
                      progress=False)
    assert text["images"] == [] and len(fixed["images"]) == 1
    rec = fixed["images"][0]
    assert re.fullmatch(r"[0-9a-f]{64}", rec["key"])
    assert "path" not in rec and rec["cached"] is False  # a manifest carries no local paths
    cached = cache_dir / "images" / f"{rec['key']}.png"
    assert rec["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert (rec["steps"], rec["guidance"], rec["height"], rec["width"]) == (14, 4.0, 128, 128)
    # kind 3: image pair + fixed prompt; images generated from prompts or read from files
    # (one file of another size: 192x128 -> 96 reference tokens, its own forward)
    rng = np.random.default_rng(0)
    files = []
    for k, shape in enumerate([(128, 192, 3), (128, 128, 3)]):
        files.append(tmp_path / f"event{k}.png")
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(files[-1])
    ice, puddle = ImageSource(prompt="an ice cube"), ImageSource(prompt="a puddle of water")
    image_pairs = [
        Pair("melt", Stimulus(FIXED_PROMPT, ice), Stimulus(FIXED_PROMPT, puddle)),
        Pair("file", Stimulus(FIXED_PROMPT, ImageSource(path=str(files[0]))), Stimulus(FIXED_PROMPT, ice)),
        Pair("files", Stimulus(FIXED_PROMPT, ImageSource(path=str(files[0]))),
             Stimulus(FIXED_PROMPT, ImageSource(path=str(files[1])))),
    ]
    images = run_probe(_spec("image-pair"), image_pairs, tmp_path / "images", model=bundle, progress=False)
    assert images["status"] == "captured"
    sources = {r["source"] for r in images["images"]}
    assert sources == {"file", "generated"} and len(images["images"]) == 4
    heads = _load(tmp_path / "images", "heads")
    assert heads["done"].all() and np.isfinite(heads["a"]).all()
    # the file image (192x128 -> 96 reference tokens) must match the pipeline's own call
    img, _ = get_image(bundle, image_pairs[1].a.image, 128, 128)
    rows = _pipeline_rows(bundle, 1, image_pairs[1].a, seed=0, image=img)
    np.testing.assert_allclose(heads["a"][1], rows["heads"][0], rtol=1e-5, atol=1e-8)
    # images are generated once: a second run finds them all in the cache
    again = run_probe(_spec("image-pair"), image_pairs, tmp_path / "images2", model=bundle, progress=False)
    assert all(r.get("cached", True) for r in again["images"])


def test_non_finite_capture_fails_with_pass_and_unit(tmp_path):
    broken = TinyLoader().load("tiny", "cpu")
    with torch.no_grad():
        broken.pipeline.transformer.transformer_blocks[0].attn.to_v.weight.fill_(float("nan"))
    with pytest.raises(PlantainError, match=r"non-finite capture in pass p0/A at unit joint\[0\]\.h00"):
        run_probe(_spec(), _text_pairs(), tmp_path, model=broken, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite" in manifest["error"]


def test_local_folder_loads_through_klein_loader(bundle, tmp_path):
    """The real-model path offline: the tiny pipeline saved as a diffusers folder, loaded by
    KleinLoader (Flux2KleinPipeline.from_pretrained), captures exactly what tiny does."""
    folder = tmp_path / "klein-folder"
    bundle.pipeline.save_pretrained(folder)
    pairs = _text_pairs()
    local = run_probe(_spec(), pairs, tmp_path / "local", model=str(folder), device="cpu", dtype="fp32",
                      height=128, width=128, batch_size=2, progress=False)
    # a local folder is recorded by its name only (its path stays out of what is published)
    assert local["model"] == {"name": "flux2-klein", "id": "klein-folder", "revision": None,
                              "family": "flux2-klein", "tiny": False, "local": True}
    run_probe(_spec(), pairs, tmp_path / "tiny", model=bundle, batch_size=2, progress=False)
    for name in LAYOUTS:
        np.testing.assert_array_equal(_load(tmp_path / "local", name)["a"], _load(tmp_path / "tiny", name)["a"])


def test_image_cache_key():
    from plantain_core.capture.images import image_key, images_dir, key_fields

    base = ImageSource(prompt="an ice cube")
    fields = key_fields("plantain/tiny", "tiny-1", base, 128, 128)
    key = image_key(fields)
    assert re.fullmatch(r"[0-9a-f]{64}", key) and images_dir().name == "images"
    variants = [key_fields("other/model", "tiny-1", base, 128, 128), key_fields("plantain/tiny", "tiny-2", base, 128, 128),
                key_fields("plantain/tiny", "tiny-1", ImageSource(prompt="an ice cube", seed=1), 128, 128),
                key_fields("plantain/tiny", "tiny-1", ImageSource(prompt="an ice cube", steps=4), 128, 128),
                key_fields("plantain/tiny", "tiny-1", ImageSource(prompt="an ice cube", guidance=1.0), 128, 128),
                key_fields("plantain/tiny", "tiny-1", ImageSource(prompt="../../etc/passwd"), 128, 128),
                key_fields("plantain/tiny", "tiny-1", base, 256, 128), key_fields("plantain/tiny", "tiny-1", base, 128, 256)]
    assert len({key} | {image_key(v) for v in variants}) == 1 + len(variants)


def test_a_run_checks_and_loads_once(tmp_path, monkeypatch):
    """execute() prepares the run once and hands the bundle down: one preflight, one model
    load, the family's kinds checked once by name before the load and once on the bundle."""
    from click.testing import CliRunner

    import plantain_core.capture.prepare as runner
    from plantain_core.cli import main

    calls = {"preflight": 0, "load_model": 0, "check_family_kind": 0}

    def counted(name):
        original = getattr(runner, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(runner, name, wrapper)

    for name in calls:
        counted(name)
    res = CliRunner().invoke(main, ["run", "measure", "--model", "tiny", "--units", "heads", "--flips", "20",
                                    "--splits", "2", "--no-figures", "--no-progress", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert calls == {"preflight": 1, "load_model": 1, "check_family_kind": 2}
