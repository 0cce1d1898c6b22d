"""Comparing probes run on the same model: overlap of significant units and correlation
of their t maps, per unit layout (the seed cards compare probes by hand)."""

from __future__ import annotations

import csv
import itertools
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from .errors import PlantainError

Q_LEVEL = 0.05


def _float(cell: str) -> float:
    return float(cell) if cell not in ("", None) else float("nan")


def read_run(run_dir: pathlib.Path) -> dict[str, Any]:
    summary_path, units_path = run_dir / "summary.json", run_dir / "units.csv"
    for path in (summary_path, units_path):
        if not path.is_file():
            raise PlantainError(f"{run_dir}: no {path.name}; run `plantain report {run_dir}` first")
    summary = json.loads(summary_path.read_text())
    layouts: dict[str, dict[str, tuple[float, float]]] = {}
    with units_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            layouts.setdefault(row["layout"], {})[row["unit"]] = (_float(row["t"]), _float(row["q"]))
    model = summary.get("model") or {}
    return {"dir": str(run_dir), "probe": summary.get("probe"), "model": model.get("id") or model.get("name"),
            "revision": model.get("revision"), "layouts": layouts}


def compare_runs(run_dirs: Sequence[str | pathlib.Path], q_level: float = Q_LEVEL) -> dict[str, Any]:
    runs = [read_run(pathlib.Path(d)) for d in run_dirs]
    if len(runs) < 2:
        raise PlantainError("compare needs at least two run folders")
    models = {(r["model"], r["revision"]) for r in runs}
    if len(models) > 1:
        listing = "; ".join(f"{r['dir']}: {r['model']}@{r['revision'] or 'default'}" for r in runs)
        raise PlantainError(f"runs were made on different models, their units are not comparable: {listing}")
    shared = set(runs[0]["layouts"]).intersection(*(r["layouts"] for r in runs[1:]))
    if not shared:
        raise PlantainError("the runs share no unit layout")
    out: dict[str, Any] = {"model": runs[0]["model"], "q_level": q_level,
                           "runs": [{"dir": r["dir"], "probe": r["probe"]} for r in runs], "layouts": {}}
    for layout in sorted(shared):
        units = sorted(set(runs[0]["layouts"][layout]).intersection(*(r["layouts"][layout] for r in runs[1:])))
        t = np.array([[r["layouts"][layout][u][0] for u in units] for r in runs])
        q = np.array([[r["layouts"][layout][u][1] for u in units] for r in runs])
        sig = q < q_level  # NaN compares False: untested units are never significant
        rows = []
        for i, j in itertools.combinations(range(len(runs)), 2):
            ok = np.isfinite(t[i]) & np.isfinite(t[j])
            r = float(np.corrcoef(t[i, ok], t[j, ok])[0, 1]) if ok.sum() > 2 else float("nan")
            both = int(np.count_nonzero(sig[i] & sig[j]))
            either = int(np.count_nonzero(sig[i] | sig[j]))
            rows.append({
                "a": runs[i]["probe"], "b": runs[j]["probe"], "units": int(ok.sum()),
                "t_correlation": None if np.isnan(r) else round(r, 6),
                "significant_a": int(sig[i].sum()), "significant_b": int(sig[j].sum()),
                "significant_both": both, "jaccard": round(both / either, 6) if either else None,
            })
        out["layouts"][layout] = {"units": len(units), "significant_in_all": int(sig.all(axis=0).sum()), "pairs": rows}
    return out
