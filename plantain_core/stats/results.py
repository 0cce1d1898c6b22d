"""The result files of a run: summary.json, units.csv, blocks.csv.

Every number is printed with a fixed format (10 significant digits) and files are
written atomically, so recomputing with the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import math
import pathlib
from typing import Any, Mapping

import numpy as np

from ..rundir.fsutil import atomic_write_json, atomic_write_text
from .blocks import block_tests
from .engine import LARGE_D, TIE_RTOL, LayoutStats, json_float, top_blocks
from .power import mde, tost_floor

SUMMARY = "summary.json"
UNITS_CSV = "units.csv"
BLOCKS_CSV = "blocks.csv"
UNITS_COLUMNS = ("layout", "unit", "block", "mean_diff", "t", "d", "p", "q", "p_fwer")
#: Columns after UNITS_COLUMNS, present when the checks ran (plantain_core.stats.checks.review).
CHECK_COLUMNS = ("d_low", "d_high", "p_tost", "t_specific", "q_specific", "p_fwer_specific", "t_length", "p_length",
                 "p_fwer_length")


def fwer_threshold(null_max: np.ndarray, exact: bool, alpha: float = 0.05) -> float | None:
    """The |t| a unit must exceed for p_fwer < alpha, as an order statistic of the null
    maxima (consistent with ``stats.fwer_p``); None when alpha is out of reach."""
    f = null_max.size
    # p = (1 + c)/(1 + F) random, c/F exact, with c = #{null max >= |t|·(1 − TIE_RTOL)}.
    # Exact enumeration holds the observed pattern itself, so there c >= 1 always.
    allowed = math.ceil(alpha * f) - 1 if exact else math.ceil(alpha * (f + 1)) - 2
    if allowed < (1 if exact else 0) or f == 0:
        return None
    return float(np.sort(null_max)[::-1][allowed]) / (1 - TIE_RTOL)


def observed_over_null(observed: int, p99: float) -> tuple[float, str | None]:
    """observed / null p99, or NaN with the reason when the null p99 is 0."""
    if p99 > 0:
        return observed / p99, None
    if observed == 0:
        return math.nan, "observed and null p99 are both 0"
    return math.nan, "null p99 is 0"


def layout_summary(st: LayoutStats) -> dict[str, Any]:
    """One layout's entry of ``summary.json``: JSON-safe (NaN → None), counts and
    fractions of all units, null, split-half, significance and top blocks."""
    n_units = st.n_units
    abs_t = np.abs(st.t)
    finite = np.isfinite(abs_t)
    rows = []
    for k, thr in enumerate(st.thresholds):
        above = thr * (1 + TIE_RTOL)  # a tie is not above, in the null's counts too
        observed = int(np.count_nonzero(abs_t[finite] > above))
        positive = int(np.count_nonzero(st.t[finite] > above))
        null = st.null_counts[:, k]
        p99 = float(np.percentile(null, 99))
        ratio, note = observed_over_null(observed, p99)
        rows.append({
            "threshold": float(thr),
            "observed": observed,
            "positive": positive,  # of those, units with t > 0: larger under A
            "fraction": json_float(observed / n_units if n_units else math.nan),
            "null_mean": json_float(float(null.mean())),
            "null_p99": json_float(p99),
            "ratio": json_float(ratio),
            "ratio_note": note,
        })
    large = int(np.count_nonzero(np.abs(st.d[finite]) > LARGE_D))
    best = int(np.nanargmax(abs_t)) if finite.any() else None
    sr = st.split_r[np.isfinite(st.split_r)]
    thr0 = st.thresholds[0]
    t95 = fwer_threshold(st.null_max_abs_t, st.exact)
    return {
        "n_units": n_units,
        "n_tested": int(finite.sum()),
        "n_pairs": st.n_pairs,
        "n_zero_variance": int(st.zero_variance.sum()),
        "n_nonfinite": int(st.nonfinite.sum()),
        "untested_note": (
            "units with zero variance or non-finite captures have t = NaN; they are excluded "
            "from every count (which stay fractions of all units) and from BH and FWER"
        ),
        "thresholds": rows,
        "max_abs_t": json_float(abs_t[best]) if best is not None else None,
        "max_abs_t_unit": st.units[best] if best is not None else None,
        "large_d": {
            "threshold": LARGE_D,
            "count": large,
            "fraction": json_float(large / n_units if n_units else math.nan),
        },
        "significant": {
            "p_lt_0.05": int(np.count_nonzero(st.p[finite] < 0.05)),
            "q_lt_0.05": int(np.count_nonzero(st.q[finite] < 0.05)),
            "p_fwer_lt_0.05": int(np.count_nonzero(st.p_fwer[finite] < 0.05)),
        },
        "split_half": {
            "median": json_float(np.median(sr)) if sr.size else None,
            "q25": json_float(np.percentile(sr, 25)) if sr.size else None,
            "q75": json_float(np.percentile(sr, 75)) if sr.size else None,
            "splits": int(st.split_r.size),
            "valid_splits": int(sr.size),
            "note": st.split_note,
        },
        "null": {
            "method": "sign-flip",
            "flips": st.flips_used,
            "flips_requested": st.flips,
            "exact": st.exact,
            "seed": st.seed,
            # |t| a unit must exceed to get p_fwer < 0.05 (None: unreachable with this null)
            "max_abs_t_p95": json_float(_or_nan(t95)),
            "min_p_fwer": json_float(st.min_p_fwer),
            "fwer_reachable": bool(st.min_p_fwer < 0.05),
            # |d_z| the FWER test finds with 80% power at this N and null (None: unreachable)
            "mde_dz": json_float(_or_nan(mde(st.n_pairs, st.n_pairs - 1, t95))),
        },
        **checks_summary(st),
        "top_blocks": [b.as_dict(thr0) for b in top_blocks(st.blocks)],
        "block_tests": block_tests(st),
    }


def checks_summary(st: LayoutStats) -> dict[str, Any]:
    """summary.json's specificity, equivalence and length-adjusted entries of one layout,
    each with the minimum detectable d_z (80% power) of its FWER test at this N."""
    if st.specific is None:
        return {}
    finite = np.isfinite(st.t)
    n = st.n_pairs
    floor = tost_floor(n, st.tost_bound)
    out: dict[str, Any] = {
        "specificity": {
            "common_mode_share": json_float(st.common_share) if st.common_share is not None else None,
            **_adjusted_counts(st.specific, st),
            "readings": _readings(st.common_mode),
            "raw_p_fwer_lt_0.05": int(np.count_nonzero(st.p_fwer[finite] < 0.05)),
        },
        "equivalence": {
            "bound_dz": st.tost_bound,
            "equivalent": int(np.count_nonzero(st.p_tost[np.isfinite(st.p_tost)] < 0.05)),
            "tested": int(finite.sum()),
            "min_p": json_float(floor),
            "reachable": bool(floor < 0.05),
        },
    }
    if st.length is not None:
        out["length_adjusted"] = _adjusted_counts(st.length, st)
    return out


def _readings(mode) -> list[dict[str, Any]]:
    if mode is None:
        return []
    return [{"shift": json_float(r.shift), "shift_se": json_float(math.sqrt(r.var)), "agreeing": r.agreeing}
            for r in mode.readings]


def _adjusted_counts(adj, st: LayoutStats) -> dict[str, Any]:
    if adj.note is not None:
        return {"p_fwer_lt_0.05": None, "q_lt_0.05": None, "note": adj.note}
    kappa = median_inflation(adj)
    n = st.n_pairs  # the adjusted tests flip with the layout's own sign patterns
    return {"p_fwer_lt_0.05": int(np.count_nonzero(adj.p_fwer[np.isfinite(adj.p_fwer)] < 0.05)),
            "q_lt_0.05": int(np.count_nonzero(adj.q[np.isfinite(adj.q)] < 0.05)), "note": None,
            "inflation": json_float(kappa),
            "mde_dz": json_float(_or_nan(mde(n, n - 2, fwer_threshold(adj.null_max, st.exact), kappa)))}


def median_inflation(adj) -> float:
    """The layout's identification figure: the median standard-error inflation κ over tested units."""
    k = adj.inflation[np.isfinite(adj.inflation)] if adj.inflation is not None else np.zeros(0)
    return float(np.median(k)) if k.size else math.nan


