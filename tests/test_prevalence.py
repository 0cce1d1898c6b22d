"""Bayesian population prevalence (plantain_core.stats.prevalence, Ince et al. 2021): the MAP,
HDI and lower bound equal a brute-force grid posterior built from the generative model
(k ~ Binomial(n, α + γ(β − α)), γ uniform), the all-significant case equals its closed form,
and a sweep reports them per unit and per block in sweep_summary.json and its card."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from plantain_core.cli import main
from plantain_core.stats.prevalence import prevalence


def _grid(k, n, alpha, power, level=0.95, m=400_001):
    """γ's posterior on a fine grid, from the binomial likelihood directly."""
    g = np.linspace(0, 1, m)
    dens = sps.binom.pmf(k, n, alpha + g * (power - alpha))
    w = dens / dens.sum()
    order = np.argsort(-dens, kind="stable")  # highest density first: the HDI is the top `level` of mass
    inside = order[: np.searchsorted(np.cumsum(w[order]), level) + 1]
    cdf = np.cumsum(w)
    return {"map": g[np.argmax(dens)], "hdi_low": g[inside].min(), "hdi_high": g[inside].max(),
            "lower_bound": g[np.searchsorted(cdf, 1 - level)]}


@pytest.mark.parametrize("k,n,alpha,power", [(4, 4, 0.05, 1.0), (2, 4, 0.05, 1.0), (0, 5, 0.05, 1.0),
                                             (7, 10, 0.05, 0.8), (1, 12, 0.01, 0.9), (3, 3, 0.05, 0.5)])
def test_prevalence_equals_a_grid_posterior(k, n, alpha, power):
    got, ref = prevalence(k, n, alpha, power), _grid(k, n, alpha, power)
    for key in ("map", "hdi_low", "hdi_high", "lower_bound"):
        assert got[key] == pytest.approx(ref[key], abs=2e-4), key


def test_significant_in_every_replicate_has_the_closed_form_bound():
    # posterior of θ ∝ θ^n on [α, 1]: the HDI is [θ₀, 1] with (1 − θ₀^(n+1)) = 0.95 (1 − α^(n+1))
    n, alpha = 4, 0.05
    theta0 = (1 - 0.95 * (1 - alpha ** (n + 1))) ** (1 / (n + 1))
    p = prevalence(n, n)
    assert p["hdi_low"] == pytest.approx((theta0 - alpha) / (1 - alpha), rel=1e-8)
    assert p["map"] == p["hdi_high"] == 1.0 and p["lower_bound"] == pytest.approx(p["hdi_low"], rel=1e-8)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        prevalence(5, 4)


GRID = """probes = ["ray"]
models = ["tiny"]
seeds = [0, 1, 2]
layouts = ["heads"]

[options]
flips = 64
splits = 4
"""


def test_a_sweep_reports_prevalence_per_unit_and_block(tmp_path):
    (tmp_path / "grid.toml").write_text(GRID)
    out = tmp_path / "sweep"
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(tmp_path / "grid.toml"), "--out", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["sweep", "report", str(out), "--no-figures"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "sweep_summary.json").read_text())["replication"][0]
    prev = rep["prevalence"]
    assert prev["replicates"] == 3 and set(prev["units_by_k"]) == {"0", "1", "2", "3"}
    assert prev["units_by_k"]["3"]["hdi_low"] == pytest.approx(prevalence(3, 3)["hdi_low"], rel=1e-5)
    cells = sorted(p for p in out.iterdir() if (p / "summary.json").is_file())
    own = [{b["block"]: b["p_fwer"] < 0.05 for b in json.loads((c / "summary.json").read_text())
            ["layouts"]["heads"]["block_tests"]["blocks"]} for c in cells]
    for b in prev["blocks"]:
        assert b["k"] == sum(o[b["block"]] for o in own)
        assert b["map"] == pytest.approx(prevalence(b["k"], 3)["map"], rel=1e-5)
    card = (out / "README.md").read_text()
    every = prevalence(3, 3)
    assert f"significant in 3 of 3 seeds ({rep['units_by_seeds_significant']['3']:,} units) has prevalence ≥ " \
           f"{every['hdi_low']:.2f}" in card
    first = prev["blocks"][0]
    assert first["k"] == 3  # the tiny model's ray probe moves every block in every seed
    assert f"{first['block']} in 3 of 3 seeds, prevalence ≥ {every['hdi_low']:.2f}" in card


def test_prevalence_across_models_counts_each_models_lowest_seed(tmp_path):
    from plantain_core.config import RunConfig
    from plantain_core.sweep.prevalence import models_lines, models_prevalence

    units = ["joint[0].h00", "joint[0].h01", "single[0].h00", "single[0].h01"]
    cells = []

    def cell(model, seed, p_fwer, blocks):
        folder = tmp_path / f"{model}-{seed}"
        folder.mkdir()
        rows = [{"block": b, "p_fwer": p} for b, p in blocks.items()]
        (folder / "summary.json").write_text(json.dumps({"layouts": {"heads": {"block_tests": {"blocks": rows}}}}))
        cells.append({"dir": folder, "probe": "ray", "config": RunConfig(probe="ray", model=model, seed=seed),
                      "manifest": {"pair_ids": ["p0", "p1"]},
                      "units": {"heads": {"unit": units, "p_fwer": np.asarray(p_fwer, dtype=float)}}})

    cell("tiny", 1, [0.5, 0.5, 0.5, 0.5], {"joint[0]": 0.5, "single[0]": 0.5})  # a higher seed: not counted
    cell("tiny", 0, [0.01, 0.01, 0.2, 0.01], {"joint[0]": 0.01, "single[0]": 0.3})
    cell("tiny-weights1", 0, [0.01, 0.3, 0.2, 0.04], {"joint[0]": 0.02, "single[0]": 0.01})
    cell("tiny-weights2", 0, [0.02, 0.01, 0.9, 0.5], {"joint[0]": 0.04, "single[0]": 0.2})
    (entry,) = models_prevalence(cells)
    assert entry["models"] == ["tiny", "tiny-weights1", "tiny-weights2"] and entry["seeds"] == [0, 0, 0]
    assert entry["units_by_models_significant"] == {"0": 1, "1": 0, "2": 2, "3": 1}
    assert entry["in_every_model"] == ["joint[0].h00"]
    blocks = {b["block"]: b["k"] for b in entry["prevalence"]["blocks"]}
    assert blocks == {"joint[0]": 3, "single[0]": 1}
    text = "\n".join(models_lines([entry]))
    assert f"1 of 4 units are FWER hits in 3 of 3 models; such a unit has prevalence ≥ " \
           f"{prevalence(3, 3)['hdi_low']:.2f}" in text and "joint[0] in 3 of 3 models" in text
