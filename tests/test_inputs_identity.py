"""Everything a run reads is part of its identity (issue 26, items 1 and 2): the spec file,
its pairs file and every image file are recorded by sha256 in the manifest before the
first capture is flushed, so that ``--resume`` at any kill point, and a sweep over a cell
made before, refuse a changed input with one line naming the file instead of mixing
captures made from two versions of it.

A kill point is simulated exactly: the run folder is copied after each write the runner
makes (manifest, captures), which is what a SIGKILL right after that write leaves on disk
(test_reliability_interrupt.py kills real subprocesses; the copies here reach every point).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from plantain_core.cli import main
from plantain_core.rundir.folder import OWN_FILES
from plantain_core.testing import spec_data, write_spec
from test_hostile_runs import FAST, image_spec, invoke, one_error

N_PAIRS = 4  # --batch-size 2: one pair (two passes) a batch, a kill point after each


def _picture(path: pathlib.Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(path)


def _reference_spec(root: pathlib.Path) -> pathlib.Path:
    """A fixed-image probe whose reference image is a file beside the spec."""
    specs = root / "specs"
    specs.mkdir(parents=True)
    _picture(specs / "ref.png", 0)
    data = spec_data("probe", generator="fixed-image-text-pair", n_pairs=N_PAIRS)
    del data["stimuli"]["reference_prompt"]
    data["stimuli"]["reference_image"] = "ref.png"
    return write_spec(specs, "probe", data)


def _pairs_file_spec(root: pathlib.Path) -> pathlib.Path:
    specs = root / "specs"
    specs.mkdir(parents=True)
    rows = "".join(f"p{i},a red cube number {i},a blue sphere number {i}\n" for i in range(N_PAIRS))
    (specs / "pairs.csv").write_text("id,a,b\n" + rows)
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": "pairs.csv"}
    return write_spec(specs, "probe", data)


def _run_with_kill_points(monkeypatch, spec: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
    """Run ``spec`` into ``out`` (``--batch-size 2``); return a copy of the folder after
    every write of the runner, in order: the folder a kill right after that write leaves."""
    from plantain_core.capture import runner

    snaps: list[pathlib.Path] = []

    def snapshot():
        snap = out.parent / f"kill{len(snaps)}"
        shutil.copytree(out, snap, ignore=shutil.ignore_patterns(*OWN_FILES))
        snaps.append(snap)

    def wrap(write):
        def written(*args, **kw):
            result = write(*args, **kw)
            snapshot()
            return result
        return written

    monkeypatch.setattr(runner, "atomic_write_json", wrap(runner.atomic_write_json))
    monkeypatch.setattr(runner, "_write_captures", wrap(runner._write_captures))
    result = invoke("run", spec, *FAST, "--batch-size", "2", "--out", out)
    assert result.exit_code == 0, result.output
    monkeypatch.undo()
    return snaps


def _done(folder: pathlib.Path) -> int:
    path = folder / "captures" / "heads.npz"
    if not path.is_file():
        return 0
    with np.load(path) as z:
        return int(z["done"].sum())


def test_the_reference_image_is_checked_at_every_kill_point(tmp_path, monkeypatch):
    spec = _reference_spec(tmp_path)
    snaps = _run_with_kill_points(monkeypatch, spec, tmp_path / "run")
    partial = [s for s in snaps if 0 < _done(s) < N_PAIRS]
    assert len(partial) == N_PAIRS - 1 and _done(snaps[-1]) == N_PAIRS  # a kill point between every two batches
    for snap in snaps:
        if _done(snap):  # from the first flush on, the image the captures came from is on disk with them
            manifest = json.loads((snap / "manifest.json").read_text())
            assert [r.get("file") for r in manifest["images"]] == ["ref.png"]
            assert set(manifest["inputs"]) == {"probe.toml", "ref.png"}
    _picture(spec.parent / "ref.png", 1)  # another reference image between the kill and the resume
    for snap in snaps:  # at every kill point, before the first capture too: a changed input is another run
        line = one_error(invoke("run", spec, "--out", snap, "--resume", "--no-progress"))
        assert f"cannot resume {snap}: ref.png changed since the run started" in line, line
    # the image restored: the run killed between its batches resumes to the uninterrupted captures
    _picture(spec.parent / "ref.png", 0)
    snap = partial[0]
    assert invoke("run", spec, "--out", snap, "--resume", "--no-progress").exit_code == 0
    with np.load(snap / "captures" / "heads.npz") as got, np.load(tmp_path / "run" / "captures" / "heads.npz") as want:
        np.testing.assert_array_equal(got["a"], want["a"])
        np.testing.assert_array_equal(got["b"], want["b"])


def test_a_generated_reference_image_is_recorded_before_the_first_flush(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", generator="fixed-image-text-pair",
                                                               n_pairs=N_PAIRS))
    snaps = _run_with_kill_points(monkeypatch, spec, tmp_path / "run")
    final = json.loads((snaps[-1] / "manifest.json").read_text())["images"]
    assert len(final) == 1 and final[0]["source"] == "generated"
    for snap in snaps:
        if _done(snap):
            assert json.loads((snap / "manifest.json").read_text())["images"] == final


def test_an_edited_pairs_file_is_refused_on_resume_naming_it(tmp_path, monkeypatch):
    spec = _pairs_file_spec(tmp_path)
    snaps = _run_with_kill_points(monkeypatch, spec, tmp_path / "run")
    snap = next(s for s in snaps if _done(s) == 1)
    csv = spec.parent / "pairs.csv"
    original = csv.read_text()
    csv.write_text(original.replace("a red cube number 3", "a green cone number 3"))  # a prompt not yet captured
    line = one_error(invoke("run", spec, "--out", snap, "--resume", "--no-progress"))
    assert f"cannot resume {snap}: pairs.csv changed since the run started" in line
    assert json.loads((snap / "manifest.json").read_text())["status"] == "running"  # the folder untouched
    # the spec file itself, edited in a way that leaves every setting and pair as it was
    csv.write_text(original)
    spec.write_text(spec.read_text().replace('title = "probe test probe"', 'title = "another title"'))
    line = one_error(invoke("run", spec, "--out", snap, "--resume", "--no-progress"))
    assert f"cannot resume {snap}: probe.toml changed since the run started" in line


def test_a_changed_image_file_of_a_pair_is_refused_at_a_kill_point(tmp_path, monkeypatch):
    spec = image_spec(tmp_path)  # pair p0 conditions on before.png and after.png
    snaps = _run_with_kill_points(monkeypatch, spec, tmp_path / "run")
    snap = next(s for s in snaps if _done(s) == 1)
    _picture(spec.parent / "after.png", 7)
    line = one_error(invoke("run", spec, "--out", snap, "--resume", "--no-progress"))
    assert f"cannot resume {snap}: after.png changed since the run started" in line


def test_pairs_a_plugin_builds_differently_are_refused_naming_the_pair(tmp_path):
    """No file names them: the pairs recorded in the manifest are compared as well."""
    from plantain_core.capture.run_records import ResumeRefused, check_pairs

    old = [{"id": "p0", "a": {"prompt": "x", "image": None}, "b": {"prompt": "y", "image": None}, "meta": {}},
           {"id": "p1", "a": {"prompt": "u", "image": None}, "b": {"prompt": "v", "image": None}, "meta": {}}]
    check_pairs(tmp_path, old, json.loads(json.dumps(old)))  # the same pairs, read back from JSON
    new = json.loads(json.dumps(old))
    new[1]["meta"] = {"rank": 2}
    with pytest.raises(ResumeRefused, match="pair 'p1' is not the one the run started with"):
        check_pairs(tmp_path, old, new)
    with pytest.raises(ResumeRefused, match="the probe now has 1 pairs, the run started with 2"):
        check_pairs(tmp_path, old, new[:1])


def test_the_manifest_inputs_are_checked_as_received_data(tmp_path):
    from plantain_core.rundir.manifest import ManifestError, check_manifest

    check_manifest({"inputs": {"probe.toml": "ab" * 32}})
    with pytest.raises(ManifestError, match="inputs.probe.toml: expected a string"):
        check_manifest({"inputs": {"probe.toml": 3}})


def _sweep_file(root: pathlib.Path, spec: pathlib.Path) -> pathlib.Path:
    grid = root / "grid.toml"
    grid.write_text(f'probes = ["{spec.as_posix()}"]\nmodels = ["tiny"]\nseeds = [0]\nlayouts = ["heads"]\n'
                    "[options]\nflips = 16\nsplits = 4\n")
    return grid


@pytest.mark.parametrize("edit", ["pairs.csv", "image"])
def test_a_complete_sweep_cell_whose_inputs_changed_is_not_skipped(tmp_path, edit):
    if edit == "pairs.csv":
        spec = _pairs_file_spec(tmp_path)
        target = spec.parent / "pairs.csv"
        change = lambda: target.write_text(target.read_text().replace("number 2", "number two"))  # noqa: E731
    else:
        spec = image_spec(tmp_path)
        target = spec.parent / "before.png"
        change = lambda: _picture(target, 9)  # noqa: E731
    grid, out = _sweep_file(tmp_path, spec), tmp_path / "sweep"
    runner = CliRunner()
    first = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert "1 of 1 cells already complete; skipped" in again.output  # unchanged inputs: reused
    change()
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert "already complete" not in res.output  # its results came from the old file
    assert res.exit_code == 1, res.output
    assert f"{target.name} changed since the run started" in res.output
    (cell,) = [p for p in out.iterdir() if (p / "manifest.json").is_file()]
    assert json.loads((cell / "manifest.json").read_text())["status"] == "complete"  # refused, not rewritten


@pytest.mark.parametrize("steps", [1, 2])
def test_a_units_table_cut_short_is_refused_wherever_it_is_read(tmp_path, steps):
    """load_run().units(), top() and plantain compare check units.csv against the manifest's unit
    count as the sweep report does (issue 26 item 5): 16 heads of the tiny model, per step."""
    import plantain_core as pt
    from plantain_core.errors import PlantainError
    from plantain_core.report.compare import compare_runs

    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", n_pairs=N_PAIRS))
    runs = []
    for name in ("one", "two"):
        result = invoke("run", spec, *FAST, "--steps", steps, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)
    run = pt.load_run(runs[0])
    layout = "heads" if steps == 1 else "heads@step1"
    assert len(run.units(layout)) == 16 and len(run.top(3, layout)) == 3  # whole tables read as before
    assert compare_runs(runs)["layouts"]
    table = runs[0] / "units.csv"
    lines = table.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 16 * steps
    table.write_text("".join(lines[:6]))  # the header and 5 of the rows
    cut = lines[1].split(",")[0]  # the layout the kept rows belong to
    for read in (lambda: pt.load_run(runs[0]).units(layout), lambda: pt.load_run(runs[0]).top(3, layout),
                 lambda: compare_runs(runs)):
        with pytest.raises(PlantainError) as err:
            read()
        assert str(err.value) == (f"{table}: layout {cut!r} has 5 rows, the run has 16 units; rerun "
                                  f"`plantain report {runs[0]}`")


def test_a_causal_check_on_another_model_says_so_where_it_makes_the_claim(tmp_path):
    """Issue 26 item 4: the sentence that says what was re-run names the model it ran on."""
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", n_pairs=N_PAIRS))
    run = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--out", run).exit_code == 0
    args = ("--top", "2", "--controls", "2", "--doses", "2", "--no-progress", "--exhaustive")

    def claim() -> str:
        section = (run / "README.md").read_text().split("## Causal check", 1)[1]
        return next(line for line in section.splitlines() if line.startswith("Do the units"))

    result = invoke("causal", run, *args, "--model", "tiny-weights1")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "causal.json").read_text())["check_model"]["id"] == "plantain/tiny-weights1"
    assert ("re-ran the 4 pairs on **another model than the run's, `plantain/tiny-weights1 @ tiny-1-weights1`** "
            "(the run was captured on `plantain/tiny @ tiny-1`; the run's noise seeds, 128×128") in claim()
    result = invoke("causal", run, *args)
    assert result.exit_code == 0, result.output
    assert "re-ran the 4 pairs on the run's own model, `plantain/tiny @ tiny-1` (the run's noise seeds" in claim()
