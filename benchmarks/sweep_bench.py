"""A sweep on Ray against the same sweep in one process: 8 tiny cells, wall time.

The grid: probes ``ray`` and ``measure`` × seeds 0–3 on ``tiny``, each cell a 4-step
trajectory run (about 9 s of work here). Arms, interleaved, each a real ``plantain sweep``
subprocess into a fresh folder: ``--executor local`` (one process, the model loaded once)
and ``--executor ray --workers 2`` (a local Ray cluster started by the command, two
actors with one CPU and one torch thread each). Reported: local wall ÷ Ray wall (the
target is ≥ 1.6× on this 2-core machine) and each arm's model loads (one per worker and
model). Ray's start-up (the cluster, the actors importing torch) is inside its wall time.

Run: ``python benchmarks/sweep_bench.py [--quick]``; writes ``benchmarks/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent
GRID = """probes = ["ray", "measure"]
models = ["tiny"]
seeds = [0, 1, 2, 3]
steps = [4]
"""
ARMS = {"local": [], "ray": ["--executor", "ray", "--workers", "2"]}


def _sweep(grid: pathlib.Path, out: pathlib.Path, extra: list[str]) -> tuple[float, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT.parent)}
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "plantain_core", "sweep", str(grid), "--out", str(out), *extra],
                         capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    return wall, int(re.search(r"(\d+) model loads", res.stdout)[1])


def run(quick: bool = False) -> dict:
    rounds = 1 if quick else 2
    walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
    loads: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        grid = pathlib.Path(tmp) / "grid.toml"
        grid.write_text(GRID)
        for r in range(rounds):
            for arm, extra in (ARMS.items() if r % 2 == 0 else reversed(list(ARMS.items()))):
                wall, loads[arm] = _sweep(grid, pathlib.Path(tmp) / f"{arm}-{r}", extra)
                walls[arm].append(wall)
    ratios = [lw / rw for lw, rw in zip(walls["local"], walls["ray"])]
    return {"cells": 8, "workload": "probes ray, measure x seeds 0-3 on tiny, steps 4, figures on",
            "wall_s": {arm: [round(w, 2) for w in ws] for arm, ws in walls.items()},
            "ratio_local_over_ray": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
            "model_loads": loads, "target_min": 1.6, "cpus": os.cpu_count(),
            "met": statistics.median(ratios) >= 1.6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "sweep.json"))
    args = ap.parse_args()
    from plantain_core.rundir.fsutil import atomic_write_json

    result = run(args.quick)
    atomic_write_json(args.out, result)
    print(f"8 tiny cells: local / ray (2 workers) = {result['ratio_local_over_ray']}x {result['ratios']}; "
          f"model loads {result['model_loads']}")


if __name__ == "__main__":
    main()
