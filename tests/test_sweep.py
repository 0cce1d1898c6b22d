"""Sweeps: the grid file, cells in their own folders, skip / resume / retry, the local
and Ray executors (a real local Ray cluster, a worker killed mid-cell), byte-identical
results whichever way the cells ran."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.errors import SpecError
from plantain_core.sweep.grid import cell_name, load_grid

GRID = """probes = ["ray", "measure"]
models = ["tiny"]
seeds = [0, 1]

[options]
flips = 16
splits = 4
"""
# bigger cells, flushed after every pair, for the kill tests
SLOW_GRID = GRID + "batch_size = 2\n"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write(tmp_path, text, name="grid.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _results(folder: pathlib.Path) -> dict[str, bytes]:
    """Every cell's captures and summary, byte for byte."""
    out = {}
    for cell in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted((cell / "captures").glob("*.npz")) + [cell / "summary.json", cell / "units.csv"]:
            out[str(f.relative_to(folder))] = f.read_bytes()
    return out


def _sweep(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plantain_core", "sweep", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The slow grid run serially, once: the reference every other way must equal."""
    tmp = tmp_path_factory.mktemp("serial")
    grid = _write(tmp, SLOW_GRID)
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp / "out"), "--no-figures"])
    assert res.exit_code == 0, res.output
    return _results(tmp / "out")


def test_a_grid_reports_every_problem_at_once(tmp_path):
    path = _write(tmp_path, """probes = ["ray", "no-such-probe"]
seeds = [0, -1, 0]
modles = ["tiny"]
steps = [0]

[options]
flipz = 3
seed = 2
splits = "many"
""")
    with pytest.raises(SpecError) as err:
        load_grid(path)
    text = str(err.value)
    for expected in ("modles: unknown key (did you mean 'models'?)", "models: required key is missing",
                     "seeds[1]: --seed: -1 is out of range", "seeds[2]: 0 is listed twice", "steps: --steps",
                     "options.flipz: unknown run option (did you mean 'flips'?)", "probes[1]: ",
                     "options.seed: is an axis: use the top-level key 'seeds'", "options.splits: --splits"):
        assert expected in text, text
    assert all(line.startswith(f"{path}: ") for line in err.value.problems)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "modles" in res.output and not (tmp_path / "out").exists()
    # the probes alone
    path.write_text('probes = ["ray", "no-such-probe"]\nmodels = ["tiny"]\nseeds = [0]\n')
    with pytest.raises(SpecError, match=r"probes\[1\]: .*no-such-probe"):
        load_grid(path)


def test_cell_names_are_stable_and_say_what_differs(tmp_path):
    grid = load_grid(_write(tmp_path, 'probes = ["ray"]\nmodels = ["tiny"]\nseeds = [3]\nsteps = [1, 4]\n'
                                      'token_scopes = ["image"]\nlayouts = [["heads"]]\n'))
    names = [c.name for c in grid.cells()]
    assert names == ["ray-tiny-seed3-image-heads", "ray-tiny-seed3-steps4-image-heads"]
    # a cell's name depends on its own values only: a bigger grid keeps it
    assert cell_name(grid.cells()[0].config) == names[0]
    spec = tmp_path / "specs" / "my-probe.toml"
    spec.parent.mkdir()
    spec.write_text((pathlib.Path(__file__).parents[1] / "specs" / "ray.toml").read_text()
                    .replace('name = "ray"', 'name = "my-probe"'))
    grid = load_grid(_write(tmp_path, 'probes = ["specs/my-probe.toml"]\nmodels = ["tiny", "org/FLUX.2-x"]\n'
                                      'seeds = [0]\n', "two.toml"))
    assert [c.name[:-7] for c in grid.cells()] == ["my-probe-tiny-seed0", "my-probe-FLUX.2-x-seed0"]
    assert grid.cells()[0].config.probe == str(spec.resolve())  # relative to the sweep file


