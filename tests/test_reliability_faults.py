"""Reliability, part 2: faults during a run. Broken plugins, a plugin interpreter or
generator that raises mid-run, non-finite activations and dtypes the device cannot
run: a message that names the culprit, no traceback, and nothing lost (a run folder
is kept and marked failed once it holds captures, and ``--resume`` finishes it)."""

from __future__ import annotations

import json
import pathlib
import re
import uuid

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.models import tiny
from plantain_core.plugins import reset_registry
from plantain_core.testing import spec_data, write_spec

FAST = ("--no-figures", "--no-progress", "--flips", "20", "--splits", "10")

PLUGIN = """
import os

from plantain_core import Interpretation, Pair, Stimulus, hookimpl

calls = {"pairs": 0}


class Boom:
    description = "an interpreter that fails while BOOM_BROKEN is set"

    def interpret(self, spec, pairs, result):
        if os.environ.get("BOOM_BROKEN") == "1":
            raise RuntimeError("no axis in meta")
        return Interpretation(numbers={"top_unit": result.primary.units[0], "n": len(pairs)})


class Flaky:
    description = "a generator whose pairs() works once (validation), then fails"

    def validate(self, stimuli, spec_dir):
        return []

    def pairs(self, spec):
        calls["pairs"] += 1
        if calls["pairs"] > 1:
            raise OSError("stimulus server went away")
        return [Pair(f"p{i}", Stimulus(f"a cat {i}"), Stimulus(f"a dog {i}")) for i in range(3)]


@hookimpl
def plantain_register_interpreters(register):
    register("boom", Boom())


@hookimpl
def plantain_register_generators(register):
    register("flaky", Flaky())
"""

