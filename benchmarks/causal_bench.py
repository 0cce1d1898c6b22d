"""Cost of the causal check on the embedded tiny model: seconds per unit set, and the
wall time of ``plantain causal`` over ``plantain run`` on the ``ray`` probe.

A unit set is one intervention (the top K units, or one matched random control set)
applied to every probe pass it needs: 2N passes for ``ablate`` (A and B of every pair),
N for ``patch`` (A only). The benchmark captures a tiny ``text-pair`` run of N pairs,
then runs ``plantain_core.causal.check.run_causal`` on it in each mode and records, from the
function's own timings: seconds per unit set, seconds per intervened pass, and the ratio
of an intervened pass to a clean pass of the same run (the editor's overhead: slice
read, replacement, copy of the projection input). Wall and process CPU time are both
recorded; on a shared machine the CPU time is the steadier figure.

The ratio (issue 13's target: default ``plantain causal`` ≤ 3× ``plantain run``): in one
benchmark run, interleaved, each a real subprocess with one torch thread:
``plantain run ray --model tiny``, then on its folder ``plantain causal`` (default:
screen, the |t| top tested with sequential controls, the attribution top measured),
``plantain causal --confirm both`` (the attribution top tested too), and ``plantain
causal --exhaustive --confirm t --units heads,slices16`` (the check as it was before:
both layouts, doses 1, 4, 16, 64 and every control). Transformer pass counts come from
each ``causal.json``; the |t| conclusions (units, p ≤ 0.05) of the default and the
check as before are compared.

Run: ``python benchmarks/causal_bench.py [--quick]``; writes ``benchmarks/results/causal.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:
    sys.path.insert(0, str(ROOT.parent))

MODES = (("ablate", "mean"), ("ablate", "zero"), ("patch", "mean"))


def _pairs(n: int):
    from plantain_core import Pair, Stimulus

    return [Pair(f"p{i}", Stimulus(f"a {i + 1}-kilometer object"), Stimulus(f"a {i + 1}-millimeter object"))
            for i in range(n)]


def run(quick: bool = False) -> dict:
    """Capture a tiny run, then time the causal check in every mode."""
    import torch

    from plantain_core import ProbeSpec, RunConfig
    from plantain_core.spec.probes import Probe
    from plantain_core.causal.check import CausalOptions, run_causal
    from plantain_core.models import TinyLoader
    from plantain_core.capture.runner import run_probe

    n_pairs, top, controls, doses, repeats = (4, 4, 3, (1, 4), 1) if quick else (8, 4, 5, (1, 4, 8), 3)
    bundle = TinyLoader().load("tiny", "cpu")
    spec = ProbeSpec(name="causal-bench", generator="text-pair",
                     stimuli={"pairs": [{"id": p.id, "a": p.a.prompt, "b": p.b.prompt} for p in _pairs(n_pairs)]})
    out: dict = {
        "model": "tiny (embedded, random weights; cpu, fp32)",
        "workload": {"pairs": n_pairs, "layout": "heads (16 units)", "top": top, "controls": controls,
                     "doses": list(doses), "tokens_per_pass": 512 + 64},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(),
                    "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "method": f"median of {repeats} run_causal calls per mode; per unit set = the intervention passes' time / "
                  "unit sets (patch includes the B passes that record the donor slices); CPU = process time",
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = pathlib.Path(tmp) / "run"
        run_probe(Probe.from_pairs(spec, _pairs(n_pairs)), run_dir, RunConfig(probe=spec.name, layouts=("heads",)),
                  model=bundle, progress=False)
        for mode, value in MODES:
            rounds = []
            for _ in range(repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                options = CausalOptions(top=top, controls=controls, doses=doses, mode=mode, ablate_value=value,
                                        exhaustive=True, rankings=("t",))
                data = run_causal(run_dir, options, model=bundle, progress=False, figures=False, report=False)
                t = data["timings"]
                rounds.append({
                    "wall": t["seconds_per_unit_set"], "cpu": t["cpu_seconds_per_unit_set"],
                    "clean_wall_per_pass": t["clean"] / (2 * n_pairs), "clean_cpu_per_pass": t["clean_cpu"] / (2 * n_pairs),
                    "total_wall": time.perf_counter() - w0, "total_cpu": time.process_time() - c0,
                })
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            per = t["passes_per_unit_set"]
            head = next(d for d in data["layouts"]["heads"]["doses"] if d["k"] == data["layouts"]["heads"]["k"])
            out["modes"][f"{mode}-{value}" if mode == "ablate" else mode] = {
                "unit_sets": t["unit_sets"],
                "passes_per_unit_set": per,
                "seconds_per_unit_set": round(med["wall"], 4),
                "cpu_seconds_per_unit_set": round(med["cpu"], 4),
                "seconds_per_unit_set_rounds": [round(r["wall"], 4) for r in rounds],
                "cpu_seconds_per_intervened_pass": round(med["cpu"] / per, 5),
                "cpu_seconds_per_clean_pass": round(med["clean_cpu_per_pass"], 5),
                "intervened_over_clean_pass_cpu": round(med["cpu"] / per / med["clean_cpu_per_pass"], 3),
                "total_wall_s": round(med["total_wall"], 3),
                "total_cpu_s": round(med["total_cpu"], 3),
                "check": {"effect_top_k": head["effect"], "control_mean": head["controls"]["mean"], "p": head["p"]},
            }
    out["ratio"] = cost_ratio(quick)
    out["machine"]["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return out


CHECKS = {"default": [], "confirm_both": ["--confirm", "both"],
          "before": ["--exhaustive", "--confirm", "t", "--units", "heads,slices16"]}


def _wall(args: list[str], env: dict) -> float:
    import subprocess

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "plantain_core", *args, "--no-progress"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _summary(data: dict) -> dict:
    """Pass counts and the |t| conclusions of one causal.json."""
    lay = data["layouts"]["heads"]
    return {"passes": data["cost"]["total_forward"], "unit_sets": data["cost"]["unit_sets_run"],
            "t_doses": {d["k"]: {"units": d["units"], "p": d["p"], "significant": d["p"] is not None and d["p"] <= 0.05}
                        for d in lay["doses"]},
            "attribution_doses": {d["k"]: {"units": d["units"], "p": d["p"]} for d in lay["attribution"]["doses"]}}


def cost_ratio(quick: bool) -> dict:
    """Wall of each causal check ÷ wall of the run it checks, interleaved rounds."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT.parent)}
    rounds, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1 if quick else 2):
            run_dir = pathlib.Path(tmp) / f"ray-{r}"
            walls = {"run": _wall(["run", "ray", "--model", "tiny", "--out", str(run_dir)], env)}
            for name, extra in CHECKS.items():
                walls[name] = _wall(["causal", str(run_dir), *extra], env)
                checks[name] = _summary(json.loads((run_dir / "causal.json").read_text()))
            rounds.append(walls)
    med = {k: statistics.median(w[k] for w in rounds) for k in rounds[0]}
    before, now = checks["before"]["t_doses"], checks["default"]["t_doses"]
    same = all(before[k]["units"] == d["units"] and before[k]["significant"] == d["significant"]
               for k, d in now.items())
    return {
        "workload": "ray probe (25 pairs) on tiny; run layouts heads + slices16; causal confirms heads",
        "target_max": 3.0,
        "wall_s": {k: round(v, 2) for k, v in med.items()},
        "wall_s_rounds": rounds,
        "ratio_over_run": {k: round(med[k] / med["run"], 2) for k in CHECKS},
        "passes": {k: c["passes"] for k, c in checks.items()},
        "unit_sets": {k: c["unit_sets"] for k, c in checks.items()},
        "conclusions": checks,
        "same_conclusions_as_before": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs, controls and doses (a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "results" / "causal.json"))
    args = ap.parse_args()
    from plantain_core.rundir.fsutil import atomic_write_json

    result = run(args.quick)
    atomic_write_json(args.out, result)
    w = result["workload"]
    print(f"causal check on tiny: {w['pairs']} pairs, top {w['top']}, {w['controls']} controls, doses {w['doses']}")
    for name, m in result["modes"].items():
        print(f"  {name:11s} {m['unit_sets']:3d} unit sets × {m['passes_per_unit_set']:2d} passes: "
              f"{m['seconds_per_unit_set']:.3f} s wall, {m['cpu_seconds_per_unit_set']:.3f} s CPU per unit set "
              f"(an intervened pass costs {m['intervened_over_clean_pass_cpu']}× a clean one in CPU time)")
    r = result["ratio"]
    print("  plantain causal ÷ plantain run (ray, tiny): " + ", ".join(f"{k} {v}×" for k, v in r["ratio_over_run"].items())
          + f"; passes {r['passes']}; same conclusions as before: {r['same_conclusions_as_before']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
