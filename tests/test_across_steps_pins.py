"""The across-steps family (plantain_core.stats.across_steps) against hand-computed and brute-force
references on small fixed data: the FWER over all units × steps under shared sign patterns
(exact enumeration and the documented random draw), BH over all cells, per-step counts, the
peak step, sign consistency, the stable rule and the early / late split."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from plantain_core.stats.across_steps import _summary, across_steps, plain_summary
from plantain_core.stats.engine import StatsOptions, compute_layout_stats

N = 8  # 2^(N−1) = 128 patterns: exact with flips ≥ 128, smallest p_fwer 1/128
STRONG = 10 + 0.1 * np.arange(N)  # |t| ≈ 100: only the identity pattern reaches it
NULL = np.array([1.0, -1, 2, -2, 3, -3, 4, -4])  # t = 0
WEAK_NEG = NULL - 0.3  # t ≈ −0.3: tested, negative, never significant
CELL = {"+": STRONG, "-": -STRONG, "0": NULL, "w": WEAK_NEG, "c": np.full(N, 2.0)}  # c: zero variance, untested


def _stats(diffs: dict[int, np.ndarray], flips: int = 200, seed: int = 0):
    return {s: compute_layout_stats(d, np.zeros_like(d), [f"u{k}" for k in range(d.shape[1])],
                                    layout=f"heads@step{s}", options=StatsOptions(flips=flips, splits=0, seed=seed))
            for s, d in diffs.items()}


def _family(rows: list[str]):
    """rows[u] is one unit's cells over the steps, one letter per step (see CELL)."""
    steps = len(rows[0])
    return across_steps(_stats({s: np.stack([CELL[r[s]] for r in rows], axis=1) for s in range(steps)}))


def _t(d: np.ndarray) -> np.ndarray:
    """Paired t of each column, NaN where the column is constant (scipy's one-sample t)."""
    const = np.ptp(d, axis=0) == 0
    t = np.full(d.shape[1], np.nan)
    t[~const] = sps.ttest_1samp(d[:, ~const], 0.0).statistic
    return t


def _brute_p_fwer(diffs: list[np.ndarray], patterns: np.ndarray, exact: bool, pooled: bool = True) -> np.ndarray:
    """Max-|t| p over every tested unit × step cell, one sign pattern flipping a pair at every
    step, by a loop over the patterns (pooled=False: each step its own family, for contrast)."""
    t_obs = np.stack([_t(d) for d in diffs])
    maxima = []
    for s in patterns:  # untested cells (no observed t) stay out of the null too
        flipped = np.where(np.isfinite(t_obs), np.stack([np.abs(_t(s[:, None] * d)) for d in diffs]), np.nan)
        maxima.append(np.nanmax(flipped) if pooled else np.nanmax(flipped, axis=1))
    maxima = np.asarray(maxima)  # F, or F × S
    p = np.full(t_obs.shape, np.nan)
    for k, u in zip(*np.nonzero(np.isfinite(t_obs))):
        col = maxima if pooled else maxima[:, k]
        count = int(np.sum(col >= abs(t_obs[k, u]) * (1 - 1e-9)))
        p[k, u] = count / len(patterns) if exact else (1 + count) / (1 + len(patterns))
    return p


def _all_patterns(n: int) -> np.ndarray:
    return np.array([(1,) + rest for rest in itertools.product((1, -1), repeat=n - 1)], dtype=float)


