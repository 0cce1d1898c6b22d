"""Reliability, part 3: interruption, resume and determinism. A real ``plantain run``
subprocess is interrupted (SIGINT) or killed (SIGKILL) while it captures; every file it
leaves parses, and ``--resume`` finishes with captures and statistics identical to an
uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.rundir.folder import OWN_FILES
from plantain_core.testing import write_spec

N_PAIRS = 24
ARGS = ("--model", "tiny", "--batch-size", "2", "--seed", "5", "--flips", "50", "--splits", "20",
        "--no-figures", "--no-progress")
RESULT_FILES = ("summary.json", "units.csv", "blocks.csv")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matmuls gain nothing from threads, and on a shared, busy CPU two
    OpenMP threads per process slow these runs down many times over. Captures are the
    same at any thread count; the subprocesses below get the same setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return write_spec(tmp_path_factory.mktemp("specs"), "long", n_pairs=N_PAIRS)


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    """One uninterrupted run (in this process)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = invoke(["run", spec, *ARGS, "--out", out])
    assert result.exit_code == 0, result.output
    return out


def load_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def done_flags(out: pathlib.Path):
    """Pairs captured so far in every layout (what resume reuses), or None before both files exist."""
    paths = [out / "captures" / f"{layout}.npz" for layout in ("heads", "slices16")]
    if not all(p.is_file() for p in paths):
        return None
    return load_npz(paths[0])["done"].astype(bool) & load_npz(paths[1])["done"].astype(bool)


def assert_every_file_parses(out: pathlib.Path, allow_temp: bool = False):
    """No truncated file: each JSON loads, each npz loads in full, each CSV has whole rows."""
    seen = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.name.startswith(".") and path.suffix == ".tmp":
            assert allow_temp, f"temp file left behind: {path}"
            continue  # an unfinished atomic write: never the file a reader opens
        if path.name in OWN_FILES:
            continue  # the folder's lock and its holder's note
        seen.append(path.relative_to(out).as_posix())
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npz":
            z = load_npz(path)
            n = len(z["pair_ids"])
            assert z["a"].shape == z["b"].shape == (n, len(z["units"])) and z["done"].shape == (n,)
        elif path.suffix == ".csv":
            rows = path.read_text().splitlines()
            assert len({row.count(",") for row in rows}) == 1, path
        else:
            assert path.suffix in {".md", ".png"}, path
    return seen