def test_two_probes_two_seeds_run_skip_and_never_mix(tmp_path):
    grid = _write(tmp_path, GRID)
    out = tmp_path / "sweep"
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "4 of 4 cells complete; 1 model loads" in res.output  # one model, loaded once
    state = json.loads((out / "sweep.json").read_text())
    assert sorted(state["cells"]) == ["measure-tiny-seed0", "measure-tiny-seed1", "ray-tiny-seed0", "ray-tiny-seed1"]
    assert all(c["status"] == "complete" and c["attempts"] == 1 for c in state["cells"].values())
    for name, cell in state["cells"].items():
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["config"]["seed"] == cell["config"]["seed"]
    before = _results(out)
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert res.exit_code == 0 and "4 of 4 cells already complete; skipped" in res.output
    assert "0 model loads" in res.output and _results(out) == before
    # the same folder under other settings: refused before anything runs
    grid.write_text(GRID.replace("flips = 16", "flips = 32"))
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert res.exit_code == 1 and "was run with other settings (flips: was 16, now 32)" in res.output
    assert _results(out) == before


def test_a_failing_cell_is_retried_and_reported(tmp_path):
    # a Klein folder (its loader takes it, so the grid is valid) whose weights are missing: the cell fails to load
    broken = tmp_path / "broken-klein"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "Flux2KleinPipeline"}')
    grid = _write(tmp_path, f'probes = ["ray"]\nmodels = ["tiny", "{broken}"]\nseeds = [0]\n'
                            '[options]\nflips = 16\nsplits = 4\n')
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures", "--retries", "1"])
    assert res.exit_code == 1, res.output
    assert "1 of 2 cells complete, 1 failed" in res.output and "to retry the failed cells" in res.output
    (name,) = [n for n in json.loads((out / "sweep.json").read_text())["cells"] if "broken-klein" in n]
    cell = json.loads((out / "sweep.json").read_text())["cells"][name]
    assert cell["status"] == "failed" and cell["attempts"] == 2 and "cannot load the local model folder" in cell["error"]
    assert not (out / name).exists()  # a run that captured nothing leaves no folder


def test_a_model_no_loader_takes_is_a_grid_error(tmp_path):
    grid = _write(tmp_path, 'probes = ["ray"]\nmodels = ["tiny", "no-such-model"]\nseeds = [0]\n')
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(out)])
    assert res.exit_code == 1 and "models[1]: no model loader accepts 'no-such-model'" in res.output
    assert not out.exists()  # refused before any cell