BROKEN_IMPORT = 'raise ImportError("needs libfoo")\n'
BROKEN_REGISTER = """
from plantain_core import hookimpl

@hookimpl
def plantain_register_interpreters(register):
    raise ValueError("boom at register")
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny-model runs gain nothing from threads; on a busy shared CPU two OpenMP threads
    per process slow them down many times over (captures are the same either way)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def add_plugin(site, entry_name, source, distribution, version="0.1.0"):
    """A plugin distribution under ``site``; its module name is new each time, so no test
    sees a module another test imported (sys.modules outlives sys.path changes)."""
    from plantain_core.testing import write_plugin_dist

    module = f"{entry_name}_{uuid.uuid4().hex[:8]}"
    write_plugin_dist(site, module, source, entry_name=entry_name, distribution=distribution, version=version)


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    site = tmp_path / "site"
    add_plugin(site, "boom_plug", PLUGIN, "boom-plug", "0.3.1")
    monkeypatch.syspath_prepend(str(site))
    return site


def invoke(args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def load_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --- plugin faults ----------------------------------------------------------------------

def test_interpreter_raising_mid_run_marks_the_run_failed_and_keeps_everything(tmp_path, plugin_path, monkeypatch):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", interpreter="boom", n_pairs=4))
    out = tmp_path / "run"
    monkeypatch.setenv("BOOM_BROKEN", "1")
    result = invoke(["run", spec, "--model", "tiny", "--out", out, "--units", "heads", *FAST])
    who = "interpreter 'boom' from plugin boom_plug (boom-plug 0.3.1) failed: RuntimeError: no axis in meta"
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    resume = (f"plantain run {spec} --model tiny --dtype fp32 --units heads --height 128 --width 128 --batch-size 16 "
              f"--seed 0 --flips 20 --splits 10 --out {out} --resume")
    assert result.stderr == (f"Error: {who}; the run is marked failed (statistics, result files and card were written "
                             f"without its analyses). Fix the plugin, then: {resume}\n")
    assert f"note: {who}" in result.stdout  # the summary is still shown
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == who
    caps = load_npz(out / "captures" / "heads.npz")
    assert caps["done"].tolist() == [True] * 4 and np.isfinite(caps["a"]).all() and caps["a"].shape == (4, 16)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interpreter_error"] == who and who in summary["notes"]
    assert summary["interpretation"] == {} and summary["layouts"]["heads"]["n_tested"] == 16
    assert who in (out / "README.md").read_text()
    assert (out / "units.csv").read_text().count("\n") == 17
    report = invoke(["report", out, "--no-figures"])
    assert report.exit_code == 1 and report.stderr == f"Error: {who}; the files were written without its analyses\n"

    # The plugin is fixed: --resume captures nothing new and finishes the run.
    monkeypatch.delenv("BOOM_BROKEN")
    result = invoke(["run", spec, "--model", "tiny", "--out", out, "--units", "heads", "--resume", *FAST])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and "error" not in manifest
    summary = json.loads((out / "summary.json").read_text())
    assert "interpreter_error" not in summary and "notes" not in summary
    assert summary["interpretation"] == {"top_unit": "joint[0].h00", "n": 4}
    again = load_npz(out / "captures" / "heads.npz")
    np.testing.assert_array_equal(again["a"], caps["a"])
    np.testing.assert_array_equal(again["b"], caps["b"])


def test_generator_failing_after_validation_is_named_and_leaves_no_folder(tmp_path, plugin_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", generator="flaky"))
    out = tmp_path / "run"
    result = invoke(["run", spec, "--model", "tiny", "--out", out, *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr == (f"Error: generator 'flaky' from plugin boom_plug (boom-plug 0.3.1) failed to build the "
                             f"pairs of {spec.resolve()}: OSError: stimulus server went away\n")
    assert not out.exists()


def test_broken_plugins_are_reported_and_the_rest_keeps_working(tmp_path, monkeypatch):
    site = tmp_path / "site"
    add_plugin(site, "imp_plug", BROKEN_IMPORT, "imp-plug")
    add_plugin(site, "reg_plug", BROKEN_REGISTER, "reg-plug")
    monkeypatch.syspath_prepend(str(site))
    warnings = ["warning: plugin imp_plug (imp-plug 0.1.0) failed at import: ImportError: needs libfoo",
                "warning: plugin reg_plug (reg-plug 0.1.0) failed at plantain_register_interpreters: "
                "ValueError: boom at register"]

    listing = invoke(["list"])
    assert listing.exit_code == 0 and listing.stderr.splitlines() == warnings
    assert re.search(r"^measure\s", listing.stdout, flags=re.M)

    # A probe that does not need them runs, and says what is broken.
    spec = write_spec(tmp_path / "specs", "probe")
    out = tmp_path / "run"
    result = invoke(["run", spec, "--model", "tiny", "--out", out, "--units", "heads", *FAST])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == warnings
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"

    # A probe that needs a broken plugin's interpreter: the spec error, with the likely cause above it.
    needy = write_spec(tmp_path / "specs2", "needy", spec_data("needy", interpreter="boom"))
    result = invoke(["run", needy, "--model", "tiny", "--out", tmp_path / "needy", *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[:2] == warnings
    assert lines[2].startswith(f"Error: {needy.resolve()}: interpreter: unknown interpreter 'boom'")
    assert not (tmp_path / "needy").exists()

    # Strict mode: the first failure is fatal, before any work (a new process loads plugins afresh).
    reset_registry()
    result = invoke(["run", spec, "--model", "tiny", "--out", tmp_path / "strict", *FAST],
                    env={"PLANTAIN_STRICT_PLUGINS": "1"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == ("Error: plugin imp_plug (imp-plug 0.1.0) failed at import: ImportError: needs libfoo "
                             "[PLANTAIN_STRICT_PLUGINS is set]\n")
    assert not (tmp_path / "strict").exists()


# --- numerical faults -------------------------------------------------------------------

def _scaled_tiny(monkeypatch, scale, calls=None):
    """The tiny model with joint[1]'s value projections scaled: huge but finite in fp32."""
    real = tiny.build_tiny_pipeline

    def build(seed=0):
        if calls is not None:
            calls.append(seed)
        pipe = real(seed=seed)
        attn = pipe.transformer.transformer_blocks[1].attn
        with torch.no_grad():
            attn.to_v.weight.mul_(scale)
            attn.add_v_proj.weight.mul_(scale)
        return pipe

    monkeypatch.setattr(tiny, "build_tiny_pipeline", build)


