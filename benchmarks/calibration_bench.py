"""Figure — calibration: is every error rate the card reports at its nominal level?

Simulated data sets with a known truth, run through the same entry points as a run
(scenarios in ``calibration_scenarios``): the per-unit max-|t| FWER and BH FDR (global null
and 10% effects, independent or correlated noise), the same over units × steps (steps
independent or AR(1), rho 0.8), the specificity test beyond the common mode (share of units
with their own effect × shared component), the length-adjusted test, TOST at the bound,
the d_z interval's coverage, the parametric p, the sequential control p, the combined
seed test, clusters and TFCE along the steps, and the block-level tests. Each rate: estimate, Monte-Carlo 95% interval (Wilson; a normal interval of the
mean for an FDR), nominal level, data sets, and ``pass`` = the interval's lower bound is at
most the nominal level (not significantly above it). Power is recorded, never judged.

Part of ``python -m benchmarks`` (``run()``); standalone:
``python benchmarks/calibration_bench.py [--quick]`` prints the table and writes
``benchmarks/results/calibration.json``. Seeds are fixed: a rerun gives the same numbers.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT.parent))

from benchmarks import calibration_scenarios as sc  # noqa: E402
from benchmarks.common import log  # noqa: E402

SPEC_SHARES = (0.0, 0.10, 0.25, 0.50)
SPEC_SHARED = ("none", "shift", "random")
TOST_N = (8, 25, 100, 400, 1000)
COVERAGE_N = (8, 25, 100)
COVERAGE_D = (0.0, 0.5, 1.2)
SEQUENTIAL_R = (19, 20, 39, 99)


def plan(quick: bool) -> list[tuple[str, Any, dict[str, Any]]]:
    """(group, scenario function, keywords); every scenario has its own fixed seed."""
    scale = 10 if quick else 1
    many, some = 3000 // scale, 1500 // scale  # data sets of one scenario
    per_unit, sims = 50_000 // scale, 30_000 // scale  # units-as-data-sets; sequential draws
    jobs: list[tuple[str, Any, dict[str, Any]]] = []
    for share in (0.0, 0.10):
        for shared in ("none", "factor"):
            jobs.append(("units", sc.unit_family, dict(datasets=many, share=share, shared=shared)))
    for rho in (0.0, 0.8):
        for share in (0.0, 0.10):
            jobs.append(("steps", sc.steps_family, dict(datasets=some, rho=rho, share=share)))
    for shared in SPEC_SHARED:
        for share in SPEC_SHARES:
            jobs.append(("specificity", sc.specificity, dict(datasets=some, share=share, shared=shared)))
    for one_signed in (False, True):
        jobs.append(("length", sc.length_null, dict(datasets=some, one_signed=one_signed)))
    for n in TOST_N:
        jobs.append(("tost", sc.tost_at_bound, dict(units=per_unit, n=n)))
    for n in COVERAGE_N:
        for d in COVERAGE_D:
            jobs.append(("coverage", sc.dz_coverage, dict(units=per_unit, n=n, d=d)))
    for r in SEQUENTIAL_R:
        jobs.append(("sequential", sc.sequential_null, dict(sims=sims, controls=r)))
    jobs.append(("sequential", sc.sequential_null, dict(sims=sims, controls=39, ties=True)))
    jobs.append(("combined", sc.combined_seeds_null, dict(datasets=some)))
    for rho in (0.0, 0.8):
        jobs.append(("clusters", sc.clusters_null, dict(datasets=some, rho=rho)))
    for shared in ("none", "factor", "random"):  # "shift" is a real common effect: blocks respond to it
        jobs.append(("blocks", sc.blocks_null, dict(datasets=some, shared=shared)))
    return [(group, fn, {**kw, "seed": 1000 + i}) for i, (group, fn, kw) in enumerate(jobs)]


def run(quick: bool = False) -> dict[str, Any]:
    records, seconds = [], {}
    for group, fn, kw in plan(quick):
        t0 = time.perf_counter()
        got = fn(**kw)
        for r in got:
            r["group"], r["params"] = group, {k: v for k, v in kw.items()}
        records += got
        seconds[group] = round(seconds.get(group, 0.0) + time.perf_counter() - t0, 1)
        log(f"  calibration {group}: " + ", ".join(f"{r['label']} {r['rate']}" for r in got))
    failed = [r["id"] for r in records if r["pass"] is False]
    result = {
        "records": records,
        "failed": failed,
        "met": not failed,
        "seconds_per_group": seconds,
        "design": {
            "differences": "D = own effect + shared per-pair component + e, e ~ N(0, 1) per pair and unit",
            "stats": f"compute_layout_stats(a=D, b=0), {sc.FLIPS} sign flips (1 where only the per-unit t is used), "
                     "no split-half",
            "pass": "Monte-Carlo 95% interval's lower bound <= nominal (not significantly above it); power and "
                    "info records are not judged",
            "fwer": "share of data sets with >= 1 false hit (p_fwer < 0.05) among units with no effect",
            "fdr": "mean over data sets of false hits / max(hits, 1), hits = BH q < 0.05",
        },
    }
    print_table(records)
    return result


def print_table(records) -> None:
    width = max(len(r["label"]) for r in records)
    print(f"{'calibration':{width}}  {'rate':>7}  {'95% MC interval':>17}  {'nominal':>7}  {'n':>6}  pass")
    for r in records:
        ci = f"{r['ci'][0]:.4f}–{r['ci'][1]:.4f}" if r["ci"][0] is not None else "—"
        nominal = "" if r["nominal"] is None else f"{r['nominal']:g}"
        verdict = {True: "yes", False: "NO", None: r["kind"]}[r["pass"]]
        print(f"{r['label']:{width}}  {r['rate']:>7.4f}  {ci:>17}  {nominal:>7}  {r['n']:>6}  {verdict}")


def table_rows(f: dict[str, Any], row) -> list[dict[str, Any]]:
    """The figure's rows of the benchmarks table (``row`` is ``benchmarks.__main__._row``)."""
    out = []
    for r in f["records"]:
        lo, hi = r["ci"]
        measure = f"{r['label']} [{lo:.3f}, {hi:.3f}], n={r['n']}"
        target = f"<= {r['nominal']:g}" if r["kind"] == "error" else r["kind"]
        out.append(row("calibration", measure, r["rate"], unit="", target=target, met=r["pass"]))
    return out


def main() -> None:
    from plantain_core.rundir.fsutil import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the data sets (~1 min)")
    ap.add_argument("--out", default=str(ROOT / "results" / "calibration.json"))
    args = ap.parse_args()
    result = run(args.quick)
    atomic_write_json(args.out, result)
    print(f"{len(result['failed'])} rate(s) above nominal: {', '.join(result['failed']) or 'none'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
