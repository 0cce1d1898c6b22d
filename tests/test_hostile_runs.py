"""Hostile conditions around a run: resumes that would mix conditions, truncated prompts,
full disks, image bombs, link loops and plugins that exit. Each ends in one clear line,
a non-zero exit and nothing mixed or half-written."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.testing import spec_data, write_plugin_dist, write_spec

FAST = ("--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5", "--no-figures", "--no-progress")


def invoke(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def image_spec(root: pathlib.Path) -> pathlib.Path:
    from PIL import Image

    specs = root / "specs"
    specs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("before.png", "after.png"):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(specs / name)
    data = spec_data("probe", generator="image-pair")
    data["stimuli"]["pairs"][0] = {"id": "p0", "a_image": "before.png", "b_image": "after.png"}
    return write_spec(specs, "probe", data)


def interrupt_after_first_batch(out: pathlib.Path):
    """Mark the run as killed after its first batch: later pairs not done."""
    for npz in (out / "captures").glob("*.npz"):
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["done"] = np.array([True] + [False] * (len(arrays["done"]) - 1))
        np.savez(npz, **arrays)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_resume_refuses_a_changed_image_file_naming_it(tmp_path):
    from PIL import Image

    spec = image_spec(tmp_path)
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--batch-size", "2", "--out", out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    files = {r["file"]: r["sha256"] for r in manifest["images"] if r["source"] == "file"}
    assert set(files) == {"before.png", "after.png"}  # named relative to the spec, with their sha256
    assert str(tmp_path) not in (out / "manifest.json").read_text()  # no local paths
    assert json.loads((out / "manifest.json").read_text())["config"]["probe"] == "probe.toml"
    interrupt_after_first_batch(out)
    Image.fromarray(np.zeros((128, 128, 3), dtype=np.uint8)).save(spec.parent / "after.png")
    line = one_error(invoke("run", spec, "--out", out, "--resume", "--no-progress"))
    assert f"cannot resume {out}: after.png changed since the run started" in line
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"  # untouched


def test_resume_refuses_a_changed_batch_size_and_keeps_the_recorded_one(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", n_pairs=4))
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--batch-size", "2", "--out", out).exit_code == 0
    full = np.load(out / "captures" / "heads.npz")["a"].copy()
    interrupt_after_first_batch(out)
    line = one_error(invoke("run", spec, "--out", out, "--resume", "--batch-size", "4"))
    assert "--batch-size: was 2, now 4" in line
    assert invoke("run", spec, "--out", out, "--resume", "--no-progress").exit_code == 0
    np.testing.assert_array_equal(np.load(out / "captures" / "heads.npz")["a"], full)  # same batches, same bits


def test_a_swapped_cache_image_is_regenerated_not_used(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(tmp_path / "cache"))
    data = spec_data("probe", generator="fixed-image-text-pair")
    spec = write_spec(tmp_path / "specs", "probe", data)
    assert invoke("run", spec, *FAST, "--out", tmp_path / "first").exit_code == 0
    (png,) = (tmp_path / "cache" / "images").glob("*.png")
    Image.fromarray(np.zeros((128, 128, 3), dtype=np.uint8)).save(png)  # someone swaps the cached file
    assert invoke("run", spec, *FAST, "--out", tmp_path / "second").exit_code == 0
    first, second = (json.loads((tmp_path / n / "manifest.json").read_text())["images"][0] for n in ("first", "second"))
    assert second["cached"] is False and second["sha256"] == first["sha256"]
    for name in ("first", "second"):
        assert (tmp_path / name / "captures" / "heads.npz").is_file()
    np.testing.assert_array_equal(np.load(tmp_path / "first" / "captures" / "heads.npz")["a"],
                                  np.load(tmp_path / "second" / "captures" / "heads.npz")["a"])


def test_resume_refuses_another_probe(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    other = write_spec(tmp_path / "specs", "other", spec_data("other"))
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--out", out).exit_code == 0
    line = one_error(invoke("run", other, "--out", out, "--resume"))
    assert line == f"Error: cannot resume {out}: it holds a run of probe 'probe', not 'other'"


def long_prompt(tail: str) -> str:
    return "a grey object on a grey table, " * 30 + tail  # ~900 characters: > 512 byte tokens


def test_pairs_identical_after_the_token_cut_are_refused(tmp_path):
    data = spec_data("probe")
    data["stimuli"]["pairs"][1] = {"id": "p1", "a": long_prompt("large"), "b": long_prompt("small")}
    spec = write_spec(tmp_path / "specs", "probe", data)
    line = one_error(invoke("run", spec, *FAST, "--out", tmp_path / "run"))
    assert line.startswith("Error: pairs 'p1' differ only after the first 512 prompt tokens")
    assert not (tmp_path / "run").exists()


def test_truncated_prompts_are_warned_and_recorded(tmp_path):
    data = spec_data("probe")
    data["stimuli"]["pairs"][1] = {"id": "p1", "a": "large: " + long_prompt(""), "b": "small: " + long_prompt("")}
    spec = write_spec(tmp_path / "specs", "probe", data)
    out = tmp_path / "run"
    result = invoke("run", spec, *FAST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "warning: 1 pair(s) have prompts longer than 512 tokens; the text encoder sees only the first 512: p1 (A " \
        in result.stderr
    rec = json.loads((out / "manifest.json").read_text())["token_counts"][1]
    assert rec["a"] == rec["b"] == 512 and rec["a_full"] > 512 and rec["b_full"] > 512
    summary = json.loads((out / "summary.json").read_text())
    assert summary["confounds"]["token_counts"]["pairs_truncated"] == 1
    assert "1 pairs have a prompt longer than 512 tokens" in (out / "README.md").read_text()


def test_a_full_disk_is_one_line_and_the_folder_is_not_left_running(tmp_path):
    """RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk would."""
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 1024, 4 * 1024))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTAIN_") or k == "PLANTAIN_CACHE_DIR"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "plantain_core", "run", str(spec), *FAST, "--units", "slices16",
                           "--out", str(out)], preexec_fn=limit, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert line.startswith(f"Error: cannot write the run folder {out}: File too large"), line
    if (out / "manifest.json").is_file():
        assert json.loads((out / "manifest.json").read_text())["status"] != "running"
    assert not list(out.rglob("*.tmp"))


def test_out_below_a_file_is_one_line(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    (tmp_path / "afile").write_text("mine")
    line = one_error(invoke("run", spec, *FAST, "--out", tmp_path / "afile" / "run"))
    assert line.startswith(f"Error: cannot write the run folder {tmp_path / 'afile' / 'run'}: Not a directory")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_decompression_bomb_is_named(tmp_path):
    from PIL import Image

    specs = tmp_path / "specs"
    specs.mkdir()
    Image.new("1", (20000, 20000)).save(specs / "bomb.png")  # 400 megapixels in a small file
    data = spec_data("probe", generator="fixed-image-text-pair")
    del data["stimuli"]["reference_prompt"]
    data["stimuli"]["reference_image"] = "bomb.png"
    spec = write_spec(specs, "probe", data)
    line = one_error(invoke("validate", spec))
    result = invoke("run", spec, *FAST, "--out", tmp_path / "run")
    assert f"stimuli.reference_image: image is too large to decode safely: {specs / 'bomb.png'}" in result.stderr
    assert "1 problem(s)" in line and not (tmp_path / "run").exists()


def test_a_link_loop_on_the_spec_path_hides_only_itself(tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    write_spec(specs, "probe", spec_data("probe"))
    (specs / "loop.toml").symlink_to(specs / "loop.toml")
    (tmp_path / "dirloop").symlink_to(tmp_path / "dirloop")
    monkeypatch.setenv("PLANTAIN_SPEC_PATH", os.pathsep.join([str(specs), str(tmp_path / "dirloop")]))
    listing = invoke("list", "--json")
    assert listing.exit_code == 0, listing.output
    rows = {p["name"]: p for p in json.loads(listing.stdout)["probes"]}
    assert rows["probe"]["status"] == "OK" and rows["loop"]["status"] == "ERROR"
    assert invoke("run", "probe", *FAST, "--out", tmp_path / "run").exit_code == 0


EXITING = """
import sys
from plantain_core import Interpretation, hookimpl

