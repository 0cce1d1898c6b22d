"""The example package's model family, Chroma, checked as plantain checks its built-in ones
(plantain's tests/test_conformance.py): a text-pair probe runs on ``tiny-chroma`` and writes
its card; plantain's conformance kit (``plantain_core.testing.prove_family``) proves the
runner's captures equal hooks inside ``ChromaPipeline.__call__`` itself (one step and a
K-step trajectory, with and without CFG); probes the family cannot run are refused before
any work.

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
from plantain_core.plugins import get_registry  # noqa: E402
from plantain_core.spec.probes import Probe  # noqa: E402
from plantain_core.capture.runner import run_probe  # noqa: E402
from plantain_core.testing import FAST, prove_family  # noqa: E402
from plantain_example.chroma import ChromaFamily  # noqa: E402

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
    shown = card.replace("\\", "")  # a family's text lands escaped (proj\_out): read it as rendered
    assert "Model family `chroma`" in shown and "proj_out takes the attention output" in shown  # its unit_notes
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "tiny-chroma" and manifest["model"]["revision"] == "tiny-chroma-1"
    assert manifest["model"]["family"] == "chroma"


# -- (b) proven equal to ChromaPipeline.__call__ with plantain's conformance kit ------------------------------
def test_the_chroma_family_equals_its_pipeline_call(bundle):
    """Hooks on the family's capture sites inside ``ChromaPipeline.__call__`` against the
    runner's captures: 1 and 3 steps, guidance 1 and 3 (CFG: the unconditional pass with the
    empty prompt's own mask), every unit of every step within 1e-5 relative."""
    report = prove_family(bundle, steps=(1, 3), guidance=(1.0, 3.0))
    assert len(report.cases) == 8 and {c.cfg for c in report.cases} == {False, True}
    assert report.max_rel <= 1e-5


def test_the_kit_sees_the_attention_mask(bundle):
    """A Chroma family that forgets the text mask is caught: the pipeline's heads are others."""

    class Unmasked(ChromaFamily):
        name = "chroma-unmasked"

        def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
            return {**super().transformer_kwargs(pipe, hidden, timestep, text, ids, guidance), "attention_mask": None}

    report = prove_family(bundle, family=Unmasked(), steps=(1,), guidance=(1.0,), check=False)
    assert not report.ok and report.max_rel > 1e-3


PAIRS = [Pair("p0", Stimulus("a photo of a red cube"), Stimulus("a photo of a small blue sphere on a table")),
         Pair("p1", Stimulus("a cat"), Stimulus("a dog asleep in the morning light")),
         Pair("p2", Stimulus("night"), Stimulus("a bright sunny day at the beach"))]


def _run(bundle, out, **config):
    spec = ProbeSpec(name="chroma-test", generator="text-pair", stimuli={"pairs": []})
    config = RunConfig(probe=spec.name, layouts=("heads",), batch_size=4, height=SIZE, width=SIZE, **config)
    run_probe(Probe.from_pairs(spec, PAIRS), out, config, model=bundle, progress=False)
    with np.load(out / "captures" / "heads.npz", allow_pickle=False) as z:
        return [str(u) for u in z["units"]], z["a"], z["b"]


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