def interrupt(spec, out: pathlib.Path, sig) -> subprocess.CompletedProcess:
    """Start ``plantain run`` in a subprocess; signal it once some, not all, pairs are captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTAIN_") or k == "PLANTAIN_CACHE_DIR"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "plantain_core", "run", str(spec), *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    try:
        while True:
            if proc.poll() is not None:
                stdout, stderr = proc.communicate()
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be interrupted:\n{stdout}\n{stderr}")
            if time.monotonic() > deadline:
                pytest.fail("no pair was captured within 300 s")
            try:
                done = done_flags(out)
            except Exception:  # appearing files are read whole (atomic renames); be lenient anyway
                done = None
            if done is not None and 0 < done.sum() < done.size:
                break
            time.sleep(0.005)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def assert_same_as_reference(out: pathlib.Path, reference: pathlib.Path):
    for layout in ("heads", "slices16"):
        got, want = load_npz(out / "captures" / f"{layout}.npz"), load_npz(reference / "captures" / f"{layout}.npz")
        assert sorted(got) == sorted(want)
        for key in want:
            assert np.array_equal(got[key], want[key]), (layout, key)
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_marks_the_run_interrupted_and_resume_finishes_it(spec, reference, tmp_path, sig):
    out = tmp_path / "run"
    proc = interrupt(spec, out, sig)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    done = done_flags(out)
    k = int(done.sum())
    assert 0 < k < N_PAIRS
    prefix = f"Error: interrupted: {k} of {N_PAIRS} pairs are captured and kept in {out}; continue with: "
    assert proc.stderr.startswith(prefix) and proc.stderr.endswith(f" --out {out} --resume\n"), proc.stderr
    command = proc.stderr[len(prefix):].strip()
    assert command.startswith(f"plantain run {spec} --model tiny --dtype fp32 --height 128 --width 128 --batch-size 2 "
                              "--seed 5 "), command
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["error"] == "interrupted (KeyboardInterrupt)"
    assert assert_every_file_parses(out) == ["captures/heads.npz", "captures/slices16.npz", "manifest.json"]
    # what was captured is what the uninterrupted run captured for those pairs
    heads, want = load_npz(out / "captures" / "heads.npz"), load_npz(reference / "captures" / "heads.npz")
    assert np.array_equal(heads["a"][done], want["a"][done]) and np.isnan(heads["a"][~done]).all()

    # the printed command, run literally (the installed console script), finishes the run
    proc = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and "error" not in manifest
    assert_same_as_reference(out, reference)
    assert_every_file_parses(out)


def test_sigkill_leaves_only_whole_files_and_resume_finishes_it(spec, reference, tmp_path):
    out = tmp_path / "run"
    proc = interrupt(spec, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"  # no chance to say more
    assert 0 < int(done_flags(out).sum()) < N_PAIRS
    assert_every_file_parses(out, allow_temp=True)
    # a write the kill cut short leaves a hidden temp file; resume clears it away
    stale = out / "captures" / ".heads.npz.k1ll3d.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")

    result = invoke(["run", spec, *ARGS, "--out", out, "--resume"])
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert_same_as_reference(out, reference)
    assert assert_every_file_parses(out) == ["README.md", "blocks.csv", "captures/heads.npz", "captures/slices16.npz",
                                             "manifest.json", "summary.json", "units.csv"]


def test_same_seed_same_numbers_other_seed_other_numbers(spec, reference, tmp_path):
    result = invoke(["run", spec, *ARGS, "--out", tmp_path / "again"])
    assert result.exit_code == 0, result.output
    assert_same_as_reference(tmp_path / "again", reference)
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["n_pairs"] == N_PAIRS and summary["layouts"]["heads"]["n_tested"] == 16

    other = list(ARGS)
    other[other.index("--seed") + 1] = "6"
    result = invoke(["run", spec, *other, "--out", tmp_path / "other"])
    assert result.exit_code == 0, result.output
    a = load_npz(tmp_path / "other" / "captures" / "heads.npz")["a"]
    assert not np.array_equal(a, load_npz(reference / "captures" / "heads.npz")["a"])


def test_resume_refuses_damaged_or_foreign_state(spec, reference, tmp_path):
    """Resume reads a run folder it did not just write: damage is named, nothing is touched."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text()[:200])  # a manifest cut short by something else
    result = invoke(["run", spec, *ARGS, "--out", out, "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.fullmatch(rf"Error: cannot resume {re.escape(str(out))}: manifest\.json is unreadable \(.+\); "
                        r"start a new run in another --out\n", result.stderr), result.stderr

    shutil.copy(reference / "manifest.json", manifest)
    caps = out / "captures" / "slices16.npz"
    caps.write_bytes(caps.read_bytes()[:100])
    result = invoke(["run", spec, *ARGS, "--out", out, "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.fullmatch(rf"Error: cannot resume {re.escape(str(out))}: {re.escape(str(caps))} is unreadable \(.+\); "
                        r"start a new run in another --out\n", result.stderr), result.stderr
    assert len(caps.read_bytes()) == 100 and (out / "summary.json").read_bytes() == (reference / "summary.json").read_bytes()

    other = list(ARGS)
    other[other.index("--seed") + 1] = "6"
    shutil.copy(reference / "captures" / "slices16.npz", caps)
    result = invoke(["run", spec, *other, "--out", out, "--resume"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot resume {out}: the run was started with other settings (--seed: was 5, now 6)\n")


def test_ctrl_c_before_any_capture_leaves_no_folder(spec, tmp_path, monkeypatch):
    """Interrupted after the run folder was started but before a pair was captured."""
    import plantain_core.capture.runner as runner

    seen = []

    def interrupt_here(*args, **kwargs):
        seen.append(json.loads((out / "manifest.json").read_text())["status"])  # the folder did exist
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "get_images", interrupt_here)
    out = tmp_path / "run"
    result = invoke(["run", spec, *ARGS, "--out", out])
    assert seen == ["running"]
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.stderr == "Error: interrupted before any pair was captured; nothing was kept\n"
    assert not out.exists()