class Quitter:
    description = "calls sys.exit"
    def interpret(self, spec, pairs, result):
        sys.exit(3)

class Odd:
    description = "returns an object as a number"
    def interpret(self, spec, pairs, result):
        return Interpretation({"score": object()})

@hookimpl
def plantain_register_interpreters(register):
    register("quitter", Quitter())
    register("odd", Odd())
"""


@pytest.mark.parametrize("name,said", [("quitter", "failed: SystemExit: 3"),
                                       ("odd", "returned a object at numbers.score, which is not JSON data")])
def test_an_interpreter_that_exits_or_returns_objects_fails_the_run_naming_it(tmp_path, monkeypatch, name, said):
    write_plugin_dist(tmp_path / "site", "exit_plug", EXITING, distribution="exit-plug", version="1.0")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", interpreter=name))
    out = tmp_path / "run"
    line = one_error(invoke("run", spec, *FAST, "--out", out))
    assert f"interpreter '{name}' from plugin exit_plug (exit-plug 1.0) {said}" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and said in manifest["error"]
    summary = (out / "summary.json").read_text()
    assert "object at 0x" not in summary and json.loads(summary)["interpretation"] == {}


@pytest.mark.parametrize("value", ['"p1\\u0000"', '"p1\\n"', '""', '" "', "7", '"p\\u2028x"', '"p\\u001b[31m"'])
def test_pair_ids_that_would_collapse_or_split_are_refused(tmp_path, value):
    spec = tmp_path / "probe.toml"  # written by hand: the toml package mangles control characters
    spec.write_text('schema = 1\nname = "probe"\ngenerator = "text-pair"\n[stimuli]\npairs = [\n'
                    '{ id = "p0", a = "x 0", b = "y 0" },\n'
                    f'{{ id = {value}, a = "x 1", b = "y 1" }},\n'
                    '{ id = "p2", a = "x 2", b = "y 2" } ]\n')
    line = one_error(invoke("validate", spec))
    assert "1 problem(s)" in line
    result = invoke("validate", spec)
    assert "stimuli.pairs[1].id: expected a non-empty printable string" in result.stderr


def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("target", ["manifest.json", "summary.json"])
def test_json_nested_a_hundred_thousand_deep_is_one_line(tmp_path, target):
    import plantain_core as pt

    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--out", out).exit_code == 0
    (out / target).write_text(deep(100_000))
    if target == "manifest.json":
        assert "manifest.json: cannot read manifest" in one_error(invoke("report", out, "--no-figures"))
        assert "manifest.json is unreadable (RecursionError" in one_error(invoke("run", spec, "--out", out, "--resume"))
    else:
        with pytest.raises(pt.PlantainError, match="summary.json: cannot read: RecursionError"):
            pt.load_run(out).summary


@pytest.mark.parametrize("text,problem", [
    ('{"id": "x", "a": "p", "b": "q", "m": ' + deep(100_000) + "}\n", "line 1: invalid JSON: RecursionError"),
    ('{"id": "x", "a": "p", "b": "q", "m": ' + deep(40) + "}\n", "line 1, key meta.m: nested deeper than 32 levels"),
    ('{"id": "x", "a": "x\\ud800", "b": "q"}\n', "line 1, key a: is not valid Unicode"),
    ('{"id": "x", "a": "a red\\u0000cube", "b": "q"}\n', "line 1, key a: contains a NUL character"),
    ('{"id": "x", "id": "y", "a": "p", "b": "q"}\n', "line 1: invalid JSON: key 'id' appears twice"),
    ('{"id": "x ", "a": "p", "b": "q"}\n', "line 1, key id: 'x ' starts or ends with spaces"),
])
def test_jsonl_pairs_hostile_values_are_named_by_line(tmp_path, text, problem):
    (tmp_path / "pairs.jsonl").write_text(text + '{"id": "y", "a": "p2", "b": "q2"}\n{"id": "z", "a": "p3", "b": "q3"}\n')
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": "pairs.jsonl"}
    spec = write_spec(tmp_path, "probe", data)
    result = invoke("validate", spec)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"pairs.jsonl {problem}" in result.stderr, result.stderr


def test_jsonl_line_separators_inside_strings_are_text(tmp_path):
    rows = [{"id": f"p{i}", "a": f"A red\u2028cube {i}\x0c", "b": f"A blue\u0085cube {i}"} for i in range(3)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows))
    (tmp_path / "pairs.csv").write_text("id,a,b\n" + "".join(f"p{i},red\x0ccube {i},blue\u2028cube {i}\n" for i in range(3)))
    for name in ("pairs.jsonl", "pairs.csv"):
        data = spec_data("probe")
        data["stimuli"] = {"pairs_file": name}
        result = invoke("show", write_spec(tmp_path, "probe", data), "--json")
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["pairs"]) == 3


@pytest.mark.parametrize("cell,value", [("7", 7), ("-2.5", -2.5), ("1e3", 1000.0), ("1_000", "1_000"), (" 7 ", " 7 "),
                                        ("\u0661\u0662", "\u0661\u0662"), ("nan", "nan"), ("007", 7), ("0x1f", "0x1f")])
def test_csv_meta_numbers_are_plain_decimals_only(tmp_path, cell, value):
    (tmp_path / "pairs.csv").write_text("id,a,b,m\n" + "".join(f"p{i},x {i},y {i},{cell}\n" for i in range(3)))
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": "pairs.csv"}
    result = invoke("show", write_spec(tmp_path, "probe", data), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pairs"][0]["meta"] == {"m": value}


@pytest.mark.parametrize("make,problem", [
    (lambda d: (d / "pairs.csv").mkdir(), "'pairs.csv' is not a regular file"),
    (lambda d: os.mkfifo(d / "pairs.csv"), "'pairs.csv' is not a regular file"),
    (lambda d: (d / "pairs.csv").write_text("id,,b\nx,y,z\n"), "pairs.csv line 1: header: column 2 has no name"),
])
def test_pairs_file_that_is_not_a_table(tmp_path, make, problem):
    make(tmp_path)
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": "pairs.csv"}
    result = invoke("validate", write_spec(tmp_path, "probe", data))
    assert result.exit_code == 1 and problem in result.stderr, result.stderr


@pytest.mark.parametrize("args,message", [
    (["x\n"], "NAME 'x\\n': use up to 100 letters"),
    (["a" * 300], "use up to 100 letters"),
])
def test_plantain_new_refuses_names_and_leaves_nothing(tmp_path, args, message):
    line = one_error(invoke("new", *args, "--dir", tmp_path / "specs"))
    assert message in line and not (tmp_path / "specs").exists()


def test_plantain_new_into_a_folder_below_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    line = one_error(invoke("new", "g", "--dir", tmp_path / "f" / "sub"))
    assert line.startswith(f"Error: cannot write {tmp_path / 'f' / 'sub' / 'g.toml'}: Not a directory")


@pytest.mark.parametrize("call,message", [
    (lambda pt, p: pt.run(p, out=5), "run(): out= must be a folder path, got 5"),
    (lambda pt, p: pt.run(5), "probe(): expected a probe name or a spec path, got 5"),
    (lambda pt, p: pt.probe(None), "probe(): expected a probe name or a spec path, got None"),
    (lambda pt, p: pt.run(p, model="tiny", resume="no"), "run(): resume= must be True or False, got 'no'"),
    (lambda pt, p: pt.run(p, model="tiny", figures="no"), "run(): figures= must be True or False, got 'no'"),
    (lambda pt, p: pt.run(p, model="tiny", seed="3"), "seed: expected an integer, got '3'"),
    (lambda pt, p: pt.run(p, model="tiny", layouts=5), "layouts: expected layout names, got 5"),
    (lambda pt, p: pt.run(p, model="tiny", thresholds=[True, 5]), "thresholds: [True, 5] is not a list of numbers"),
    (lambda pt, p: pt.run(p, model="tiny", thresholds={"3": 1}), "thresholds: {'3': 1} is not a list of numbers"),
    (lambda pt, p: pt.run(p, model="tiny", batch_size=0), "batch_size: 0 is out of range"),
    (lambda pt, p: pt.run(p, model=None, device="gpu"), "device: 'gpu' is not a device"),
])
def test_python_api_wrong_types_are_named(tmp_path, monkeypatch, call, message):
    import plantain_core as pt

    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    with pytest.raises(pt.PlantainError) as exc:
        call(pt, pt.probe(spec))
    assert str(exc.value).startswith(message)
    assert not (tmp_path / "runs").exists()


def test_python_api_top_and_spec_dirs(tmp_path):
    import plantain_core as pt

    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    assert pt.probe("probe", spec_dirs=tmp_path / "specs").name == "probe"  # one folder, not its characters
    assert pt.probe("probe", spec_dirs=str(tmp_path / "specs")).name == "probe"
    run = pt.run(spec, model="tiny", layouts=["heads"], flips=20, splits=5, out=tmp_path / "run", figures=False)
    assert len(run.top(3)) == 3
    for k in (-3, "x", 2.5, True):
        with pytest.raises(pt.PlantainError, match="top\\(k=\\): k must be a non-negative integer"):
            run.top(k)
    (run.path / "units.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(pt.PlantainError, match="units.csv: not a plantain units table"):
        run.units()
    (run.path / "units.csv").write_text("layout,unit,block,mean_diff,t,d,p,q,p_fwer\nheads,x,b,xyz,1,1,1,1,1\n")
    with pytest.raises(pt.PlantainError, match="units.csv: not a plantain units table"):
        run.units()


def test_resume_with_another_model_is_refused_before_loading_it(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--out", out).exit_code == 0
    line = one_error(invoke("run", spec, "--out", out, "--resume", "--model", "black-forest-labs/FLUX.2-klein-base-4B"))
    assert line == (f"Error: cannot resume {out}: the run was started with other settings "
                    "(--model: was tiny, now black-forest-labs/FLUX.2-klein-base-4B)")


def test_publish_dry_run_lists_exactly_what_goes_and_offline_is_one_line(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"
    assert invoke("run", spec, "--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5",
                  "--no-progress", "--out", out).exit_code == 0
    dry = invoke("publish", out, "someone/probe-card", "--dry-run")
    assert dry.exit_code == 0, dry.output
    listed = [line.split()[-1] for line in dry.stdout.splitlines()[:-1]]
    assert listed == ["README.md", "manifest.json", "summary.json", "units.csv", "blocks.csv",
                      "figures/heads_null_counts.png", "figures/heads_split_half.png", "figures/heads_t_heatmap.png"]
    assert dry.stdout.splitlines()[-1].startswith("would upload 8 files (")
    with_caps = invoke("publish", out, "someone/probe-card", "--dry-run", "--with-captures")
    assert "captures/heads.npz" in with_caps.stdout
    meta = ModelCard.load(out / "README.md").data.to_dict()  # the hub's parser reads the card back intact
    assert meta["license"] == "apache-2.0" and "plantain" in meta["tags"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_error(invoke("publish", out, "someone/probe-card"))
    assert line.startswith("Error: cannot publish to someone/probe-card: ") and "hf auth login" in line
    assert one_error(invoke("publish", out, "not a repo id!")).startswith(
        "Error: REPO_ID 'not a repo id!' is not a hub repository id")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "is not a complete run (status 'interrupted')" in one_error(invoke("publish", out, "a/b", "--dry-run"))
