"""A model family is a plugin, so what it returns is untrusted: each misbehaving method is
one PlantainError naming the family and the method, before any capture and with no run
folder left behind. ``plantain units`` refuses hostile transformer configs; kinds a family
cannot run are refused by sweeps up front; a third party's family cannot displace a
built-in one; compare and causal refuse runs their units do not match."""

from __future__ import annotations

import json
import re
import sys

import attrs
import pytest
import torch
from click.testing import CliRunner

from plantain_core import Pair, Stimulus
from plantain_core.cli import main
from plantain_core.config import RunConfig
from plantain_core.errors import PlantainError
from plantain_core.execute import execute
from plantain_plugins.families.builtin import TINY_KLEIN
from plantain_plugins.families.flux2 import Flux2KleinFamily
from plantain_core.models.loaders import TinyLoader
from plantain_core.spec.probes import Probe
from plantain_core.spec.probe_spec import ProbeSpec


@pytest.fixture(scope="module")
def klein():
    return TinyLoader(TINY_KLEIN).load("tiny", "cpu")


def _probe() -> Probe:
    spec = ProbeSpec(name="guard", description="family guard test", generator="text-pair", stimuli={})
    pairs = [Pair(f"p{i}", Stimulus(f"a photo of {a}"), Stimulus(f"a photo of {b}"))
             for i, (a, b) in enumerate([("red", "blue"), ("a cat", "a dog"), ("noon", "night")])]
    return Probe(spec, tuple(pairs), {})


def _broken(method: str, behaviour):
    """A Klein family whose ``method`` is replaced by ``behaviour(original, *args)``."""

    def replaced(self, *args, **kwargs):
        return behaviour(getattr(Flux2KleinFamily, method).__get__(self), *args, **kwargs)

    return type("Broken", (Flux2KleinFamily,), {"name": "broken", method: replaced})()


def _exit(*_args, **_kwargs):
    raise SystemExit(3)


BROKEN = [
    ("encode_prompts", lambda orig, bundle, prompts: [1, 2], "encode_prompts() must return ({prompt"),
    ("encode_prompts", lambda orig, bundle, prompts: ({}, {}), "must give every prompt a dict of tensors"),
    ("encode_prompts", lambda orig, bundle, prompts: ({p: {"x": torch.zeros(1, 2)} for p in prompts}, {}),
     "must give every prompt an `encoder_hidden_states` tensor"),
    ("noise", lambda orig, *a: None, "noise() must return (latents, position ids or None)"),
    ("noise", lambda orig, *a: 1 / 0, "noise() failed: ZeroDivisionError"),
    ("noise", lambda orig, *a: _exit(), "noise() failed: SystemExit: 3"),
    ("transformer_kwargs", lambda orig, *a: [1], "transformer_kwargs() must return a dict"),
    ("transformer_kwargs", lambda orig, *a: {**orig(*a), "temperature": 2},
     "gives temperature, which Flux2Transformer2DModel.forward does not take"),
    ("schedule", lambda orig, *a: 5, "schedule() must return (a scheduler with .step"),
    ("schedule", lambda orig, pipe, steps, *a: (orig(pipe, steps, *a)[0], [1.0, 0.5]), "returned 2 timesteps for 1 steps"),
    ("latent_tokens", lambda orig, *a: 0, "latent_tokens() must return a positive integer"),
    ("text_kwargs", lambda orig, *a: "text", "text_kwargs() must return a dict"),
    ("model_input", lambda orig, *a: None, "model_input() must return a tensor"),
]


@pytest.mark.parametrize("method,behaviour,message", BROKEN,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BROKEN)])
def test_a_misbehaving_family_method_is_one_error_and_leaves_no_folder(klein, tmp_path, method, behaviour, message):
    bundle = attrs.evolve(klein, family=_broken(method, behaviour))
    out = tmp_path / "runs" / "guard"
    with pytest.raises(PlantainError) as exc:
        execute(_probe(), RunConfig(probe="guard", layouts=("heads",)), out, progress=False, figures=False,
                model=bundle)
    assert f"model family 'broken': {method}()" in str(exc.value) and message in str(exc.value), str(exc.value)
    assert not (tmp_path / "runs").exists()  # the folder and the parent the run made are gone


def test_the_guard_changes_nothing_for_a_well_behaved_family(klein, tmp_path):
    import numpy as np

    plain = attrs.evolve(klein, family=type("Same", (Flux2KleinFamily,), {"name": "same"})())
    execute(_probe(), RunConfig(probe="guard", layouts=("heads",)), tmp_path / "a", progress=False, figures=False,
            model=klein)
    execute(_probe(), RunConfig(probe="guard", layouts=("heads",)), tmp_path / "b", progress=False, figures=False,
            model=plain)
    with np.load(tmp_path / "a" / "captures" / "heads.npz") as a, np.load(tmp_path / "b" / "captures" / "heads.npz") as b:
        assert np.array_equal(a["a"], b["a"]) and np.array_equal(a["b"], b["b"]) and a["a"].size > 0


