"""One run across processes: ``accelerate launch`` and ``torchrun`` with 2 CPU processes
(gloo) split the pairs; the main process gathers and writes; the captures equal a
single-process run's."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BIN = pathlib.Path(sys.executable).parent
RUN = ["-m", "plantain_core", "run", "ray", "--model", "tiny", "--no-figures", "--flips", "32", "--splits", "4"]


def _launch(launcher: list[str], out: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    res = subprocess.run([*launcher, *RUN, "--out", str(out), *extra], capture_output=True, text=True, env=ENV,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    for batch in ("2", "16"):
        _launch([sys.executable], tmp / batch, "--batch-size", batch)
    return tmp


def test_accelerate_launch_two_cpu_processes_equals_one_process(tmp_path, single):
    pytest.importorskip("accelerate")
    out = tmp_path / "run"
    # on a machine without GPUs, accelerate starts several processes with its torchrun launcher (--multi_gpu);
    # plantain joins them on gloo
    res = _launch([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"], out,
                  "--batch-size", "2")
    assert res.stdout.count("wrote summary.json") == 1  # the main process alone reports and writes
    for name in ("captures/heads.npz", "captures/slices16.npz", "summary.json", "units.csv"):
        assert (out / name).read_bytes() == (single / "2" / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and not list(out.rglob(".*.tmp"))


def test_torchrun_with_batches_of_several_pairs_matches_closely(tmp_path, single):
    """Other batch boundaries than one process's change only the last bits."""
    pytest.importorskip("accelerate")
    out = tmp_path / "run"
    _launch([str(BIN / "torchrun"), "--nproc_per_node", "2"], out, "--batch-size", "16")
    with np.load(out / "captures/heads.npz") as got, np.load(single / "16" / "captures/heads.npz") as ref:
        np.testing.assert_allclose(got["a"], ref["a"], rtol=1e-5)
        np.testing.assert_allclose(got["b"], ref["b"], rtol=1e-5)
        assert got["done"].all() and list(got["pair_ids"]) == list(ref["pair_ids"])
