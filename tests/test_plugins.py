"""Plugin discovery through real entry points, failures, strict mode, blocking, duplicates."""

import json
import sys

import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.errors import PluginError
from plantain_core.plugins import get_registry, load_registry
from plantain_core.testing import write_plugin_dist

from conftest import run_cli

BROKEN_IMPORT = """
raise RuntimeError("boom at import")
"""

BROKEN_REGISTER = """
from plantain_core import hookimpl

@hookimpl
def plantain_register_generators(register):
    raise ValueError("boom at register")
"""

DUPLICATE = """
from plantain_core import hookimpl

class Fake:
    description = "a second text-pair"
    def validate(self, stimuli, spec_dir):
        return []
    def pairs(self, spec):
        return []

@hookimpl
def plantain_register_generators(register):
    register("text-pair", Fake())
"""


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A directory on sys.path where tests lay out plugin distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_come_through_entry_points_with_provenance():
    reg = get_registry()
    assert set(reg.generators) >= {"text-pair", "fixed-image-text-pair", "image-pair"}
    entry = reg.generators["image-pair"]
    assert entry.provider.plugin == "core"
    assert entry.provider.distribution == "plantain"
    assert entry.provider.version == "0.1.0"
    assert entry.provider.module == "plantain_plugins.core"
    assert reg.interpreters["default"].provider.plugin == "core"
    assert [p.plugin for _, p in reg.spec_dirs][0] == "core"


def test_installed_example_package_is_discovered(example_site):
    res = run_cli("list", "--json", pythonpath=[example_site])
    assert res.returncode == 0, res.stderr
    probes = {p["name"]: p for p in json.loads(res.stdout)["probes"]}
    warmth = probes["warmth"]
    assert warmth["status"] == "OK"
    assert warmth["plugin"] == "example"
    assert warmth["distribution"] == "plantain-example"
    assert warmth["version"] == "0.3.0"
    assert warmth["pairs"] == 6
    assert warmth["kind"] == "text-pair"
    assert {"measure", "otherview", "after", "ray", "dense"} <= set(probes)


def test_plugin_failing_at_import_is_recorded_and_list_still_works(plugin_path):
    write_plugin_dist(plugin_path, "broken_plug", BROKEN_IMPORT, distribution="broken-plug", version="9.9")
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {p["name"] for p in data["probes"]} >= {"measure", "ray"}
    failure = [f for f in data["plugin_failures"] if f["plugin"] == "broken_plug"]
    assert failure == [{"plugin": "broken_plug", "distribution": "broken-plug", "version": "9.9", "stage": "import",
                        "error": "RuntimeError: boom at import"}]
    plugins = CliRunner().invoke(main, ["plugins"])
    assert "ERROR plugin broken_plug (broken-plug 9.9) failed at import: RuntimeError: boom at import" in plugins.output
    assert "Traceback" not in plugins.output
    # --debug shows where it failed: the plugin's own line
    plugins = CliRunner().invoke(main, ["plugins", "--debug"])
    assert "Traceback (most recent call last)" in plugins.output and 'raise RuntimeError("boom at import")' in plugins.output


def test_plugin_failing_at_registration_is_recorded(plugin_path):
    write_plugin_dist(plugin_path, "reg_plug", BROKEN_REGISTER)
    reg = load_registry()
    (failure,) = [f for f in reg.failures if f.plugin == "reg_plug"]
    assert failure.stage == "plantain_register_generators"
    assert "boom at register" in failure.error
    assert "text-pair" in reg.generators  # the others keep working


def test_strict_mode_makes_failures_fatal(plugin_path, monkeypatch):
    write_plugin_dist(plugin_path, "broken_plug", BROKEN_IMPORT, distribution="broken-plug")
    monkeypatch.setenv("PLANTAIN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken_plug"):
        load_registry()
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code != 0
    assert "plugin broken_plug (broken-plug 0.1.0) failed at import: RuntimeError: boom at import" in result.output
    assert "Traceback" not in result.output


def test_disable_blocks_a_plugin_by_name(plugin_path, monkeypatch):
    write_plugin_dist(plugin_path, "broken_plug", BROKEN_IMPORT)
    monkeypatch.setenv("PLANTAIN_DISABLE_PLUGINS", "broken_plug, nonexistent")
    monkeypatch.setenv("PLANTAIN_STRICT_PLUGINS", "1")
    reg = load_registry()  # strict, yet no failure: the broken plugin was never imported
    assert reg.failures == []
    assert reg.plugins["broken_plug"].status == "disabled"
    assert "broken_plug" not in sys.modules


def test_duplicate_name_is_an_error_naming_both_providers(plugin_path):
    write_plugin_dist(plugin_path, "dup_plug", DUPLICATE, distribution="dup-plug", version="1.2")
    reg = load_registry()
    message = "duplicate generator name 'text-pair': provided by core (plantain 0.1.0) and by dup_plug (dup-plug 1.2)"
    assert [f.error for f in reg.failures if f.plugin == "dup_plug"] == [message]
    with pytest.raises(PluginError) as exc:
        reg.get("generator", "text-pair")
    assert str(exc.value) == message + "; it cannot be used until one plugin is removed or disabled"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(Exception) as exc:
        get_registry().get("generator", "text-pairs")
    assert "unknown generator 'text-pairs' (did you mean 'text-pair'" in str(exc.value)


def test_listing_does_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from plantain_core.cli import main\n"
        "r = CliRunner().invoke(main, ['list', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
