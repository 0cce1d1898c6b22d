"""`plantain report` on synthetic run folders: files, determinism, card, errors."""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from plantain_core import Interpretation, Pair, Section, Stimulus, hookimpl
from plantain_core import plugins
from plantain_core.report.analysis import analyze_run
from plantain_core.cli import main
from plantain_core.errors import PlantainError

N_PAIRS = 12
PLANTED = ("joint[0].h01", "single[1].h02")


def unit_names(layout: str) -> list[str]:
    if layout == "heads":
        return [f"{kind}[{b}].h{h:02d}" for kind, nb in (("joint", 2), ("single", 3)) for b in range(nb) for h in range(4)]
    # slices16 of a toy model: joint blocks 4 attention slices, single blocks 4 + 12 MLP slices
    return ([f"joint[{b}].s{s:04d}" for b in range(2) for s in range(4)]
            + [f"single[{b}].s{s:04d}" for b in range(3) for s in range(16)])


class StubGenerator:
    description = "test generator: pairs listed in the spec"

    def validate(self, stimuli, spec_dir):
        return []

    def pairs(self, spec):
        return [Pair(p["id"], Stimulus(p["a"]), Stimulus(p["b"]), {"rank": i}) for i, p in enumerate(spec.stimuli["pairs"])]


class StubInterpreter:
    description = "test interpreter: reports the top unit and the pair ranks it saw"

    def interpret(self, spec, pairs, result):
        st = result.primary
        top = st.units[int(np.nanargmax(np.abs(st.t)))]
        return Interpretation(
            numbers={"top_unit": top, "ranks": [p.meta.get("rank") for p in pairs], "mean_d": float(np.nanmean(st.d))},
            sections=(Section("Stub analysis", f"The top unit is `{top}`."),),
        )


class StubPlugin:
    @hookimpl
    def plantain_register_generators(self, register):
        register("stub-pairs", StubGenerator())

    @hookimpl
    def plantain_register_interpreters(self, register):
        register("stub", StubInterpreter())


@pytest.fixture
def registry(monkeypatch):
    reg = plugins.load_registry(extra=[("stub", StubPlugin())], use_entry_points=False)
    monkeypatch.setattr(plugins, "_cached", reg)  # the CLI's get_registry() returns it
    return reg


