"""Simulated data sets for the calibration figure (``calibration_bench``) and its fast test.

Every scenario draws data sets with a known truth, runs them through the public entry
points a run uses (``compute_layout_stats``, ``checks.review``, ``across_steps``,
``unit_sets.sequential_p``, ``sweep_report.combined_test``) and returns rate records:
estimate, Monte-Carlo 95% interval, nominal level, data sets, pass flag. Nothing here
reimplements a test, so a change of method inside ``plantain_core`` is measured as is.

Differences D are in units of the per-unit noise sd (e ~ N(0, 1)); an own effect of
size x adds x to every pair of a unit (d_z about x when no shared component is added).
"""

from __future__ import annotations

import math
import pathlib
import tempfile
from typing import Any, Sequence

import numpy as np

from plantain_core.stats.engine import StatsOptions, compute_layout_stats

ALPHA = 0.05
Z95 = 1.959963984540054
FLIPS = 200


# ---- rates and their Monte-Carlo intervals -----------------------------------------------------
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def record(rid: str, label: str, k: int, n: int, nominal: float | None = ALPHA, kind: str = "error",
           **extra) -> dict[str, Any]:
    """A binomial rate k/n with its Wilson interval. ``kind`` "error" passes when the
    interval's lower bound is at most ``nominal`` (not significantly above it); "power"
    and "info" records are informative and carry no pass flag."""
    lo, hi = wilson(k, n)
    return _rec(rid, label, k / n if n else math.nan, (lo, hi), "wilson", nominal, n, kind, extra)


def mean_record(rid: str, label: str, values: Sequence[float], nominal: float = ALPHA, **extra) -> dict[str, Any]:
    """A rate that is a mean of per-data-set values in [0, 1] (an FDR): normal interval of
    the mean; where every value is equal, the Wilson interval of the mean as a count."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    mean = float(v.mean()) if n else math.nan
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    if sd > 0:
        ci, how = (max(0.0, mean - Z95 * sd / math.sqrt(n)), min(1.0, mean + Z95 * sd / math.sqrt(n))), "normal-mean"
    else:
        ci, how = wilson(round(mean * n), n), "wilson"
    return _rec(rid, label, mean, ci, how, nominal, n, "error", extra)


def _rec(rid, label, rate, ci, how, nominal, n, kind, extra) -> dict[str, Any]:
    return {"id": rid, "label": label, "rate": _r(rate), "ci": [_r(ci[0]), _r(ci[1])], "interval": how,
            "nominal": nominal, "n": int(n), "kind": kind,
            "pass": (bool(ci[0] <= nominal) if kind == "error" else None), **extra}


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


# ---- data ---------------------------------------------------------------------------------------
def units_named(u: int) -> list[str]:
    return [f"b{i // 10}.u{i:03d}" for i in range(u)]


def stats(diff: np.ndarray, seed: int, flips: int = FLIPS):
    """The run's statistics of D (a = D, b = 0), no split-half (not calibrated here)."""
    return compute_layout_stats(diff, np.zeros_like(diff), units_named(diff.shape[1]),
                                options=StatsOptions(flips=flips, splits=0, seed=seed))


def effect_mask(u: int, share: float) -> np.ndarray:
    mask = np.zeros(u, dtype=bool)
    mask[: int(round(share * u))] = True
    return mask


def shared_component(rng: np.random.Generator, n: int, u: int, kind: str) -> np.ndarray:
    """N×U per-pair component every unit loads on:
    ``none``; ``factor``: zero-mean factor, positive loadings U(0.3, 1) (correlated noise);
    ``random``: zero-mean factor, loadings N(0, 1) of either sign;
    ``shift``: a per-pair shift with mean 0.6 and sd 1, loadings U(0.5, 1.5)."""
    if kind == "none":
        return np.zeros((n, u))
    f = rng.standard_normal(n)
    if kind == "factor":
        return np.outer(f, rng.uniform(0.3, 1.0, u))
    if kind == "random":
        return np.outer(f, rng.standard_normal(u))
    if kind == "shift":
        return np.outer(0.6 + f, rng.uniform(0.5, 1.5, u))
    raise ValueError(kind)


def _family(hit: np.ndarray, q_hit: np.ndarray, null: np.ndarray) -> tuple[bool, float, int]:
    """(any false FWER hit, false discovery proportion of the q hits, true FWER hits)."""
    false_q = int(np.count_nonzero(q_hit & null))
    return bool((hit & null).any()), false_q / max(int(np.count_nonzero(q_hit)), 1), int(np.count_nonzero(hit & ~null))


