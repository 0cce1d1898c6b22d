"""Block-level tests (plantain_core.stats.blocks): equal to a brute-force loop over the sign
patterns with scipy's t, find a broad weak effect spread over one block that no single unit
shows, keep the FWER over blocks on null data, and reach summary.json and the card."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from plantain_core.report.blocks_section import block_lines
from plantain_core.stats.blocks import block_tests
from plantain_core.stats.engine import StatsOptions, compute_layout_stats, null_signs
from plantain_core.stats.results import layout_summary

SIZES = (4, 4, 8)  # blocks of unequal size: the standardization matters


def _units():
    return [f"joint[{b}].h{k:02d}" for b, size in enumerate(SIZES) for k in range(size)]


def _stats(diff, flips=200, seed=0):
    return compute_layout_stats(diff, np.zeros_like(diff), _units(), layout="heads",
                                options=StatsOptions(flips=flips, splits=0, seed=seed))


def _brute(diff, flips, seed):
    """Per pattern, scipy's t of the flipped data, the mean |t| per block, standardized by each
    block's moments over the patterns (plus the observed one when drawn at random), max over blocks."""
    signs, exact = null_signs(diff.shape[0], flips, seed)
    cols = np.repeat(np.arange(len(SIZES)), SIZES)

    def stat(d):
        t = np.abs(sps.ttest_1samp(d, 0.0).statistic)
        return np.array([t[cols == b].mean() for b in range(len(SIZES))])

    obs = stat(diff)
    null = np.array([stat(s[:, None] * diff) for s in signs])
    pool = null if exact else np.vstack([null, obs])
    mean, sd = pool.mean(axis=0), pool.std(axis=0)
    zmax = ((null - mean) / sd).max(axis=1)
    zobs = (obs - mean) / sd
    count = np.array([(zmax >= z * (1 - 1e-9)).sum() for z in zobs])
    return count / len(signs) if exact else (1 + count) / (1 + len(signs))


@pytest.mark.parametrize("n,flips", [(8, 200), (14, 150)])  # exact (128 patterns), then 150 random
def test_block_p_equals_a_brute_force_loop(n, flips):
    rng = np.random.default_rng(n)
    diff = rng.normal(size=(n, sum(SIZES)))
    diff[:, 4:8] += 1.2
    got = [b["p_fwer"] for b in block_tests(_stats(diff, flips, seed=2))["blocks"]]
    np.testing.assert_allclose(got, _brute(diff, flips, 2), rtol=1e-9)
    assert got[1] == min(got) < 0.05  # the planted block is the most significant


def test_a_broad_weak_effect_is_found_by_its_block_not_by_any_unit():
    rng = np.random.default_rng(5)
    diff = rng.normal(size=(24, 60))
    units = [f"single[{k // 12}].h{k % 12:02d}" for k in range(60)]
    diff[:, 24:36] += 0.45  # every unit of single[2]: d = 0.45, |t| ≈ 2.2, below the max-|t| cut
    st = compute_layout_stats(diff, np.zeros_like(diff), units, options=StatsOptions(flips=500, splits=0))
    assert not (st.p_fwer < 0.05).any()
    s = layout_summary(st)
    p = {b["block"]: b["p_fwer"] for b in s["block_tests"]["blocks"]}
    assert p["single[2]"] < 0.01 and all(v > 0.05 for k, v in p.items() if k != "single[2]")
    assert s["block_tests"]["responding"] == 1
    line = " ".join(block_lines(s))
    assert f"single[2] responds, p = {p['single[2]']:.3g}" in line and "single[0] responds" not in line


def _wilson_low(k, n, z=1.96):
    p = k / n
    return ((p + z * z / (2 * n)) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def test_null_data_keep_the_fwer_over_blocks():
    rng = np.random.default_rng(7)
    runs, hits = 200, 0
    for r in range(runs):
        base = rng.normal(size=(12, 1))  # a shared per-pair component: units are correlated
        diff = 0.5 * base + rng.normal(size=(12, sum(SIZES)))
        hits += any(b["p_fwer"] < 0.05 for b in block_tests(_stats(diff, flips=100, seed=r))["blocks"])
    assert _wilson_low(hits, runs) <= 0.05 and hits > 0


def test_no_block_line_says_so():
    s = {"block_tests": {"blocks": [{"block": "joint[0]", "units": 4, "mean_abs_t": 0.8, "null_mean": 0.8, "z": 0.1,
                                     "p_fwer": 0.6}]}}
    assert "no block responds at FWER 0.05 (smallest p = 0.6, `joint[0]`)" in block_lines(s)[0]
