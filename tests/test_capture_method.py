"""Capture methods: norm-v2 (fused vector_norm) equals the sumsq-v1 reference to float tolerance
and a float64 brute force; the method is recorded, named on the card, and a resume or compare
across methods is refused as a change of settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plantain_core.capture.hooks import REDUCTIONS, reduction
from plantain_core.config import ConfigError, RunConfig, config_from_manifest
from plantain_core.errors import PlantainError
from plantain_core.report.compare import compare_runs
from plantain_core.testing import run_on_tiny


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-5)])
def test_both_reductions_equal_a_float64_brute_force(dtype, rtol):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 37, 24, generator=gen) * torch.linspace(0.1, 30, 24)).to(dtype)
    want = (x.double().numpy()[:, 5:31] ** 2).sum(axis=1)
    for name in REDUCTIONS:
        got = reduction(name)(x, 5, 31)
        assert got.dtype == torch.float32 and got.shape == (3, 24), name
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=0, err_msg=name)


def test_unknown_method_is_a_config_error_and_old_manifests_read_as_sumsq_v1():
    with pytest.raises(ConfigError, match="--capture-method: unknown capture method 'norm-v3'.*norm-v2"):
        RunConfig(probe="ray", capture_method="norm-v3")
    assert config_from_manifest({"config": {"probe": "ray", "model": "tiny"}}).capture_method == "sumsq-v1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    return {m: run_on_tiny("ray", root / m, layouts=["heads"], seed=1, capture_method=m)
            for m in ("sumsq-v1", "norm-v2")}


def test_norm_v2_run_equals_sumsq_v1_and_is_recorded_and_named_on_the_card(runs):
    ref, fused = runs["sumsq-v1"].captures("heads"), runs["norm-v2"].captures("heads")
    np.testing.assert_allclose(fused.a, ref.a, rtol=1e-5, atol=0)
    np.testing.assert_allclose(fused.b, ref.b, rtol=1e-5, atol=0)
    for method, run in runs.items():
        manifest = json.loads((run.path / "manifest.json").read_text())
        assert manifest["config"]["capture_method"] == method and manifest["config"]["compile"] is False
        assert f"capture method `{method}`" in run.card_path.read_text()


def test_resume_with_another_method_is_refused_as_a_change_of_settings(runs):
    with pytest.raises(PlantainError, match=r"other settings \(capture_method: was sumsq-v1, now norm-v2\)"):
        run_on_tiny("ray", runs["sumsq-v1"].path, layouts=["heads"], seed=1, capture_method="norm-v2", resume=True)


def test_compare_across_methods_is_refused(runs):
    with pytest.raises(PlantainError, match="different capture methods.*--capture-method norm-v2"):
        compare_runs([runs["sumsq-v1"].path, runs["norm-v2"].path])


# -- the kernel noise floor -------------------------------------------------------------------------------------
class _Replay:
    """Stand-ins for PassInputs and UnitCapture: the second pass returns planted rows."""

    def __init__(self, rows):
        self.rows, self.passed = rows, []

    def groups(self, items):
        return [list(items)]

    def forward(self, items):
        self.passed.append(list(items))

    def take(self):
        return {"heads": self.rows[[i for i, _ in self.passed[-1]]]}


def test_noise_floor_is_each_units_largest_repass_difference_and_counts_effects_below_it():
    from plantain_core.capture.noise import measure_noise_floor, noise_summary

    rng = np.random.default_rng(0)
    first_a = rng.uniform(1, 2, size=(6, 5))
    noise = rng.normal(scale=1e-3, size=(6, 5))
    replay = _Replay(first_a + noise)
    record = measure_noise_floor(replay, replay, {"heads": (first_a, first_a * 0)}, [4, 1, 3], k=2)
    assert replay.passed == [[(4, 0), (1, 0)]] and record["stimuli"] == 2 and record["pairs_index"] == [4, 1]
    want = np.abs(noise[[4, 1]]).max(axis=0)
    np.testing.assert_allclose(record["layouts"]["heads"], want, rtol=0, atol=1e-15)
    mean_diff = np.array([0.0, 1.0, want[2] / 2, -want[3] * 2, np.nan])
    got = noise_summary(record, "heads@step0", mean_diff)
    assert got == {"stimuli": 2, "max_abs": pytest.approx(want.max(), abs=1e-15),
                   "median_abs": pytest.approx(float(np.median(want)), abs=1e-15), "units_at_or_below": 2}
    assert noise_summary({"layouts": {"heads": [0.0]}}, "heads", mean_diff) is None  # another unit count: not used


def test_a_run_records_its_noise_floor_in_summary_and_on_the_card(runs):
    run = runs["sumsq-v1"]
    floor = run.summary["layouts"]["heads"]["noise_floor"]
    rms = np.concatenate([run.captures("heads").a, run.captures("heads").b])
    assert floor["stimuli"] == 4 and 0 <= floor["max_abs"] <= 1e-5 * rms.max()  # fp32 on a CPU: at the last bits
    assert "Kernel noise floor: 4 stimuli passed twice" in run.card_path.read_text()
