"""Each sentence the card prints about the reviewer's checks holds on data built to test it:
threshold ties count alike in the observed and null counts, D constant up to rounding is
untested, a length-matched probe is not called confounded, the minimum detectable effect
has the power it claims, and weak identification reads "cannot tell", never a verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plantain_core.stats.checks import mde, review
from plantain_core.stats.common_mode import common_mode
from plantain_core.report.checks_section import length_text, specificity_text
from plantain_core.stats.results import layout_summary
from plantain_core.stats.engine import StatsOptions, compute_layout_stats


def reviewed(diff, delta=None, flips=200, a=None):
    n, u = diff.shape
    names = [f"single[{k // 4}].h{k % 4:02d}" for k in range(u)]
    a = diff if a is None else a
    st = compute_layout_stats(a, a - diff, names, layout="heads", options=StatsOptions(flips=flips, splits=5))
    return review(st, delta)


def test_a_tie_at_the_threshold_counts_alike_in_the_observed_and_the_null_counts():
    """Threshold = one unit's |t| exactly: under exact enumeration the identity pattern's
    count must equal the observed count (the null's cut on g let rounding count the tie)."""
    rng = np.random.default_rng(0)
    diff = rng.normal(0.8, 1.0, size=(9, 30))
    st0 = compute_layout_stats(diff, np.zeros_like(diff), [f"u{k}" for k in range(30)])
    mismatches = 0
    for k in range(30):
        thr = float(abs(st0.t[k]))
        st = compute_layout_stats(diff, np.zeros_like(diff), [f"u{j}" for j in range(30)],
                                  options=StatsOptions(flips=256, splits=0, thresholds=(thr,)))
        assert st.exact
        identity = 0  # code 0 of the enumeration: every sign +1
        observed = layout_summary(st)["thresholds"][0]["observed"]
        mismatches += int(st.null_counts[identity, 0] != observed)
        assert observed == int(np.count_nonzero(np.abs(st0.t) > thr * (1 + 1e-9)))
    assert mismatches == 0


def test_d_constant_up_to_rounding_is_untested():
    """D = 2 up to one ulp (what B = A − 2 computed in floating point leaves): sd ~ 1e-16 gave
    t ~ 1e16 and the layout's strongest unit before; now it is zero variance."""
    rng = np.random.default_rng(1)
    a = rng.normal(50.0, 5.0, size=(12, 8))
    b = a + rng.normal(0, 1, size=(12, 8))
    a[:, 0] = np.where(rng.random(12) < 0.5, 2.0, np.nextafter(2.0, 3.0))
    b[:, 0] = 0.0
    st = compute_layout_stats(a, b, [f"u{k}" for k in range(8)])
    assert np.ptp(st.diff[:, 0]) > 0  # not exactly constant: the old rule tested it
    assert st.zero_variance[0] and np.isnan(st.t[0])
    assert not st.zero_variance[1:].any() and layout_summary(st)["max_abs_t"] < 1e3


def test_a_length_matched_probe_is_not_called_confounded():
    rng = np.random.default_rng(2)
    st = reviewed(rng.normal(0.5, 1, size=(12, 16)), delta=np.zeros(12))
    la = layout_summary(st)["length_adjusted"]
    assert la["note"].startswith("A and B have the same token count in every pair")
    assert "confounded" not in length_text(la) and "cannot explain" in length_text(la)
    const = layout_summary(reviewed(rng.normal(0.5, 1, size=(12, 16)), delta=np.full(12, 4.0)))["length_adjusted"]
    assert "confounded" in const["note"]


def test_a_one_signed_length_difference_states_its_power():
    """Δ in 1..3 tokens, all positive: the intercept at Δ = 0 is far outside the data; the
    card gives the inflation and the minimum detectable effect instead of a bare count."""
    rng = np.random.default_rng(3)
    delta = rng.integers(5, 8, size=20).astype(float)
    st = reviewed(rng.normal(0.0, 1, size=(20, 24)), delta=delta)
    la = layout_summary(st)["length_adjusted"]
    kappa = math.sqrt(1 + 20 * delta.mean() ** 2 / ((delta - delta.mean()) ** 2).sum())
    assert la["inflation"] == pytest.approx(kappa, rel=1e-6) and kappa > 3
    assert la["mde_dz"] > 2 and f"{kappa:.1f}×" in length_text(la) and "says little" in length_text(la)


def test_the_minimum_detectable_effect_has_the_claimed_power():
    """Power at the MDE, by simulation of the same rejection rule, is 80%."""
    rng = np.random.default_rng(4)
    n, t_crit = 12, 3.1
    d = mde(n, n - 1, t_crit)
    x = rng.normal(d, 1.0, size=(n, 40000))
    t = x.mean(axis=0) / (x.std(axis=0, ddof=1) / math.sqrt(n))
    assert float((np.abs(t) > t_crit).mean()) == pytest.approx(0.8, abs=0.01)
    assert mde(n, n - 1, t_crit, inflation=2.0) == pytest.approx(2 * d, rel=1e-4)
    assert mde(n, n - 1, None) is None


def test_a_quarter_of_units_with_own_effects_do_not_invent_opposite_specific_hits():
    """The audit's case: a zero-mean shared factor with random loadings and a quarter of the
    units carrying a positive effect. The old common mode (mean over all units, uncentred)
    gave most null units of this design a negative 'specific' effect."""
    rng = np.random.default_rng(5)
    n, u = 20, 80
    false_hits = found = 0
    for _ in range(30):
        diff = rng.normal(size=(n, u)) + np.outer(rng.normal(size=n), rng.normal(size=u))
        diff[:, :20] += 1.5
        st = reviewed(diff)
        hits = st.specific.p_fwer < 0.05
        false_hits += int(hits[20:].any())
        found += int(hits[:20].sum())
    assert false_hits <= 4  # FWER 5% of 30: P(X > 4) = 0.06 under exactly 5%
    assert found > 0.5 * 30 * 20  # and the own effects are still found


def test_two_equal_groups_give_two_readings_and_no_verdict_on_either():
    """Half the units follow one shift, half another with equal loadings: nothing says which is
    'the' common mode, so both readings are kept and no unit is called specific."""
    rng = np.random.default_rng(6)
    n, u = 20, 60
    f = rng.normal(1.0, 0.3, size=n)
    diff = f[:, None] + rng.normal(0, 0.3, size=(n, u))
    diff[:, :30] += 1.0
    mode = common_mode(diff, np.ones(u, bool))
    assert len(mode.readings) == 2
    st = reviewed(diff)
    assert (st.specific.p_fwer < 0.05).sum() <= 1
    text = specificity_text(layout_summary(st)["specificity"])
    assert "Two readings of the shared shift" in text and "cannot tell" in text


def test_weak_identification_reads_cannot_tell_never_not_specific():
    """A pure shared shift with little pair-to-pair variation: every raw hit, κ large."""
    rng = np.random.default_rng(7)
    n, u = 16, 40
    diff = (1.0 + rng.normal(0, 0.05, size=n))[:, None] * rng.uniform(0.5, 2, size=u) + rng.normal(0, 0.2, size=(n, u))
    st = reviewed(diff)
    sp = layout_summary(st)["specificity"]
    assert sp["inflation"] > 3 and sp["raw_p_fwer_lt_0.05"] == u
    text = specificity_text(sp)
    assert "weak" in text and "cannot tell" in text and "not evidence" not in text
    assert f"{sp['mde_dz']:.2f}" in text


def test_half_the_units_with_own_effects_over_a_shared_shift_keep_bh_honest():
    """The calibration cell that failed (BH FDR 0.10): half the units carry an own effect over a
    shared shift with positive loadings. The shift's least-squares variance assumed independent
    units and was 3.5× too small; its bootstrap variance over pairs keeps the false
    discoveries near zero (0.005 in 150 data sets)."""
    rng = np.random.default_rng(8)
    n, u = 20, 60
    own = np.arange(u) < 30
    fdp = []
    for k in range(30):
        diff = rng.normal(size=(n, u)) + 0.8 * own + np.outer(0.6 + rng.normal(size=n), rng.uniform(0.5, 1.5, u))
        st = reviewed(diff)
        q = np.isfinite(st.specific.q) & (st.specific.q < 0.05)
        fdp.append((q & ~own).sum() / max(q.sum(), 1))
    assert float(np.mean(fdp)) <= 0.04


def test_the_shift_variance_is_at_least_its_bootstrap_over_pairs():
    from plantain_core.stats.common_mode import SHIFT_BOOTS, _fit

    rng = np.random.default_rng(9)
    n, u = 16, 40
    diff = rng.normal(size=(n, u)) + np.outer(0.6 + rng.normal(size=n), rng.uniform(0.5, 1.5, u))
    tested = np.ones(u, bool)
    plain, boot = _fit(diff, tested), common_mode(diff, tested, seed=3)
    draws = np.random.default_rng(np.random.SeedSequence(3).spawn(3)[2])
    s0 = plain.readings[0].shift
    shifts = [_fit(diff[draws.integers(0, n, n)], tested, (s0,)).readings[0].shift
              for _ in range(SHIFT_BOOTS)]  # the resample's fit, started at the data's reading
    assert boot.readings[0].shift == plain.readings[0].shift
    assert boot.readings[0].var == pytest.approx(max(plain.readings[0].var, float(np.var(shifts, ddof=1))), rel=1e-12)
    assert boot.readings[0].var > 2 * plain.readings[0].var  # the units share the common mode's noise


def test_the_flipped_null_carries_the_shifts_error():
    """With an estimated shift (variance v) every flip draws the error −β·e that the observed
    intercept carries (the same in every unit): each flipped |t| equals a refit of
    fitted + s ⊙ r − β·e by lstsq with variance σ²(X'X)⁻¹₀₀ + β²v. Without the draw the null's
    t's were only shrunk, and with a shared shift the FWER was 6.8%."""
    from plantain_core.stats.engine import sign_patterns
    from plantain_core.stats.freedman_lane import adjusted_test

    rng = np.random.default_rng(10)
    n, u, v, seed = 10, 4, 0.3, 5
    x = rng.normal(0.8, 1.0, size=(n, u))
    diff = rng.normal(0.2, 1.0, size=(n, u)) + 0.7 * x
    signs, exact = sign_patterns(n, 40, np.random.default_rng(1))
    ours = adjusted_test(diff, np.ones(u, bool), x, signs, exact, shift_var=v, seed=seed)
    errors = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3]).normal(0.0, math.sqrt(v), len(signs))

    def t_of(y, xc):
        design = np.column_stack([np.ones(n), xc])
        beta = np.linalg.lstsq(design, y, rcond=None)[0]
        s2 = ((y - design @ beta) ** 2).sum() / (n - 2)
        return beta[0] / math.sqrt(s2 * np.linalg.inv(design.T @ design)[0, 0] + beta[1] ** 2 * v)

    null_max = []
    for s, e in zip(signs, errors):
        tk = []
        for k in range(u):
            b_red = x[:, k] @ diff[:, k] / (x[:, k] @ x[:, k])
            r = diff[:, k] - b_red * x[:, k]
            tk.append(abs(t_of(b_red * x[:, k] + s * r - b_red * e, x[:, k])))
        null_max.append(max(tk))
    np.testing.assert_allclose(ours.null_max, null_max, rtol=1e-9)
    assert ours.t[0] == pytest.approx(t_of(diff[:, 0], x[:, 0]), rel=1e-9)