def _or_nan(x):
    return math.nan if x is None else x


def fmt(x: Any) -> str:
    """One CSV cell: integers as is, floats as %.10g, NaN/inf as empty/'inf'."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return ""
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.10g}"
    s = str(x)
    if any(c in s for c in ',"\n\r'):
        s = '"' + s.replace('"', '""') + '"'
    return s


def json_safe(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays into JSON types; NaN/inf → None; floats
    rounded to 10 significant digits (stable across reruns and platforms' last bits)."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return float(f"{x:.10g}") if math.isfinite(x) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def units_csv(layouts: Mapping[str, LayoutStats]) -> str:
    """One row per unit of every layout, in capture order."""
    buf = io.StringIO()
    checked = all(st.specific is not None for st in layouts.values())
    buf.write(",".join(UNITS_COLUMNS + (CHECK_COLUMNS if checked else ())) + "\n")
    for name, st in layouts.items():
        cols = (st.mean_diff, st.t, st.d, st.p, st.q, st.p_fwer)
        if checked:
            nan = np.full(st.n_units, np.nan)
            length, specific = st.length, st.specific
            cols += (st.d_low, st.d_high, st.p_tost, specific.t, specific.q, specific.p_fwer,
                     length.t if length else nan, length.p if length else nan, length.p_fwer if length else nan)
        # Formatting 16k×6 floats is a string job; %.10g via a list comprehension per column.
        text_cols = [[fmt(v) for v in c.tolist()] for c in cols]
        for i, unit in enumerate(st.units):
            row = [fmt(name), fmt(unit), fmt(st.blocks_of_units[i])] + [c[i] for c in text_cols]
            buf.write(",".join(row) + "\n")
    return buf.getvalue()


def blocks_csv(layouts: Mapping[str, LayoutStats]) -> str:
    """One row per block; the count column is named after the first threshold
    (``n_abs_t_gt_3`` with the default thresholds)."""
    thr = {st.thresholds[0] for st in layouts.values()}
    label = f"n_abs_t_gt_{next(iter(thr)):g}" if len(thr) == 1 else "n_abs_t_gt_first_threshold"
    buf = io.StringIO()
    buf.write(f"layout,block,units,max_abs_t,{label},median_abs_d\n")
    for name, st in layouts.items():
        for b in st.blocks:
            buf.write(",".join(fmt(v) for v in (name, b.block, b.units, b.max_abs_t, b.n_abs_t_gt, b.median_abs_d)) + "\n")
    return buf.getvalue()


def write_results(run_dir: str | pathlib.Path, summary: Mapping[str, Any], layouts: Mapping[str, LayoutStats]) -> list[pathlib.Path]:
    """Write summary.json, units.csv and blocks.csv into ``run_dir`` atomically."""
    run_dir = pathlib.Path(run_dir)
    return [
        atomic_write_json(run_dir / SUMMARY, json_safe(summary)),
        atomic_write_text(run_dir / UNITS_CSV, units_csv(layouts)),
        atomic_write_text(run_dir / BLOCKS_CSV, blocks_csv(layouts)),
    ]
