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
from ..rundir.manifest import check_unit_rows

Q_LEVEL = 0.05


def _float(cell: str) -> float:
    return float(cell) if cell not in ("", None) else float("nan")


def read_run(run_dir: pathlib.Path) -> dict[str, Any]:
    """A run's per-unit t, q and p_fwer from its result files; anything not as plantain
    writes them is one error naming the file. ``hf://user/repo``: a published run."""
    from ..rundir.hub import resolve_run_path

    run_dir = check_run_folder(resolve_run_path(run_dir))
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
                layouts.setdefault(str(row["layout"]), {})[str(row["unit"])] = (
                    _float(row["t"]), _float(row["q"]), _float(row.get("p_fwer", "")))
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        raise PlantainError(f"{units_path}: not a plantain units table ({type(exc).__name__}: {exc}); "
                            f"run `plantain report {run_dir}`") from None
    from .analysis import read_manifest
    from ..config import config_from_manifest

    manifest = read_manifest(run_dir)
    check_unit_rows(units_path, {k: len(v) for k, v in layouts.items()}, manifest, run_dir)
    config = config_from_manifest(manifest, str(run_dir / "manifest.json"))
    return {"dir": str(run_dir), "probe": str(summary.get("probe")), "model": str(model.get("id") or model.get("name")),
            "revision": model.get("revision"), "token_scope": str(config.token_scope),
            "capture_method": config.capture_method, "layouts": layouts}


def _split(name: str) -> tuple[str, int | None]:
    base, _, step = name.partition("@step")
    return base, (int(step) if step.isdigit() else None)


def _matches(runs: list[dict], step: int | None) -> list[tuple[str, int | None, list[str]]]:
    """(layout, step, each run's layout label) for every layout all runs captured, at each
    step every trajectory run captured (a one-step run stands beside each of them)."""
    per_run = []
    for r in runs:
        steps: dict[str, dict[int | None, str]] = {}
        for label in r["layouts"]:
            base, s = _split(label)
            steps.setdefault(base, {})[s] = label
        per_run.append(steps)
    out = []
    for base in sorted(set(per_run[0]).intersection(*per_run[1:])):
        trajectories = [set(p[base]) for p in per_run if None not in p[base]]
        shared = sorted(set.intersection(*trajectories)) if trajectories else [None]
        if step is not None:
            if not trajectories:
                raise PlantainError(f"step={step}: none of the runs captured a trajectory (--steps K)")
            if step not in shared:
                raise PlantainError(f"step {step} was not captured by every trajectory run; shared steps of "
                                    f"{base!r}: {', '.join(map(str, shared)) or 'none'}")
            shared = [step]
        for s in shared:
            out.append((base, s, [p[base][None] if None in p[base] else p[base][s] for p in per_run]))
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    import pandas as pd

    return float(np.corrcoef(pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy())[0, 1])


def compare_runs(run_dirs: Sequence[str | pathlib.Path], q_level: float = Q_LEVEL, *,
                 step: int | None = None) -> dict[str, Any]:
    """Per shared layout (and step) and pair of runs: the correlation of per-unit t and the
    overlap of their hits. ``rows`` holds one flat record per comparison."""
    runs = [read_run(d) for d in run_dirs]
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
    matches = _matches(runs, step)
    if not matches:
        raise PlantainError("the runs share no unit layout")
    out: dict[str, Any] = {"model": runs[0]["model"], "token_scope": runs[0]["token_scope"], "q_level": q_level,
                           "runs": [{"dir": r["dir"], "probe": r["probe"]} for r in runs], "layouts": {}, "rows": []}
    for base, s, labels in matches:
        maps = [r["layouts"][label] for r, label in zip(runs, labels)]
        units = sorted(set(maps[0]).intersection(*maps[1:]))
        t = np.array([[m[u][0] for u in units] for m in maps])
        q = np.array([[m[u][1] for u in units] for m in maps])
        fwer = np.array([[m[u][2] for u in units] for m in maps]) < 0.05  # NaN: never a hit
        sig = q < q_level  # NaN compares False: untested units are never significant
        rows = []
        for i, j in itertools.combinations(range(len(runs)), 2):
            ok = np.isfinite(t[i]) & np.isfinite(t[j])
            enough = ok.sum() > 2 and np.ptp(t[i, ok]) > 0 and np.ptp(t[j, ok]) > 0
            r = float(np.corrcoef(t[i, ok], t[j, ok])[0, 1]) if enough else float("nan")
            rho = _spearman(t[i, ok], t[j, ok]) if enough else float("nan")
            both, either = int(np.count_nonzero(sig[i] & sig[j])), int(np.count_nonzero(sig[i] | sig[j]))
            f_both, f_either = int(np.count_nonzero(fwer[i] & fwer[j])), int(np.count_nonzero(fwer[i] | fwer[j]))
            row = {
                "a": runs[i]["probe"], "b": runs[j]["probe"], "units": int(ok.sum()),
                "t_correlation": None if np.isnan(r) else round(r, 6),
                "significant_a": int(sig[i].sum()), "significant_b": int(sig[j].sum()),
                "significant_both": both, "jaccard": round(both / either, 6) if either else None,
            }
            rows.append(row)
            out["rows"].append({
                "layout": base, "step": s, "a": runs[i]["probe"], "b": runs[j]["probe"],
                "a_dir": runs[i]["dir"], "b_dir": runs[j]["dir"], "units": int(ok.sum()),
                "pearson_r": r, "spearman_r": rho,
                "fwer_a": int(fwer[i].sum()), "fwer_b": int(fwer[j].sum()), "fwer_both": f_both,
                "fwer_jaccard": f_both / f_either if f_either else float("nan"),
                "bh_a": int(sig[i].sum()), "bh_b": int(sig[j].sum()), "bh_both": both,
                "bh_jaccard": both / either if either else float("nan"),
            })
        label = base if s is None else f"{base}@step{s}"
        out["layouts"][label] = {"units": len(units), "step": s, "significant_in_all": int(sig.all(axis=0).sum()),
                                 "pairs": rows}
    return out
