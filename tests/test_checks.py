"""The reviewer's checks against references and planted data: TOST = statsmodels, intervals
cover, the common mode separates global shifts from unit-specific effects, Freedman–Lane
equals a brute-force refit and separates length from condition, small-N honesty, and the
FWER threshold agrees with p_fwer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plantain_core.stats.checks import CONSTANT_LENGTH, adjusted_test, common_mode, dz_interval, review, tost_p
from plantain_core.stats.results import fwer_threshold, layout_summary
from plantain_core.stats.engine import StatsOptions, compute_layout_stats, fwer_p, null_signs, paired_t, sign_patterns


def stats_of(diff, flips=200, seed=0, delta=None, names=None):
    n, u = diff.shape
    names = names or [f"joint[{k // 8}].h{k % 8:02d}" for k in range(u)]
    st = compute_layout_stats(diff, np.zeros_like(diff), names, layout="heads", options=StatsOptions(flips=flips, splits=10, seed=seed))
    return review(st, delta)


def nct_cdf_by_quadrature(t, df, ncp):
    """P(T ≤ t) for T = (Z + ncp) / sqrt(X/df): ∫ Φ(t·sqrt(x/df) − ncp) χ²_df(x) dx (the
    definition, integrated numerically: independent of scipy's nct)."""
    from scipy import integrate
    from scipy.stats import chi2, norm

    return integrate.quad(lambda x: norm.cdf(t * math.sqrt(x / df) - ncp) * chi2.pdf(x, df), 0, np.inf,
                          epsabs=1e-13, epsrel=1e-11, limit=200)[0]


def test_tost_is_the_exact_noncentral_t_test():
    """p_tost = max(P(T ≥ t | −δ√N), P(T ≤ t | δ√N)), checked by quadrature of the
    noncentral t's definition; at large N it approaches statsmodels' central-t TOST."""
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 6))
    b = a + rng.normal([0, 0.1, 0.3, 0.5, 1.0, -0.4], 1.0, size=(20, 6))
    _, t, d, _, _ = paired_t(a - b)
    ours = tost_p(t, 20, 0.5)
    ncp = 0.5 * math.sqrt(20)
    for u in range(6):
        ref = max(1 - nct_cdf_by_quadrature(t[u], 19, -ncp), nct_cdf_by_quadrature(t[u], 19, ncp))
        assert ours[u] == pytest.approx(ref, rel=1e-7, abs=1e-12)
    big = rng.normal(0.1, 1.0, size=(4000, 1))
    _, tb, _, _, _ = paired_t(big)
    sd = big[:, 0].std(ddof=1)
    ref = ttost_paired(big[:, 0], np.zeros(4000), -0.5 * sd, 0.5 * sd)[0]
    assert tost_p(tb, 4000, 0.5)[0] == pytest.approx(ref, rel=0.05)


def test_tost_says_when_equivalence_cannot_be_shown():
    """At N = 8 and bound 0.5 even t = 0 gives p ≈ 0.10: no unit can be shown equivalent."""
    from plantain_core.stats.checks import tost_floor

    assert tost_floor(8, 0.5) == pytest.approx(nct_cdf_by_quadrature(0.0, 7, 0.5 * math.sqrt(8)), rel=1e-7)
    assert tost_floor(8, 0.5) > 0.05 > tost_floor(30, 0.5)
    rng = np.random.default_rng(3)
    st = stats_of(rng.normal(0, 1, size=(8, 16)))
    eq = layout_summary(st)["equivalence"]
    assert eq["reachable"] is False and eq["equivalent"] == 0 and eq["min_p"] > 0.05


def test_dz_interval_is_the_exact_noncentral_t_interval():
    """Bounds are the noncentralities at which the observed t sits at the 97.5% / 2.5%
    point, over √N: checked by root-finding on the quadrature CDF, and in the far tail
    (|t| > 1e4) by the closed-form limit."""
    from scipy.optimize import brentq

    n = 8
    d = np.array([-1.3, -0.2, 0.0, 0.4, 2.5])
    low, high = dz_interval(d, n)
    for k, dk in enumerate(d):
        t = dk * math.sqrt(n)
        lo = brentq(lambda c: nct_cdf_by_quadrature(t, n - 1, c) - 0.975, t - 20, t + 20)
        hi = brentq(lambda c: nct_cdf_by_quadrature(t, n - 1, c) - 0.025, t - 20, t + 20)
        assert low[k] == pytest.approx(lo / math.sqrt(n), abs=1e-5)  # cdflib inverts to ~1e-7 in p
        assert high[k] == pytest.approx(hi / math.sqrt(n), abs=1e-5)
    near, far = dz_interval(np.array([9999.0, 10001.0]) / math.sqrt(25), 25)
    assert far[0] == pytest.approx(far[1] * 9999 / 10001, rel=1e-3) and near[0] == pytest.approx(near[1] * 9999 / 10001, rel=1e-3)


