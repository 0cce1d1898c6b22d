"""Figure 3 — the vectorised statistics engine at Klein 4B scale vs a per-unit scipy loop.

Workload: 16,320 units (the ``slices16`` layout) × 25 pairs, a 10,000-flip sign-flip null
and 100 split-half splits. The engine (``compute_layout_stats``) is timed in full. The
baseline loops over units with scipy, vectorising only within a unit (all flips of one
unit in one ``ttest_1samp`` call, all splits of one unit in two): it is timed on a
sample of units and extrapolated linearly to 16,320, which the output says. The two
arms are interleaved (``benchmarks.common.interleaved``); each round gives one ratio.

Part of ``python -m benchmarks`` (``run()``); standalone:
``python benchmarks/stats_bench.py [--quick]`` writes ``benchmarks/results/stats.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT.parent))

from benchmarks.common import interleaved, log, quantiles, ratio  # noqa: E402
from plantain_core.rundir.fsutil import atomic_write_json  # noqa: E402
from plantain_core.stats.engine import StatsOptions, compute_layout_stats, single_blas_thread  # noqa: E402
from plantain_core.stats.results import layout_summary  # noqa: E402

TARGET = 100.0

N_PAIRS, FLIPS, SPLITS = 25, 10_000, 100


def klein_slices16() -> list[str]:
    return ([f"joint[{b}].s{s:04d}" for b in range(5) for s in range(192)]
            + [f"single[{b}].s{s:04d}" for b in range(20) for s in range(768)])


def workload(seed: int = 0):
    units = klein_slices16()
    rng = np.random.default_rng(seed)
    a = rng.normal(5.0, 1.0, size=(N_PAIRS, len(units)))
    b = a + rng.normal(0.0, 0.5, size=a.shape)
    b -= rng.normal(0.0, 0.4, size=len(units)) * (rng.random(len(units)) < 0.3)  # 30% units with an effect
    return a, b, units


def engine_once(a, b, units, flips, splits):
    t0 = time.perf_counter()
    st = compute_layout_stats(a, b, units, layout="slices16", options=StatsOptions(flips=flips, splits=splits, seed=0))
    return time.perf_counter() - t0, st


def baseline_per_unit(a, b, flips, splits, sample: int, seed: int = 0) -> float:
    """Seconds for ``sample`` units of the per-unit scipy loop (same statistics per unit)."""
    from scipy import stats as sps

    rng = np.random.default_rng(seed)
    signs = 1 - 2 * rng.integers(0, 2, size=(flips, N_PAIRS))
    halves = np.argsort(rng.random((splits, N_PAIRS)), axis=1)
    n1 = N_PAIRS // 2
    t0 = time.perf_counter()
    for u in range(sample):
        d = a[:, u] - b[:, u]
        sps.ttest_rel(a[:, u], b[:, u])  # observed t and p
        null_t = sps.ttest_1samp(signs * d, 0.0, axis=1).statistic  # all flips of this unit
        np.abs(null_t) > 3.0
        np.abs(null_t) > 5.0
        sps.ttest_1samp(d[halves[:, :n1]], 0.0, axis=1)  # split-half t, half 1 of every split
        sps.ttest_1samp(d[halves[:, n1:]], 0.0, axis=1)
    return time.perf_counter() - t0


def baseline_naive(a, b, flips: int, sample_units: int) -> float:
    """Seconds per (unit × flip) of a fully looped scipy null: one ttest per unit per flip."""
    from scipy import stats as sps

    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for u in range(sample_units):
        d = a[:, u] - b[:, u]
        for _ in range(flips):
            sps.ttest_1samp(d * (1 - 2 * rng.integers(0, 2, N_PAIRS)), 0.0)
    return (time.perf_counter() - t0) / (sample_units * flips)


def run(quick: bool = False) -> dict:
    """Interleaved rounds: the full engine vs the per-unit loop on a sample of units."""
    a, b, units = workload()
    u = len(units)
    sample = 100 if quick else 400
    rounds = 3 if quick else 4
    engine_once(a, b, units, 100, 5)  # warm-up: imports scipy/statsmodels, BLAS threads
    last = {}

    def engine():
        last["stats"] = engine_once(a, b, units, FLIPS, SPLITS)[1]

    def baseline():
        baseline_per_unit(a, b, FLIPS, SPLITS, sample)

    log(f"statistics: {u} units × {N_PAIRS} pairs, {FLIPS} flips, {SPLITS} splits; baseline on {sample} units")
    times = interleaved({"engine": engine, "baseline": baseline}, rounds=rounds, warmup=1)
    tracemalloc.start()
    engine_once(a, b, units, FLIPS, SPLITS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    naive_per_call = baseline_naive(a, b, 20 if quick else 100, 2)
    summary = layout_summary(last["stats"])
    result = {
        "workload": {"units": u, "pairs": N_PAIRS, "flips": FLIPS, "splits": SPLITS, "thresholds": [3.0, 5.0]},
        "blas_single_thread": single_blas_thread() is not None,
        "engine_s": {c: quantiles(times["engine"][c]) for c in ("wall", "cpu")},
        "baseline_sampled_units": sample,
        "baseline_extrapolated_s": {c: quantiles([x / sample * u for x in times["baseline"][c]])
                                    for c in ("wall", "cpu")},
        "ratio": ratio(times, "baseline", "engine", scale=u / sample),
        "baseline_method": "loop over units; scipy ttest_rel + ttest_1samp over all flips of the unit (axis=1) + "
                           "ttest_1samp over the splits' halves; timed on the sampled units, extrapolated "
                           f"linearly to {u} units",
        "naive_unit_x_flip_extrapolated_s": round(naive_per_call * u * (FLIPS + 2 * SPLITS + 1), 1),
        "peak_traced_memory_mb": round(peak / 2**20, 1),
        "check": {"max_abs_t": summary["max_abs_t"], "observed_gt_3": summary["thresholds"][0]["observed"],
                  "null_p99_gt_3": summary["thresholds"][0]["null_p99"],
                  "split_half_median": summary["split_half"]["median"]},
        "target_min": TARGET,
    }
    eng = result["engine_s"]["wall"]["median"]
    result["met"] = result["ratio"]["wall"]["median"] >= TARGET and eng <= 5.0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller baseline sample (for a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "results" / "stats.json"))
    args = ap.parse_args()

    a, b, units = workload()
    u = len(units)
    engine_once(a, b, units, 100, 5)  # warm-up: imports scipy/statsmodels, BLAS threads
    times = []
    for _ in range(3):
        dt, st = engine_once(a, b, units, FLIPS, SPLITS)
        times.append(dt)
    tracemalloc.start()
    engine_once(a, b, units, FLIPS, SPLITS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine_s = statistics.median(times)

    sample = 50 if args.quick else 400
    per_unit_sample_s = baseline_per_unit(a, b, FLIPS, SPLITS, sample)
    per_unit_s = per_unit_sample_s / sample * u
    naive_per_call = baseline_naive(a, b, 50 if args.quick else 200, 2)
    naive_s = naive_per_call * u * (FLIPS + 2 * SPLITS + 1)

    summary = layout_summary(st)
    result = {
        "workload": {"units": u, "pairs": N_PAIRS, "flips": FLIPS, "splits": SPLITS, "thresholds": [3.0, 5.0]},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "blas_single_thread": single_blas_thread() is not None},
        "engine": {"median_s": round(engine_s, 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times],
                   "peak_traced_memory_mb": round(peak / 2**20, 1)},
        "baseline_per_unit_scipy": {
            "sampled_units": sample, "sample_s": round(per_unit_sample_s, 4),
            "extrapolated_s": round(per_unit_s, 2),
            "method": "loop over units; scipy ttest_rel + ttest_1samp over all flips of the unit (axis=1) + "
                      "ttest_1samp over the splits' halves; timed on the sampled units, extrapolated linearly "
                      f"to {u} units",
        },
        "baseline_naive_scipy": {
            "seconds_per_ttest": naive_per_call, "extrapolated_s": round(naive_s, 1),
            "method": "one scipy ttest_1samp per unit per flip (and per split half); timed on 2 units, extrapolated",
        },
        "speedup_vs_per_unit": round(per_unit_s / engine_s, 1),
        "speedup_vs_naive": round(naive_s / engine_s, 0),
        "check": {"max_abs_t": summary["max_abs_t"], "observed_gt_3": summary["thresholds"][0]["observed"],
                  "null_p99_gt_3": summary["thresholds"][0]["null_p99"],
                  "split_half_median": summary["split_half"]["median"]},
    }
    atomic_write_json(args.out, result)
    rows = [
        ("plantain engine (vectorised)", f"{engine_s:.2f} s", f"median of 3, measured (min {min(times):.2f} s)"),
        ("per-unit scipy loop", f"{per_unit_s:.1f} s", f"extrapolated from {sample} units"),
        ("naive scipy loop (unit × flip)", f"{naive_s:,.0f} s", "extrapolated from 2 units"),
    ]
    load = result["machine"]["load_average_1min"]
    print(f"{u} units × {N_PAIRS} pairs, {FLIPS:,} flips, {SPLITS} splits on {os.cpu_count()} CPUs"
          + (f" (load average {load:.1f} at the end)" if load is not None else "")
          + ("; BLAS limited to 1 thread (threadpoolctl)" if result["machine"]["blas_single_thread"]
             else "; threadpoolctl not installed: BLAS threads unlimited"))
    print(f"{'method':34} {'time':>12}  note")
    for name, t, note in rows:
        print(f"{name:34} {t:>12}  {note}")
    print(f"speed-up vs per-unit loop: {result['speedup_vs_per_unit']}×; vs naive: {result['speedup_vs_naive']:,.0f}×; "
          f"peak traced memory {result['engine']['peak_traced_memory_mb']} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
