"""Clusters of consecutive steps and TFCE along the trajectory (plantain_core.stats.clusters)
equal MNE's permutation_cluster_1samp_test on a trajectory run folder's own captures (exact
enumeration at small N; MNE fed the run's own sign patterns at larger N), find a planted
effect confined to a few steps as one cluster, and keep the cluster FWER on null data."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from plantain_core import ImageSource, Pair, ProbeSpec, Stimulus
from plantain_core.capture.runner import run_probe
from plantain_core.config import RunConfig
from plantain_core.models import TinyLoader
from plantain_core.report.analysis import analyze_run
from plantain_core.spec.probes import Probe
from plantain_core.stats.clusters import TFCE_DEFAULT, cluster_threshold, trajectory_clusters
from plantain_core.stats.engine import null_signs, paired_t

mne = pytest.importorskip("mne")
from mne.stats import cluster_level  # noqa: E402

mne.set_log_level("ERROR")
N_PAIRS, STEPS = 6, 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny-model trajectory run: 6 pairs × 4 steps, captures only (reports come per test)."""
    tmp = tmp_path_factory.mktemp("traj")
    ref = ImageSource(prompt="A neutral grey object", seed=3)
    pairs = [Pair(f"p{i}", Stimulus(f"a {i + 1}-kilometer object", ref), Stimulus(f"a {i + 1}-millimeter object", ref))
             for i in range(N_PAIRS)]
    spec = ProbeSpec(name="traj", generator="fixed-image-text-pair", stimuli={"pairs": []})
    config = RunConfig(probe="traj", steps=STEPS, seed=5, batch_size=4, layouts=("heads",))
    import os

    os.environ.setdefault("PLANTAIN_CACHE_DIR", str(tmp / "cache"))
    run_probe(Probe.from_pairs(spec, pairs), tmp / "run", config, model=TinyLoader().load("tiny", "cpu"),
              progress=False)
    return tmp / "run", config