def _wait_for_partial_cell(out: pathlib.Path, proc, timeout=300.0) -> str:
    """The name of a cell whose folder holds flushed captures but is not complete."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        for manifest in out.glob("*/manifest.json"):
            cell = manifest.parent
            try:
                status = json.loads(manifest.read_text()).get("status")
            except ValueError:
                continue
            if status == "running" and (cell / "captures" / "heads.npz").is_file():
                return cell.name
        time.sleep(0.005)
    raise AssertionError("no cell was caught mid-run")


def test_a_killed_sweep_resumes_to_the_serial_result(tmp_path, serial):
    grid = _write(tmp_path, SLOW_GRID)
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "plantain_core", "sweep", str(grid), "--out", str(out),
                             "--no-figures"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    name = _wait_for_partial_cell(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / name / "manifest.json").read_text())["status"] == "running"
    res = _sweep(grid, "--out", out, "--no-figures")
    assert res.returncode == 0, res.stderr
    assert _results(out) == serial


def test_ray_executor_with_a_killed_worker_equals_the_serial_sweep(tmp_path, serial):
    """A real local Ray cluster (2 CPUs, 2 workers); one worker is killed while its cell
    has flushed captures: the cell is resumed on a new worker, and every cell's captures
    and summary equal the serial sweep's byte for byte."""
    pytest.importorskip("ray")
    grid = _write(tmp_path, SLOW_GRID)
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "plantain_core", "sweep", str(grid), "--out", str(out),
                             "--no-figures", "--executor", "ray", "--workers", "2"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = _wait_for_partial_cell(out, proc)
    worker = json.loads((out / "sweep.json").read_text())["cells"][name]["worker"]
    os.kill(int(worker.split()[1]), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"{name}: worker lost; requeued" in stderr and "4 of 4 cells complete" in stdout
    cell = json.loads((out / "sweep.json").read_text())["cells"][name]
    assert cell["status"] == "complete" and cell["attempts"] == 2 and cell["worker"] != worker
    assert _results(out) == serial


def test_ray_executor_without_ray_says_how_to_get_it(tmp_path):
    grid = _write(tmp_path, GRID)
    code = ("import sys; sys.modules['ray'] = None; from plantain_core.cli import main; "
            f"main(['sweep', {str(grid)!r}, '--out', {str(tmp_path / 'out')!r}, '--executor', 'ray'])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 1
    assert "--executor ray needs Ray: pip install 'plantain[distributed]'" in res.stderr
    assert "Traceback" not in res.stderr


REPORT_GRID = """probes = ["ray", "measure"]
models = ["tiny", "tiny-weights1"]
seeds = [0, 1]
layouts = ["heads"]

[options]
flips = 64  # p_fwer can go below 0.05 (1/65)
splits = 4
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    grid = _write(tmp, REPORT_GRID)
    out = tmp / "sweep"
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "8 of 8 cells complete; 2 model loads" in res.output  # tiny and tiny-weights1, once each
    res = runner.invoke(main, ["sweep", "report", str(out)])
    assert res.exit_code == 0, res.output
    return grid, out


def test_sweep_report_replication_is_the_test_of_seed_averaged_pairs(reported):
    """Per probe × model: FWER hits per seed are each cell's own, and the combined t is the
    paired t of the captures averaged over the seeds (scipy), not of the pooled passes."""
    from scipy.stats import ttest_rel

    from plantain_core.report.analysis import load_captures

    _, out = reported
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert len(summary["replication"]) == 4 and len(summary["cells"]) == 8
    for rep in summary["replication"]:
        cells = [out / f"{rep['probe']}-{rep['model']}-seed{s}-heads" for s in rep["seeds"]]
        own = [sum(1 for line in (c / "units.csv").read_text().splitlines()[1:]
                   if float(line.split(",")[8] or "nan") < 0.05) for c in cells]
        assert rep["hits_per_seed"] == own
        assert sum(rep["units_by_seeds_significant"].values()) == rep["n_units"] == 16
        caps = [load_captures(c, "heads") for c in cells]
        a = np.mean([x[0] for x in caps], axis=0)
        b = np.mean([x[1] for x in caps], axis=0)
        t = ttest_rel(a, b).statistic
        for top in rep["combined"]["top"]:
            assert top["t"] == pytest.approx(t[caps[0][2].index(top["unit"])], rel=1e-5)
    ray = next(r for r in summary["replication"] if r["probe"] == "ray" and r["model"] == "tiny")
    assert ray["combined"]["fwer_hits"] >= 10 and ray["units_by_seeds_significant"]["2"] >= 10


def test_sweep_report_correlates_probes_and_models(reported):
    _, out = reported
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert len(summary["probe_correlations"]) == 2 and len(summary["model_correlations"]) == 2
    for corr in summary["probe_correlations"] + summary["model_correlations"]:
        r = np.array(corr["r"], dtype=float)
        assert np.allclose(np.diag(r), 1) and np.allclose(r, r.T) and np.isfinite(r).all()
    # the probe × probe r on tiny is the correlation of the seed-averaged t maps, recomputed here
    from scipy.stats import ttest_rel

    from plantain_core.report.analysis import load_captures

    def tmap(probe):
        caps = [load_captures(out / f"{probe}-tiny-seed{s}-heads", "heads") for s in (0, 1)]
        return ttest_rel(np.mean([c[0] for c in caps], axis=0), np.mean([c[1] for c in caps], axis=0)).statistic

    corr = next(c for c in summary["probe_correlations"] if c["model"] == "tiny")
    i, j = corr["probes"].index("measure"), corr["probes"].index("ray")
    assert corr["r"][i][j] == pytest.approx(np.corrcoef(tmap("measure"), tmap("ray"))[0, 1], abs=1e-5)
    card = (out / "README.md").read_text()
    for section in ("## Cells", "## Replication over noise seeds", "## Probe × probe", "## Model × model", "## Steps",
                    "[ray-tiny-seed0-heads](ray-tiny-seed0-heads/README.md)", "say nothing about FLUX.2 [klein] or any"):
        assert section in card, section
    assert (out / "figures" / "correlation_0.png").stat().st_size > 0


def test_sweep_plan_counts_passes_and_hours(reported):
    grid, _ = reported
    res = CliRunner().invoke(main, ["sweep", "plan", str(grid), "--passes-per-second", "10", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    by = {c["cell"]: c for c in plan["cells"]}
    assert by["ray-tiny-seed0-heads"]["passes"] == 50  # 25 pairs × A and B
    assert by["measure-tiny-seed0-heads"]["passes"] == 50 + 14  # + the generated image's 14 steps
    assert plan["total_passes"] == 4 * 50 + 4 * 64
    assert plan["device_hours"] == pytest.approx(plan["total_passes"] / 10 / 3600)
    res = CliRunner().invoke(main, ["sweep", "plan", str(grid)])
    assert res.exit_code == 0 and "8 cells, 456 transformer passes" in res.output


def test_a_received_sweep_folder_is_checked(tmp_path, reported):
    import shutil

    _, out = reported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    state = json.loads((bad / "sweep.json").read_text())
    state["cells"]["../outside"] = next(iter(state["cells"].values()))
    (bad / "sweep.json").write_text(json.dumps(state))
    res = CliRunner().invoke(main, ["sweep", "report", str(bad)])
    assert res.exit_code == 1 and "'../outside' is not a folder name" in res.output
    link = tmp_path / "linked"
    shutil.copytree(out, link)
    (link / "ray-tiny-seed0-heads" / "escape").symlink_to("/etc")
    res = CliRunner().invoke(main, ["sweep", "report", str(link)])
    assert res.exit_code == 1 and "Traceback" not in res.output and "link" in res.output


def test_the_python_block_of_docs_sweeps_runs_as_shown(tmp_path, monkeypatch):
    import re

    doc = (pathlib.Path(__file__).parents[1] / "docs" / "sweeps.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, 'probes = ["ray"]\nmodels = ["tiny"]\nseeds = [0]\n[options]\nflips = 16\nsplits = 4\n')
    namespace: dict = {}
    exec(compile(blocks[0], "sweeps.md", "exec"), namespace)
    assert namespace["result"]["counts"]["complete"] == 1
    assert (tmp_path / "sweeps" / "grid" / "README.md").is_file()


def test_hostile_grids_and_sweep_folders_get_one_clear_error(tmp_path):
    """From a hostile-input sweep: each case is refused with one message, no traceback,
    nothing written outside the sweep folder."""
    runner = CliRunner()
    base = 'probes = ["ray"]\nmodels = ["tiny"]\nseeds = [0]\n[options]\nflips = 16\nsplits = 4\n'
    grid = _write(tmp_path, base)

    def refused(args, expected):
        res = runner.invoke(main, ["sweep", *map(str, args)])
        assert res.exit_code != 0 and expected in res.output, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception

    # a cell folder that is a link would write elsewhere
    out = tmp_path / "linked"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "ray-tiny-seed0").symlink_to(outside)
    refused([grid, "--out", out, "--no-figures"], "is a symbolic link")
    assert not any(outside.iterdir())
    # --out: empty, under a file, a run folder
    refused([grid, "--out", ""], "--out: an empty path")
    (tmp_path / "file").write_text("x")
    refused([grid, "--out", tmp_path / "file" / "sub"], "cannot make the folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    refused([grid, "--out", run], "is a run folder")
    # a received sweep.json with bad cell entries, or a folder in its place
    for entry in ('"x"', "{}", '{"status": [1]}', '{"status": "complete", "attempts": "abc"}'):
        bad = tmp_path / f"bad{len(entry)}"
        bad.mkdir()
        (bad / "sweep.json").write_text('{"cells": {"other": %s}}' % entry)
        refused([grid, "--out", bad], "is not a plantain sweep manifest")
    folder = tmp_path / "dirjson"
    (folder / "sweep.json").mkdir(parents=True)
    refused([grid, "--out", folder], "sweep.json is not a file")
    # grids: nesting, control characters in keys, huge grids, capture steps within the steps axis
    deep = _write(tmp_path, base.replace("seeds = [0]", "seeds = [0]\nlayouts = " + "[" * 500 + "]" * 500), "deep.toml")
    refused(["plan", deep], "nested too deeply")
    odd = _write(tmp_path, base + '"x\\nError: fine" = 1\n', "odd.toml")
    refused(["plan", odd], "options.'x\\nError: fine': unknown run option")
    huge = _write(tmp_path, base.replace("seeds = [0]", f"seeds = {list(range(2000))}\nsteps = {list(range(1, 1001))}"),
                  "huge.toml")
    refused(["plan", huge], "2,000,000 cells; a sweep may have at most 100,000")
    ok = _write(tmp_path, base.replace("[options]", "steps = [4]\n[options]\ncapture_steps = [2]"), "steps.toml")
    res = runner.invoke(main, ["sweep", "plan", str(ok)])
    assert res.exit_code == 0, res.output
    for rate in ("nan", "inf", "0"):
        refused(["plan", grid, "--passes-per-second", rate], "passes-per-second")


def test_a_changed_spec_is_not_taken_for_a_complete_cell(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text((pathlib.Path(__file__).parents[1] / "specs" / "ray.toml").read_text()
                    .replace('name = "ray"', 'name = "mine"'))
    grid = _write(tmp_path, 'probes = ["mine.toml"]\nmodels = ["tiny"]\nseeds = [0]\n[options]\nflips = 16\nsplits = 4\n')
    out = tmp_path / "sweep"
    runner = CliRunner()
    assert runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"]).exit_code == 0
    edited = spec.read_text().replace('direction = ["rendered", "albedo"]', 'direction = ["rendered", "flat albedo"]')
    assert edited != spec.read_text()
    spec.write_text(edited)  # still a valid spec: only its content differs
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(out), "--no-figures"])
    assert "already complete" not in res.output  # the edited spec is not the one its results came from
    assert res.exit_code == 1, res.output
    assert "cannot resume" in res.output and "mine.toml changed since the run started (sha256 was" in res.output


def test_a_truncated_units_csv_stops_the_sweep_report(tmp_path, reported):
    import shutil

    _, out = reported
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    csv = cut / "ray-tiny-seed0-heads" / "units.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:5]) + "\n")
    res = CliRunner().invoke(main, ["sweep", "report", str(cut), "--no-figures"])
    assert res.exit_code == 1 and "has 4 rows, the run has 16 units" in res.output, res.output


def test_one_model_spelled_two_ways_is_a_grid_error(tmp_path):
    grid = _write(tmp_path, 'probes = ["ray"]\nmodels = ["tiny", "TINY", "plantain/tiny", "tiny-weights0", '
                            '"tiny-weights3", "tiny-sd3"]\nseeds = [0]\n')
    res = CliRunner().invoke(main, ["sweep", "plan", str(grid)])
    assert res.exit_code == 1
    for j, name in ((1, "TINY"), (2, "plantain/tiny"), (3, "tiny-weights0")):
        assert f"models[{j}]: '{name}' is the same model as models[0] 'tiny'" in res.output
    assert "models[4]" not in res.output and "models[5]" not in res.output
