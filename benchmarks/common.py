"""Timing helpers shared by the benchmarks: interleaved arms, per-round ratios, spread.

Every figure is a ratio of two arms measured in one process. The arms run in rounds,
alternating their order (A B, B A, A B, ...) so that drift in machine load hits both
alike; one round gives one ratio, and a figure reports the median of the per-round
ratios with their inter-quartile range and min/max. Wall-clock time is the headline;
process CPU time (``time.process_time``) is recorded beside it, because on a shared
machine other processes steal wall time but not CPU time.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

#: glibc tuning that removes the first-big-allocation slowness of this kind of VM
#: (large blocks are otherwise mmap'ed and returned to the kernel after every use, and
#: each reuse page-faults again). ``python -m benchmarks`` re-executes itself with these
#: set unless ``--no-malloc-tuning`` is given.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def malloc_tuned() -> bool:
    return all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())


def quantiles(values) -> dict[str, Any]:
    """median, IQR (q1, q3), min, max and n of ``values`` (rounded for JSON)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return {"median": None, "q1": None, "q3": None, "min": None, "max": None, "n": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": _r(med), "q1": _r(q1), "q3": _r(q3), "min": _r(v.min()), "max": _r(v.max()), "n": int(v.size)}


def _r(x: float) -> float:
    x = float(x)
    if x == 0 or not np.isfinite(x):
        return x
    digits = max(4, 4 - int(np.floor(np.log10(abs(x)))))
    return round(x, digits)


Arm = Callable[[], Any] | tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]


def interleaved(arms: dict[str, Arm], rounds: int, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """Run every arm ``warmup`` times, then ``rounds`` rounds with alternating order.

    An arm is a callable, or ``(setup, fn, teardown)`` of which only ``fn`` is timed.
    Returns ``{arm: {"wall": [s per round], "cpu": [s per round]}}``.
    """
    names = list(arms)
    parts = {n: (a if isinstance(a, tuple) else (None, a, None)) for n, a in arms.items()}

    def once(name):
        setup, fn, teardown = parts[name]
        if setup is not None:
            setup()
        try:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            w1, c1 = time.perf_counter(), time.process_time()
        finally:
            if teardown is not None:
                teardown()
        return w1 - w0, c1 - c0

    for _ in range(warmup):
        for name in names:
            once(name)
    out = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu = once(name)
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
    return out


def ratio(times: dict[str, dict[str, list[float]]], num: str, den: str, scale: float = 1.0) -> dict[str, Any]:
    """Per-round ratio num/den (times ``scale``), wall clock and CPU time."""
    out: dict[str, Any] = {}
    for clock in ("wall", "cpu"):
        a, b = np.asarray(times[num][clock]), np.asarray(times[den][clock])
        with np.errstate(divide="ignore", invalid="ignore"):
            per = scale * a / b
        out[clock] = quantiles(per)
        out[clock]["per_round"] = [_r(x) for x in per]
    return out


def arm_summary(times: dict[str, list[float]], per: int = 1) -> dict[str, Any]:
    """Seconds per unit of work (``per`` units in one timed call), wall and CPU."""
    return {clock: quantiles(np.asarray(times[clock]) / per) for clock in ("wall", "cpu")}


def fmt_ratio(rec: dict[str, Any], clock: str = "wall", unit: str = "×") -> str:
    q = rec[clock]
    if q["median"] is None:
        return "n/a"
    return f"{q['median']:.3g}{unit} (IQR {q['q1']:.3g}–{q['q3']:.3g}, min–max {q['min']:.3g}–{q['max']:.3g}, n={q['n']})"


def machine_info() -> dict[str, Any]:
    import torch

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": _cpu_name() or platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "malloc_tuning": malloc_tuned(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def gpu_stamp() -> dict[str, Any]:
    """What a GPU figure was measured on: GPU name, driver, torch and CUDA versions, the command."""
    import subprocess

    import torch

    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "driver": driver,
            "torch": torch.__version__, "cuda": torch.version.cuda, "command": " ".join([sys.executable, *sys.argv]),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_device_json(figure: str, result: dict[str, Any], folder=None) -> str | None:
    """``benchmarks/results/<figure>-<gpu kind>.json``: a GPU figure with its machine stamp (one
    file per device kind, so an H100's figures are not overwritten by an H200's); None without a GPU."""
    import json
    import pathlib
    import re

    stamp = gpu_stamp()
    if stamp["gpu"] is None or result.get("status") != "ran":
        return None
    kind = re.sub(r"[^a-z0-9]+", "-", stamp["gpu"].lower()).strip("-")
    folder = pathlib.Path(folder) if folder else pathlib.Path(__file__).resolve().parent / "results"
    path = folder / f"{figure}-{kind}.json"
    path.write_text(json.dumps({"machine": stamp, "figure": figure, "result": result}, indent=2) + "\n", encoding="utf-8")
    return str(path)


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median(values) -> float:
    return float(statistics.median(values))
