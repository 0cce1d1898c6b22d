"""Comparing probes run on the same model: overlap of significant units and correlation
of their t maps, per unit layout (the seed cards compare probes by hand)."""

from __future__ import annotations

import csv
import itertools
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from ..errors import PlantainError
from ..rundir.folder import check_run_folder, settle

Q_LEVEL = 0.05


def _float(cell: str) -> float:
    return float(cell) if cell not in ("", None) else float("nan")


def read_run(run_dir: pathlib.Path) -> dict[str, Any]:
    """A run's per-unit t and q from its result files; anything not as plantain writes
    them is one error naming the file."""
    run_dir = check_run_folder(run_dir)
    settle(run_dir)
    summary_path, units_path = run_dir / "summary.json", run_dir / "units.csv"
    for path in (summary_path, units_path):
        if not path.is_file():
            raise PlantainError(f"{run_dir}: no {path.name}; run `plantain report {run_dir}` first")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        model = summary.get("model") or {}
        if not isinstance(model, dict):
            raise ValueError("'model' is not an object")
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        raise PlantainError(f"{summary_path}: not a plantain summary ({exc}); run `plantain report {run_dir}`") from None
    layouts: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        with units_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"layout", "unit", "t", "q"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"no column {', '.join(sorted(missing))}")
            for row in reader:
                layouts.setdefault(str(row["layout"]), {})[str(row["unit"])] = (_float(row["t"]), _float(row["q"]))
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        raise PlantainError(f"{units_path}: not a plantain units table ({type(exc).__name__}: {exc}); "
                            f"run `plantain report {run_dir}`") from None
    from .analysis import read_manifest
    from ..config import config_from_manifest

    config = config_from_manifest(read_manifest(run_dir), str(run_dir / "manifest.json"))
    return {"dir": str(run_dir), "probe": str(summary.get("probe")), "model": str(model.get("id") or model.get("name")),
            "revision": model.get("revision"), "token_scope": str(config.token_scope),
            "capture_method": config.capture_method, "layouts": layouts}


def compare_runs(run_dirs: Sequence[str | pathlib.Path], q_level: float = Q_LEVEL) -> dict[str, Any]:
    runs = [read_run(pathlib.Path(d)) for d in run_dirs]
    if len(runs) < 2:
        raise PlantainError("compare needs at least two run folders")
    models = {(r["model"], r["revision"]) for r in runs}
    if len(models) > 1:
        listing = "; ".join(f"{r['dir']}: {r['model']}@{r['revision'] or 'default'}" for r in runs)
        raise PlantainError(f"runs were made on different models, their units are not comparable: {listing}")
    scopes = {r["token_scope"] for r in runs}
    if len(scopes) > 1:  # a unit's RMS over image tokens is another number than over all tokens
        listing = "; ".join(f"{r['dir']}: --token-scope {r['token_scope']}" for r in runs)
        raise PlantainError(f"runs measured different token scopes, their units are not comparable: {listing}")
    if len({r["capture_method"] for r in runs}) > 1:  # another reduction: equal only to float tolerance
        listing = "; ".join(f"{r['dir']}: --capture-method {r['capture_method']}" for r in runs)
        raise PlantainError(f"runs used different capture methods, a change of settings: {listing}")
    shared = set(runs[0]["layouts"]).intersection(*(r["layouts"] for r in runs[1:]))
    if not shared:
        raise PlantainError("the runs share no unit layout")
    out: dict[str, Any] = {"model": runs[0]["model"], "token_scope": runs[0]["token_scope"], "q_level": q_level,
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
