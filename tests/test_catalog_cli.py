"""Spec discovery (built-in, PLANTAIN_SPEC_PATH, --spec-dir, paths) and the front-door commands."""

import json
import os
import pathlib

import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.testing import spec_data, write_spec

from conftest import run_cli

SEEDS = {"measure": ("fixed-image-text-pair", 25), "otherview": ("fixed-image-text-pair", 30),
         "after": ("image-pair", 25), "ray": ("text-pair", 25), "dense": ("text-pair", 25)}


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def probes(result):
    assert result.exit_code == 0, result.output
    return {p["name"]: p for p in json.loads(result.stdout)["probes"]}


def test_list_json_shows_the_seed_probes_with_provider():
    rows = probes(invoke("list", "--json"))
    for name, (kind, n) in SEEDS.items():
        assert rows[name]["kind"] == kind and rows[name]["pairs"] == n and rows[name]["status"] == "OK"
        assert (rows[name]["plugin"], rows[name]["distribution"]) == ("core", "plantain")


def test_spec_on_spec_path_appears_without_code(tmp_path, monkeypatch):
    write_spec(tmp_path / "a", "mine", spec_data("mine", n_pairs=4))
    monkeypatch.setenv("PLANTAIN_SPEC_PATH", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "missing")]))
    row = probes(invoke("list", "--json"))["mine"]
    assert (row["status"], row["pairs"], row["origin"]) == ("OK", 4, "PLANTAIN_SPEC_PATH")
    text = invoke("list").output
    line = next(x for x in text.splitlines() if x.startswith("mine "))
    assert "4 pairs  OK     PLANTAIN_SPEC_PATH  mine test probe  [" in line and line.endswith("mine.toml]")


def test_broken_spec_is_listed_as_error_and_validate_names_file_and_key(tmp_path, monkeypatch):
    path = write_spec(tmp_path, "bad", spec_data("bad", n_pairs=2))
    monkeypatch.setenv("PLANTAIN_SPEC_PATH", str(tmp_path))
    row = probes(invoke("list", "--json"))["bad"]
    assert row["status"] == "ERROR"
    assert row["error"] == "stimuli.pairs: at least 3 pairs are needed for a paired test, got 2"
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert f"{path.resolve()}: stimuli.pairs: at least 3 pairs" in result.output
    assert "Traceback" not in result.output
    # with no path, validate checks every known probe, the broken one included
    assert invoke("validate").exit_code == 1


def test_validate_all_builtins_ok():
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "5 spec file(s) OK"


def test_name_defined_twice_is_an_error_naming_both_files(tmp_path, monkeypatch):
    first = write_spec(tmp_path / "one", "twin")
    second = write_spec(tmp_path / "two", "twin")
    monkeypatch.setenv("PLANTAIN_SPEC_PATH", str(tmp_path / "one"))
    row = probes(invoke("list", "--json", "--spec-dir", str(tmp_path / "two")))["twin"]
    assert row["status"] == "ERROR"
    assert row["error"] == f"probe 'twin' is defined twice: {first.resolve()} and {second.resolve()}"
    result = invoke("show", "twin", "--spec-dir", str(tmp_path / "two"))
    assert result.exit_code == 1 and "defined twice" in result.output


def test_spec_dir_option_and_direct_path(tmp_path):
    path = write_spec(tmp_path, "direct")
    assert "direct" in probes(invoke("list", "--json", "--spec-dir", str(tmp_path)))
    shown = invoke("show", str(path), "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert [p["id"] for p in data["pairs"]] == ["p0", "p1", "p2"]
    assert data["spec"]["interpreter"] == "default"


def test_show_lists_resolved_spec_and_pairs():
    result = invoke("show", "otherview")
    assert result.exit_code == 0, result.output
    assert 'generator = "fixed-image-text-pair"' in result.output
    assert "# 30 pairs (A = viewpoint, B = mention)" in result.output
    assert "A: Render this kitchen from the viewpoint of an adult human" in result.output
    assert "B: Render this kitchen with an alien with non-visual senses in it" in result.output
    assert "meta: {'creature': 'a child', 'rank': 3}" in result.output


def test_unknown_probe_suggests():
    result = invoke("show", "mesure")
    assert result.exit_code == 1
    assert "unknown probe 'mesure' (did you mean 'measure'?)" in result.output
    assert "Traceback" not in result.output


def test_unknown_command_suggests():
    result = invoke("lst")
    assert result.exit_code == 2 and "did you mean 'list'" in result.output


def test_plugins_json_lists_hooks_and_supplies():
    result = invoke("plugins", "--json")
    data = json.loads(result.stdout)
    core = next(p for p in data["plugins"] if p["plugin"] == "core")
    assert core["distribution"] == "plantain" and core["version"] == "0.1.0"
    assert "plantain_register_generators" in core["hooks"]
    assert core["supplies"]["generator"] == ["fixed-image-text-pair", "image-pair", "text-pair"]


def test_console_script_runs_in_a_subprocess(tmp_path):
    write_spec(tmp_path, "sub")
    res = run_cli("list", "--spec-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("sub ") for line in res.stdout.splitlines())
    bad = run_cli("validate", str(tmp_path / "nope.toml"))
    assert bad.returncode == 1 and "nope.toml: file not found" in bad.stderr
