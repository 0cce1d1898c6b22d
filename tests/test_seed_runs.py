"""The five seed probes run end to end on tiny; report reproduces run; compare reads runs."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from plantain_core.cli import main

SEEDS = {
    "measure": ("fixed-image-text-pair", 25, "Effect vs scale gap"),
    "otherview": ("fixed-image-text-pair", 30, "Graded perceptual-similarity axis"),
    "after": ("image-pair", 25, "Generalisation across events"),
    "ray": ("text-pair", 25, None),
    "dense": ("text-pair", 25, "Articulation check"),
}
OUTPUTS = ("summary.json", "units.csv", "blocks.csv")


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    results = {}
    for name in SEEDS:
        out = root / name
        res = CliRunner().invoke(main, ["run", name, "--model", "tiny", "--out", str(out), "--no-progress",
                                        "--flips", "100", "--splits", "20"])
        results[name] = (res, out)
    return results


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_probe_runs_on_tiny(seed_runs, name):
    res, out = seed_runs[name]
    assert res.exit_code == 0, res.output
    kind, n_pairs, section = SEEDS[name]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["spec"]["generator"] == kind
    assert (manifest["config"]["flips"], manifest["config"]["splits"]) == (100, 20)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pairs"] == n_pairs and summary["probe"] == name
    for layout in ("heads", "slices16"):
        caps = np.load(out / "captures" / f"{layout}.npz")
        assert caps["a"].shape == caps["b"].shape == (n_pairs, summary["layouts"][layout]["n_units"])
        assert caps["done"].all()
        assert np.isfinite(caps["a"]).all() and (caps["a"] > 0).all()
        assert not np.array_equal(caps["a"], caps["b"])
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and f"# {name}-plantain" in card
    assert "say nothing about FLUX" in card
    if section:
        assert f"### {section}" in card
        assert summary["interpretation"], summary.keys()
    counts = manifest["token_counts"]
    assert [c["id"] for c in counts] == summary_pair_ids(out)
    diff = np.mean([c["a"] - c["b"] for c in counts])
    assert summary["confounds"]["token_counts"]["mean_diff"] == pytest.approx(diff)
    assert "## Confounds" in card


def summary_pair_ids(out):
    return [str(x) for x in np.load(out / "captures" / "heads.npz")["pair_ids"]]


def test_report_reproduces_run_outputs_byte_for_byte(seed_runs):
    _, out = seed_runs["ray"]
    before = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in OUTPUTS}
    for f in OUTPUTS:
        (out / f).unlink()
    res = CliRunner().invoke(main, ["report", str(out)])
    assert res.exit_code == 0, res.output
    after = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in OUTPUTS}
    assert after == before
    assert (out / "README.md").is_file() and (out / "figures" / "heads_t_heatmap.png").is_file()


def test_report_with_other_seed_changes_the_null_not_t(seed_runs):
    _, out = seed_runs["dense"]
    units_before = (out / "units.csv").read_text()
    summary_before = json.loads((out / "summary.json").read_text())
    res = CliRunner().invoke(main, ["report", str(out), "--seed", "7", "--no-figures"])
    assert res.exit_code == 0, res.output
    summary_after = json.loads((out / "summary.json").read_text())
    assert summary_after["stats"]["seed"] == 7
    t_before = [row.split(",")[4] for row in units_before.splitlines()[1:]]
    t_after = [row.split(",")[4] for row in (out / "units.csv").read_text().splitlines()[1:]]
    assert t_before == t_after  # t does not depend on the null's seed
    h0, h1 = summary_before["layouts"]["heads"], summary_after["layouts"]["heads"]
    assert h0["split_half"] != h1["split_half"]


def test_compare_two_probes(seed_runs):
    (_, ray), (_, dense) = seed_runs["ray"], seed_runs["dense"]
    res = CliRunner().invoke(main, ["compare", str(ray), str(dense), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    heads = data["layouts"]["heads"]
    row = heads["pairs"][0]
    t = {}
    for name, out in (("ray", ray), ("dense", dense)):
        rows = [r.split(",") for r in (out / "units.csv").read_text().splitlines()[1:]]
        t[name] = np.array([float(r[4]) for r in rows if r[0] == "heads"])
    assert row["t_correlation"] == pytest.approx(np.corrcoef(t["ray"], t["dense"])[0, 1], abs=1e-6)
    assert heads["units"] == len(t["ray"])
    text = CliRunner().invoke(main, ["compare", str(ray), str(dense)]).output
    header, line = [ln.split() for ln in text.splitlines()[1:3]]
    assert header[:7] == ["layout", "step", "a", "b", "units", "pearson_r", "spearman_r"]
    assert line[:5] == ["heads", "-", "ray", "dense", str(len(t["ray"]))]
    assert float(line[5]) == pytest.approx(row["t_correlation"], abs=5e-4)


def test_compare_refuses_runs_on_different_models(seed_runs, tmp_path):
    (_, ray), (_, dense) = seed_runs["ray"], seed_runs["dense"]
    other = tmp_path / "other"
    shutil.copytree(dense, other)
    summary = json.loads((dense / "summary.json").read_text())
    summary["model"] = {"id": "black-forest-labs/FLUX.2-klein-base-4B", "revision": None}
    (other / "summary.json").write_text(json.dumps(summary))
    res = CliRunner().invoke(main, ["compare", str(ray), str(other)])
    assert res.exit_code == 1 and "different models" in res.output