def make_run(root: pathlib.Path, *, done_upto: int | None = None, model_name: str = "tiny",
             layouts=("heads", "slices16")) -> pathlib.Path:
    run = root / "run"
    (run / "captures").mkdir(parents=True)
    rng = np.random.default_rng(7)
    ids = [f"p{i:02d}" for i in range(N_PAIRS)]
    pairs = [{"id": i, "a": f"a big thing {k}", "b": f"a small thing {k}"} for k, i in enumerate(ids)]
    spec = {
        "schema": 1, "name": "probe", "title": "probe-plantain", "description": "A test probe of big vs small.",
        "generator": "stub-pairs", "interpreter": "stub", "direction": ["big", "small"], "tags": ["scale"],
        "model": {"id": "tiny"}, "stimuli": {"pairs": pairs},
    }
    manifest = {
        "plantain_version": "0.1.0", "torch_version": "2.0-test", "spec": spec,
        "spec_sha256": "ab" * 32,
        "model": {"id": "tiny", "revision": None, "name": model_name},
        "device": "cpu", "dtype": "float32", "seed": 3, "layouts": list(layouts),
        "steps": 1, "guidance": 1.0, "image_steps": 14, "image_guidance": 4.0, "status": "complete",
        "flips": 300, "splits": 20,
        "pairs": [{"id": p["id"], "a": {"prompt": p["a"], "image": None}, "b": {"prompt": p["b"], "image": None},
                   "meta": {"rank": k}} for k, p in enumerate(pairs)],
        "token_counts": [{"id": i, "a": 5 + k % 2, "b": 5} for k, i in enumerate(ids)],
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    for layout in layouts:
        units = unit_names(layout)
        a = rng.normal(10.0, 1.0, size=(N_PAIRS, len(units)))
        b = a + rng.normal(0.0, 1.0, size=a.shape)
        for u in PLANTED if layout == "heads" else ("joint[0].s0001",):
            b[:, units.index(u)] -= 3.0  # A larger by 3 sd of the noise
        b[:, units.index(units[-1])] = a[:, units.index(units[-1])]  # a zero-variance unit
        done = np.ones(N_PAIRS, bool)
        if done_upto is not None:
            done[done_upto:] = False
        np.savez(run / "captures" / f"{layout}.npz", a=a, b=b, units=np.array(units), pair_ids=np.array(ids), done=done)
    return run


OUTPUTS = ("summary.json", "units.csv", "blocks.csv", "README.md")


def test_report_writes_all_outputs_and_is_deterministic(tmp_path, registry):
    run = make_run(tmp_path)
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert "heads (20 units)" in res.output
    first = {name: (run / name).read_bytes() for name in OUTPUTS}
    figs = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert figs == sorted(f"{l}_{k}.png" for l in ("heads", "slices16") for k in ("t_heatmap", "null_counts", "split_half"))
    fig_bytes = {p: (run / "figures" / p).read_bytes() for p in figs}
    res2 = CliRunner().invoke(main, ["report", str(run)])
    assert res2.exit_code == 0, res2.output
    for name in OUTPUTS:
        assert (run / name).read_bytes() == first[name], name
    for p in figs:
        assert (run / "figures" / p).read_bytes() == fig_bytes[p], p


def test_summary_and_csv_contents(tmp_path, registry):
    run = make_run(tmp_path)
    summary = analyze_run(run, registry=registry)
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    assert summary["probe"] == "probe" and summary["direction"] == ["big", "small"] and summary["n_pairs"] == N_PAIRS
    # the manifest's flips/splits/seed are the defaults when no option is given
    assert summary["stats"] == {"flips": 300, "splits": 20, "seed": 3, "thresholds": [3.0, 5.0]}
    heads = summary["layouts"]["heads"]
    assert heads["n_units"] == 20 and heads["n_zero_variance"] == 1 and heads["n_tested"] == 19
    assert {k: heads["null"][k] for k in ("method", "flips", "flips_requested", "exact", "seed")} == {
        "method": "sign-flip", "flips": 300, "flips_requested": 300, "exact": False, "seed": 3}
    assert heads["null"]["max_abs_t_p95"] > 3
    assert heads["thresholds"][0]["observed"] >= 2  # the planted units
    assert summary["layouts"]["slices16"]["mlp_units"] == 3 * 12
    assert summary["interpretation"]["top_unit"] in PLANTED
    assert summary["interpretation"]["ranks"] == list(range(N_PAIRS))
    assert summary["confounds"]["token_counts"]["pairs_unequal"] == N_PAIRS // 2

    rows = list(csv.DictReader((run / "units.csv").open()))
    assert len(rows) == 20 + 2 * 4 + 3 * 16
    assert list(rows[0]) == ["layout", "unit", "block", "mean_diff", "t", "d", "p", "q", "p_fwer", "d_low", "d_high",
                             "p_tost", "t_specific", "q_specific", "p_fwer_specific", "t_length", "p_length",
                             "p_fwer_length"]
    by_unit = {(r["layout"], r["unit"]): r for r in rows}
    for u in PLANTED:
        r = by_unit[("heads", u)]
        assert float(r["t"]) > 5 and float(r["q"]) < 0.05 and float(r["p_fwer"]) < 0.05
        assert r["block"] == u.rsplit(".", 1)[0]
    zero = by_unit[("heads", "single[2].h03")]
    assert zero["t"] == "" and zero["p"] == "" and zero["p_fwer"] == ""

    blocks = list(csv.DictReader((run / "blocks.csv").open()))
    assert list(blocks[0]) == ["layout", "block", "units", "max_abs_t", "n_abs_t_gt_3", "median_abs_d"]
    assert [b["block"] for b in blocks if b["layout"] == "heads"] == ["joint[0]", "joint[1]", "single[0]", "single[1]", "single[2]"]
    j0 = next(b for b in blocks if b["layout"] == "heads" and b["block"] == "joint[0]")
    assert float(j0["max_abs_t"]) == pytest.approx(float(by_unit[("heads", "joint[0].h01")]["t"]), rel=1e-9)


def test_card_content(tmp_path, registry):
    run = make_run(tmp_path)
    analyze_run(run, registry=registry)
    card = (run / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny\nlanguage: en\nlibrary_name: diffusers\nlicense: apache-2.0\ntags:\n")
    from huggingface_hub import ModelCard

    meta = ModelCard(card).data.to_dict()  # the hub's own parser reads it back
    assert (meta["license"], meta["base_model"], meta["library_name"]) == ("apache-2.0", "tiny", "diffusers")
    assert "per-head-attention" in meta["tags"]
    assert "- per-head-attention" in card and "- scale" in card and "# probe-plantain" in card
    assert "| metric | observed | null mean | null p99 | observed / null p99 |" in card
    assert "| units with \\|t\\| > 3 |" in card and "split-half r (median of 20)" in card
    assert "**Top blocks by max |t|:**" in card
    for layout in ("heads", "slices16"):
        for kind in ("t_heatmap", "null_counts", "split_half"):
            assert f"(figures/{layout}_{kind}.png)" in card
    assert "### Stub analysis" in card
    assert "36 of these 56 units are MLP channels" in card
    assert "say nothing about FLUX" in card
    assert ("From the folder that holds `run/`, beside the spec file `probe.toml` (sha256 below):\n\n```\n"
            "plantain run probe.toml --model tiny --dtype fp32 --seed 3 --flips 300 --splits 20 --out run\n"
            "plantain report run\n```") in card
    assert "ab" * 32 in card
    assert "t = mean(A − B)" in card and '"big"' in card


def test_options_override_and_exact_enumeration(tmp_path, registry):
    run = make_run(tmp_path, layouts=("heads",))
    res = CliRunner().invoke(main, ["report", str(run), "--flips", "5000", "--splits", "7", "--seed", "11",
                                    "--thresholds", "2.5,4", "--no-figures"])
    assert res.exit_code == 0, res.output
    s = json.loads((run / "summary.json").read_text())
    assert s["stats"] == {"flips": 5000, "splits": 7, "seed": 11, "thresholds": [2.5, 4.0]}
    null = s["layouts"]["heads"]["null"]
    assert null["exact"] is True and null["flips"] == 2 ** (N_PAIRS - 1)
    assert [r["threshold"] for r in s["layouts"]["heads"]["thresholds"]] == [2.5, 4.0]
    assert "n_abs_t_gt_2.5" in (run / "blocks.csv").read_text().splitlines()[0]
    assert "all 2,048 sign patterns enumerated exactly" in (run / "README.md").read_text()


@pytest.mark.parametrize("args, option", [
    (["--flips", "0"], "--flips"),
    (["--splits", "0"], "--splits"),
    (["--seed", "-1"], "--seed"),
    (["--thresholds", "3,x"], "--thresholds"),
    (["--thresholds", "-2"], "--thresholds"),
])
def test_bad_option_names_the_option(tmp_path, registry, args, option):
    run = make_run(tmp_path, layouts=("heads",))
    res = CliRunner().invoke(main, ["report", str(run), *args])
    assert res.exit_code != 0
    assert option in res.output
    assert not (run / "summary.json").exists()


def test_incomplete_run_errors_clearly(tmp_path, registry):
    run = make_run(tmp_path, done_upto=5, layouts=("heads",))
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code != 0
    assert "incomplete" in res.output and "5 of 12 pairs" in res.output and "--resume" in res.output
    assert "Traceback" not in res.output
    assert not (run / "summary.json").exists()


def test_not_a_run_folder(tmp_path, registry):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "manifest.json" in res.output


def test_missing_interpreter_falls_back_with_note(tmp_path):
    """A registry without the spec's generator and interpreter still gives every file."""
    run = make_run(tmp_path, layouts=("heads",))
    empty = plugins.load_registry(use_entry_points=False)
    summary = analyze_run(run, registry=empty, figures=False)
    assert summary["interpretation"] == {}
    assert any("interpreter 'stub' not available" in n for n in summary["notes"])
    card = (run / "README.md").read_text()
    assert "interpreter 'stub' not available" in card and "On the `heads` layout" in card
    assert (run / "units.csv").is_file() and (run / "blocks.csv").is_file()


def test_interpreter_gets_the_captured_pairs_from_the_manifest(tmp_path, registry):
    """The spec file is never re-read: the report works where the spec and its files are not."""
    run = make_run(tmp_path, layouts=("heads",))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["spec"]["stimuli"] = {"pairs_file": "not-here.csv"}  # a spec whose files stayed behind
    (run / "manifest.json").write_text(json.dumps(manifest))
    summary = analyze_run(run, registry=registry, figures=False)
    assert summary["interpretation"]["top_unit"] in PLANTED
    assert summary["interpretation"]["ranks"] == list(range(N_PAIRS))  # meta as recorded
    assert "notes" not in summary
    manifest["pairs"][3]["a"]["prompt"] = ["not", "text"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlantainError, match=r"manifest.json: pairs\[3\]\.a\.prompt: expected a string"):
        analyze_run(run, registry=registry, figures=False)
