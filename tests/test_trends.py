"""The seed-probe interpreters' analyses recover planted structure and stay quiet on noise."""

import numpy as np
from scipy.stats import spearmanr

from plantain_core import Pair, Stimulus
from plantain_core.stats.engine import StatsOptions, compute_layout_stats
from plantain_core.stats.trends import covariate_trend, sign_agreement, top_units

N, U = 30, 200


def stats_of(diff, seed=0):
    units = [f"joint[{u // 100}].h{u % 100:02d}" for u in range(diff.shape[1])]
    rng = np.random.default_rng(seed)
    b = rng.normal(10, 1, size=diff.shape)
    return compute_layout_stats(b + diff, b, units, layout="heads", options=StatsOptions(flips=50, splits=5, seed=seed))


def test_trend_recovers_an_effect_growing_with_the_covariate():
    rng = np.random.default_rng(1)
    cov = np.arange(1, N + 1, dtype=float)
    diff = rng.normal(0, 1, size=(N, U))
    diff[:, :10] += -(1.0 + 0.2 * cov)[:, None]  # strong negative units whose magnitude grows with rank
    st = stats_of(diff)
    assert set(top_units(st, 10)) == set(range(10))
    trend = covariate_trend(st, cov, top=10, permutations=500)
    # oriented by each unit's sign, so growth of a negative effect is a positive trend
    expected = np.mean([spearmanr(cov, -diff[:, u]).statistic for u in range(10)])
    assert abs(trend["mean_rho"] - expected) < 1e-6
    assert trend["mean_rho"] > 0.5 and trend["p_perm"] < 0.01
    assert trend["n_positive_rho"] == 10


def test_trend_is_null_without_structure():
    rng = np.random.default_rng(2)
    cov = rng.permutation(N).astype(float)
    diff = rng.normal(0, 1, size=(N, U))
    diff[:, :10] += 2.0
    ps = [covariate_trend(stats_of(diff, seed=s), rng.permutation(cov), top=10, permutations=200, seed=s)["p_perm"]
          for s in range(20)]
    assert np.mean(np.array(ps) < 0.05) <= 0.2


def test_sign_agreement_separates_axis_units_from_class_detectors():
    rng = np.random.default_rng(3)
    diff = np.zeros((N, 3))
    diff[:, 0] = 1.0 + rng.normal(0, 0.2, N)  # axis: every pair moves
    diff[:, 1] = np.where(np.arange(N) % 10 < 7, 0.5, -0.1) + rng.normal(0, 0.02, N)
    diff[:2, 1] += 20.0  # detector: two events carry most of it
    diff[:, 2] = np.tile([1.0, -1.0], N // 2)  # t = 0
    st = stats_of(diff)
    out = sign_agreement(st, top=2)
    assert set(out["unit_names"]) == {st.units[0], st.units[1]}
    by_name = dict(zip(out["unit_names"], zip(out["agreement"], out["top2_share"])))
    assert by_name[st.units[0]][0] == 1.0
    assert by_name[st.units[1]][1] > 0.75 and by_name[st.units[1]][0] < 0.8
    assert (out["n_axis_units"], out["n_class_detectors"]) == (1, 1)


def test_interpreters_write_numbers_and_a_section():
    from plantain_core.report.analysis import ProbeResult
    from plantain_core.plugins import get_registry

    rng = np.random.default_rng(4)
    diff = rng.normal(0, 1, size=(N, U))
    diff[:, :20] += np.linspace(0.5, 4, N)[:, None]
    st = stats_of(diff)
    pairs = [Pair(f"c{i}", Stimulus("a"), Stimulus("b"), {"rank": i + 1}) for i in range(N)]
    result = ProbeResult({"heads": st}, {}, {"seed": 0}, tuple(p.id for p in pairs))
    out = get_registry().get("interpreter", "otherview").obj.interpret(None, pairs, result)
    assert out.numbers["trend_vs_rank"]["mean_rho"] > 0.3
    (section,) = out.sections
    assert section.title == "Graded perceptual-similarity axis"
    assert "grows" in section.markdown and "heads layout" in section.markdown