def test_dz_interval_covers_at_small_n():
    """The Wald interval it replaced covered 94.1% at N = 8; the exact one covers 95%."""
    rng = np.random.default_rng(13)
    n, u = 8, 40000
    for true_d in (0.0, 1.2):
        _, _, d, _, _ = paired_t(rng.normal(true_d, 1.0, size=(n, u)))
        low, high = dz_interval(d, n)
        miss = float(1 - ((low < true_d) & (true_d < high)).mean())
        assert 0.045 <= miss <= 0.055, (true_d, miss)


def test_tost_keeps_its_error_rate_on_the_bound_and_finds_true_nulls():
    rng = np.random.default_rng(2)
    n, u, bound = 25, 4000, 0.5
    on_bound = rng.normal(bound, 1.0, size=(n, u))  # true d_z exactly at the bound: equivalence is false
    _, t, _, _, _ = paired_t(on_bound)
    false_equivalence = float((tost_p(t, n, bound) < 0.05).mean())
    assert false_equivalence <= 0.056  # nominal 5%, exact (MC sd 0.0034)
    _, t0, _, _, _ = paired_t(rng.normal(0.0, 1.0, size=(n, u)))
    assert float((tost_p(t0, n, bound) < 0.05).mean()) > 0.5  # true nulls: mostly declared equivalent


def test_dz_interval_covers_the_true_effect():
    rng = np.random.default_rng(3)
    n, u = 25, 4000
    for true_d in (0.0, 0.5, 1.2):
        _, _, d, _, _ = paired_t(rng.normal(true_d, 1.0, size=(n, u)))
        low, high = dz_interval(d, n)
        coverage = float(((low < true_d) & (true_d < high)).mean())
        assert 0.92 <= coverage <= 0.975, (true_d, coverage)


def test_a_pure_common_mode_gives_raw_hits_but_no_specific_ones():
    rng = np.random.default_rng(4)
    n, u = 25, 400
    scale = rng.uniform(0.5, 2.0, size=u)
    shift = rng.normal(1.0, 0.3, size=n)  # every unit moves with the pair's shift: a length or norm effect
    diff = (shift[:, None] + rng.normal(0, 0.3, size=(n, u))) * scale
    st = stats_of(diff)
    s = layout_summary(st)["specificity"]
    assert s["raw_p_fwer_lt_0.05"] > 300 and s["common_mode_share"] > 0.4
    assert s["p_fwer_lt_0.05"] == 0 and s["q_lt_0.05"] <= 20  # ~nominal beyond the common mode


def test_planted_unit_specific_effects_survive_the_common_mode():
    rng = np.random.default_rng(5)
    n, u = 25, 400
    shift = rng.normal(1.0, 0.3, size=n)
    diff = shift[:, None] + rng.normal(0, 0.3, size=(n, u))
    planted = np.arange(0, 400, 20)
    diff[:, planted] += 1.5  # 20 units respond beyond the common mode
    st = stats_of(diff)
    hits = np.flatnonzero(st.specific.q < 0.05)
    assert len(set(planted) & set(hits)) >= 18 and len(set(hits) - set(planted)) <= 2
    assert (st.p_fwer < 0.05).sum() == 400  # raw: every unit, planted or not
    mode = common_mode(diff, st.tested)
    z = diff / diff.std(axis=0, ddof=1)
    zc = z - z.mean(axis=0)
    for u in (0, 7, 399):  # leave-one-out: a unit's own noise is not in its regressor
        others = np.delete(zc, u, axis=1).mean(axis=1)
        np.testing.assert_allclose(mode.nuisance()[:, u], others + mode.readings[0].shift, rtol=1e-10, atol=1e-12)


def test_a_constant_common_mode_is_said_to_be_untestable():
    rng = np.random.default_rng(12)
    diff = np.ones((10, 30)) * rng.uniform(1, 2, size=30) + rng.normal(0, 1e-3, size=(10, 30))
    st = stats_of(diff)
    # the shift is (almost) the same in every pair: common mode and unit effects coincide
    constant = adjusted_test(diff, st.tested, np.full(10, 2.0), *sign_patterns(10, 50, np.random.default_rng(0)),
                             constant_note=CONSTANT_LENGTH)
    assert constant.note.startswith("the token-count difference") and np.isnan(constant.t).all()


