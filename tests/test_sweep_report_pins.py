"""The sweep card's replication over noise seeds (plantain_core.sweep.report.summarize) on small
hand-made cells: the combined test against an independent reimplementation (seed-averaged
captures, scipy's paired t, a loop over sign patterns), its exact-enumeration edge cases, the
order of its top units, the per-seed counts, and that cells with other pairs never combine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from plantain_core.config import RunConfig
from plantain_core.sweep.report import render, summarize

LAYOUT = "heads"


def _cell(tmp_path, seed: int, a, b, *, pair_ids=None, flips: int = 200, p_fwer=None, probe: str = "p",
          units=None, stats_seed=None, model: str = "tiny"):
    """A complete cell as sweep_report._cells returns it, its captures written as a run writes them."""
    n, u = a.shape
    pair_ids = [f"q{i}" for i in range(n)] if pair_ids is None else pair_ids
    units = [f"joint[0].h{k:02d}" for k in range(u)] if units is None else units
    folder = tmp_path / f"{probe}-{model}-{seed}-{'-'.join(pair_ids)[:40]}"
    (folder / "captures").mkdir(parents=True)
    np.savez(folder / "captures" / f"{LAYOUT}.npz", a=a, b=b, units=np.array(units), pair_ids=np.array(pair_ids))
    p = np.ones(u) if p_fwer is None else np.asarray(p_fwer, dtype=float)
    return {"name": folder.name, "dir": folder, "manifest": {"pair_ids": list(pair_ids)}, "probe": probe,
            "config": RunConfig(probe=probe, model=model, seed=seed, flips=flips, stats_seed=stats_seed),
            "units": {LAYOUT: {"unit": list(units), "t": np.full(u, np.nan), "p_fwer": p}}}


def _seeds(n: int, u: int, seeds: int, seed: int = 0, effect: float = 1.0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 1, size=(n, u))  # the pairs' own effect, common to all noise seeds
    shared[:, 0] += effect
    out = []
    for _ in range(seeds):
        b = rng.normal(0, 1, size=(n, u))
        out.append((b + shared + rng.normal(0, 0.5, size=(n, u)), b))
    return out


def _reference(pairs: list[tuple[np.ndarray, np.ndarray]], patterns: np.ndarray, exact: bool):
    """t of the seed-averaged captures (scipy) and max-|t| p by a loop over sign patterns."""
    a = sum(x for x, _ in pairs) / len(pairs)
    b = sum(y for _, y in pairs) / len(pairs)
    d = a - b
    t = sps.ttest_rel(a, b).statistic
    maxima = np.array([np.max(np.abs(sps.ttest_1samp(s[:, None] * d, 0.0).statistic)) for s in patterns])
    count = np.array([np.sum(maxima >= abs(x) * (1 - 1e-9)) for x in t])
    return t, (count / len(patterns) if exact else (1 + count) / (1 + len(patterns)))


def _all_patterns(n: int) -> np.ndarray:
    return np.array([(1,) + rest for rest in itertools.product((1, -1), repeat=n - 1)], dtype=float)


def _drawn(n: int, flips: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    return (1 - 2 * rng.integers(0, 2, size=(flips, n), dtype=np.int8)).astype(float)


@pytest.mark.parametrize("n,flips,exact", [
    (6, 200, True),  # 32 patterns: floor 1/32
    (8, 128, True),  # 2^7 = 128 = flips: still exact
    (9, 128, False),  # 256 > 128: random flips
    (5, 200, True),  # 16 patterns: floor 1/16 > 0.05, no FWER hit whatever the effect
])
def test_combined_test_is_the_sign_flip_test_of_seed_averaged_pairs(tmp_path, n, flips, exact):
    u = 12
    data = _seeds(n, u, 3, seed=n, effect=3.0)
    # cells arrive in any order; the lowest seed's flips and statistics seed are the combined test's
    cells = [_cell(tmp_path, s, a, b, flips=flips, stats_seed=100 + s) for s, (a, b) in zip((7, 3, 5), data)]
    cells[1]["config"] = RunConfig(probe="p", model="tiny", seed=3, flips=flips, stats_seed=103)
    (rep,) = summarize(cells)["replication"]
    comb = rep["combined"]
    patterns = _all_patterns(n) if exact else _drawn(n, flips, 103)
    t, p = _reference(data, patterns, exact)
    assert rep["seeds"] == [3, 5, 7] and rep["n_pairs"] == n and comb["n_pairs"] == n
    assert (comb["exact"], comb["flips_used"], comb["flips"]) == (exact, len(patterns), flips)
    assert comb["p_floor"] == pytest.approx(1 / len(patterns) if exact else 1 / (len(patterns) + 1))
    assert comb["fwer_hits"] == int(np.sum(p < 0.05))
    for row in comb["top"]:
        k = int(row["unit"][-2:])
        assert row["t"] == pytest.approx(t[k], rel=1e-5) and row["p_fwer"] == pytest.approx(p[k], rel=1e-5)  # 6 digits
    if n == 5:
        assert comb["fwer_hits"] == 0 and abs(t[0]) > 5
    else:
        assert comb["fwer_hits"] >= 1  # the planted unit passes: the comparison is not all ones
    card = render("sw", summarize(cells), {})
    assert (f"all {len(patterns)} sign patterns (exact)" in card) == exact
    assert (f"{flips} random flips" in card) == (not exact)


def test_top_units_are_the_largest_combined_abs_t_ties_in_unit_order(tmp_path):
    n, u = 7, 64
    rng = np.random.default_rng(4)
    d = rng.normal(0, 1, size=(n, u)) + np.linspace(-1, 1, u)
    for k in range(6):  # six exact ties in |t| among the largest (the later unit is the negated copy)
        d[:, 40 + k] = -(rng.normal(0, 1, size=n) + 4)
        d[:, 10 + k] = -d[:, 40 + k]
    d[:, 63] = 1.0  # zero variance: untested, never above a tested unit
    p_fwer = [[0.01 if k % 3 == 0 else 0.5 for k in range(u)], [0.01 if k % 2 == 0 else 0.5 for k in range(u)]]
    p_fwer[0][1] = p_fwer[1][1] = 0.05  # a hit is p_fwer < 0.05, strictly
    # a and b the same in both seeds: their mean is exactly d, so the ties stay exact
    cells = [_cell(tmp_path, s, d, np.zeros((n, u)), p_fwer=p) for s, p in zip((0, 1), p_fwer)]
    (rep,) = summarize(cells)["replication"]
    t = sps.ttest_1samp(d[:, :63], 0.0).statistic
    want = sorted(range(63), key=lambda k: (-abs(t[k]), k))[:10]
    assert [int(r["unit"][-2:]) for r in rep["combined"]["top"]] == want
    assert sum(k >= 40 for k in want) >= 4  # the ties are inside the top 10
    hits = [(k % 3 == 0) + (k % 2 == 0) for k in range(u)]
    assert [r["seeds_significant"] for r in rep["combined"]["top"]] == [hits[k] for k in want]
    assert rep["hits_per_seed"] == [22, 32]
    assert rep["units_by_seeds_significant"] == {"0": sum(h == 0 for h in hits), "1": sum(h == 1 for h in hits),
                                                 "2": sum(h == 2 for h in hits)}
    assert rep["in_every_seed"] == [f"joint[0].h{k:02d}" for k in range(u) if hits[k] == 2]


def test_cells_with_other_pairs_never_combine(tmp_path):
    n, u = 6, 5
    data = _seeds(n, u, 4, seed=1)
    same = [_cell(tmp_path, s, a, b) for s, (a, b) in zip((0, 1), data[:2])]
    other_ids = [f"r{i}" for i in range(n)]
    other = [_cell(tmp_path, s, a, b, pair_ids=other_ids, p_fwer=[0.01] * u) for s, (a, b) in zip((2, 3), data[2:])]
    summary = summarize(same + other)
    reps = sorted(summary["replication"], key=lambda r: r["seeds"])
    assert [r["seeds"] for r in reps] == [[0, 1], [2, 3]]  # two experiments, each its own replication
    assert reps[0]["hits_per_seed"] == [0, 0] and reps[1]["hits_per_seed"] == [5, 5]
    for rep, group in zip(reps, (data[:2], data[2:])):
        t, _ = _reference(group, _all_patterns(n), True)
        assert [r["t"] for r in rep["combined"]["top"]] == pytest.approx(sorted(t, key=lambda x: -abs(x)), rel=1e-5)
    assert summary["probe_correlations"] == [] and summary["model_correlations"] == []
    # the same pairs in another order are other rows: not averaged row by row
    shuffled = _cell(tmp_path, 9, *data[3], pair_ids=[f"q{i}" for i in reversed(range(n))])
    reps = summarize(same + [shuffled])["replication"]
    assert sorted(r["seeds"] for r in reps) == [[0, 1], [9]]
    # the manifest agrees, the captures do not: no combined test, and the card says why
    liar = _cell(tmp_path, 4, *data[2], pair_ids=other_ids)
    liar["manifest"] = {"pair_ids": [f"q{i}" for i in range(n)]}
    (rep,) = summarize(same + [liar])["replication"]
    assert "combined" not in rep and "pair ids" in rep["combined_note"]
    assert "Combined over seeds: none (the cells' captures disagree on units or pair ids" in render("sw", {
        "cells": [], "replication": [rep], "probe_correlations": [], "model_correlations": []}, {})


def _apart(tmp_path, seed: int, data, name: str, **config):
    """A cell in its own folder (two cells may share a seed), its config evolved by ``config``."""
    cell = _cell(tmp_path / name, seed, *data)
    cell["config"] = cell["config"].evolve(**config)
    cell["name"] = name
    return cell


def _combined_t(rep) -> list[float]:
    return [r["t"] for r in rep["combined"]["top"]]


@pytest.mark.parametrize("what,one,other,said", [
    ("size", {"height": 128, "width": 128}, {"height": 256, "width": 256}, "size"),
    ("layouts", {"layouts": ("heads",)}, {"layouts": ("heads", "slices16")}, "layouts"),
    ("dtype", {"dtype": "fp32"}, {"dtype": "bf16"}, "dtype"),
    ("spec", {}, {}, "spec file"),  # two different specs, both named p
])
def test_cells_that_differ_in_more_than_the_seed_never_combine(tmp_path, what, one, other, said):
    """Issue 26 item 3: a size, layouts, dtype or spec axis is not a replication over seeds,
    whatever the seeds (here the same seeds on both sides, and one seed only on each)."""
    n, u = 6, 5
    data = _seeds(n, u, 4, seed=2)
    first = [_apart(tmp_path, s, d, f"first{s}", **one) for s, d in zip((0, 1), data[:2])]
    second = [_apart(tmp_path, s, d, f"second{s}", **other) for s, d in zip((0, 1), data[2:])]
    if what == "spec":
        for cell, digest in zip(first + second, ("a", "a", "b", "b")):
            cell["manifest"]["spec_sha256"] = digest * 64
    summary = summarize(first + second)
    reps = sorted(summary["replication"], key=lambda r: r["cells"])
    assert [r["cells"] for r in reps] == [["first0", "first1"], ["second0", "second1"]]
    for rep, group in zip(reps, (data[:2], data[2:])):
        assert rep["seeds"] == [0, 1]
        t, _ = _reference(group, _all_patterns(n), True)  # each side's own captures only
        assert _combined_t(rep) == pytest.approx(sorted(t, key=lambda x: -abs(x)), rel=1e-5)
        assert rep["not_combined"] == f"not combined with other cells of this probe and model: those at seeds 0, 1 differ in {said}"
    assert summary["probe_correlations"] == [] and summary["model_correlations"] == []
    card = render("sw", summary, {})
    assert f"_Not combined with other cells of this probe and model: those at seeds 0, 1 differ in {said}._" in card
    # one seed on each side: two rows of one seed, never "seeds 0, 0"
    reps = summarize([first[0], second[0]])["replication"]
    assert sorted(r["cells"] for r in reps) == [["first0"], ["second0"]] and all(r["seeds"] == [0] for r in reps)
    assert all("combined" in r for r in reps)  # each its own cell's test, not an average of the two


def test_two_cells_at_the_same_seed_never_combine_as_a_replication(tmp_path):
    """The same conditions and the same seed are the same captures twice: not two seeds."""
    n, u = 6, 5
    data = _seeds(n, u, 3, seed=3)
    cells = [_apart(tmp_path, 0, data[0], "a0"), _apart(tmp_path, 0, data[1], "b0"), _apart(tmp_path, 1, data[2], "c1")]
    reps = summarize(cells)["replication"]
    assert sorted(r["cells"] for r in reps) == [["a0"], ["b0"], ["c1"]]
    for rep in reps:
        assert rep["seeds"] == [rep["seeds"][0]] and len(rep["hits_per_seed"]) == 1
        assert rep["not_combined"] == "not combined: cells a0, b0 ran the same conditions at the same seed"
    # and the cells that differ in the seed alone still combine
    (rep,) = summarize([cells[0], cells[2]])["replication"]
    assert rep["seeds"] == [0, 1] and "not_combined" not in rep
    t, _ = _reference([data[0], data[2]], _all_patterns(n), True)
    assert _combined_t(rep) == pytest.approx(sorted(t, key=lambda x: -abs(x)), rel=1e-5)


def test_a_generated_image_read_from_the_cache_is_the_same_condition(tmp_path):
    n, u = 6, 5
    data = _seeds(n, u, 2, seed=4)
    cells = [_apart(tmp_path, s, d, f"c{s}") for s, d in zip((0, 1), data)]
    for cell, cached in zip(cells, (False, True)):
        cell["manifest"]["images"] = [{"source": "generated", "key": "k" * 64, "sha256": "e" * 64, "cached": cached}]
    (rep,) = summarize(cells)["replication"]
    assert rep["seeds"] == [0, 1]
    cells[1]["manifest"]["images"][0]["sha256"] = "f" * 64  # another image: another condition
    reps = summarize(cells)["replication"]
    assert len(reps) == 2 and all("differ in conditioning images" in r["not_combined"] for r in reps)
