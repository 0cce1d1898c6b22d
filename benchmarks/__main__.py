"""``python -m benchmarks [--quick] [--only FIGS] [--full-klein] ...`` — run, print, write JSON.

Run from the repository root. Writes ``benchmarks/results/latest.json`` (figures that did
not run this time are kept from the previous file, each with its own ``measured`` stamp)
and prints one table. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time
from typing import Any

from . import DEFAULT_FIGURES, FIGURES, SCHEMA
from .common import MALLOC_ENV, log, malloc_tuned

ROOT = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "latest.json"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and smaller samples (a smoke test, ~1-2 min)")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated figures to run (of {', '.join(FIGURES)}); default: all but full-klein")
    ap.add_argument("--full-klein", action="store_true",
                    help="also run the FLUX.2 Klein 4B GPU figure (random bf16 weights on CUDA; skipped without CUDA)")
    ap.add_argument("--klein-device", default="cuda", help="device of --full-klein (default cuda; never CPU unless asked)")
    ap.add_argument("--klein-batch", type=int, default=4, help="stimuli per forward in --full-klein (default 4)")
    ap.add_argument("--klein-sizes", default="512,1024", help="image sizes of --full-klein (default 512,1024)")
    ap.add_argument("--klein-rounds", type=int, default=5, help="interleaved rounds per --full-klein case (default 5)")
    ap.add_argument("--no-compile", action="store_true", help="--full-klein without its torch.compile arms")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense bf16 peak of the GPU for MFU (default: looked up from the GPU's name)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for the CPU figures (default 1: on a shared machine a second "
                         "thread made forwards tens of times slower; see docs/performance.md)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT.parent)})")
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help=f"do not re-run with {' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}")
    args = ap.parse_args(argv)
    figures = [f.strip() for f in args.only.split(",") if f.strip()] if args.only else list(DEFAULT_FIGURES)
    if args.full_klein and "full-klein" not in figures:
        figures.append("full-klein")
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        ap.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    args.figures = figures
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.no_malloc_tuning and not malloc_tuned():
        env = dict(os.environ, **MALLOC_ENV)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)

    import torch

    torch.set_num_threads(args.threads)
    from .common import machine_info

    machine = machine_info()
    stamp = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
    }
    log(f"benchmarks: {', '.join(args.figures)}{' (quick)' if args.quick else ''}; torch threads {args.threads}; "
        f"malloc tuning {'on' if machine['malloc_tuning'] else 'off'}")
    figures: dict[str, Any] = {}
    for name in args.figures:
        t0 = time.perf_counter()
        figures[name] = run_figure(name, args)
        figures[name]["measured"] = {**stamp, "seconds": round(time.perf_counter() - t0, 1),
                                     "load_average_1min_after": round(os.getloadavg()[0], 2)}
        log(f"  {name}: {figures[name]['measured']['seconds']} s")

    out = pathlib.Path(args.out)
    previous = {}
    if out.is_file():
        try:
            previous = json.loads(out.read_text(encoding="utf-8")).get("figures", {})
        except (OSError, ValueError):
            previous = {}
    merged = {k: v for k, v in previous.items() if k in FIGURES}
    merged.update(figures)
    merged = {k: merged[k] for k in FIGURES if k in merged}
    table = table_rows(merged)
    doc = {
        "schema": SCHEMA,
        "updated": stamp["created"],
        "command": stamp["command"].strip(),
        "figures": merged,
        "table": table,
    }
    from plantain_core.rundir.fsutil import atomic_write_json

    atomic_write_json(out, doc)
    print_table(table)
    print(f"wrote {out}")
    return 0


#: figure -> module whose ``run(quick)`` measures it (memory and full-klein take more options).
MODULES = {"capture": "capture_bench", "throughput": "throughput_bench", "stats": "stats_bench",
           "nnsight": "nnsight_bench", "encode": "encode_bench", "causal": "causal_bench", "specs": "spec_bench",
           "trajectory": "trajectory_bench", "sweep": "sweep_bench", "calibration": "calibration_bench",
           "compile": "compile_bench"}


def run_figure(name: str, args) -> dict[str, Any]:
    import importlib

    if name == "memory":
        from . import memory_bench

        return memory_bench.run(args.quick, threads=args.threads)
    if name == "full-klein":
        from . import klein_gpu

        sizes = tuple(int(s) for s in args.klein_sizes.split(",") if s.strip())
        from .common import write_device_json

        result = klein_gpu.run(device=args.klein_device, sizes=sizes, batch=args.klein_batch,
                               rounds=args.klein_rounds, peak=args.peak_tflops, compile=not args.no_compile)
        result["device_json"] = write_device_json("full-klein", result)  # the figures with their machine stamp
        return result
    return importlib.import_module(f".{MODULES[name]}", __package__).run(args.quick)


# -- the table ------------------------------------------------------------------------------

def _row(figure, measure, q, unit="×", target=None, met=None, clock="wall"):
    """A table row from a quantiles dict (median, q1, q3, min, max, n) or a plain value."""
    if isinstance(q, dict) and clock in q:
        q = q[clock]
    if isinstance(q, dict):
        return {"figure": figure, "measure": measure, "median": q["median"], "q1": q["q1"], "q3": q["q3"],
                "min": q["min"], "max": q["max"], "n": q["n"], "unit": unit, "target": target, "met": met}
    return {"figure": figure, "measure": measure, "median": q, "q1": None, "q3": None, "min": None, "max": None,
            "n": None, "unit": unit, "target": target, "met": met}


def table_rows(f: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "capture" in f:
        c = f["capture"]
        t = c["target_max"]
        rows.append(_row("capture", "tiny: hooked / bare forward (wall)", c["tiny"]["ratio"]))
        rows.append(_row("capture", "tiny: hooked / (hooked - capture self-time)", c["tiny"]["self_time_ratio"]))
        wide = c["wide"]
        tok = wide["tokens"]
        rows.append(_row("capture", f"wide ({tok['text']}+{tok['image']} tok): hooked / bare (wall)", wide["ratio"],
                         target=f"<= {t}", met=wide["ratio"]["wall"]["median"] <= t))
        rows.append(_row("capture", "wide: hooked / bare (CPU time)", wide["ratio"], clock="cpu",
                         target=f"<= {t}", met=wide["ratio"]["cpu"]["median"] <= t))
        rows.append(_row("capture", "wide: hooked / (hooked - capture self-time)", wide["self_time_ratio"],
                         target=f"<= {t}", met=wide["self_time_ratio"]["median"] <= t))
        if "variant_ratio" in wide:
            rows.append(_row("capture", "wide: hooked with vector_norm sums / bare (CUDA candidate)",
                             wide["variant_ratio"]))
    if "throughput" in f:
        p = f["throughput"]
        n = p["pairs"]
        rows.append(_row("throughput", f"tiny, {n} pairs: naive pipeline loop / run_probe", p["ratio"],
                         target=f">= {p['target_min']}", met=p["met"]))
        if "ratio_naive_latent" in p:
            rows.append(_row("throughput", "naive loop without VAE decode / run_probe", p["ratio_naive_latent"]))
        rows.append(_row("throughput", "ceiling: naive loop / model-compute floor", p["ratio_naive_over_floor"]))
        rows.append(_row("throughput", "run_probe / model-compute floor", p["ratio_plantain_over_floor"]))
        rows.append(_row("throughput", "run_probe passes/s", p["plantain_passes_per_s"], unit="/s"))
    if "compile" in f:
        cp = f["compile"]
        rows.append(_row("compile", f"wide, inductor: compiled hooked / compiled bare, {cp['graph_breaks']} graph breaks",
                         cp["ratio"], target=f"<= {cp['target_max']}, 0 breaks", met=cp["met"]))
        if "norm_v2_ratio" in cp:
            rows.append(_row("compile", "wide, inductor: compiled hooked (norm-v2) / compiled bare", cp["norm_v2_ratio"]))
        rows.append(_row("compile", "wide, eager: hooked / bare (same process)", cp["eager_ratio"]))
    if "trajectory" in f:
        tr = f["trajectory"]
        rows.append(_row("trajectory", f"tiny, K={tr['steps']}, {tr['pairs']} pairs: run_probe / model-compute floor",
                         tr["ratio_plantain_over_floor"], target=f"<= {tr['target_floor_max']}", met=tr["met_floor"]))
        rows.append(_row("trajectory", "hooked __call__ loop / run_probe", tr["ratio_loop_over_plantain"]))
        rows.append(_row("trajectory", "capture overhead: hooked / bare __call__ loop", tr["capture_overhead"],
                         target=f"<= {tr['target_capture_max']}", met=tr["met_capture"]))
    if "specs" in f:
        s = f["specs"]
        for name, q in s["validate_s"].items():
            rows.append(_row("specs", f"validate {s['pairs']:,} pairs ({name})", q, unit="s",
                             target=f"<= {s['target_max_s']:g}", met=q["median"] <= s["target_max_s"]))
        for name, q in s["parse_s"].items():
            rows.append(_row("specs", f"parse {s['parse_pairs']:,} inline pairs with {name}", q, unit="s"))
    if "causal" in f:
        r = f["causal"].get("ratio")
        if r:
            for name, label in (("default", "default"), ("confirm_both", "--confirm both"), ("before", "as before (--exhaustive --confirm t, both layouts)")):
                target = f"<= {r['target_max']:g}" if name == "default" else None
                rows.append(_row("causal", f"ray on tiny: plantain causal {label} / plantain run "
                                 f"({r['passes'][name]:,} passes)", r["ratio_over_run"][name], target=target,
                                 met=r["ratio_over_run"][name] <= r["target_max"] if target else None))
        for mode, m in f["causal"]["modes"].items():
            rows.append(_row("causal", f"tiny {mode}: s per unit set ({m['passes_per_unit_set']} passes)",
                             m["seconds_per_unit_set"], unit="s"))
            rows.append(_row("causal", f"tiny {mode}: intervened / clean pass (CPU)",
                             m["intervened_over_clean_pass_cpu"]))
    if "sweep" in f:
        w = f["sweep"]
        rows.append(_row("sweep", f"8 tiny cells: local / ray, 2 workers (model loads {w['model_loads']})",
                         w["ratio_local_over_ray"], target=f">= {w['target_min']:g}", met=w["met"]))
    if "stats" in f:
        s = f["stats"]
        w = s["workload"]
        rows.append(_row("stats", f"{w['units']} units x {w['pairs']} pairs, {w['flips']} flips: per-unit scipy / engine",
                         s["ratio"], target=f">= {s['target_min']:g}", met=s["ratio"]["wall"]["median"] >= s["target_min"]))
        rows.append(_row("stats", "engine time", s["engine_s"], unit="s", target="a few s",
                         met=s["engine_s"]["wall"]["median"] <= 5))
    if "calibration" in f:
        from .calibration_bench import table_rows as calibration_rows

        rows += calibration_rows(f["calibration"], _row)
    if "memory" in f:
        m = f["memory"]
        for name in ("tiny", "wide"):
            x = m["per_pass"][name]
            rows.append(_row("memory", f"{name}: host bytes per pass (units x 8 = {x['units_x8']})",
                             x["host_bytes_per_pass"], unit="B", met=x["host_bytes_per_pass"] == x["units_x8"]))
            ss = x["steady_state"]
            rows.append(_row("memory", f"{name}: RSS growth over {ss['forwards']} hooked forwards "
                                       f"(keeping inputs: {ss['if_inputs_were_kept_mb']} MB)", ss["rss_growth_mb"],
                             unit="MB"))
        k = m["klein_4b"]["1024px"]
        rows.append(_row("memory", f"Klein 4B: host bytes per pass ({sum(k['units'].values())} units)",
                         k["host_bytes_per_pass"], unit="B"))
        e = m.get("prompt_embeddings")
        if e:
            rows.append(_row("memory", f"encode {e['prompts']} prompts: peak RSS growth keeping all / dropping per chunk "
                                       f"(live kept {e['live_bytes_kept_mb']})",
                             f"{e['peak_growth_keep_all_mb']} / {e['peak_growth_drop_per_chunk_mb']}", unit="MB"))
        for key, what in (("run_probe", "distinct prompts"), ("run_probe_same_prompts", "same 2 prompts")):
            r = m.get(key)
            if not r:
                continue
            a, b = r["runs"][0], r["runs"][-1]
            rows.append(_row("memory", f"run_probe peak RSS growth, {what}: {a['pairs']} / {b['pairs']} pairs",
                             f"{a['peak_growth_mb']} / {b['peak_growth_mb']}", unit="MB"))
            rows.append(_row("memory", f"  per pair (expected: captures + prompt embeddings {r['expected_per_pair_mb']})",
                             r["growth_per_pair_mb"], unit="MB"))
    if "nnsight" in f:
        n = f["nnsight"]
        if n.get("available"):
            rows.append(_row("nnsight", f"nnsight {n['version']} / plantain capture pass (tiny)",
                             n["ratio_nnsight_over_plantain"]))
            rows.append(_row("nnsight", "plantain capture pass / bare (tiny)", n["ratio_plantain_over_bare"]))
            rows.append(_row("nnsight", "max relative difference of unit values", max(n["max_rel_diff"].values()),
                             unit="", met=n["values_agree"]))
        else:
            rows.append(_row("nnsight", f"not available: {n.get('reason')}", None, unit=""))
    if "encode" in f:
        e = f["encode"]
        rows.append(_row("encode", "full encoder call / early exit (36 layers, out 9/18/27; CPU, narrow)",
                         e["ratio_full_over_early_exit"]))
        rows.append(_row("encode", "early exit: max relative difference", e["max_rel_diff"], unit="",
                         met=e["max_rel_diff"] == 0))
        a = e["klein_4b_analytic"]
        rows.append(_row("encode", f"Klein 4B encoder, analytic: {a['full_tflop']} -> {a['early_exit_tflop']} "
                                   "TFLOP/prompt (saved fraction)", a["saved_fraction"], unit=""))
    if "full-klein" in f:
        k = f["full-klein"]
        if k.get("status") != "ran":
            rows.append(_row("full-klein", f"not run: {k.get('reason')}", None, unit=""))
        else:
            for case, c in k["cases"].items():
                rows.append(_row("full-klein", f"{case}: passes/s (hooked, batch {k['batch']})",
                                 c["passes_per_s"].get("hooked"), unit="/s"))
                rows.append(_row("full-klein", f"{case}: MFU (hooked, {c['tflop_per_pass']} TFLOP/pass)",
                                 c.get("mfu", {}).get("hooked"), unit="", target=f">= {k['target_mfu']}",
                                 met=c["met"]))
                rows.append(_row("full-klein", f"{case}: hooked / bare", c["overhead_hooked_over_bare"]))
                if "overhead_hooked_norm_over_bare" in c:
                    rows.append(_row("full-klein", f"{case}: hooked (vector_norm sums) / bare",
                                     c["overhead_hooked_norm_over_bare"]))
            if "text_encoder" in k:
                rows.append(_row("full-klein", "Qwen3-4B encode: full call / early exit",
                                 k["text_encoder"]["ratio_full_over_early_exit"]))
    return rows


def _fmt(x, unit):
    if x is None:
        return "—"
    if isinstance(x, float):
        if unit == "B":
            return f"{x:,.0f}"
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def print_table(rows) -> None:
    width = max(len(r["measure"]) for r in rows) if rows else 20
    print(f"{'figure':11} {'measure':{width}}  {'median':>9} {'IQR':>17} {'min–max':>17}  {'target':>9}  met")
    for r in rows:
        iqr = f"{_fmt(r['q1'], r['unit'])}–{_fmt(r['q3'], r['unit'])}" if r["q1"] is not None else ""
        mm = f"{_fmt(r['min'], r['unit'])}–{_fmt(r['max'], r['unit'])}" if r["min"] is not None else ""
        unit = r["unit"] if r["unit"] not in ("", None) else ""
        med = _fmt(r["median"], r["unit"]) + ("" if r["median"] is None else unit if unit in ("×", "s", "/s") else f" {unit}")
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['figure']:11} {r['measure']:{width}}  {med:>9} {iqr:>17} {mm:>17}  {r['target'] or '':>9}  {met}")


if __name__ == "__main__":
    sys.exit(main())
