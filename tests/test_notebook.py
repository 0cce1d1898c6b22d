"""The notebook workflow across runs (docs/python-api.md): one loaded model reused by many
runs, compare as a DataFrame, tidy and labelled tables, sweeps from a dict, published
runs loaded back from the hub cache, warnings a notebook shows, and `report --no-figures`
keeping the figures a card links."""

from __future__ import annotations

import json
import pathlib
import shutil
import warnings

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

import plantain_core as pt
from plantain_core.cli import main
from plantain_core.testing import FAST


@pytest.fixture(scope="module")
def model():
    return pt.load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("nb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pt.PlantainWarning)
        ray = pt.run("ray", model=model, out=root / "ray", layouts=["heads", "slices16"], **FAST)
        dense = pt.run("dense", model=model, out=root / "dense", layouts=["heads", "slices16"], **FAST)
        traj = pt.run("ray", model=model, out=root / "traj", layouts=["heads"], steps=3, **FAST)
    return {"ray": ray, "dense": dense, "traj": traj, "root": root}


def test_one_loaded_model_serves_every_run_with_the_captures_of_a_fresh_load(runs, tmp_path, monkeypatch):
    from plantain_core.models.loaders import resolve_loader

    fresh = pt.run("ray", model="tiny", device="cpu", out=tmp_path / "fresh", layouts=["heads", "slices16"], **FAST)
    for layout in ("heads", "slices16"):
        assert np.array_equal(fresh.captures(layout).a, runs["ray"].captures(layout).a)
        assert np.array_equal(fresh.captures(layout).b, runs["ray"].captures(layout).b)
    assert fresh.config.evolve(device="auto") == runs["ray"].config  # the record does not say how it was loaded

    calls = []
    kind = type(resolve_loader("tiny")[1])
    real = kind.load
    monkeypatch.setattr(kind, "load", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    m = pt.load_model("tiny", device="cpu")
    assert len(calls) == 1
    for i in range(3):
        pt.run("ray", model=m, out=tmp_path / f"again{i}", layouts=["heads"], **FAST)
    assert len(calls) == 1  # three runs, no further load


def test_a_loaded_model_refuses_options_it_does_not_have(model, tmp_path):
    with pytest.raises(pt.PlantainError, match=r"dtype='bf16' differs from the loaded model's dtype='fp32'"):
        pt.run("ray", model=model, out=tmp_path / "x", dtype="bf16")
    with pytest.raises(pt.PlantainError, match=r"revision='v2' differs"):
        pt.run("ray", model=model, out=tmp_path / "x", revision="v2")
    with pytest.raises(pt.PlantainError, match=r"load_model\(\): unknown keyword 'seed'"):
        pt.load_model("tiny", seed=1)
    assert not (tmp_path / "x").exists()


def test_compare_equals_numpy_and_scipy_and_counts_hits(runs):
    table = pt.compare(runs["ray"], runs["dense"])
    assert list(table["layout"]) == ["heads", "slices16"] and table["step"].isna().all()
    for _, row in table.iterrows():
        a, b = runs["ray"].units(row["layout"]), runs["dense"].units(row["layout"])
        assert row["pearson_r"] == pytest.approx(np.corrcoef(a["t"], b["t"])[0, 1], abs=1e-12)
        assert row["spearman_r"] == pytest.approx(scipy.stats.spearmanr(a["t"], b["t"]).statistic, abs=1e-12)
        fa, fb = (a["p_fwer"] < 0.05).to_numpy(), (b["p_fwer"] < 0.05).to_numpy()
        assert (row["fwer_a"], row["fwer_b"], row["fwer_both"]) == (fa.sum(), fb.sum(), (fa & fb).sum())
        assert row["units"] == len(a)


def test_a_one_step_run_compares_with_each_step_of_a_trajectory(runs):
    table = pt.compare(runs["ray"], runs["traj"])
    assert list(table["step"]) == [0, 1, 2] and set(table["layout"]) == {"heads"}
    one = pt.compare(runs["ray"], runs["traj"], step=1)
    t1 = runs["traj"].units("heads", step=1)["t"]
    assert one["pearson_r"].iloc[0] == pytest.approx(np.corrcoef(runs["ray"].units("heads")["t"], t1)[0, 1])
    with pytest.raises(pt.PlantainError, match="step 7 was not captured"):
        pt.compare(runs["ray"], runs["traj"], step=7)
    result = CliRunner().invoke(main, ["compare", str(runs["ray"].path), str(runs["traj"].path), "--step", "2"])
    assert result.exit_code == 0, result.output
    two = pt.compare(runs["ray"], runs["traj"], step=2)
    row = [line.split() for line in result.output.splitlines() if line.startswith("heads")]
    assert len(row) == 1 and row[0][1] == "2" and row[0][5] == f"{two['pearson_r'].iloc[0]:.3f}"  # the CLI's table


def test_units_are_tidy_over_layouts_and_steps(runs):
    every = runs["ray"].units()
    assert list(every["layout"].unique()) == ["heads", "slices16"]
    counts = {k: v["units"] for k, v in runs["ray"].manifest["layout_info"].items()}
    assert counts["heads"] == 16 and len(every) == counts["heads"] + counts["slices16"] and every.index[0] == "joint[0].h00" == every["unit"].iloc[0]
    long = runs["traj"].units()
    assert long["step"].dtype.kind == "i" and sorted(long["step"].unique()) == [0, 1, 2]
    sigmas = {e["index"]: e["sigma"] for e in runs["traj"].manifest["trajectory"]}
    assert (long["sigma"] == long["step"].map(sigmas)).all() and long["sigma"].iloc[0] == 1.0
    csv = runs["traj"].captures("heads")
    a, b = csv.a[:, 2], csv.b[:, 2]
    d = a - b
    t = d.mean(0) / (d.std(0, ddof=1) / np.sqrt(len(d)))
    np.testing.assert_allclose(runs["traj"].units(step=2)["t"].to_numpy(), t, rtol=1e-6)
    steps = runs["traj"].steps()
    assert list(steps.columns) == ["layout", "unit", "step", "sigma", "t", "p_fwer_across", "q_across"]
    top = runs["traj"].top(2, step=0)
    assert set(top["step"]) == {0}


def test_a_cut_units_table_is_refused_against_the_manifest(runs, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(runs["ray"].path, folder)
    lines = (folder / "units.csv").read_text().splitlines()
    (folder / "units.csv").write_text("\n".join(lines[:6]) + "\n")
    with pytest.raises(pt.PlantainError, match=r"units.csv: .*(layout 'heads' has|holds layouts)"):
        pt.load_run(folder).units()
    lines = (runs["ray"].path / "units.csv").read_text().splitlines()
    (folder / "units.csv").write_text("\n".join(lines[:6] + lines[17:]) + "\n")  # heads cut to 5 rows
    with pytest.raises(pt.PlantainError, match=r"layout 'heads' has 5 rows, the run has 16 units"):
        pt.load_run(folder).units("slices16")


def test_to_xarray_labels_every_axis(runs):
    ds = runs["ray"].to_xarray()
    assert ds.a.dims == ("pair", "unit") and ds.sizes["unit"] == len(runs["ray"].units())
    heads = runs["ray"].captures("heads")
    np.testing.assert_array_equal(ds.a.sel(unit=heads.units).values, heads.a)
    assert list(ds.pair.values) == heads.pair_ids
    assert ds.block.sel(unit="single[1].h03").item() == "single[1]" and ds.kind.sel(unit="single[1].h03").item() == "single"
    assert ds["index"].sel(unit="single[1].h03").item() == 3
    assert set(ds.layout.values) == {"heads", "slices16"}
    traj = runs["traj"].to_xarray()
    assert traj.a.dims == ("pair", "step", "unit") and list(traj.step.values) == [0, 1, 2]
    assert traj.sigma.values[0] == 1.0 and traj.sigma.values[1] < 1.0


def test_a_sweep_runs_from_a_dict_and_loads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = {"probes": ["ray", "dense"], "models": ["tiny"], "seeds": [0, 1], "layouts": "heads",
            "options": {"device": "cpu", **FAST}}
    sweep = pt.sweep(grid, out="sw")
    assert sweep.cells.shape[0] == 4 and set(sweep.cells["status"]) == {"complete"}
    assert sorted(sweep.cells["seed"]) == [0, 0, 1, 1]
    again = pt.load_sweep("sw")
    run = again.run("dense-tiny-seed1-heads")
    assert run.config.probe == "dense" and run.config.seed == 1
    assert again.report() == pathlib.Path("sw") / "README.md" and (tmp_path / "sw" / "README.md").is_file()
    assert pt.sweep(grid, out="sw").cells.equals(sweep.cells)  # complete cells skipped
    with pytest.raises(pt.PlantainError, match=r"grid: seeds: required key is missing"):
        pt.sweep({"probes": ["ray"], "models": ["tiny"]}, out="other")
    with pytest.raises(pt.PlantainError, match="needs out="):
        pt.sweep(grid)
    with pytest.raises(pt.PlantainError, match="a run folder"):
        pt.load_sweep(run.path)


def _hub_cache(root: pathlib.Path, repo: str, run_dir: pathlib.Path, names) -> None:
    """A repository laid out as huggingface_hub caches it: blobs, a snapshot of links, refs/main."""
    base = root / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for i, name in enumerate(names):
        blob = base / "blobs" / f"blob{i}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / name, blob)
        link = base / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)


def test_a_published_run_loads_back_from_the_hub_cache(runs, tmp_path, monkeypatch):
    from plantain_core.cli.publish import files_to_publish

    names = files_to_publish(runs["ray"].path, with_captures=True)
    _hub_cache(tmp_path / "hub", "someone/ray-tiny", runs["ray"].path, names)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PLANTAIN_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    run = pt.load_run("hf://someone/ray-tiny")
    assert run.path.is_relative_to(tmp_path / "cache") and not any(p.is_symlink() for p in run.path.rglob("*"))
    assert run.units().equals(runs["ray"].units())
    np.testing.assert_array_equal(run.captures("heads").a, runs["ray"].captures("heads").a)
    table = pt.compare("hf://someone/ray-tiny", runs["dense"])
    assert table["pearson_r"].iloc[0] == pytest.approx(pt.compare(runs["ray"], runs["dense"])["pearson_r"].iloc[0])
    with pytest.raises(pt.PlantainError, match="cannot load hf://someone/missing"):
        pt.load_run("hf://someone/missing")


def test_the_runs_warnings_reach_python_as_plantain_warnings(model, tmp_path):
    with pytest.warns(pt.ConfoundWarning, match="prompt length are confounded"):
        pt.run("ray", model=model, out=tmp_path / "ray", layouts=["heads"], **FAST)
    assert issubclass(pt.SpecificityWarning, pt.PlantainWarning) and issubclass(pt.PlantainWarning, UserWarning)
    with pytest.raises(pt.PlantainError, match=r"^height: 100 is not a multiple of 16"):
        pt.run("ray", model="tiny", out=tmp_path / "never", height=100)
    assert [n for n in dir(pt) if n.startswith("_") and n != "__version__"] == []
    assert {"load_model", "compare", "sweep", "load_sweep", "Sweep", "ConfoundWarning"} <= set(dir(pt))


def test_report_no_figures_keeps_the_figures_and_links_them_only_when_still_true(tmp_path, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pt.PlantainWarning)
        run = pt.run("ray", model=model, out=tmp_path / "r", layouts=["heads"], figures=True, **FAST)
    figures = sorted(p.name for p in (run.path / "figures").glob("*.png"))
    linked = [f for f in figures if f"figures/{f}" in run.card_path.read_text()]
    assert len(figures) == 3 and linked == figures
    result = CliRunner().invoke(main, ["report", str(run.path), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run.path / "figures").glob("*.png")) == figures
    assert all(f"figures/{f}" in run.card_path.read_text() for f in figures)
    # other flips: the kept figures show another null than the card, so the card does not show them
    result = CliRunner().invoke(main, ["report", str(run.path), "--no-figures", "--flips", "30"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run.path / "figures").glob("*.png")) == figures
    assert not any(f"figures/{f}" in run.card_path.read_text() for f in figures)
    assert json.loads((run.path / "summary.json").read_text())["stats"]["flips"] == 30


def test_figures_and_card_a_reader_can_use(tmp_path, model):
    """The heatmap marks FWER hits and shows its clip value, a tiny card warns before any
    number, and a layout with hits gets a verdict (issue: figures a reader can use)."""
    from plantain_core.report.analysis import analyze_run  # noqa: F401 (figures come from the run)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pt.PlantainWarning)
        run = pt.run("ray", model=model, out=tmp_path / "r", layouts=["heads"], figures=True, **FAST)
    card = run.card_path.read_text()
    warn_at = card.index("random weights")
    assert warn_at < card.index("## Question") < card.index("## Results")
    hits = run.summary["layouts"]["heads"]["significant"]["p_fwer_lt_0.05"]
    assert hits > 0 and "**Verdict:" in card
    import matplotlib.image

    png = matplotlib.image.imread(run.path / "figures" / "heads_t_heatmap.png")
    assert png.shape[1] == 1000  # 10 in at 100 dpi: the title and colourbar fit (constrained layout)
