"""The public API as users meet it: docs/python-api.md executed, load_run against the
files and a scipy recomputation, commands printed by plantain run literally, the
installed example plugin with its own tests, and the parameter-count rule."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import plantain_core as pt
from plantain_core.cli import main
from plantain_core.config import ConfigError, RunConfig
from plantain_core.testing import run_on_tiny, write_spec

from conftest import ROOT, run_cli

DOCS = ROOT / "docs"
BIN = pathlib.Path(sys.executable).parent


def test_python_api_page_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (DOCS / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"python-api.md block {i}", "exec"), namespace)
    run = namespace["run"]
    assert run.status == "complete" and (tmp_path / "runs" / "ray-tiny" / "README.md").is_file()
    assert not (tmp_path / "runs" / "never").exists()  # the refused option wrote nothing
    # the commented outputs on the page are the real ones
    assert namespace["config"].command("runs/ray-tiny") in text
    assert str(namespace["probe"]) in text


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "ray"
    return run_on_tiny("ray", out, layouts=["heads", "slices16"], seed=2)


def test_load_run_equals_units_csv_and_a_scipy_recomputation(ray_run):
    from scipy import stats

    run = pt.load_run(ray_run.path)
    assert run.config == ray_run.config and run.config.seed == 2 and run.status == "complete"
    for layout in ("heads", "slices16"):
        table = run.units(layout)
        csv_rows = [line.split(",") for line in (run.path / "units.csv").read_text().splitlines()[1:]
                    if line.startswith(layout + ",")]
        assert list(table["unit"]) == [r[1] for r in csv_rows]
        np.testing.assert_array_equal(table["t"].to_numpy(), [float(r[4]) if r[4] else np.nan for r in csv_rows])
        a, b, units, pair_ids = run.captures(layout)
        assert list(units) == list(table["unit"]) and len(pair_ids) == 25
        t_ref = stats.ttest_rel(a, b, axis=0).statistic
        np.testing.assert_allclose(table["t"].to_numpy(), t_ref, rtol=1e-8)
    top = run.top(5, "slices16")
    assert list(top["t"].abs()) == sorted(top["t"].abs(), reverse=True)
    assert top["t"].abs().iloc[0] == run.units("slices16")["t"].abs().max()
    assert run.summary["layouts"]["heads"]["max_abs_t_unit"] == run.top(1)["unit"].iloc[0]
    with pytest.raises(pt.PlantainError, match="layout 'slice16' was not captured"):
        run.units("slice16")


def test_manifest_and_card_name_every_provider(ray_run):
    providers = ray_run.manifest["providers"]
    assert set(providers) == {"spec", "generator", "interpreter", "model_loader"}
    assert providers["generator"] == {"plugin": "core", "distribution": "plantain", "version": pt.__version__}
    card = ray_run.card_path.read_text()
    assert ("Supplied by: spec: plugin `core` (plantain 0.1.0); generator: plugin `core` (plantain 0.1.0); "
            "interpreter: plugin `core` (plantain 0.1.0); model loader: plugin `core` (plantain 0.1.0).") in card
    assert str(ray_run.path.parent) not in card  # no local paths in what gets published


def _commands(block: str) -> list[list[str]]:
    return [shlex.split(line) for line in block.strip().splitlines()]


def test_card_reproduce_block_run_literally_redoes_the_run(ray_run, tmp_path):
    card = ray_run.card_path.read_text()
    block = re.search(r"## Reproduce\n\nFrom the folder that holds `ray/`:\n\n```\n(.*?)```", card, flags=re.S)
    assert block, card[card.index("## Reproduce"):]
    commands = _commands(block[1])
    assert commands[0][:2] == ["plantain", "run"] and commands[1] == ["plantain", "report", "ray"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    for cmd in commands:
        quiet = ["--no-figures"] + ["--no-progress"] * (cmd[1] == "run")  # the original ran without figures
        proc = subprocess.run(cmd + quiet, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    for name in ("captures/heads.npz", "captures/slices16.npz", "summary.json", "units.csv", "blocks.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (ray_run.path / name).read_bytes(), name
    assert (tmp_path / "ray" / "README.md").read_text() == card


def test_resume_rebuilds_the_config_and_refuses_other_capture_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, "probe", n_pairs=4)
    out = tmp_path / "run"
    first = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--seed", "4",
                                      "--batch-size", "2", "--flips", "30", "--out", str(out), "--no-figures",
                                      "--no-progress"])
    assert first.exit_code == 0, first.output
    before = (out / "captures" / "heads.npz").read_bytes()
    # nothing but --out and --resume: the recorded config is used, captures untouched
    again = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--resume", "--no-figures", "--no-progress",
                                      "--flips", "60"])
    assert again.exit_code == 0, again.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["flips"] == 60 and manifest["config"]["seed"] == 4 and manifest["config"]["model"] == "tiny"
    assert (out / "captures" / "heads.npz").read_bytes() == before
    for args, said in ((["--batch-size", "4"], "--batch-size: was 2, now 4"), (["--token-scope", "text"],
                                                                                 "--token-scope: was all, now text")):
        refused = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--resume", *args])
        assert refused.exit_code == 1 and said in refused.stderr, refused.output
    # a scheduler re-running one command line: --resume on a new folder starts the run
    fresh = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--out",
                                      str(tmp_path / "new"), "--resume", "--no-figures", "--no-progress"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["status"] == "complete"


CONFIGS = [
    dict(probe="ray"),
    dict(probe="specs/my probe.toml", model="tiny", dtype="float16", layouts="slices16", token_scope="text",
         height=64, width=96, batch_size=3, seed=9, flips=17, splits=5, thresholds=[2.5, 4]),
    dict(probe="measure", model="black-forest-labs/FLUX.2-klein-4B", revision="abc123", device="cuda:1",
         offload=True, stats_seed=3),
]


@pytest.mark.parametrize("values", CONFIGS)
def test_config_round_trips_through_dict_and_command_line(values):
    config = RunConfig(**values)
    assert RunConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    # the command line, parsed by the real run command, gives the same config back
    from plantain_core.cli import run as run_cmd

    words = shlex.split(config.command("OUT"))[2:]
    seen = {}
    original = run_cmd._run
    try:
        run_cmd._run = lambda cfg, options: seen.update(config=cfg)
        result = CliRunner().invoke(main, ["run", *words])
    finally:
        run_cmd._run = original
    assert result.exit_code == 0, result.output
    assert seen["config"] == config.evolve(stats_seed=None)


@pytest.mark.parametrize("values,message", [
    (dict(height=100), "--height: 100 is not a multiple of 16"),
    (dict(seed=-1), "--seed: -1 is out of range"),
    (dict(seed=2**63), "--seed: 9223372036854775808 is out of range"),
    (dict(flips=10**9), "--flips: 1000000000 is out of range"),
    (dict(layouts=["heads", "slice16"]), "--units: unknown unit layout 'slice16' (did you mean 'slices16'?)"),
    (dict(dtype="int8"), "--dtype: 'int8' is not a dtype"),
    (dict(thresholds=[3, float("nan")]), "--thresholds: "),
    (dict(thresholds="3,3"), "--thresholds: '3,3': a threshold is given twice"),
    (dict(token_scope="img"), "--token-scope: unknown token scope 'img' (did you mean 'image'?)"),
    (dict(batch_size=True), "--batch-size: expected an integer, got True"),
    (dict(model="ti\x00ny"), "--model: expected a non-empty printable string"),
])
def test_bad_config_values_name_the_option(values, message):
    with pytest.raises(ConfigError) as exc:
        RunConfig(probe="ray", **values)
    assert str(exc.value).startswith(message)


def test_unknown_keywords_and_manifest_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown run option 'heigth' \(did you mean 'height'\?\)"):
        pt.run("ray", model="tiny", heigth=128)
    with pytest.raises(ConfigError, match=r"run/manifest.json: config: unknown key 'evil'"):
        RunConfig.from_dict({"probe": "ray", "evil": 1}, where="run/manifest.json: config")
    with pytest.raises(ConfigError, match=r"config: --units: expected layout names"):
        RunConfig.from_dict({"probe": "ray", "layouts": 3})


def test_installed_example_plugin_generator_interpreter_and_its_own_tests(example_site, tmp_path):
    listing = run_cli("list", "--json", pythonpath=[example_site])
    probes = {p["name"]: p for p in json.loads(listing.stdout)["probes"]}
    assert probes["warmth"]["version"] == "0.4.0"
    assert (probes["negation"]["status"], probes["negation"]["kind"], probes["negation"]["pairs"]) == ("OK", "negation", 6)
    # the example package's tests, written with plantain_core.testing, pass against this plantain
    # this checkout's plantain_core first: the example's tests run against the plantain under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "examples" / "plantain-example" / "tests")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "10 passed" in proc.stdout, proc.stdout + proc.stderr
    # a CLI run records the third party in the manifest and the card
    out = tmp_path / "negation"
    res = run_cli("run", "negation", "--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5",
                  "--out", str(out), "--no-figures", "--no-progress", pythonpath=[example_site])
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["providers"]["generator"] == {"plugin": "example", "distribution": "plantain-example",
                                                  "version": "0.4.0"}
    assert manifest["providers"]["spec"] == manifest["providers"]["interpreter"] == manifest["providers"]["generator"]
    card = (out / "README.md").read_text()
    assert "generator: plugin `example` (plantain-example 0.4.0)" in card and "### Sign balance" in card
    assert "plantain run negation --model tiny" in card  # a plugin's probe is reproduced by name


def test_no_function_in_cli_or_runner_takes_more_than_eight_parameters():
    files = sorted((ROOT / "plantain_core" / "cli").glob("*.py")) + [ROOT / "plantain_core" / "capture" / "runner.py",
                                                                    ROOT / "plantain_core" / "execute.py",
                                                                    ROOT / "plantain_core" / "capture" / "passes.py"]
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                if n > 8:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({n})")
    assert long == []


def test_top_level_import_stays_light():
    code = "import sys, plantain_core; print(sorted(m for m in ('numpy', 'torch', 'diffusers', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert set(pt.__all__) <= set(dir(pt))
    assert pt.ProbeResult.__module__ == "plantain_core.report.analysis" and pt.LayoutStats.__module__ == "plantain_core.stats.engine"