def brute_force_freedman_lane(diff, delta, signs):
    """Refit every flipped dataset with lstsq, one unit at a time (the definition)."""
    n, u = diff.shape
    x = np.column_stack([np.ones(n), delta])

    def t_int(y):
        beta, res, *_ = np.linalg.lstsq(x, y, rcond=None)
        sigma2 = ((y - x @ beta) ** 2).sum() / (n - 2)
        return beta[0] / math.sqrt(sigma2 * np.linalg.inv(x.T @ x)[0, 0])

    t_obs = np.array([t_int(diff[:, k]) for k in range(u)])
    beta_red = (delta @ diff) / (delta @ delta)
    resid = diff - np.outer(delta, beta_red)
    null = np.array([[abs(t_int(np.outer(delta, beta_red)[:, k] + s * resid[:, k])) for k in range(u)] for s in signs])
    p = (1 + (null >= np.abs(t_obs) * (1 - 1e-12)).sum(axis=0)) / (1 + len(signs))
    return t_obs, p


def test_freedman_lane_equals_a_brute_force_refit():
    rng = np.random.default_rng(6)
    n, u = 12, 5
    delta = rng.integers(-3, 4, size=n).astype(float)
    diff = rng.normal(0.3, 1.0, size=(n, u)) + 0.2 * delta[:, None]
    signs, exact = sign_patterns(n, 60, np.random.default_rng(7))
    assert not exact
    ours = adjusted_test(diff, np.ones(u, bool), delta, signs, exact)
    t_ref, p_ref = brute_force_freedman_lane(diff, delta, signs)
    np.testing.assert_allclose(ours.t, t_ref, rtol=1e-9)
    np.testing.assert_allclose(ours.p, p_ref, rtol=1e-12)
    # a column per unit (the common mode's leave-one-out nuisance) = each unit refitted alone
    per_unit = delta[:, None] + rng.normal(0, 0.5, size=(n, u))
    ours = adjusted_test(diff, np.ones(u, bool), per_unit, signs, exact)
    for k in range(u):
        t_ref, p_ref = brute_force_freedman_lane(diff[:, [k]], per_unit[:, k], signs)
        assert ours.t[k] == pytest.approx(t_ref[0], rel=1e-9) and ours.p[k] == pytest.approx(p_ref[0], rel=1e-12)
        x = per_unit[:, k]
        assert ours.inflation[k] == pytest.approx(math.sqrt(1 + n * x.mean() ** 2 / ((x - x.mean()) ** 2).sum()), rel=1e-9)


def test_length_explains_the_effect_only_when_it_varies():
    rng = np.random.default_rng(8)
    n, u = 30, 60
    delta = rng.integers(1, 9, size=n).astype(float)
    by_length = 0.5 * delta[:, None] + rng.normal(0, 0.5, size=(n, u))  # effect = length only, 0 at equal length
    st = stats_of(by_length, delta=delta)
    assert (st.p_fwer < 0.05).sum() > 50  # the raw test sees an "effect"
    assert (st.length.p_fwer < 0.05).sum() <= 2  # at zero length difference there is none
    real = by_length.copy()
    real[:, :10] += 2.0  # ten units respond at equal length too
    st = stats_of(real, delta=delta)
    assert set(range(10)) <= set(np.flatnonzero(st.length.p_fwer < 0.05))
    constant = stats_of(by_length, delta=np.full(n, 3.0))
    assert constant.length.note.startswith("the token-count difference is the same in every pair")
    assert np.isnan(constant.length.t).all()


def test_fwer_threshold_is_the_order_statistic_p_fwer_uses():
    rng = np.random.default_rng(9)
    for f, exact in ((200, False), (1000, False), (512, True)):
        null = np.abs(rng.standard_t(10, size=f)) + 2
        thr = fwer_threshold(null, exact)
        eps = 1e-9
        above = fwer_p(np.array([thr + eps]), null, exact)[0]
        at = fwer_p(np.array([thr]), null, exact)[0]
        assert above < 0.05 <= at, (f, exact, above, at)
    assert fwer_threshold(np.ones(8), True) is None  # 1/8 > 0.05: unreachable


def test_exact_enumeration_starts_exactly_at_two_to_the_n_minus_one():
    rng = np.random.default_rng(0)
    n = 9  # 2^(N-1) = 256
    signs, exact = sign_patterns(n, 256, rng)
    assert exact and signs.shape == (256, n) and len({tuple(s) for s in signs}) == 256 and (signs[:, 0] == 1).all()
    signs, exact = sign_patterns(n, 255, rng)
    assert not exact and signs.shape == (255, n)