def _csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _mne(x, threshold, signs, exact):
    """MNE's test on N × S × U data: a chain over steps (max_step=1) and an empty adjacency
    across units. Exact: MNE enumerates itself; otherwise it is handed the run's patterns
    (its order generator returns them; it adds the identity as it always does)."""
    n = x.shape[0]
    adjacency = sp.coo_array((x.shape[2], x.shape[2]))
    own = cluster_level._get_1samp_orders
    if not exact:
        cluster_level._get_1samp_orders = lambda *a: ([((s + 1) // 2).astype(int) for s in signs], len(signs) + 1, "")
    try:
        return mne.stats.permutation_cluster_1samp_test(
            x, threshold=threshold, n_permutations=2 ** (n - 1) if exact else len(signs) + 1, tail=0,
            adjacency=adjacency, max_step=1, out_type="mask")
    finally:
        cluster_level._get_1samp_orders = own


@pytest.mark.parametrize("flips", [200, 20])  # 2^(6−1) = 32: exact with 200, the run's random patterns with 20
def test_clusters_and_tfce_equal_mne_on_the_runs_own_captures(run_dir, flips):
    folder, config = run_dir
    summary = analyze_run(folder, config.evolve(flips=flips, tfce=True), figures=False)
    with np.load(folder / "captures" / "heads.npz") as z:
        x = z["a"] - z["b"]  # N × S × U, as saved
        units = [str(u) for u in z["units"]]
    signs, exact = null_signs(N_PAIRS, flips, config.seed)
    assert exact == (flips == 200)
    traj = summary["trajectory"]["heads"]
    threshold = cluster_threshold(N_PAIRS)  # summary.json keeps 10 digits of it
    assert traj["cluster_threshold"] == pytest.approx(threshold, rel=1e-9)
    t_obs, clusters, p_mne, _ = _mne(x, threshold, signs, exact)
    theirs = {}
    for mask, p in zip(clusters, p_mne):
        steps, cols = np.nonzero(mask)
        assert len(set(cols)) == 1 and np.ptp(steps) == len(steps) - 1  # one unit, consecutive steps
        theirs[(units[cols[0]], int(steps.min()), int(steps.max()))] = (float(t_obs[mask].sum()), float(p))
    ours = {(r["unit"], int(r["first_step"]), int(r["last_step"])): (float(r["mass"]), float(r["p_fwer"]))
            for r in _csv(folder / "clusters.csv")}
    assert len(theirs) >= 3 and ours.keys() == theirs.keys()
    for key, (mass, p) in theirs.items():
        assert ours[key][0] == pytest.approx(mass, rel=1e-8) and ours[key][1] == pytest.approx(p, abs=1e-9)
    assert {(c["unit"], c["first_step"], c["last_step"]) for c in traj["clusters"]} == \
        {k for k, (_, p) in theirs.items() if p < 0.05}
    # TFCE: MNE's threshold-free definition, score and FWER p per unit × step
    t_tfce, _, p_tfce, _ = _mne(x, dict(TFCE_DEFAULT), signs, exact)
    rows = _csv(folder / "tfce.csv")
    score = np.array([float(r["tfce"]) for r in rows]).reshape(STEPS, -1)
    p_cell = np.array([float(r["p_fwer"]) for r in rows]).reshape(STEPS, -1)
    np.testing.assert_allclose(score, t_tfce, rtol=1e-8)
    np.testing.assert_allclose(p_cell, p_tfce.reshape(STEPS, -1), atol=1e-9)
    assert (p_cell < 1).sum() > 0 and len(set(np.round(p_cell.ravel(), 9))) > 3


def test_mne_default_threshold_is_ours():
    x = np.random.default_rng(0).normal(size=(9, 3, 2))
    x[:, :, 0] += 2.0
    _, clusters, _, _ = mne.stats.permutation_cluster_1samp_test(x, n_permutations=256, tail=0, out_type="mask",
                                                                 adjacency=sp.coo_array((2, 2)))
    t = np.stack([paired_t(x[:, s])[1] for s in range(3)])
    found = trajectory_clusters(t, x, *null_signs(9, 256, 0))["clusters"]
    assert len(found) == len(clusters) >= 1


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def _data(rng, n, steps, units, effect=None):
    base = rng.normal(size=(n, 1, units))
    x = 0.6 * base + 0.8 * rng.normal(size=(n, steps, units))  # neighbouring steps correlated, as on a trajectory
    if effect is not None:
        x[:, effect[0]:effect[1], 0] += 1.2
    return x


def _clusters(x, flips=100, seed=0, tfce=None):
    t = np.stack([paired_t(x[:, s])[1] for s in range(x.shape[1])])
    return trajectory_clusters(t, x, *null_signs(x.shape[0], flips, seed), tfce=tfce)


def test_an_effect_confined_to_a_few_steps_is_one_significant_cluster():
    rng = np.random.default_rng(3)
    x = _data(rng, 16, 10, 20, effect=(4, 7))  # unit 0 responds at steps 4, 5 and 6 only
    res = _clusters(x, flips=500, tfce=TFCE_DEFAULT)
    sig = [c for c in res["clusters"] if c[4] < 0.05]
    assert len(sig) == 1 and sig[0][:3] == (0, 4, 6) and sig[0][3] > 0
    tf = res["tfce"]["p_fwer"] < 0.05
    planted = np.zeros_like(tf)
    planted[4:7, 0] = True
    assert tf[planted].any() and not tf[~planted].any()  # TFCE: cells of the planted run only


def test_null_data_keep_the_cluster_and_tfce_fwer():
    rng = np.random.default_rng(11)
    runs, hits, tf_hits = 200, 0, 0
    for r in range(runs):
        res = _clusters(_data(rng, 12, 5, 8), flips=100, seed=r, tfce=TFCE_DEFAULT)
        hits += any(c[4] < 0.05 for c in res["clusters"])
        tf_hits += bool((res["tfce"]["p_fwer"] < 0.05).any())
    # the rate is not above 5%: the Wilson interval's lower end stays at or below 0.05
    assert _wilson(hits, runs)[0] <= 0.05 and _wilson(tf_hits, runs)[0] <= 0.05
    assert hits > 0 or tf_hits > 0  # a test that never rejects would pass the bound without testing anything


def test_card_and_summary_name_the_clusters(run_dir):
    folder, config = run_dir
    analyze_run(folder, config.evolve(flips=50), figures=True)
    summary = json.loads((folder / "summary.json").read_text())
    traj = summary["trajectory"]["heads"]
    assert set(traj) >= {"clusters", "cluster_threshold", "n_clusters", "n_clusters_p_fwer_lt_0.05"}
    card = (folder / "README.md").read_text()
    assert "Clusters along the steps (`heads`)" in card and "figures/heads_clusters.png" in card
    assert (folder / "figures" / "heads_clusters.png").is_file()