def _diffs(seed: int, n: int, u: int, steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [rng.normal(0, 1, size=(n, u)) for _ in range(steps)]
    out[1][:, 0] += 1.2  # moderate effects, so that p_fwer is neither floor nor 1
    out[2][:, 1] -= 0.9
    out[0][:, 2] = 3.0  # one untested (zero-variance) cell: no t, and kept out of the null
    return out


def test_fwer_is_the_max_over_all_units_and_steps_under_shared_patterns_exact():
    n, u, steps = 7, 4, 3  # 64 patterns ≤ 200 flips: exact
    diffs = _diffs(3, n, u, steps)
    fam = across_steps(_stats(dict(enumerate(diffs)), flips=200))
    want = _brute_p_fwer(diffs, _all_patterns(n), exact=True)
    np.testing.assert_allclose(fam["p_fwer"], want, rtol=1e-12, equal_nan=True)
    assert np.isnan(fam["p_fwer"][0, 2]) and np.isnan(fam["t"][0, 2])
    # the data tell pooled and per-step nulls apart: a per-step family would give smaller p here
    per_step = _brute_p_fwer(diffs, _all_patterns(n), exact=True, pooled=False)
    assert np.nanmax(np.abs(per_step - want)) > 0.05
    # identical steps: one shared pattern flips both copies alike, so the family's null is one step's null
    twin = across_steps(_stats({0: diffs[1], 1: diffs[1].copy()}, flips=200))
    one = _brute_p_fwer([diffs[1]], _all_patterns(n), exact=True)[0]
    np.testing.assert_allclose(twin["p_fwer"], np.stack([one, one]), rtol=1e-12)


def test_fwer_with_random_flips_uses_the_documented_draw():
    n, u, steps, flips, seed = 12, 3, 3, 60, 7  # 2^11 > 60: random flips
    diffs = _diffs(5, n, u, steps)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    # dtype int8 is part of the draw: numpy's default int64 gives other bits from the same seed
    patterns = (1 - 2 * rng.integers(0, 2, size=(flips, n), dtype=np.int8)).astype(float)
    fam = across_steps(_stats(dict(enumerate(diffs)), flips=flips, seed=seed))
    np.testing.assert_allclose(fam["p_fwer"], _brute_p_fwer(diffs, patterns, exact=False), rtol=1e-12, equal_nan=True)


def test_bh_is_over_every_tested_cell_and_per_unit_numbers_match_loops():
    n, u, steps = 7, 4, 3
    diffs = _diffs(3, n, u, steps)
    diffs[2][:, 3] = -diffs[2][:, 3] - 2.0  # unit 3 changes sign at the last step
    fam = across_steps(_stats(dict(enumerate(diffs)), flips=200))
    t = np.stack([_t(d) for d in diffs])
    np.testing.assert_allclose(fam["t"], t, rtol=1e-10, equal_nan=True)
    p = 2 * sps.t.sf(np.abs(t), n - 1)
    ok = np.isfinite(t)
    q = np.full(t.shape, np.nan)
    q[ok] = multipletests(p[ok], method="fdr_bh")[1]  # one family: all steps stacked
    np.testing.assert_allclose(fam["q"], q, rtol=1e-10, equal_nan=True)
    assert not np.allclose(q[1], multipletests(p[1], method="fdr_bh")[1])  # per-step BH would differ
    s = fam["summary"]
    sig = fam["p_fwer"] < 0.05
    assert s["per_step"] == [int(sig[k].sum()) for k in range(steps)] and s["cells"] == steps * u
    assert s["q_lt_0.05"] == int(np.sum(q[ok] < 0.05)) and s["p_fwer_lt_0.05"] == int(sig.sum())
    for row in s["top_units"]:
        k = int(row["unit"][1:])
        col = t[:, k]
        tested = np.flatnonzero(np.isfinite(col))
        peak = tested[np.argmax(np.abs(col[tested]))]
        assert row["peak_step"] == peak
        # denominator: the steps where the unit was tested (unit 2 is untested at step 0)
        agree = sum(np.sign(col[j]) == np.sign(col[peak]) for j in tested)
        assert row["sign_consistency"] == pytest.approx(agree / len(tested))
    assert len(s["top_units"]) == u


@pytest.mark.parametrize("rows,stable,transient", [
    (["+++w"], 1, 0),  # 3 of 4 with one sign; the 4th step's sign is noise, not a sign change
    (["++00"], 1, 0),  # exactly half of 4
    (["+000"], 0, 1),  # a quarter
    (["+++00"], 1, 0),  # 3 of 5
    (["++000"], 0, 1),  # 2 of 5: under half
    (["++0"], 1, 0), (["+00"], 0, 1),  # 2 of 3, 1 of 3
    (["++-0"], 0, 1),  # 3 of 4 but two signs
    (["cc++0"], 1, 0),  # tested at 3 steps (2 constant): 2 of 3; 2 of 5 steps would be under half
    (["cc+00"], 0, 1),  # 1 of 3 tested
    (["0000", "w0w0"], 0, 0),  # nothing significant
])
def test_the_stable_rule(rows, stable, transient):
    s = _family(rows)["summary"]
    assert (s["stable_units"], s["transient_units"]) == (stable, transient)
    assert s["units_any_step"] == stable + transient


def _rule_by_loop(t: np.ndarray, p: np.ndarray) -> tuple[int, int, float | None]:
    """The documented rules, one unit and one step at a time."""
    steps, units = t.shape
    stable = transient = 0
    for u in range(units):
        tested = [k for k in range(steps) if np.isfinite(t[k, u])]
        sig = [k for k in tested if p[k, u] < 0.05]
        if not sig:
            continue
        signs = {np.sign(t[k, u]) for k in sig}
        if len(sig) >= len(tested) / 2 and len(signs) == 1:
            stable += 1
        else:
            transient += 1
    half = steps // 2
    early = sum(1 for k in range(half) for u in range(units) if p[k, u] < 0.05)
    late = sum(1 for k in range(steps - half, steps) for u in range(units) if p[k, u] < 0.05)
    return stable, transient, (early / (early + late) if early + late else None)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 6, 7])
