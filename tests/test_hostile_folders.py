"""Hostile run folders: a folder from someone else is read by report, compare, causal and
load_run. Every manipulated folder gives one clear error (or, for an unreadable extra
file, a note), no traceback, and nothing is read or written outside it."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import plantain_core as pt
from plantain_core.cli import main
from plantain_core.testing import spec_data, write_spec

ARGS = ("--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5", "--seed", "2", "--batch-size", "4",
        "--no-figures", "--no-progress")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    spec = write_spec(root / "specs", "probe", spec_data("probe", n_pairs=4))
    out = root / "good"
    res = CliRunner().invoke(main, ["run", str(spec), *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in [root, *root.rglob("*")] if not p.name.startswith(".plantain")}


def copy(good: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    shutil.copytree(good, dest, ignore=shutil.ignore_patterns(".plantain*"))
    return dest


def edit_manifest(change):
    def apply(run: pathlib.Path, outside: pathlib.Path):
        m = json.loads((run / "manifest.json").read_text())
        change(m)
        (run / "manifest.json").write_text(json.dumps(m))
    return apply


def set_config(**values):
    return edit_manifest(lambda m: m["config"].update(values))


def link(rel: str, target: str):
    def apply(run: pathlib.Path, outside: pathlib.Path):
        path = run / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        (outside / target).parent.mkdir(parents=True, exist_ok=True)
        if not (outside / target).exists():
            (outside / target).mkdir() if target.endswith("/") else (outside / target).write_text("secret")
        path.symlink_to(outside / target)
    return apply


def fifo(run: pathlib.Path, outside: pathlib.Path):
    os.mkfifo(run / "captures" / "extra")


def garbage(rel: str, text: str):
    def apply(run: pathlib.Path, outside: pathlib.Path):
        (run / rel).write_text(text)
    return apply


# (id, manipulation, what the one error line must contain)
CASES = [
    ("layout-dotdot", set_config(layouts=["heads", "../../x/evil"]), "--units: unknown unit layout '../../x/evil'"),
    ("layout-abs", set_config(layouts=["/etc/passwd"]), "--units: unknown unit layout '/etc/passwd'"),
    ("layout-empty", set_config(layouts=[]), "--units: no unit layout given"),
    ("layout-type", set_config(layouts=5), "--units: expected layout names"),
    ("legacy-layouts-dotdot", edit_manifest(lambda m: (m.pop("config"), m.update(layouts=["../../evil"]))),
     "--units: unknown unit layout '../../evil'"),
    ("config-unknown-key", set_config(evil=1), "config: unknown key 'evil'"),
    ("config-not-object", edit_manifest(lambda m: m.update(config=[1, 2])), "config: expected a JSON object"),
    ("config-no-probe", edit_manifest(lambda m: m["config"].pop("probe")), "config: required key 'probe' is missing"),
    ("config-seed-str", set_config(seed="3"), "--seed: expected an integer, got '3'"),
    ("config-seed-huge", set_config(seed=2**63), "--seed: 9223372036854775808 is out of range"),
    ("config-seed-neg", set_config(seed=-1), "--seed: -1 is out of range"),
    ("config-flips-huge", set_config(flips=10**12), "--flips: 1000000000000 is out of range"),
    ("config-flips-zero", set_config(flips=0), "--flips: 0 is out of range"),
    ("config-splits-huge", set_config(splits=10**9), "--splits: 1000000000 is out of range"),
    ("config-thresholds-neg", set_config(thresholds=[3, -1]), "--thresholds: "),
    ("config-thresholds-str", set_config(thresholds="a,b"), "--thresholds: 'a,b' is not a list of numbers"),
    ("config-height", set_config(height=100), "--height: 100 is not a multiple of 16"),
    ("config-height-huge", set_config(height=10**6), "--height: 1000000 is out of range"),
    ("config-batch-bool", set_config(batch_size=True), "--batch-size: expected an integer, got True"),
    ("config-model-nul", set_config(model="ti\x00ny"), "--model: expected a non-empty printable string"),
    ("config-model-newline", set_config(model="tiny\nlicense: mit"), "--model: expected a non-empty printable string"),
    ("config-dtype", set_config(dtype="int8"), "--dtype: 'int8' is not a dtype"),
    ("config-scope", set_config(token_scope="../x"), "--token-scope: unknown token scope '../x'"),
    ("config-device", set_config(device="cuda; rm -rf /"), "--device: 'cuda; rm -rf /' is not a device"),
    ("config-offload", set_config(offload="yes"), "--cpu-offload: expected true or false"),
    ("manifest-not-object", garbage("manifest.json", "[1, 2, 3]"), "expected a JSON object"),
    ("manifest-not-json", garbage("manifest.json", "{not json"), "cannot read manifest"),
    ("manifest-empty", garbage("manifest.json", ""), "cannot read manifest"),
    ("pairs-not-list", edit_manifest(lambda m: m.update(pairs="all of them")), "pairs: expected a list"),
    ("pair-prompt-list", edit_manifest(lambda m: m["pairs"][1]["a"].update(prompt=["x"])),
     "pairs[1].a.prompt: expected a string"),
    ("pair-id-int", edit_manifest(lambda m: m["pairs"][0].update(id=7)), "pairs[0].id: expected a string"),
    ("pair-no-b", edit_manifest(lambda m: m["pairs"][2].pop("b")), "pairs[2].b: required field is missing"),
    ("pair-meta-list", edit_manifest(lambda m: m["pairs"][0].update(meta=[1])), "pairs[0].meta: expected an object"),
    ("pair-image-str", edit_manifest(lambda m: m["pairs"][0]["a"].update(image="/etc/passwd")),
     "pairs[0].a.image: expected an object"),
    ("token-counts-str", edit_manifest(lambda m: m["token_counts"][0].update(a="many")),
     "token_counts[0].a: expected an integer"),
    ("model-list", edit_manifest(lambda m: m.update(model=["tiny"])), "model: expected an object"),
    ("model-id-int", edit_manifest(lambda m: m["model"].update(id=3)), "model.id: expected a string"),
    ("spec-str", edit_manifest(lambda m: m.update(spec="probe")), "spec: expected an object"),
    ("spec-tags-int", edit_manifest(lambda m: m["spec"].update(tags=[1])), "spec.tags[0]: expected a string"),
    ("spec-direction-obj", edit_manifest(lambda m: m["spec"].update(direction={"a": 1})), "spec.direction: expected a list"),
    ("providers-str", edit_manifest(lambda m: m.update(providers="me")), "providers: expected an object"),
    ("provider-version-int", edit_manifest(lambda m: m["providers"]["spec"].update(version=1)),
     "providers.spec.version: expected a string"),
    ("version-int", edit_manifest(lambda m: m.update(torch_version=2)), "torch_version: expected a string"),
    ("layout-info-str", edit_manifest(lambda m: m.update(layout_info={"heads": "x"})), "layout_info.heads: expected an object"),
    ("images-str", edit_manifest(lambda m: m.update(images="x")), "images: expected a list"),
    ("figures-link", link("figures", "elsewhere/"), "figures is a symbolic link"),
    ("captures-link", link("captures", "caps/"), "captures is a symbolic link"),
    ("npz-link", link("captures/heads.npz", "secret.npz"), "heads.npz is a symbolic link"),
    ("manifest-link", link("manifest.json", "manifest.json"), "manifest.json is a symbolic link"),
    ("summary-link", link("summary.json", "summary.json"), "summary.json is a symbolic link"),
    ("card-link", link("README.md", "README.md"), "README.md is a symbolic link"),
    ("units-link", link("units.csv", "units.csv"), "units.csv is a symbolic link"),
    ("fifo", fifo, "extra is not a regular file"),
    ("npz-garbage", garbage("captures/heads.npz", "not a zip"), "heads.npz: cannot read captures"),
]

COMMANDS = {
    "report": lambda run, other: ["report", str(run), "--no-figures"],
    "causal": lambda run, other: ["causal", str(run), "--top", "1", "--controls", "1", "--doses", "1",
                                  "--no-figures", "--no-progress"],
    "compare": lambda run, other: ["compare", str(run), str(other)],
    "view": lambda run, other: ["view", str(run)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("build,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_manipulated_run_folder_is_refused_with_one_message(good, tmp_path, command, build, message):
    run = copy(good, tmp_path / "run")
    other = copy(good, tmp_path / "other")
    outside = tmp_path / "outside"
    outside.mkdir()
    build(run, outside)
    before_outside, before_other = snapshot(outside), snapshot(other)
    result = CliRunner().invoke(main, COMMANDS[command](run, other))
    if command == "compare" and "cannot read captures" in message:
        # compare reads the manifest (its token scope), summary.json and units.csv: a bad capture does not concern it
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "Traceback" not in result.output
    assert snapshot(outside) == before_outside and snapshot(other) == before_other
    assert not any(p.suffix == ".png" for p in outside.rglob("*"))


@pytest.mark.parametrize("build,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_load_run_refuses_the_same_folders(good, tmp_path, build, message):
    run = copy(good, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    build(run, outside)
    if message.startswith("heads.npz: cannot read"):
        with pytest.raises(pt.PlantainError, match="cannot read captures"):
            pt.load_run(run).captures("heads")
        return
    if "summary.json" in message or "README.md" in message or "units.csv" in message:
        with pytest.raises(pt.PlantainError, match="symbolic link"):
            pt.load_run(run)
        return
    with pytest.raises(pt.PlantainError) as exc:
        pt.load_run(run)
    from plantain_core.api import _FLAG, _keyword

    assert _FLAG.sub(_keyword, message) in str(exc.value)  # in Python's words: layouts, not --units


@pytest.mark.parametrize("content", [
    "[1, 2]", "{\"layouts\": [1]}", "{\"captures_sha256\": {\"../../../etc/passwd\": \"x\"}}",
    "{\"captures_sha256\": \"x\"}", "not json", "{\"layouts\": {\"heads\": {\"doses\": [{\"k\": \"x\"}]}}}",
])
def test_a_garbage_causal_json_is_a_note_on_the_card_not_a_crash(good, tmp_path, content):
    run = copy(good, tmp_path / "run")
    (run / "causal.json").write_text(content)
    result = CliRunner().invoke(main, ["report", str(run), "--no-figures"])
    assert result.exit_code == 0, result.output
    card = (run / "README.md").read_text()
    assert "_causal.json could not be read" in card or "## Causal check" in card


@pytest.mark.parametrize("name,text", [
    ("summary.json", "[]"), ("summary.json", "{\"model\": 5}"), ("summary.json", "{{{"),
    ("units.csv", "a,b\n1,2\n"), ("units.csv", "\x00\x01\x02"), ("units.csv", "layout,unit,t,q\nheads,x,notanumber,1\n"),
])
def test_compare_names_a_garbage_result_file(good, tmp_path, name, text):
    run = copy(good, tmp_path / "run")
    other = copy(good, tmp_path / "other")
    (run / name).write_text(text)
    result = CliRunner().invoke(main, ["compare", str(run), str(other)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{run / name}: not a plantain" in result.stderr, result.stderr


def test_card_front_matter_cannot_be_injected(tmp_path):
    from huggingface_hub import ModelCard

    data = spec_data("probe", n_pairs=3)
    data["tags"] = ["fine", "evil\nlicense: mit\nbase_model: attacker/model", "x: y"]
    data["description"] = "---\nlicense: mit\n---"
    spec = write_spec(tmp_path / "specs", "probe", data)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(spec), *ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = ModelCard((out / "README.md").read_text()).data.to_dict()
    assert set(meta) == {"base_model", "language", "library_name", "license", "tags"}
    assert (meta["license"], meta["base_model"]) == ("apache-2.0", "plantain/tiny")
    assert "evil\nlicense: mit\nbase_model: attacker/model" in meta["tags"]


def test_an_interrupted_report_is_finished_by_the_next_reader(good, tmp_path, monkeypatch):
    """Killed between moving the first and the last output into place: the next process
    rolls the report forward, so no folder mixes files of two settings."""
    import plantain_core.rundir.folder as runfolder

    run = copy(good, tmp_path / "run")
    real_move = runfolder._move

    def killed_after_one(staging, run_dir, names):
        real_move(staging, run_dir, names[:1])
        raise KeyboardInterrupt

    from plantain_core.report.analysis import analyze_run

    config = pt.load_run(run).config.evolve(thresholds=(2.0, 4.0))
    monkeypatch.setattr(runfolder, "_move", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        analyze_run(run, config, figures=False)
    monkeypatch.setattr(runfolder, "_move", real_move)
    assert (run / ".staging" / "COMMIT").is_file()  # the commit was recorded before the kill
    again = pt.load_run(run)  # rolls forward
    assert not (run / ".staging").exists()
    header = (run / "blocks.csv").read_text().splitlines()[0]
    assert header.endswith("n_abs_t_gt_2,median_abs_d")
    assert [r["threshold"] for r in again.summary["layouts"]["heads"]["thresholds"]] == [2.0, 4.0]
    assert "|t| > 2" in (run / "README.md").read_text()


def test_a_second_process_on_a_run_folder_is_refused_naming_it(good, tmp_path):
    import subprocess
    import sys

    run = copy(good, tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from plantain_core.rundir.folder import locked\n"
        f"with locked({str(run)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["run", "probe", "--out", str(run), "--resume"], ["report", str(run)],
                     ["causal", str(run), "--top", "1", "--controls", "1", "--doses", "1"]):
            result = CliRunner().invoke(main, args + ["--spec-dir", str(good.parent / "specs")] * (args[0] == "run"))
            assert result.exit_code == 1, result.output
            assert f"is in use by process {holder.pid} on " in result.stderr, result.stderr
            assert "Traceback" not in result.output
    finally:
        holder.kill()
        holder.wait()
    assert CliRunner().invoke(main, ["report", str(run), "--no-figures"]).exit_code == 0  # free again


def test_numbers_and_files_survive_a_round_trip_only_as_strict_json(good):
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    for name in ("manifest.json", "summary.json"):
        json.loads((good / name).read_text(), parse_constant=no_constants)
    shown = CliRunner().invoke(main, ["show", str(good.parent / "specs" / "probe.toml"), "--json"])
    json.loads(shown.stdout, parse_constant=no_constants)
    assert np.isfinite(pt.load_run(good).units()["t"]).all()