def test_fp16_overflow_is_detected_and_names_pass_and_unit(tmp_path, monkeypatch):
    _scaled_tiny(monkeypatch, 3e4)
    spec = write_spec(tmp_path / "specs", "probe")
    ok = invoke(["run", spec, "--model", "tiny", "--dtype", "fp32", "--out", tmp_path / "fp32", *FAST])
    assert ok.exit_code == 0, ok.output
    heads = load_npz(tmp_path / "fp32" / "captures" / "heads.npz")
    assert np.isfinite(heads["a"]).all() and heads["a"].max() > 1e4  # finite in fp32 ...

    out = tmp_path / "fp16"
    result = invoke(["run", spec, "--model", "tiny", "--dtype", "fp16", "--out", out, *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert re.fullmatch(r"Error: non-finite capture in pass p0/A at unit joint\[1\]\.h02 \(layout heads, \d+ values\); "
                        r"in fp16 try --dtype fp32 or bf16; in fp32 the weights or the model family's inputs "
                        r"\(noise, prompt embeddings\) are not finite\n", result.stderr), result.stderr
    assert not out.exists()  # ... and the failure came before any pair was captured: no folder


def test_non_finite_mid_run_keeps_captures_marks_failed_and_resumes(tmp_path, monkeypatch):
    """NaN in the second pair: pair 1 is kept, the manifest names pass and unit, resume finishes."""
    real = tiny.build_tiny_pipeline
    state = {"armed": True, "forwards": 0}

    def build(seed=0):
        pipe = real(seed=seed)

        def poison(module, args):
            state["forwards"] += 1
            if state["armed"] and state["forwards"] == 2:
                x = args[0].clone()
                x[..., 48:64] = float("nan")  # head 3's features of joint[1]'s image-stream projection
                return (x,) + tuple(args[1:])
            return None

        pipe.transformer.transformer_blocks[1].attn.to_out[0].register_forward_pre_hook(poison)
        return pipe

    monkeypatch.setattr(tiny, "build_tiny_pipeline", build)
    spec = write_spec(tmp_path / "specs", "probe")
    out = tmp_path / "run"
    args = ["run", spec, "--model", "tiny", "--batch-size", "2", "--units", "heads", *FAST]
    result = invoke([*args, "--out", out])
    message = (r"non-finite capture in pass p1/A at unit joint\[1\]\.h03 \(layout heads, \d+ values\); in fp16 try "
               r"--dtype fp32 or bf16; in fp32 the weights or the model family's inputs \(noise, prompt embeddings\) "
               r"are not finite")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert re.fullmatch(f"Error: {message}\n", result.stderr), result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and re.fullmatch(f"PlantainError: {message}", manifest["error"])
    kept = load_npz(out / "captures" / "heads.npz")
    assert kept["done"].tolist() == [True, False, False]
    assert np.isfinite(kept["a"][0]).all() and np.isnan(kept["a"][1:]).all()
    assert not (out / "summary.json").exists()  # no statistics from a partial run
    report = invoke(["report", out, "--no-figures"])
    assert report.exit_code == 1 and "is incomplete: 1 of 3 pairs captured" in report.stderr

    state["armed"] = False
    resumed = invoke([*args, "--out", out, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    clean = invoke([*args, "--out", tmp_path / "clean"])
    assert clean.exit_code == 0, clean.output
    got, want = load_npz(out / "captures" / "heads.npz"), load_npz(tmp_path / "clean" / "captures" / "heads.npz")
    assert got["done"].all()
    np.testing.assert_array_equal(got["a"], want["a"])
    np.testing.assert_array_equal(got["b"], want["b"])
    assert (out / "summary.json").read_bytes() == (tmp_path / "clean" / "summary.json").read_bytes()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_dtype_the_device_cannot_run_is_refused_before_loading(tmp_path, monkeypatch):
    """A device without fp16 matmuls (old CPU builds, some MPS versions): one clear error,
    no model load, no folder. Simulated by making fp16 matmul fail as such torch builds do."""
    real_matmul = torch.Tensor.__matmul__

    def matmul(self, other):
        if self.dtype == torch.float16:
            raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'")
        return real_matmul(self, other)

    monkeypatch.setattr(torch.Tensor, "__matmul__", matmul)
    calls: list[int] = []
    _scaled_tiny(monkeypatch, 1.0, calls)
    spec = write_spec(tmp_path / "specs", "probe")
    out = tmp_path / "run"
    result = invoke(["run", spec, "--model", "tiny", "--device", "cpu", "--dtype", "fp16", "--out", out, *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr == ("Error: --dtype fp16 is not supported on device 'cpu' "
                             "(\"addmm_impl_cpu_\" not implemented for 'Half'); use --dtype fp32\n")
    assert calls == [] and not out.exists()