def test_summary_rules_match_loops_on_random_cells(steps):
    rng = np.random.default_rng(steps)
    units = types.SimpleNamespace(units=[f"u{k}" for k in range(300)])
    t = rng.normal(0, 3, size=(steps, 300))
    p = rng.choice([0.001, 0.03, 0.2, 0.9], size=t.shape)
    t[rng.random(t.shape) < 0.1] = np.nan
    p[np.isnan(t)] = np.nan
    s = _summary(list(range(10, 10 + steps)), t, p, np.full(t.shape, np.nan), units)
    want = _rule_by_loop(t, p)
    assert (s["stable_units"], s["transient_units"]) == want[:2]
    assert s["early_share"] == (pytest.approx(want[2]) if want[2] is not None else None)
    assert want[0] > 5 and (steps == 1 or want[1] > 5)  # the draw exercises both outcomes


@pytest.mark.parametrize("rows,share", [
    (["+000", "0+00", "000+"], 2 / 3),  # even: steps 0, 1 early; 2, 3 late
    (["+++"], 0.5),  # odd: the middle step is in neither half
    (["0+0"], None),  # only the middle step: no early / late reading
    (["+0000", "0+000", "00+00", "00++0", "0000+"], 0.5),  # 5 steps: 0,1 early; 3,4 late; 2 neither
    (["++000"], 1.0), (["0000+"], 0.0),
])
def test_early_and_late_halves(rows, share):
    s = _family(rows)["summary"]
    assert s["early_share"] == (pytest.approx(share) if share is not None else None)
    text = plain_summary("heads", s, {})
    assert ("outside the middle step" in text) == (share is not None and len(rows[0]) % 2 == 1)
    if share is None:
        assert "first half" not in text


def test_peak_step_counts_and_top_units_order():
    # u0 peaks at step 2 (|t| larger there), u1 at step 0, u2 ties (earliest wins), u3 untested everywhere
    diffs = {s: np.stack([CELL["0"], CELL["0"], STRONG, CELL["c"]], axis=1) for s in range(3)}
    diffs[2][:, 0] = STRONG * 1.0 + 0.2 * np.arange(N) ** 2  # a different |t| from STRONG
    diffs[0][:, 1] = -(STRONG + 0.3 * np.arange(N) ** 2)
    fam = across_steps(_stats(diffs))
    t = fam["t"]
    assert (fam["p_fwer"][[2, 0, 0, 1, 2], [0, 1, 2, 2, 2]] < 0.05).all()
    s = fam["summary"]
    top = {r["unit"]: r for r in s["top_units"]}
    assert (top["u0"]["peak_step"], top["u1"]["peak_step"], top["u2"]["peak_step"]) == (2, 0, 0)
    assert "u3" not in top and len(s["top_units"]) == 3
    assert s["steps"] == [0, 1, 2] and s["peak_step_counts"] == [2, 0, 1]
    assert s["peak_step"] == 0 and isinstance(s["peak_step"], int)
    order = [r["unit"] for r in s["top_units"]]
    assert order == sorted(order, key=lambda name: -np.nanmax(np.abs(t[:, int(name[1:])])))
    assert top["u1"]["t"][0] < 0 and top["u1"]["sign_consistency"] == pytest.approx(1 / 3)  # t = 0 elsewhere
