"""``plantain sweep plan SWEEP.toml``: what a sweep costs, on paper, before a model is
loaded or a cluster booked.

Per cell: the transformer passes its run makes (2 per pair and captured trajectory step,
doubled by classifier-free guidance where ``guidance`` > 1; the length placebo's 2 per
pair; the denoising passes that generate its conditioning images), then the total and
device-hours at a pass rate: ``--passes-per-second`` (measured on the device to be used),
or, for the tiny model ``python -m benchmarks`` measured (FLUX.2 Klein's ``tiny``), its rate on
this checkout; other families' models have no rate until one is passed.
Rates depend on the model, resolution and device; a plan is as good as the rate it uses.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from .grid import load_grid

LATEST = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "latest.json"


def cell_passes(probe, config) -> dict[str, int]:
    """Transformer forward passes of one run of ``probe`` under ``config``."""
    n = len(probe.pairs)
    # CFG runs only in the loop (steps > 1); families with embedded guidance never run it: an upper bound there
    cfg = 2 if config.guidance > 1 and config.steps > 1 else 1
    generated = {s.image for p in probe.pairs for s in p.stimuli() if s.image is not None and s.image.prompt}
    return {"pairs": n, "probe": 2 * n * config.steps * cfg, "length_control": 2 * n if config.length_control else 0,
            "images": sum(image.steps for image in generated)}


def benchmark_rate(model: str | None) -> tuple[float | None, str | None]:
    """passes/s from this checkout's benchmark results, for the tiny model the benchmark
    measured (its loader: ``tiny`` and ``tiny-weightsN`` are FLUX.2 Klein's) and no other:
    another family's tiny model has other sizes and another rate, and no rate is better
    than a wrong one (the plan then asks for ``--passes-per-second``)."""
    if not model or not model.lower().split("/")[-1].startswith("tiny") or not LATEST.is_file():
        return None, None
    try:
        figures = json.loads(LATEST.read_text(encoding="utf-8"))["figures"]["throughput"]
        row = figures["plantain_passes_per_s"]
        rate = float(row["wall"]["median"] if isinstance(row, dict) and "wall" in row else
                     row["median"] if isinstance(row, dict) else row)
        measured = str(figures.get("model", "tiny"))
    except (KeyError, TypeError, ValueError, OSError):
        return None, None
    if _loader_name(model) != _loader_name(measured):
        return None, None
    return rate, f"benchmarks/results/latest.json (throughput, {measured}, CPU)"


def _loader_name(model: str) -> str | None:
    from ..errors import PlantainError
    from ..models.loaders import resolve_loader

    try:
        return resolve_loader(model)[0]
    except PlantainError:
        return None


def plan_sweep(path, passes_per_second: float | None = None) -> dict[str, Any]:
    from ..spec.probes import load_probe

    grid = load_grid(path)
    cells, probes = [], {}
    for cell in grid.cells():
        probe = probes.get(cell.config.probe) or probes.setdefault(cell.config.probe, load_probe(cell.config.probe))
        passes = cell_passes(probe, cell.config)
        total = passes["probe"] + passes["length_control"] + passes["images"]
        rate, source = (passes_per_second, "--passes-per-second") if passes_per_second else \
            benchmark_rate(cell.config.model)
        cells.append({"cell": cell.name, "model": cell.config.model, **passes, "passes": total,
                      "passes_per_second": rate, "rate_source": source,
                      "device_hours": total / rate / 3600 if rate else None})
    known = [c for c in cells if c["device_hours"] is not None]
    return {"sweep": str(grid.path.name), "cells": cells, "total_passes": sum(c["passes"] for c in cells),
            "device_hours": sum(c["device_hours"] for c in known) if len(known) == len(cells) else None,
            "models": sorted({str(c["model"]) for c in cells}),
            "note": "model loads (one per worker and model) and prompt encoding are not counted"}


def format_plan(plan: dict[str, Any]) -> str:
    lines = [f"{'cell':44s} {'pairs':>6s} {'probe':>8s} {'placebo':>8s} {'images':>7s} {'passes':>9s} {'device-h':>10s}"]
    for c in plan["cells"]:
        hours = f"{c['device_hours']:.4f}" if c["device_hours"] is not None else "?"
        lines.append(f"{c['cell'][:44]:44s} {c['pairs']:6d} {c['probe']:8,d} {c['length_control']:8,d} {c['images']:7,d} "
                     f"{c['passes']:9,d} {hours:>10s}")
    total = f"{plan['device_hours']:.4f}" if plan["device_hours"] is not None else \
        "unknown: pass --passes-per-second (a rate measured on the device to be used)"
    lines.append(f"{len(plan['cells'])} cells, {plan['total_passes']:,} transformer passes; device-hours: {total}")
    sources = sorted({c["rate_source"] for c in plan["cells"] if c["rate_source"]})
    if sources:
        lines.append(f"rates from {', '.join(sources)}")
    lines.append(f"(probe: 2 passes per pair and captured step, x2 with guidance > 1; placebo: --length-control; "
                 f"images: denoising steps of generated conditioning images; {plan['note']})")
    return "\n".join(lines)