def test_small_n_says_fwer_is_out_of_reach():
    rng = np.random.default_rng(10)
    st = stats_of(rng.normal(3.0, 1.0, size=(4, 16)), flips=200)
    s = layout_summary(st)
    assert st.exact and st.min_p_fwer == 1 / 8
    assert s["null"]["fwer_reachable"] is False and s["null"]["min_p_fwer"] == 0.125
    assert s["null"]["max_abs_t_p95"] is None and s["significant"]["p_fwer_lt_0.05"] == 0


def test_flips_come_from_the_documented_generator():
    """docs/statistics.md: flips are drawn by default_rng(SeedSequence(seed).spawn(2)[0])."""
    n, f, seed = 30, 50, 11
    signs, exact = null_signs(n, f, seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    expect = (1 - 2 * rng.integers(0, 2, size=(f, n), dtype=np.int8)).astype(np.int8)
    assert not exact and np.array_equal(signs, expect)


def test_a_constant_length_probe_names_the_confound_and_runs_the_placebo(tmp_path):
    """Done-when of the reviewer issue: the card names the confound, says the adjusted test
    cannot separate it, and compares the probe with the length placebo, unit by unit."""
    import json

    from click.testing import CliRunner

    from plantain_core.cli import main
    from plantain_core.testing import spec_data, write_spec

    data = spec_data("probe", n_pairs=6)
    data["stimuli"]["pairs"] = [{"id": f"p{i}", "a": f"a red cube number {i} that is lit", "b": f"a red cube number {i}"}
                                for i in range(6)]  # A is always 12 byte-tokens longer: length = condition
    spec = write_spec(tmp_path / "specs", "probe", data)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--flips", "50",
                                    "--splits", "5", "--length-control", "--no-figures", "--no-progress",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: condition and prompt length are confounded (A has 12 tokens more than B in every pair)" in res.stdout
    placebo = json.loads((out / "placebo" / "manifest.json").read_text())
    counts = {r["id"]: (r["a"], r["b"]) for r in json.loads((out / "manifest.json").read_text())["token_counts"]}
    for rec, tc in zip(placebo["pairs"], placebo["token_counts"]):
        assert rec["a"]["prompt"].startswith(rec["b"]["prompt"]) and rec["a"]["prompt"] != rec["b"]["prompt"]
        assert (tc["a"], tc["b"]) == counts[rec["id"]]  # only the length differs, by the probe's own amount
    card = (out / "README.md").read_text()
    assert "**Condition and prompt length are fully confounded: A has 12 tokens more than B in every pair.**" in card
    assert "Length-adjusted test: not possible — the token-count difference is the same in every pair" in card
    assert "Length placebo (6 pairs in which only the prompt length differs, in the probe's direction)" in card
    summary = json.loads((out / "summary.json").read_text())
    lp = summary["layouts"]["heads"]["length_placebo"]
    assert lp["pairs"] == 6 and len(lp["top_units"]) == 10
    a, b = np.load(out / "placebo" / "captures" / "heads.npz")["a"], np.load(out / "placebo" / "captures" / "heads.npz")["b"]
    probe_mean = (np.load(out / "captures" / "heads.npz")["a"] - np.load(out / "captures" / "heads.npz")["b"]).mean(axis=0)
    top = lp["top_units"][0]
    unit = list(np.load(out / "captures" / "heads.npz")["units"]).index(top["unit"])
    assert top["placebo_share"] == pytest.approx((a - b).mean(axis=0)[unit] / probe_mean[unit], rel=1e-6)
    assert "--length-control" in card  # the Reproduce command runs the placebo again


def test_a_layout_with_no_tested_unit_summarizes_without_an_mde():
    """Every unit with zero variance: the null is degenerate (threshold 0); the summary says
    no detectable effect instead of crashing in the MDE's root search."""
    from plantain_core.stats.engine import StatsOptions, compute_layout_stats
    from plantain_core.stats.results import layout_summary

    a = np.ones((8, 5))
    st = compute_layout_stats(a, a.copy(), [f"joint[0].h0{i}" for i in range(5)], layout="heads",
                              pair_ids=[str(i) for i in range(8)], options=StatsOptions(50, 10, 0, (3.0, 5.0)))
    s = layout_summary(st)
    assert s["null"]["mde_dz"] is None and s["significant"]["p_fwer_lt_0.05"] == 0
