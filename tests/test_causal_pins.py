"""Pins of the causal check's statistics on small fixed data with hand-computed values:
the permutation / sequential p (non-finite controls count against the selection), the
Besag–Clifford stopping boundary, distinct control draws, strata keys, attribution ranks,
the held-out split and selection, and the bootstrap intervals with their chance values."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from scipy import stats as sps

from plantain_core.causal.attribution import rank, top_overlap
from plantain_core.causal.effects import CausalTest, per_pair
from plantain_core.causal.effects import tests_of as group_tests
from plantain_core.causal.stats import (BOOTSTRAP, MIN_SETS, chance_overlap, mean_interval, overlap,
                                        rankings_agreement, resamples, selection_strength, sets_agreement,
                                        spearman, split_pairs)
from plantain_core.causal.unit_sets import (SELECTED, UnitSet, matched_controls, permutation_p, plan_layout, sequential_p,
                                     settled, stop_after, strata_of)

NAN = float("nan")


# ---- p with non-finite controls (defect: they never counted as ≥ the effect) -----------------
def test_a_non_finite_control_counts_as_at_least_as_large():
    # (1 + 2 non-finite + 0 finite ≥ 0.5) / (1 + 3)
    assert permutation_p(0.5, [NAN, NAN, 0.1]) == pytest.approx(3 / 4)
    assert permutation_p(0.5, [None, 0.1]) == pytest.approx(2 / 3)
    assert permutation_p(0.5, [math.inf, 0.1, 0.2]) == pytest.approx(2 / 4)
    assert permutation_p(0.5, [-math.inf, 0.1, 0.2]) == pytest.approx(2 / 4)  # not a measured effect either
    assert permutation_p(0.5, [0.1, 0.2, 0.3]) == pytest.approx(1 / 4)
    assert permutation_p(NAN, [0.1]) is None


def test_a_non_finite_control_settles_the_sequential_rule_like_a_reaching_one():
    # R = 20: h = 1, so one control that reaches the effect (or has none) settles p > 0.05
    assert settled(0.5, [NAN], 20)
    assert settled(0.5, [None], 20)
    assert not settled(0.5, [0.1], 20)
    assert sequential_p(0.5, [NAN], 20) == pytest.approx(1.0)  # max(1/1, 2/21)
    # all R drawn, one NaN among them: p counts it, so it is 2/21, not the floor 1/21
    assert sequential_p(0.5, [NAN] + [0.0] * 19, 20) == pytest.approx(2 / 21)
    assert sequential_p(0.5, [0.0] * 20, 20) == pytest.approx(1 / 21)


# ---- the Besag–Clifford boundary -----------------------------------------------------------------
@pytest.mark.parametrize("controls,alpha,h", [(0, 0.05, 1), (18, 0.05, 1), (19, 0.05, 1), (20, 0.05, 1),
                                              (38, 0.05, 1), (39, 0.05, 2), (58, 0.05, 2), (59, 0.05, 3),
                                              (99, 0.05, 5), (99, 0.29, 29), (49, 0.58, 29), (9, 0.1, 1)])
def test_stop_after_is_floor_alpha_r_plus_one_at_least_one(controls, alpha, h):
    # 0.29 × 100 is 28.999999999999996 in floating point: the floor must still be 29
    assert stop_after(controls, alpha) == h


def test_sequential_p_is_the_larger_of_besag_clifford_and_the_least_permutation_p():
    below, above = 0.0, 1.0
    assert sequential_p(0.5, [above], 20) == pytest.approx(1.0)  # max(1/1, 2/21)
    assert sequential_p(0.5, [below] * 9 + [above], 20) == pytest.approx(0.1)  # max(1/10, 2/21)
    assert sequential_p(0.5, [below] * 18 + [above], 20) == pytest.approx(2 / 21)  # 1/19 < 2/21
    assert sequential_p(0.5, [below] * 36 + [above] * 2, 39) == pytest.approx(3 / 40)  # max(2/38, 3/40)
    assert sequential_p(0.5, [below] * 2 + [above] * 2, 39) == pytest.approx(0.5)  # max(2/4, 3/40)
    assert sequential_p(0.5, [], 20) is None
    assert sequential_p(0.5, [below] * 19 + [above], 20) == pytest.approx(2 / 21)  # all R: (1 + 1) / 21


# ---- control draws and strata ----------------------------------------------------------------------
def test_random_control_draws_are_distinct_where_few_sets_exist():
    """6 possible one-unit controls, 5 wanted: random draws collide often (5 distinct in 5
    draws happens 9% of the time), so only a duplicate check gives 5 distinct sets."""
    strata = np.zeros(7, dtype=np.int64)
    for seed in range(5):
        sets, short = matched_controls(strata, np.array([0]), 5, np.random.default_rng(seed))
        assert len(sets) == 5 and len({tuple(s) for s in sets}) == 5 and not short
        assert all(len(s) == 1 and 0 not in s for s in sets)


def _layout(blocks, mlp):
    blocks, mlp = np.asarray(blocks), np.asarray(mlp, dtype=bool)
    spans = tuple(types.SimpleNamespace(block=types.SimpleNamespace(name=f"b{i}")) for i in range(blocks.max() + 1))
    return types.SimpleNamespace(name="fake", units=[f"b{b}.u{i}" for i, b in enumerate(blocks)], mlp=mlp,
                                 spans=spans, block_index=lambda: blocks)


def test_a_blocks_mlp_and_the_next_blocks_attention_are_different_strata():
    lay = _layout([0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 1, 1])
    assert list(strata_of(lay)) == [0, 0, 1, 1, 2, 2, 3, 3]
    # select one MLP unit of block 0: its controls come from block 0's other MLP unit only
    strength = np.array([0, 0, 5.0, 0, 0.1, 0.1, 0, 0])
    k, sets, _ = plan_layout(lay, strength, top=1, doses=(), controls=3, seed=0, ordinal=0)
    assert k == 1 and sets[0].indices == (2,)
    assert [s.indices for s in sets[1:]] == [(3,)]  # the one distinct matched set, not units 4, 5 (block 1 attention)


def test_control_seeds_differ_by_ordinal_and_ranking():
    lay = _layout([0] * 40, [0] * 40)
    strength = np.arange(40, dtype=float)
    draws = {}
    for ordinal in (0, 1):
        for by in ("t", "attribution"):
            _, sets, _ = plan_layout(lay, strength, top=2, doses=(), controls=4, seed=3, ordinal=ordinal, by=by)
            draws[(ordinal, by)] = [s.indices for s in sets if s.replicate != SELECTED]
    assert len({tuple(v) for v in draws.values()}) == 4


# ---- attribution ranks -----------------------------------------------------------------------------
def test_rank_is_descending_ties_in_unit_order_nan_last():
    assert list(rank(np.array([0.1, 0.3, NAN, 0.3, -1.0]))) == [3, 1, 5, 2, 4]
    assert list(rank(np.array([NAN, NAN, 2.0]))) == [2, 3, 1]
    assert list(rank(np.array([-2.0, -1.0]))) == [2, 1]


def test_top_overlap_counts_shared_units_once():
    assert top_overlap([3, 1, 2], [2, 3, 9]) == 2
    assert top_overlap(np.array([3, 1]), np.array([4, 5])) == 0
    assert top_overlap([1, 1, 2], [1]) == 1
    assert top_overlap([], [1]) == 0


def test_overlap_of_two_top_k_lists_and_its_chance():
    a = np.array([5.0, 4, 3, 2, 1, NAN])
    b = np.array([1.0, 5, 4, 2, 3, 9])
    assert overlap(a, b, 3) == 2  # top 3 of a: 0, 1, 2; of b: 5, 1, 2
    assert chance_overlap(4, 16) == 1.0 and chance_overlap(2, 0) is None
    # the hypergeometric mean k·k/U against brute force: random top-k lists among U units
    rng = np.random.default_rng(0)
    shared = [overlap(rng.random(20), rng.random(20), 5) for _ in range(4000)]
    assert np.mean(shared) == pytest.approx(chance_overlap(5, 20), abs=0.05)


# ---- engine bookkeeping of cross-fitted tests -------------------------------------------------------
def test_tests_of_joins_the_halves_and_per_pair_takes_each_pair_from_its_half():
    sets = [UnitSet("h", 2, SELECTED, (0, 1), fold=0, pairs=(2, 3)),
            UnitSet("h", 2, 1, (4, 5), fold=0, pairs=(2, 3)), UnitSet("h", 2, 0, (6, 7), fold=0, pairs=(2, 3)),
            UnitSet("h", 2, SELECTED, (1, 2), fold=1, pairs=(0, 1)), UnitSet("h", 2, 0, (5, 6), fold=1, pairs=(0, 1))]
    test, = group_tests(sets)
    assert test == CausalTest(0, (2, 1), ((3, (4,)),))
    assert test.n_controls == 1 and test.selected_rows() == (0, 3) and test.control_rows(0) == (2, 4)
    values = np.full((5, 4), NAN)
    values[0, [2, 3]] = [0.3, 0.5]
    values[3, [0, 1]] = [0.1, 0.2]
    np.testing.assert_allclose(per_pair(values, test.selected_rows()), [0.1, 0.2, 0.3, 0.5])
    assert group_tests(sets[:3]) == [CausalTest(0, (2, 1))]  # one fold: as before


# ---- held-out split and selection ------------------------------------------------------------------
def test_split_halves_are_seeded_disjoint_and_cover_the_pairs():
    a, b = split_pairs(7, 3)
    assert len(a) == 3 and len(b) == 4 and sorted([*a, *b]) == list(range(7))
    assert [list(x) for x in split_pairs(7, 3)] == [list(a), list(b)]
    assert any(list(split_pairs(7, s)[0]) != list(a) for s in range(4, 10))


def test_selection_strength_uses_only_its_pairs():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    att = rng.normal(size=(8, 5))
    half = np.array([0, 3, 4, 6])
    got = selection_strength(a, b, att, half)
    np.testing.assert_allclose(got["signed_t"], sps.ttest_rel(a[half], b[half]).statistic)
    np.testing.assert_allclose(got["t"], np.abs(sps.ttest_rel(a[half], b[half]).statistic))
    np.testing.assert_allclose(got["attribution"], att[half].mean(axis=0))
    a2 = a.copy()
    a2[[1, 2, 5, 7]] += 100.0  # the other half changes: the selection half's strength does not
    np.testing.assert_allclose(selection_strength(a2, b, att, half)["t"], got["t"])


# ---- bootstrap intervals ---------------------------------------------------------------------------
def test_resamples_stay_within_their_half():
    halves = [np.array([0, 2, 4]), np.array([1, 3])]
    r = resamples(halves, 0, 500)
    assert r[0].shape == (500, 3) and r[1].shape == (500, 2)
    assert set(np.unique(r[0])) == {0, 2, 4} and set(np.unique(r[1])) == {1, 3}


def test_mean_interval_covers_the_mean_about_95_percent_of_the_time():
    """Percentile bootstrap of a mean of 20 normal values: coverage near 95% (a little under
    at n = 20); an interval of the values themselves, not of their mean, covers ~100%."""
    rng = np.random.default_rng(0)
    covered, widths = 0, []
    for rep in range(200):
        x = rng.normal(1.0, 2.0, size=20)
        lo, hi = mean_interval(x, [np.arange(20)], rep)
        covered += lo <= 1.0 <= hi
        widths.append(hi - lo)
    assert 0.88 <= covered / 200 <= 0.99
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(20), rel=0.15)
    assert mean_interval(np.full(6, 0.3), [np.arange(6)], 0) == [0.3, 0.3]
    # a NaN pair (identical clean A and B) is left out, not propagated
    lo, hi = mean_interval(np.array([0.1, NAN, 0.3, 0.2]), [np.arange(4)], 0)
    assert 0.1 <= lo <= hi <= 0.3


def test_spearman_matches_scipy_and_is_none_without_rank_order():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic)
    assert spearman([1, 2, NAN, 4], [1, 3, 2, 4]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def test_rankings_agreement_against_scipy():
    rng = np.random.default_rng(2)
    a, b, att = rng.normal(size=(10, 12)), rng.normal(size=(10, 12)), rng.normal(size=(10, 12))
    got = rankings_agreement(a, b, att, 3, 0)
    t = np.abs(sps.ttest_rel(a, b).statistic)
    assert got["spearman_t_vs_attribution"] == pytest.approx(sps.spearmanr(t, att.mean(axis=0)).statistic)
    assert got["overlap"] == len(set(np.argsort(-t)[:3]) & set(np.argsort(-att.mean(axis=0))[:3]))
    assert got["overlap_chance"] == pytest.approx(9 / 12) and got["units_ranked"] == 12
    lo, hi = got["spearman_t_vs_attribution_ci"]
    assert -1 <= lo <= got["spearman_t_vs_attribution"] <= hi <= 1


def test_the_estimate_vs_exact_spearman_needs_five_sets():
    att = np.tile(np.arange(6, dtype=float), (4, 1))  # unit u's estimate: u, on every pair
    exact = np.tile(np.arange(6, dtype=float)[:, None], (1, 4))  # set r (unit r) measured r on every pair
    pairs = [tuple(range(4))] * 6
    few = sets_agreement([(u,) for u in range(3)], pairs[:3], exact[:3], att, 0)
    assert few["spearman_sets_estimate_vs_exact"] is None and few["sets_compared"] == 3
    assert few["spearman_sets_withheld"].startswith("too few sets to tell")
    enough = sets_agreement([(u,) for u in range(MIN_SETS)], pairs[:MIN_SETS], exact[:MIN_SETS], att, 0)
    assert enough["spearman_sets_estimate_vs_exact"] == pytest.approx(1.0)
    assert enough["spearman_sets_estimate_vs_exact_ci"] == [1.0, 1.0] and enough["spearman_chance"] == 0.0


def test_the_estimate_vs_exact_spearman_reads_each_set_on_its_own_pairs():
    """Sets measured on different halves: each set's estimate averages the attribution over
    its own measured pairs. Here the estimates on half 0 rank the sets one way and on half 1
    the other way; the exact effects follow half-specific estimates, so ρ = 1 only when each
    set's estimate is read on its own pairs."""
    att = np.zeros((4, 6))
    att[:2] = np.arange(6)  # pairs 0, 1: unit u estimates u
    att[2:] = -np.arange(6)  # pairs 2, 3: unit u estimates −u
    pairs = [(0, 1) if u % 2 == 0 else (2, 3) for u in range(6)]
    exact = np.full((6, 4), NAN)
    for u, p in enumerate(pairs):
        exact[u, list(p)] = att[p[0], u]
    got = sets_agreement([(u,) for u in range(6)], pairs, exact, att, 0)
    assert got["spearman_sets_estimate_vs_exact"] == pytest.approx(1.0)
    assert got["spearman_sets_estimate_vs_exact_ci"] == [1.0, 1.0]  # resampled within each set's own half
    assert BOOTSTRAP >= 1000