def test_a_loader_naming_no_family_object_is_refused(klein, tmp_path):
    bundle = attrs.evolve(klein, family="flux1")
    with pytest.raises(PlantainError, match=r"model loader 'tiny' supplies a model family that breaks the contract "
                                            r"\(str\): `name` must be a non-empty string"):
        execute(_probe(), RunConfig(probe="guard"), tmp_path / "x", progress=False, figures=False, model=bundle)
    assert not (tmp_path / "x").exists()


# -- plantain units on hostile configs --------------------------------------------------------------------------------
def _folder(tmp_path, text: str, index: dict | None = None):
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text(text)
    if index is not None:
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _flux1(**change) -> str:
    from plantain_core.models.hub import PRESET_DIR

    return json.dumps({**json.loads((PRESET_DIR / "FLUX.1-dev.json").read_text()), **change})


@pytest.mark.parametrize("text,message", [
    (_flux1(num_layers=10**9), "num_layers = 1000000000 is outside 0..1,000"),
    (_flux1(num_layers=10**30), "is outside 0..1,000"),
    (_flux1(num_attention_heads=-3), "num_attention_heads = -3 is outside 0..4,096"),
    (_flux1(attention_head_dim=10**6), "16-feature slices in all is more than 1,000,000"),
    (_flux1(attention_head_dim=1.5), "transformer config does not fit FluxTransformer2DModel: TypeError"),
    (_flux1(num_layers="19"), "transformer config does not fit FluxTransformer2DModel"),
    (_flux1(num_attention_heads=0), "heads, head_dim >= 1"),
    ("[1, 2]", "a transformer config is a JSON object, not list"),
    ("null", "a transformer config is a JSON object, not NoneType"),
    ("{not json", "cannot read transformer config"),
])
def test_units_refuses_a_hostile_config_with_one_error(tmp_path, text, message):
    folder = _folder(tmp_path, text)
    result = CliRunner().invoke(main, ["units", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_units_refuses_a_folder_of_a_pipeline_no_family_loads(tmp_path):
    folder = _folder(tmp_path, _flux1(), {"_class_name": "StableDiffusionXLPipeline"})
    result = CliRunner().invoke(main, ["units", str(folder)])
    assert result.exit_code == 1
    assert "holds a StableDiffusionXLPipeline pipeline (model_index.json), which no model family loads" in result.stderr
    missing = CliRunner().invoke(main, ["units", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "folder not found" in missing.stderr


@pytest.mark.parametrize("name,family", [("FLUX.2-dev", "flux2-dev"), ("FLUX.1-Kontext-dev", "flux1-kontext"),
                                         ("FLUX.1-dev", "flux1"), ("FLUX.2-klein-9B", "flux2-klein"),
                                         ("stable-diffusion-3.5-large", "sd3"), (" tiny-sd3 ", "sd3")])
def test_units_names_the_family_of_a_bare_preset_name(monkeypatch, name, family):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["units", name, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["family"] == family


def test_a_preset_name_is_not_a_loadable_model(tmp_path):
    from plantain_core.models.hub import load_pipeline

    with pytest.raises(PlantainError, match="FLUX.1-dev is a bundled config that `plantain units` reads, and a run "
                                            "loads the model by its hub id"):
        load_pipeline("FluxPipeline", "FLUX.1-dev", None, torch.float32)


# -- refusals before any work -----------------------------------------------------------------------------------------
def test_a_refused_kind_leaves_no_folder_not_even_parents(tmp_path):
    out = tmp_path / "deep" / "runs" / "x"
    result = CliRunner().invoke(main, ["run", "measure", "--model", "tiny-sd3", "--out", str(out), "--no-progress"])
    assert result.exit_code == 1 and "model family sd3" in result.stderr
    assert not (tmp_path / "deep").exists()


def test_a_sweep_with_a_cell_its_family_cannot_run_is_refused_up_front(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('probes = ["dense", "measure"]\nmodels = ["tiny", "tiny-sd3", "tiny-nope"]\nseeds = [0]\n')
    for args in (["sweep", "plan", str(grid)], ["sweep", str(grid), "--out", str(tmp_path / "sw")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "models[1]: probe 'measure' is fixed-image-text-pair" in result.stderr
        assert "models[2]: no model loader accepts 'tiny-nope'" in result.stderr
        assert "models[0]" not in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "sw").exists()


def test_a_third_party_family_cannot_displace_a_built_in_one(tmp_path, monkeypatch):
    from importlib import metadata

    from plantain_core import plugins
    from plantain_plugins.families.flux1 import FLUX1

    (tmp_path / "aaa_families.py").write_text(
        "from plantain_core import hookimpl\n"
        "from plantain_plugins.families.flux1 import Flux1Family\n"
        "class Impostor(Flux1Family):\n    description = 'not the real FLUX.1'\n"
        "@hookimpl\ndef plantain_register_families(register):\n    register('flux1', Impostor())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.entry_points
    extra = metadata.EntryPoint("aaa", "aaa_families", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda **kw: [*real(**kw), extra] if kw.get("group") == plugins.ENTRY_POINT_GROUP else real(**kw))
    names = [ep.name for ep in plugins.entry_points()]
    assert names.index("aaa") > names.index("flux1") and names.index("aaa") > names.index("sd3")
    registry = plugins.load_registry()
    assert registry.families["flux1"].obj is FLUX1
    (failure,) = [f for f in registry.failures if "flux1" in f.error]
    assert failure.plugin == "aaa" and "duplicate family name 'flux1'" in failure.error
    sys.modules.pop("aaa_families", None)


# -- runs on another family's units ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_scopes(tmp_path_factory):
    base = tmp_path_factory.mktemp("scopes")
    for scope in ("all", "image"):
        result = CliRunner().invoke(main, ["run", "dense", "--model", "tiny", "--out", str(base / scope),
                                           "--token-scope", scope, "--no-progress", "--no-figures",
                                           "--flips", "50", "--splits", "10"])
        assert result.exit_code == 0, result.output
    return base


def test_compare_refuses_runs_of_different_token_scopes(two_scopes):
    result = CliRunner().invoke(main, ["compare", str(two_scopes / "all"), str(two_scopes / "image")])
    assert result.exit_code == 1
    assert "runs measured different token scopes, their units are not comparable" in result.stderr
    assert "--token-scope image" in result.stderr


def test_causal_refuses_a_model_of_another_family_before_loading_it(two_scopes):
    result = CliRunner().invoke(main, ["causal", str(two_scopes / "all"), "--model", "tiny-sd3", "--no-progress"])
    assert result.exit_code == 1
    assert "the run was captured on a model of family 'flux2-klein'; tiny-sd3 is sd3" in result.stderr


def test_the_card_says_when_the_recorded_family_is_not_installed(two_scopes, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_scopes / "all", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model"]["family"] = "chroma`x|y"
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["report", str(run), "--no-figures"])
    assert result.exit_code == 0, result.output
    card = (run / "README.md").read_text()
    # a code span whose fence outlasts the name's backtick: shown as typed, nothing closes early
    assert "Model family ``chroma`x|y`` (as recorded; not installed" in card, card


@pytest.mark.parametrize("config,message", [
    (lambda model: 1 / 0, "model loader 'odd': transformer_config('odd-model') failed: ZeroDivisionError"),
    (lambda model: [{}, "x"], "must return (config dict, where it came from), not list"),
    (lambda model: ({"_class_name": "UNet2DConditionModel"}, "here"), "transformer is 'UNet2DConditionModel', not "
                                                                      "FluxTransformer2DModel (model family flux1)"),
])
def test_units_checks_what_a_plugin_loader_supplies(monkeypatch, config, message):
    from plantain_core import hookimpl, plugins
    from plantain_plugins.families.flux1 import FLUX1

    class Loader:
        family, description = FLUX1, "a loader with a hostile config"

        def accepts(self, model):
            return model == "odd-model"

        def transformer_config(self, model):
            return config(model)

        def load(self, *a, **k):
            raise AssertionError("units never loads weights")

    class Plugin:
        @hookimpl
        def plantain_register_models(self, register):
            register("odd", Loader())

    monkeypatch.setattr(plugins, "_cached", plugins.load_registry(extra=[("oddplug", Plugin())]))
    result = CliRunner().invoke(main, ["units", "odd-model"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr, result.stderr


# -- what the family's inputs do inside the transformer and the loop -------------------------------------------------
def test_a_prediction_of_the_wrong_shape_stops_a_trajectory(klein, tmp_path):
    bundle = attrs.evolve(klein, family=_broken("prediction", lambda orig, out, n: orig(out, n)[:, :1]))
    with pytest.raises(PlantainError, match=r"model family 'broken': prediction\(\) gives shape \(\d+, 1, \d+\) for "
                                            r"latents of shape"):
        execute(_probe(), RunConfig(probe="guard", layouts=("heads",), steps=2, guidance=2.0), tmp_path / "t",
                progress=False, figures=False, model=bundle)
    assert not (tmp_path / "t").exists()


def test_inputs_the_transformer_cannot_take_are_the_familys_error(klein, tmp_path):
    bundle = attrs.evolve(klein, family=_broken("noise", lambda orig, *a: (orig(*a)[0][:, :3], orig(*a)[1])))
    with pytest.raises(PlantainError, match="the transformer forward on model family 'broken''s inputs .* failed: "
                                            "RuntimeError"):
        execute(_probe(), RunConfig(probe="guard", layouts=("heads",)), tmp_path / "n", progress=False, figures=False,
                model=bundle)


@pytest.mark.parametrize("key,attrs_,message", [
    ("odd", {"unit_notes": "one line"}, "`unit_notes` must be a tuple of strings"),
    ("odd", {"text_tokens": 0}, "`text_tokens` must be a positive integer"),
    ("odd", {"text_tokens": 10**12}, "`text_tokens` must be a positive integer"),
    ("odd", {"card_tag": 5}, "`card_tag` must be a string"),
    ("odd", {"uses_cfg": True}, "`uses_cfg` must be a method, not bool"),
    ("odd", {"prediction": None}, "`prediction` must be a method, not NoneType"),
    ("flux2-klein", {"name": "impostor"}, "registered under another name than its `name` 'impostor'"),
    ("odd", {"name": "odd\n# Injected"}, "`name` 'odd\\n# Injected' must be lower-case letters"),
    ("odd", {"description": "two\nlines"}, "`description` must be one printable line"),
])
def test_a_family_registration_is_checked_whole(key, attrs_, message):
    from plantain_core import hookimpl
    from plantain_core.plugins import load_registry

    family = type("Odd", (Flux2KleinFamily,), {"name": "odd", **attrs_})()

    class Plugin:
        @hookimpl
        def plantain_register_families(self, register):
            register(key, family)

    registry = load_registry(extra=[("oddplug", Plugin())], use_entry_points=False)
    assert key not in registry.families
    (failure,) = registry.failures
    assert message in failure.error, failure.error


def test_a_cell_failing_with_any_exception_is_that_cells_failure(tmp_path, monkeypatch):
    from plantain_core import hookimpl, plugins

    class Loader:
        description = "a loader whose load breaks"

        def accepts(self, model):
            return model == "tiny-broken"

        def load(self, *a, **k):
            raise RuntimeError("the plugin's own bug")

    class Plugin:
        @hookimpl
        def plantain_register_models(self, register):
            register("tiny-broken", Loader())

    monkeypatch.setattr(plugins, "_cached", plugins.load_registry(extra=[("brokenplug", Plugin())]))
    grid = tmp_path / "grid.toml"
    grid.write_text('probes = ["ray"]\nmodels = ["tiny-broken", "tiny"]\nseeds = [0]\n[options]\nflips = 16\nsplits = 4\n')
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    assert cells["ray-tiny-seed0"]["status"] == "complete"
    assert cells["ray-tiny-broken-seed0"]["status"] == "failed"
    assert cells["ray-tiny-broken-seed0"]["error"] == "RuntimeError: the plugin's own bug"


def test_units_reads_no_huge_or_deep_config_and_ignores_unknown_keys(tmp_path):
    folder = _folder(tmp_path, "[" * 100_000 + "]" * 100_000)
    deep = CliRunner().invoke(main, ["units", str(folder)])
    assert deep.exit_code == 1 and "cannot read transformer config" in deep.stderr and "RecursionError" in deep.stderr
    (folder / "transformer" / "config.json").write_text(" " * (1 << 20) + _flux1())
    big = CliRunner().invoke(main, ["units", str(folder)])
    assert big.exit_code == 1 and "larger than 1,048,576 bytes" in big.stderr
    (folder / "transformer" / "config.json").write_text(_flux1(a_key_of_a_newer_diffusers=1))
    newer = CliRunner().invoke(main, ["units", str(folder), "--json"])
    assert newer.exit_code == 0 and json.loads(newer.stdout)["layouts"]["heads"]["units"] == 1368
    for name in ("a" * 5000, "x/" + "b" * 300):
        odd = CliRunner().invoke(main, ["units", name])
        assert odd.exit_code == 1 and odd.stderr.startswith("Error: --model:") and "Traceback" not in odd.output


def test_a_non_finite_prediction_stops_the_causal_check(klein, tmp_path):
    from plantain_core.causal.check import CausalOptions, run_causal

    execute(_probe(), RunConfig(probe="guard", layouts=("heads",)), tmp_path / "run", progress=False, figures=False,
            model=klein)
    bundle = attrs.evolve(klein, family=_broken("prediction", lambda orig, out, n: orig(out, n) * float("nan")))
    with pytest.raises(PlantainError, match="model family 'broken': the prediction is not finite"):
        run_causal(tmp_path / "run", CausalOptions(top=1, controls=1), model=bundle, progress=False, figures=False,
                   report=False)
    assert not (tmp_path / "run" / "causal.json").exists()
