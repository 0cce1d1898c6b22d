"""The statistics engine against scipy/statsmodels, brute force and planted effects."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from plantain_core.stats import engine as stats
from plantain_core.stats.results import layout_summary, observed_over_null
from plantain_core.stats.engine import StatsOptions, compute_layout_stats, count_mlp_units, sign_flip_null


def names(u: int, per_block: int = 10) -> list[str]:
    return [f"single[{i // per_block}].h{i % per_block:02d}" for i in range(u)]


def noise(n, u, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(5.0, 1.0, size=(n, u))
    return a, a + rng.normal(0.0, 1.0, size=(n, u))


def brute_t(diff: np.ndarray) -> np.ndarray:
    """Per-column one-sample t by scipy, inf where all values are equal and nonzero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = sps.ttest_1samp(diff, 0.0, axis=0).statistic
    return np.where(np.isnan(t), np.inf, t)


def test_t_d_p_match_scipy_ttest_rel():
    a, b = noise(17, 300, seed=1)
    b[:, :30] -= 0.8
    st = compute_layout_stats(a, b, names(300), options=StatsOptions(flips=50, splits=5))
    ref = sps.ttest_rel(a, b)
    np.testing.assert_allclose(st.t, ref.statistic, rtol=1e-12)
    np.testing.assert_allclose(st.p, ref.pvalue, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(st.d, ref.statistic / math.sqrt(17), rtol=1e-12)
    diff = a - b
    np.testing.assert_allclose(st.d, diff.mean(0) / diff.std(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(st.mean_diff, diff.mean(0), rtol=1e-12)


def test_bh_q_matches_statsmodels_over_tested_units():
    a, b = noise(20, 400, seed=2)
    b[:, :40] -= 0.7
    b[:, 100] = a[:, 100]  # zero variance: not part of the BH family
    a[3, 200] = np.nan  # non-finite capture: not part of the family either
    st = compute_layout_stats(a, b, names(400), options=StatsOptions(flips=20, splits=2))
    keep = np.ones(400, bool)
    keep[[100, 200]] = False
    ref_p = sps.ttest_rel(a[:, keep], b[:, keep]).pvalue
    np.testing.assert_allclose(st.q[keep], multipletests(ref_p, method="fdr_bh")[1], rtol=1e-10)
    assert np.isnan(st.q[100]) and np.isnan(st.q[200])


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy on the all-equal flips
def test_exact_enumeration_matches_brute_force():
    n, u = 6, 40
    a, b = noise(n, u, seed=3)
    b[:, :5] -= 1.5
    diff = a - b
    # |D| constant: flips reach |t| = ∞ (all equal) and exactly 2 (five equal), so thresholds avoid 2
    diff[:, 7] = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0]) * 0.5
    st = compute_layout_stats(diff, np.zeros_like(diff), names(u), options=StatsOptions(flips=200, splits=3, thresholds=(2.5, 4.0)))
    assert st.exact and st.flips_used == 2 ** (n - 1)

    # every one of the 2^N sign vectors, explicitly
    counts, maxes = [], []
    for signs in itertools.product((1.0, -1.0), repeat=n):
        t = np.abs(brute_t(diff * np.array(signs)[:, None]))
        counts.append([(t > 2.5).sum(), (t > 4.0).sum()])
        maxes.append(t.max())
    counts, maxes = np.array(counts), np.array(maxes)
    # the half enumeration (first sign +) has the same distribution, each value once instead of twice
    assert sorted(map(tuple, counts.tolist())) == sorted(map(tuple, np.repeat(st.null_counts, 2, axis=0).tolist()))
    np.testing.assert_allclose(np.sort(np.repeat(st.null_max_abs_t, 2)), np.sort(maxes), rtol=1e-9)
    s = layout_summary(st)
    assert s["thresholds"][0]["null_mean"] == pytest.approx(counts[:, 0].mean())
    assert s["thresholds"][1]["null_p99"] == pytest.approx(np.percentile(counts[:, 1], 99))
    # exact FWER p: proportion of all sign vectors (identity included) with max |t'| ≥ |t_u|
    obs = np.abs(st.t)
    for j in (0, 1, 2, 10, 30):
        assert st.p_fwer[j] == pytest.approx(np.mean(maxes >= obs[j] * (1 - 1e-9)))
    assert st.p_fwer.min() >= 1 / 2 ** (n - 1)
    assert s["null"]["exact"] is True and s["null"]["flips"] == 32 and s["null"]["flips_requested"] == 200


def test_random_sign_flip_null_matches_explicit_loop(monkeypatch):
    n, u = 25, 120
    a, b = noise(n, u, seed=4)
    b[:, :10] -= 1.0
    diff = a - b
    rng = np.random.default_rng(9)
    signs = (1 - 2 * rng.integers(0, 2, size=(60, n))).astype(np.int8)
    z = diff / np.sqrt((diff ** 2).sum(0))
    monkeypatch.setattr(stats, "TILE_UNITS", 37)  # ragged tiles: 4 unit blocks × 9 flip chunks
    monkeypatch.setattr(stats, "TILE_ELEMENTS", 37 * 7)
    counts, null_max = sign_flip_null(z, signs, (3.0, 5.0))
    for f in range(60):
        t = np.abs(brute_t(diff * signs[f][:, None]))
        assert counts[f].tolist() == [(t > 3.0).sum(), (t > 5.0).sum()]
        assert null_max[f] == pytest.approx(t.max(), rel=1e-9)


def test_fwer_p_formula_for_random_flips():
    a, b = noise(25, 300, seed=5)
    b[:, :3] -= 2.0
    st = compute_layout_stats(a, b, names(300), options=StatsOptions(flips=99, splits=4))
    assert not st.exact and st.flips_used == 99
    obs = np.abs(st.t)
    expect = (1 + (st.null_max_abs_t[None, :] >= obs[:, None] * (1 - 1e-9)).sum(1)) / 100
    np.testing.assert_allclose(st.p_fwer, expect)
    assert st.p_fwer.min() == pytest.approx(1 / 100)
    assert (st.p_fwer[:3] == 0.01).all()


def test_planted_effects_recovered_and_null_at_nominal_rate():
    n, u = 25, 5000
    a, b = noise(n, u, seed=6)
    planted = np.array([3, 777, 1500, 2222, 4999])
    b[:, planted] -= 2.0  # d_z ≈ 1.4
    st = compute_layout_stats(a, b, names(u, 100), options=StatsOptions(flips=500, splits=10))
    assert (st.q[planted] < 0.05).all()
    assert (st.p_fwer[planted] < 0.05).all()
    assert (st.t[planted] > 0).all()  # A larger: t = mean(A − B) > 0
    null = np.setdiff1d(np.arange(u), planted)
    fp = np.mean(st.p[null] < 0.05)
    assert 0.03 < fp < 0.07
    assert np.mean(st.p_fwer[null] < 0.05) < 0.002  # family-wise: about 5% chance of any at all
    s = layout_summary(st)
    assert s["thresholds"][1]["observed"] >= 5
    # null mean count of |t| > 3 ≈ U·P(|t_24| > 3)
    assert s["thresholds"][0]["null_mean"] == pytest.approx(u * 2 * sps.t.sf(3.0, n - 1), rel=0.15)


def test_split_half_high_for_strong_effects_and_near_zero_for_noise():
    n, u = 24, 3000
    rng = np.random.default_rng(7)
    effect = rng.normal(0, 1.0, size=u)
    a, b = noise(n, u, seed=8)
    strong = compute_layout_stats(a + effect, b, names(u, 100), options=StatsOptions(flips=10, splits=40))
    pure = compute_layout_stats(a, b, names(u, 100), options=StatsOptions(flips=10, splits=40))
    sh_strong = layout_summary(strong)["split_half"]
    sh_pure = layout_summary(pure)["split_half"]
    assert sh_strong["median"] > 0.8 and sh_strong["splits"] == 40
    assert sh_strong["q25"] <= sh_strong["median"] <= sh_strong["q75"]
    assert abs(sh_pure["median"]) < 0.1
    # the example (the figure's split) is the split with the median r, recomputed directly
    t1, t2 = strong.split_example
    ok = np.isfinite(t1) & np.isfinite(t2)
    r_example = np.corrcoef(t1[ok], t2[ok])[0, 1]
    closest = strong.split_r[np.argmin(np.abs(strong.split_r - np.median(strong.split_r)))]
    assert r_example == pytest.approx(closest, rel=1e-9)


def test_split_half_t_equals_scipy_on_the_halves():
    n, u = 10, 50
    a, b = noise(n, u, seed=10)
    st = compute_layout_stats(a, b, names(u), options=StatsOptions(flips=10, splits=1, seed=4))
    t1, t2 = st.split_example
    diff = a - b
    # find which pairs formed half 1: the t of some 5-subset equals t1 for all units
    for half in itertools.combinations(range(n), n // 2):
        ref = sps.ttest_1samp(diff[list(half)], 0.0, axis=0).statistic
        if np.allclose(ref, t1, rtol=1e-9):
            rest = [i for i in range(n) if i not in half]
            np.testing.assert_allclose(t2, sps.ttest_1samp(diff[rest], 0.0, axis=0).statistic, rtol=1e-9)
            break
    else:
        pytest.fail("half-1 t matches no subset of the pairs")


def test_zero_variance_and_nonfinite_units_are_counted_not_dropped():
    a, b = noise(12, 50, seed=11)
    b[:, 4] = a[:, 4]  # D = 0
    b[:, 5] = a[:, 5] - 2.0  # D constant nonzero: still zero variance
    a[0, 6] = np.inf
    b[2, 7] = np.nan
    st = compute_layout_stats(a, b, names(50), options=StatsOptions(flips=30, splits=5))
    assert st.zero_variance.tolist().count(True) == 2 and st.nonfinite.tolist().count(True) == 2
    for j in (4, 5, 6, 7):
        assert np.isnan(st.t[j]) and np.isnan(st.d[j]) and np.isnan(st.p[j]) and np.isnan(st.p_fwer[j])
    assert st.mean_diff[5] == pytest.approx(2.0) and np.isnan(st.mean_diff[6])
    s = layout_summary(st)
    assert (s["n_units"], s["n_tested"], s["n_zero_variance"], s["n_nonfinite"]) == (50, 46, 2, 2)
    assert len(st.units) == 50 and st.t.shape == (50,)


def test_deterministic_for_a_seed_and_seed_matters():
    a, b = noise(25, 500, seed=12)
    b[:, :20] -= 0.6
    one = compute_layout_stats(a, b, names(500), options=StatsOptions(flips=300, splits=20, seed=5))
    two = compute_layout_stats(a, b, names(500), options=StatsOptions(flips=300, splits=20, seed=5))
    other = compute_layout_stats(a, b, names(500), options=StatsOptions(flips=300, splits=20, seed=6))
    assert layout_summary(one) == layout_summary(two)
    for field in ("t", "p", "q", "p_fwer", "null_counts", "null_max_abs_t", "split_r"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
    assert not np.array_equal(one.null_max_abs_t, other.null_max_abs_t)
    assert not np.array_equal(one.split_r, other.split_r)
    np.testing.assert_array_equal(one.t, other.t)


def test_tile_size_does_not_change_results(monkeypatch):
    a, b = noise(25, 400, seed=13)
    big = compute_layout_stats(a, b, names(400), options=StatsOptions(flips=250, splits=3))
    monkeypatch.setattr(stats, "TILE_UNITS", 61)
    monkeypatch.setattr(stats, "TILE_ELEMENTS", 61 * 9)
    small = compute_layout_stats(a, b, names(400), options=StatsOptions(flips=250, splits=3))
    np.testing.assert_array_equal(big.null_counts, small.null_counts)
    np.testing.assert_allclose(big.null_max_abs_t, small.null_max_abs_t, rtol=1e-12)


def test_blocks_and_top_blocks():
    a, b = noise(15, 60, seed=14)
    b[:, 25] -= 3.0  # block single[2], strongest
    b[:, 41] -= 1.5  # block single[4]
    st = compute_layout_stats(a, b, names(60), options=StatsOptions(flips=20, splits=2))
    assert [x.block for x in st.blocks] == [f"single[{i}]" for i in range(6)]
    abs_t, abs_d = np.abs(st.t), np.abs(st.d)
    for k, blk in enumerate(st.blocks):
        sel = slice(10 * k, 10 * k + 10)
        assert blk.units == 10
        assert blk.max_abs_t == pytest.approx(abs_t[sel].max())
        assert blk.n_abs_t_gt == int((abs_t[sel] > 3.0).sum())
        assert blk.median_abs_d == pytest.approx(np.median(abs_d[sel]))
    top = layout_summary(st)["top_blocks"]
    assert len(top) == 5 and top[0]["block"] == "single[2]"
    assert [t["max_abs_t"] for t in top] == sorted((t["max_abs_t"] for t in top), reverse=True)
    assert set(top[0]) == {"block", "units", "max_abs_t", "n_abs_t_gt_3", "median_abs_d"}


def test_ratio_when_null_p99_is_zero():
    assert observed_over_null(10, 0.0)[1] == "null p99 is 0" and math.isnan(observed_over_null(10, 0.0)[0])
    assert observed_over_null(0, 0.0)[1] == "observed and null p99 are both 0"
    assert observed_over_null(10, 4.0) == (2.5, None)
    a, b = noise(25, 200, seed=15)
    b[:, 0] -= 5.0
    s = layout_summary(compute_layout_stats(a, b, names(200), options=StatsOptions(flips=200, splits=2, thresholds=(8.0,))))
    row = s["thresholds"][0]
    assert row["observed"] == 1 and row["null_p99"] == 0 and row["ratio"] is None
    assert row["ratio_note"] == "null p99 is 0"


def test_mlp_unit_count_for_klein_slices16():
    units = ([f"joint[{b}].s{s:04d}" for b in range(5) for s in range(192)]
             + [f"single[{b}].s{s:04d}" for b in range(20) for s in range(768)])
    assert len(units) == 16320 and count_mlp_units(units) == 11520
    assert count_mlp_units([f"joint[0].h{h:02d}" for h in range(24)]) == 0


def test_too_few_pairs_for_split_half_is_stated():
    a, b = noise(3, 20, seed=16)
    st = compute_layout_stats(a, b, names(20), options=StatsOptions(flips=200, splits=10))
    assert st.exact and st.flips_used == 4
    sh = layout_summary(st)["split_half"]
    assert sh["median"] is None and "at least 4 pairs" in sh["note"]


def test_bad_inputs_raise():
    a, b = noise(5, 10)
    with pytest.raises(ValueError):
        compute_layout_stats(a, b[:, :9], names(10))
    with pytest.raises(ValueError):
        compute_layout_stats(a, b, names(9))
    with pytest.raises(ValueError):
        compute_layout_stats(a, b, names(10), options=StatsOptions(flips=0))
    with pytest.raises(ValueError):
        compute_layout_stats(a, b, names(10), options=StatsOptions(thresholds=(0.0,)))
