"""Held-out (cross-fitted) selection of the causal check on a tiny run of 6 pairs: each
half's top units by |t| computed on that half only, measured on the other half; the
bootstrap intervals and chance values in causal.json and on the card; ``--selection same``
labelled double-dipped; the attribution-vs-exact Spearman withheld where it would mislead."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from plantain_core.cli import main
from plantain_core.stats.engine import top_by_abs_t

SPEC = """schema = 1
name = "heldout-test"
generator = "text-pair"
direction = ["large", "small"]

[stimuli]
pairs = [
  { id = "km", a = "a 1-kilometer object", b = "a 1-millimeter object" },
  { id = "city", a = "an object the size of a city", b = "an object the size of a cell" },
  { id = "hill", a = "an object as tall as a hill", b = "an object as small as a flea" },
  { id = "moon", a = "an object as large as the moon", b = "an object as small as a grain of sand" },
  { id = "tower", a = "a tower-sized object", b = "a coin-sized object" },
  { id = "ship", a = "an object as big as a ship", b = "an object as small as an ant" },
]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heldout")
    spec = tmp / "heldout-test.toml"
    spec.write_text(SPEC)
    out = tmp / "run"
    res = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--out", str(out),
                                    "--flips", "16", "--splits", "4", "--no-progress", "--no-figures"])
    assert res.exit_code == 0, res.output
    return out


def _causal(run, *args):
    res = CliRunner().invoke(main, ["causal", str(run), "--top", "2", "--no-progress", "--no-figures", *args])
    assert res.exit_code == 0, res.output
    return json.loads((run / "causal.json").read_text()), (run / "README.md").read_text()


def test_each_half_selects_on_its_own_pairs_and_is_measured_on_the_other(run):
    data, card = _causal(run, "--controls", "3", "--exhaustive", "--doses", "2")
    sel = data["selection"]
    ids = data["clean"]["pair_ids"]
    assert sel["method"] == "held-out" and sel["seed"] == data["run_seed"]
    assert sorted(sel["halves"][0] + sel["halves"][1]) == sorted(ids) and len(sel["halves"][0]) == 3
    cap = np.load(run / "captures" / "heads.npz")
    a, b = cap["a"], cap["b"]
    units = list(cap["units"])
    dose = data["layouts"]["heads"]["doses"][0]
    assert dose["k"] == 2 and len(dose["folds"]) == 2
    for f, fold in enumerate(dose["folds"]):
        chose, measured = fold["selected_on"], fold["measured_on"]
        assert [ids[i] for i in chose] == sel["halves"][f] and sorted(chose + measured) == list(range(6))
        t_half = sps.ttest_rel(a[chose], b[chose]).statistic  # |t| from the selection half only
        expected = top_by_abs_t(t_half, 2)
        assert fold["units"] == [units[i] for i in expected]
        np.testing.assert_allclose(fold["t_selection"], t_half[expected], rtol=1e-5)
    per_pair = np.array(dose["effect_per_pair"], dtype=float)
    assert np.isfinite(per_pair).all()  # every pair measured, by the half that did not choose it
    assert dose["effect"] == pytest.approx(per_pair.mean(), rel=1e-5)
    for fold in dose["folds"]:
        assert fold["effect"] == pytest.approx(per_pair[fold["measured_on"]].mean(), rel=1e-5)
    lo, hi = dose["effect_ci"]
    assert lo <= dose["effect"] <= hi and lo < hi
    assert dose["controls"]["n"] == dose["controls"]["planned"] <= 3
    # interventions: each set on its half, 2 passes per pair (ablate)
    assert data["cost"]["interventions"] == data["cost"]["unit_sets_run"] * 2 * 3
    scr = data["screen"]["layouts"]["heads"]
    assert scr["overlap_chance"] == pytest.approx(2 * 2 / 16) and scr["spearman_chance"] == 0.0
    assert len(scr["overlap_ci"]) == 2 and len(scr["spearman_t_vs_attribution_ci"]) == 2
    # ablate mode: a patch estimate is not compared with ablation effects
    assert scr["spearman_sets_estimate_vs_exact"] is None and scr["spearman_sets_withheld"].startswith("withheld")
    assert "**Held-out selection.**" in card and "Double-dipped" not in card
    assert f"[{100 * lo:.1f}%, {100 * hi:.1f}%]" in card and "(chance: 2²/16 = 0.25)" in card
    assert "not compared in ablate mode" in card


def test_selection_same_is_the_old_double_dipped_check(run):
    data, card = _causal(run, "--controls", "1", "--selection", "same", "--mode", "patch")
    assert data["selection"]["method"] == "same" and data["selection"]["halves"] is None
    cap = np.load(run / "captures" / "heads.npz")
    t = sps.ttest_rel(cap["a"], cap["b"]).statistic
    dose = data["layouts"]["heads"]["doses"][0]
    assert "folds" not in dose and dose["t"] == pytest.approx(list(t[top_by_abs_t(t, 2)]), rel=1e-5)
    assert "**Double-dipped: the units were selected and measured on the same pairs**" in card
    assert "biased upward by the selection" in card
    # patch mode, but 2 or 3 sets measured (selected, 1 control, the attribution top): too few for a Spearman
    scr = data["screen"]["layouts"]["heads"]
    assert scr["sets_compared"] < 5 and scr["spearman_sets_estimate_vs_exact"] is None
    assert "too few sets to tell" in card


def test_patch_mode_with_enough_sets_gives_the_spearman_with_its_interval(run):
    data, card = _causal(run, "--controls", "2", "--exhaustive", "--doses", "1,2", "--mode", "patch")
    scr = data["screen"]["layouts"]["heads"]
    assert scr["sets_compared"] >= 5
    rho, ci = scr["spearman_sets_estimate_vs_exact"], scr["spearman_sets_estimate_vs_exact_ci"]
    assert rho is not None and ci is not None and ci[0] <= ci[1]
    assert f"Spearman ρ = {rho:.2f} [" in card
