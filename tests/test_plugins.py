"""Plugin discovery through real entry points, failures, strict mode, blocking, duplicates."""

import json
import sys

import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.errors import PluginError
from plantain_core.plugins import get_registry, load_registry
from plantain_core.testing import spec_data, write_plugin_dist, write_spec

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
    assert warmth["version"] == "0.4.0"
    assert warmth["pairs"] == 6
    assert warmth["kind"] == "text-pair"
    assert {"measure", "otherview", "after", "ray", "dense"} <= set(probes)


def test_installed_example_package_adds_a_model_family(example_site, tmp_path):
    """A third-party family (Chroma) through the documented contract: registered, counted
    offline, run end to end, and refused for a kind its pipeline cannot take."""
    res = run_cli("plugins", "--json", pythonpath=[example_site])
    supplies = {p["plugin"]: p["supplies"] for p in json.loads(res.stdout)["plugins"]}
    assert supplies["example"]["family"] == ["chroma"] and set(supplies["example"]["model"]) == {"chroma", "tiny-chroma"}
    units = run_cli("units", "tiny-chroma", "--json", pythonpath=[example_site])
    assert units.returncode == 0, units.stderr
    assert json.loads(units.stdout)["family"] == "chroma" and json.loads(units.stdout)["layouts"]["heads"]["units"] == 16
    out = tmp_path / "ray-chroma"
    run = run_cli("run", "ray", "--model", "tiny-chroma", "--units", "heads", "--flips", "20", "--splits", "5",
                  "--out", str(out), "--no-figures", "--no-progress", pythonpath=[example_site])
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["family"] == "chroma" and manifest["providers"]["model_loader"]["plugin"] == "example"
    assert "Model family `chroma`" in (out / "README.md").read_text()
    refused = run_cli("run", "measure", "--model", "tiny-chroma", "--out", str(tmp_path / "no"), pythonpath=[example_site])
    assert refused.returncode == 1 and "model family chroma" in refused.stderr and not (tmp_path / "no").exists()


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


def test_a_name_registered_twice_makes_every_probe_using_it_an_error(plugin_path):
    write_plugin_dist(plugin_path, "dup_plug", DUPLICATE, distribution="dup-plug", version="1.2")
    both = "provided by core (plantain 0.1.0) and by dup_plug (dup-plug 1.2)"
    listing = json.loads(CliRunner().invoke(main, ["list", "--json"]).stdout)
    status = {p["name"]: (p["status"], p["error"]) for p in listing["probes"]}
    for name in ("dense", "ray"):  # the text-pair probes
        assert status[name][0] == "ERROR" and both in status[name][1], status[name]
    assert status["measure"] == ("OK", None)  # another generator keeps working
    shown = CliRunner().invoke(main, ["show", "ray"])
    assert shown.exit_code == 1 and both in shown.stderr
    checked = CliRunner().invoke(main, ["validate"])
    assert checked.exit_code == 1 and both in checked.stderr
    assert "Error: " in checked.stderr and checked.stderr.count("dense.toml: generator: duplicate generator") == 1
    ran = CliRunner().invoke(main, ["run", "ray", "--model", "tiny", "--out", str(plugin_path / "run")])
    assert ran.exit_code == 1 and both in ran.stderr and not (plugin_path / "run").exists()


def test_a_plugin_that_fails_to_import_fails_validate_and_explains_unknown_probes(plugin_path):
    write_plugin_dist(plugin_path, "broken_plug", BROKEN_IMPORT, distribution="broken-plug", version="9.9")
    checked = CliRunner().invoke(main, ["validate"])
    assert checked.exit_code == 1
    assert "plugin: plugin broken_plug (broken-plug 9.9) failed at import: RuntimeError: boom at import" in checked.stderr
    ran = CliRunner().invoke(main, ["run", "negation", "--model", "tiny"])
    assert ran.exit_code == 1
    assert ran.stderr.splitlines()[-1].startswith("Error: unknown probe 'negation'")
    assert ran.stderr.splitlines()[-1].endswith(
        "; plugins that failed to load: plugin broken_plug (broken-plug 9.9) failed at import: RuntimeError: boom at import")


GENERATOR_CRASH = """
from plantain_core import hookimpl

class Crashing:
    description = "validates, then cannot build pairs when the probe runs"
    calls = 0
    def validate(self, stimuli, spec_dir):
        return []
    def pairs(self, spec):
        from plantain_core import Pair, Stimulus
        Crashing.calls += 1
        if Crashing.calls > 1:  # validation builds the pairs once; the run asks again
            raise OSError("stimulus server went away")
        return [Pair(f"p{i}", Stimulus(f"a {i}"), Stimulus(f"b {i}")) for i in range(3)]

class BadValidate:
    description = "returns garbage from validate"
    def validate(self, stimuli, spec_dir):
        return ["not a pair"]
    def pairs(self, spec):
        return []

class BadPairs:
    description = "returns integer ids"
    def validate(self, stimuli, spec_dir):
        return []
    def pairs(self, spec):
        from plantain_core import Pair, Stimulus
        return [Pair(i, Stimulus(f"a {i}"), Stimulus(f"b {i}")) for i in range(3)]

@hookimpl
def plantain_register_generators(register):
    register("crashing", Crashing())
    register("bad-validate", BadValidate())
    register("bad-pairs", BadPairs())
"""


def test_generator_faults_name_plugin_distribution_and_version(plugin_path, tmp_path):
    write_plugin_dist(plugin_path, "gen_plug", GENERATOR_CRASH, distribution="gen-plug", version="2.0")
    who = "generator {!r} from plugin gen_plug (gen-plug 2.0)"
    for generator, said in (("bad-validate", who.format("bad-validate") + " failed to validate: TypeError: "
                                             "validate() must return (key path, message) string pairs"),
                            ("bad-pairs", who.format("bad-pairs") + ": pair 0 has id 0; ids must be non-empty "
                                          "printable strings")):
        spec = write_spec(tmp_path / generator, "probe", spec_data("probe", generator=generator))
        checked = CliRunner().invoke(main, ["validate", str(spec)])
        assert checked.exit_code == 1 and said in checked.stderr, checked.stderr
        assert "Traceback" not in checked.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_plugin_traceback_of_a_crash(plugin_path, tmp_path, how):
    write_plugin_dist(plugin_path, "gen_plug", GENERATOR_CRASH, distribution="gen-plug", version="2.0")
    spec = write_spec(tmp_path, "probe", spec_data("probe", generator="crashing"))
    said = ("Error: generator 'crashing' from plugin gen_plug (gen-plug 2.0) failed to build the pairs of "
            f"{spec}: OSError: stimulus server went away")

    def run(*extra, env=None):
        type(get_registry().generators["crashing"].obj).calls = 0
        return CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--out", str(tmp_path / "run"), *extra],
                                  env=env)

    plain = run()
    assert plain.exit_code == 1 and plain.stderr.strip() == said
    debug = run("--debug") if how == "flag" else run(env={"PLANTAIN_DEBUG": "1"})
    assert debug.exit_code == 1 and debug.stderr.strip().endswith(said)
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'raise OSError("stimulus server went away")' in debug.stderr  # the plugin's own line
    assert not (tmp_path / "run").exists()