def _below(x: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.isfinite(x) & (x < alpha)


# ---- 1. units: max-|t| FWER and BH -----------------------------------------------------------------
def unit_family(datasets: int, *, share: float, shared: str, seed: int, n: int = 20, u: int = 60,
                effect: float = 1.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    mask = effect_mask(u, share)
    fw, fdp = 0, []
    for k in range(datasets):
        diff = rng.standard_normal((n, u)) + effect * mask + shared_component(rng, n, u, shared)
        st = stats(diff, seed=k)
        a, b, _ = _family(_below(st.p_fwer), _below(st.q), ~mask)
        fw, fdp = fw + a, fdp + [b]
    tag = f"units {'null' if share == 0 else f'{share:.0%} effects'}, {shared} shared"
    rid = f"units.share{int(share * 100)}.{shared}"
    return [record(f"{rid}.fwer", f"{tag}: FWER (p_fwer)", fw, datasets),
            mean_record(f"{rid}.fdr", f"{tag}: FDR (BH q)", fdp)]


# ---- 2. across steps -------------------------------------------------------------------------------
def steps_family(datasets: int, *, rho: float, share: float, seed: int, n: int = 20, u: int = 40,
                 steps: int = 4, effect: float = 1.0) -> list[dict[str, Any]]:
    from plantain_core.stats.across_steps import across_steps

    rng = np.random.default_rng(seed)
    mask = effect_mask(u, share)
    null = np.broadcast_to(~mask, (steps, u))
    fw, fdp = 0, []
    for k in range(datasets):
        e = rng.standard_normal((n, u))
        per = {}
        for s in range(steps):
            if s:
                e = rho * e + math.sqrt(1 - rho * rho) * rng.standard_normal((n, u))  # AR(1) over steps
            per[s] = stats(e + effect * mask, seed=k)
        fam = across_steps(per)
        a, b, _ = _family(_below(fam["p_fwer"]), _below(fam["q"]), null)
        fw, fdp = fw + a, fdp + [b]
    tag = f"steps x{steps}, rho {rho:g}, {'null' if share == 0 else f'{share:.0%} effects'}"
    rid = f"steps.rho{rho:g}.share{int(share * 100)}"
    return [record(f"{rid}.fwer", f"{tag}: FWER over units x steps", fw, datasets),
            mean_record(f"{rid}.fdr", f"{tag}: FDR (BH over cells)", fdp)]


# ---- 3. specificity: the test beyond the common mode ---------------------------------------------
def specificity(datasets: int, *, share: float, shared: str, seed: int, n: int = 20, u: int = 60,
                effect: float = 0.8) -> list[dict[str, Any]]:
    """Own effects of one sign (+effect) on a share of units, over a shared component."""
    from plantain_core.stats.checks import review

    rng = np.random.default_rng(seed)
    mask = effect_mask(u, share)
    fw, fdp, found, false_hits, opposite = 0, [], 0, 0, 0
    for k in range(datasets):
        diff = rng.standard_normal((n, u)) + effect * mask + shared_component(rng, n, u, shared)
        sp = review(stats(diff, seed=k), None).specific
        hit = _below(sp.p_fwer)
        a, b, c = _family(hit, _below(sp.q), ~mask)
        fw, fdp, found = fw + a, fdp + [b], found + c
        wrong = hit & ~mask
        false_hits += int(wrong.sum())
        opposite += int(np.count_nonzero(wrong & (sp.t < 0)))
    tag = f"specific, {share:.0%} own effects, {shared} shared"
    rid = f"specific.share{int(share * 100)}.{shared}"
    out = [record(f"{rid}.fwer", f"{tag}: FWER (null units)", fw, datasets),
           mean_record(f"{rid}.fdr", f"{tag}: FDR (BH q)", fdp)]
    if mask.any():
        out.append(record(f"{rid}.power", f"{tag}: power (p_fwer)", found, datasets * int(mask.sum()),
                          nominal=None, kind="power"))
    if false_hits and mask.any():  # the own effects' sign gives "opposite" its meaning
        out.append(record(f"{rid}.opposite", f"{tag}: false hits of the opposite sign", opposite, false_hits,
                          nominal=None, kind="info"))
    return out


# ---- 4. the length-adjusted test -------------------------------------------------------------------
def length_null(datasets: int, *, one_signed: bool, seed: int, n: int = 20, u: int = 40) -> list[dict[str, Any]]:
    """No effect at equal length: D = beta_u * delta + e, beta_u ~ N(0, 0.3); delta integer
    token differences, -4..4 or (one-signed) 1..8, redrawn while constant."""
    from plantain_core.stats.checks import review

    rng = np.random.default_rng(seed)
    fw, fdp, per_unit, tests = 0, [], 0, 0
    for k in range(datasets):
        delta = np.zeros(n)
        while np.ptp(delta) == 0:
            delta = (rng.integers(1, 9, n) if one_signed else rng.integers(-4, 5, n)).astype(np.float64)
        diff = rng.standard_normal((n, u)) + np.outer(delta, rng.normal(0, 0.3, u))
        ln = review(stats(diff, seed=k), delta).length
        a, b, _ = _family(_below(ln.p_fwer), _below(ln.q), np.ones(u, dtype=bool))
        fw, fdp = fw + a, fdp + [b]
        per_unit, tests = per_unit + int(_below(ln.p).sum()), tests + int(np.isfinite(ln.p).sum())
    tag = f"length-adjusted, delta {'one-signed 1..8' if one_signed else '-4..4'}"
    rid = f"length.{'onesided' if one_signed else 'varying'}"
    return [record(f"{rid}.fwer", f"{tag}: FWER", fw, datasets),
            mean_record(f"{rid}.fdr", f"{tag}: any BH q hit", fdp),
            record(f"{rid}.unit", f"{tag}: per-unit p < 0.05", per_unit, tests)]


# ---- 5, 6. TOST at the bound, d_z interval coverage, the parametric p -----------------------------
def per_unit_reviewed(rng: np.random.Generator, n: int, d_true: np.ndarray, chunk: int = 4000):
    """Every unit an independent data set (TOST, interval and p are per unit): review()ed
    chunks of N pairs × units with true d_z ``d_true`` (one per unit), one sign flip."""
    from plantain_core.stats.checks import review

    for start in range(0, d_true.size, chunk):
        d = d_true[start:start + chunk]
        yield d, review(stats(rng.standard_normal((n, d.size)) + d, seed=start, flips=1), None)


def tost_at_bound(units: int, *, n: int, seed: int, bound: float = 0.5) -> list[dict[str, Any]]:
    """True |d_z| exactly at the bound (half +, half -): TOST must call equivalence at most 5%."""
    rng = np.random.default_rng(seed)
    d_true = np.where(np.arange(units) % 2 == 0, bound, -bound)
    hits = 0
    for _, st in per_unit_reviewed(rng, n, d_true):
        assert st.tost_bound == bound, st.tost_bound
        hits += int(_below(st.p_tost).sum())
    return [record(f"tost.n{n}", f"TOST at the bound, N={n}: false equivalence", hits, units)]


def dz_coverage(units: int, *, n: int, d: float, seed: int) -> list[dict[str, Any]]:
    """Share of 95% d_z intervals missing the true d_z (nominal 5%); at d = 0 also the
    parametric p's null rate."""
    rng = np.random.default_rng(seed)
    low_miss = high_miss = p_hits = 0
    for dt, st in per_unit_reviewed(rng, n, np.full(units, d)):
        low_miss += int(np.count_nonzero(st.d_low >= dt))
        high_miss += int(np.count_nonzero(st.d_high <= dt))
        p_hits += int(_below(st.p).sum())
    out = [record(f"dz.n{n}.d{d:g}", f"d_z interval, N={n}, d_z={d:g}: misses", low_miss + high_miss, units,
                  misses_low=low_miss, misses_high=high_miss)]
    if d == 0:
        out.append(record(f"p.n{n}", f"parametric t p, N={n}: per-unit null rate", p_hits, units))
    return out


# ---- 7. the sequential control p -------------------------------------------------------------------
def sequential_null(sims: int, *, controls: int, seed: int, ties: bool = False) -> list[dict[str, Any]]:
    """Selected effect and R controls exchangeable; controls drawn one at a time until
    ``settled`` as the causal check does; P(p <= 0.05) must be at most 0.05."""
    from plantain_core.causal.unit_sets import sequential_p, settled

    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, (sims, controls + 1)).astype(float) if ties else rng.standard_normal((sims, controls + 1))
    hits, drawn_total = 0, 0
    for row in values:
        effect, pool = float(row[0]), row[1:].tolist()
        drawn: list[float] = []
        while not settled(effect, drawn, controls):
            drawn.append(pool[len(drawn)])
        p = sequential_p(effect, drawn, controls)
        hits += p is not None and p <= ALPHA
        drawn_total += len(drawn)
    tag = f"sequential p, R={controls}{' (ties)' if ties else ''}"
    return [record(f"sequential.r{controls}{'.ties' if ties else ''}", f"{tag}: P(p <= 0.05)", hits, sims,
                   mean_controls_drawn=round(drawn_total / sims, 2))]


# ---- 8. the combined seed test -----------------------------------------------------------------------
def combined_seeds_null(datasets: int, *, seed: int, seeds: int = 3, n: int = 16, u: int = 40) -> list[dict[str, Any]]:
    """No condition effect; each pair has its own effect (sd 1, mean 0 over pairs) that every
    noise seed shares, plus seed noise (sd 1). Captures are written as run folders hold them
    and combined by ``sweep_report.combined_test``."""
    from plantain_core.report.analysis import CAPTURES
    from plantain_core.config import RunConfig
    from plantain_core.sweep.report import combined_test

    rng = np.random.default_rng(seed)
    units = np.asarray(units_named(u))
    pair_ids = np.asarray([f"p{i}" for i in range(n)])
    fw = per_unit = tests = 0
    with tempfile.TemporaryDirectory(prefix="plantain-calibration-") as tmp:
        dirs = [pathlib.Path(tmp, f"seed{s}") for s in range(seeds)]
        for folder in dirs:
            (folder / CAPTURES).mkdir(parents=True)
        for k in range(datasets):
            pair_effect = rng.standard_normal((n, u))
            cells = []
            for s, folder in enumerate(dirs):
                b = rng.standard_normal((n, u))
                a = b + pair_effect + rng.standard_normal((n, u))
                np.savez(folder / CAPTURES / "units.npz", a=a, b=b, units=units, pair_ids=pair_ids)
                cells.append({"name": folder.name, "dir": folder, "probe": "calibration",
                              "config": RunConfig(probe="calibration", seed=s + seeds * k, flips=FLIPS, splits=2)})
            st = combined_test(cells, "units")
            fw += bool(_below(st.p_fwer).any())
            per_unit, tests = per_unit + int(_below(st.p).sum()), tests + int(np.isfinite(st.p).sum())
    tag = f"combined over {seeds} seeds, null"
    return [record("combined.fwer", f"{tag}: FWER", fw, datasets),
            record("combined.unit", f"{tag}: per-unit p < 0.05", per_unit, tests)]


# ---- 9. clusters and TFCE along the steps -----------------------------------------------------------
def clusters_null(datasets: int, *, rho: float, seed: int, n: int = 20, u: int = 40, steps: int = 6,
                  tfce: bool = True) -> list[dict[str, Any]]:
    """Global null over units × steps (AR(1) over steps with ``rho``): the share of data sets
    with any cluster at p_fwer < 0.05, and (``tfce``) any TFCE cell at p_fwer < 0.05."""
    from plantain_core.stats.across_steps import across_steps
    from plantain_core.stats.clusters import TFCE_DEFAULT

    rng = np.random.default_rng(seed)
    hits = tf_hits = 0
    for k in range(datasets):
        e = rng.standard_normal((n, u))
        per = {}
        for s in range(steps):
            if s:
                e = rho * e + math.sqrt(1 - rho * rho) * rng.standard_normal((n, u))
            per[s] = stats(e, seed=k)
        fam = across_steps(per, TFCE_DEFAULT if tfce else None)["clusters"]
        hits += any(c[4] < ALPHA for c in fam["clusters"])
        tf_hits += bool(tfce and _below(fam["tfce"]["p_fwer"]).any())
    tag = f"clusters x{steps} steps, rho {rho:g}, null"
    out = [record(f"clusters.rho{rho:g}.fwer", f"{tag}: cluster FWER", hits, datasets)]
    if tfce:
        out.append(record(f"tfce.rho{rho:g}.fwer", f"{tag}: TFCE FWER", tf_hits, datasets))
    return out


# ---- 10. block-level tests ---------------------------------------------------------------------------
def blocks_null(datasets: int, *, shared: str, seed: int, n: int = 20, u: int = 60) -> list[dict[str, Any]]:
    """No effect; blocks of 10 units (``units_named``) over a shared component: the share of
    data sets with any block at p_fwer < 0.05 (FWER over blocks)."""
    from plantain_core.stats.blocks import block_tests

    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(datasets):
        diff = rng.standard_normal((n, u)) + shared_component(rng, n, u, shared)
        rows = block_tests(stats(diff, seed=k))["blocks"]
        hits += any(b["p_fwer"] is not None and b["p_fwer"] < ALPHA for b in rows)
    return [record(f"blocks.{shared}.fwer", f"blocks, null, {shared} shared: FWER over blocks", hits, datasets)]
