"""``plantain sweep report DIR``: one card (``DIR/README.md``) across a sweep's cells.

- **Replication over seeds**, per probe × model × layout: per unit, in how many seeds it
  is a FWER hit (p_fwer < 0.05), and a combined test: the per-pair captures averaged over
  the seeds (the pairs are the replicates, the noise seeds a nuisance averaged out), then
  the run's own sign-flip max-|t| test on those means (``docs/statistics.md``).
- **Probe × probe**: the Pearson correlation of the combined t maps of every two probes
  on one model and layout.
- **Model × model**: the same between models whose layouts have the same units.
- **Steps**: for step-resolved cells, FWER hits per captured step, averaged over seeds.

A sweep folder is received data like a run folder: it is checked the same way, and cell
names from ``sweep.json`` are only used where they name a folder inside it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import pathlib
from collections import defaultdict
from typing import Any
from urllib.parse import quote

import attrs
import numpy as np

from ..causal.effects import _f
from ..errors import PlantainError
from ..report.markup import md_code, md_text
from ..rundir.folder import check_run_folder, inside, locked, staged
from ..rundir.manifest import check_unit_rows
from .prevalence import models_lines, models_prevalence, prevalence_entry, prevalence_lines
from .state import SWEEP_JSON

CARD = "README.md"
SUMMARY = "sweep_summary.json"
FIGURES = "figures"
ALPHA = 0.05


def _cells(sweep_dir: pathlib.Path) -> list[dict[str, Any]]:
    """The complete cells: name, folder, manifest, config, units.csv rows."""
    from ..report.analysis import read_manifest
    from ..config import RunConfig

    try:
        state = json.loads((sweep_dir / SWEEP_JSON).read_text(encoding="utf-8"))
        if not isinstance(state.get("cells"), dict):
            raise TypeError("cells is not an object")
        names = list(state["cells"])
    except FileNotFoundError:
        raise PlantainError(f"{sweep_dir} holds no {SWEEP_JSON}: not a sweep folder") from None
    except Exception as exc:
        raise PlantainError(f"{sweep_dir / SWEEP_JSON} is not a plantain sweep manifest ({type(exc).__name__})") from None
    out = []
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") \
                or len(name) > 200 or not name.isprintable():
            raise PlantainError(f"{sweep_dir / SWEEP_JSON}: cell name {str(name)[:80]!r} is not a folder name")
        cell_dir = inside(sweep_dir, name)
        if not (cell_dir / "manifest.json").is_file():
            continue
        manifest = read_manifest(cell_dir)
        if manifest.get("status") != "complete" or not (cell_dir / "units.csv").is_file():
            continue
        config = RunConfig.from_dict(manifest.get("config"), where=f"{cell_dir}/manifest.json: config")
        units = _read_units(cell_dir / "units.csv")
        check_unit_rows(cell_dir / "units.csv", {k: len(v["unit"]) for k, v in units.items()}, manifest, cell_dir)
        out.append({"name": name, "dir": cell_dir, "manifest": manifest, "config": config,
                    "probe": (manifest.get("spec") or {}).get("name") or config.probe, "units": units})
    return out


def _read_units(path: pathlib.Path) -> dict[str, dict[str, np.ndarray | list[str]]]:
    """layout -> {"unit": names, "t": array, "p_fwer": array} from units.csv."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"unit": [], "t": [], "p_fwer": []})
    try:
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            lay = rows[str(row["layout"])]
            lay["unit"].append(str(row["unit"]))
            for key in ("t", "p_fwer"):
                try:
                    lay[key].append(float(row[key]) if row[key] not in ("", None) else math.nan)
                except ValueError:
                    lay[key].append(math.nan)
    except (KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise PlantainError(f"{path}: not a plantain units.csv ({type(exc).__name__}: {exc})") from None
    return {k: {"unit": v["unit"], "t": np.asarray(v["t"]), "p_fwer": np.asarray(v["p_fwer"])} for k, v in rows.items()}


#: What a cell's manifest records of its inputs beyond the config: two cells replicate one
#: another only when these agree too (the same spec file, pairs, images and units).
IDENTITY_KEYS = ("spec_sha256", "inputs", "pairs", "pair_ids", "images", "layout_info")
#: How the card names a difference between two cells' conditions.
SAID = {"height": "size", "width": "size", "spec_sha256": "spec file", "inputs": "input files (spec, pairs file, "
        "images)", "pairs": "pairs", "pair_ids": "pair ids", "images": "conditioning images", "layout_info": "units"}


def _condition(cell) -> dict[str, Any]:
    """Everything a cell's numbers depend on but its seeds: its config but the noise and
    statistics seeds (and the probe as typed, which the spec's name and hashes stand for)
    and what its manifest records of its inputs."""
    config = {k: v for k, v in cell["config"].as_dict().items() if k not in ("seed", "stats_seed", "probe")}
    recorded = {k: cell["manifest"].get(k) for k in IDENTITY_KEYS}
    if isinstance(recorded["images"], list):  # whether an image came from the cache is no condition
        recorded["images"] = [{k: v for k, v in r.items() if k != "cached"} if isinstance(r, dict) else r
                              for r in recorded["images"]]
    return {"probe": cell["probe"], **config, **recorded}


def _differences(one: dict, other: dict) -> list[str]:
    return list(dict.fromkeys(SAID.get(k, k.replace("_", " ")) for k in one if one[k] != other.get(k)))


def _groups(cells: list[dict]) -> list[tuple[list[dict], str | None]]:
    """Cells that replicate one another over noise seeds (everything but the seed equal,
    each seed once), each with the card's note on why it was not combined with the cells
    of the same probe and model that it differs from."""
    by: dict[str, list[dict]] = defaultdict(list)
    for cell in cells:
        by[json.dumps(_condition(cell), sort_keys=True, default=str)].append(cell)
    groups = []
    for members in by.values():
        members.sort(key=lambda c: c["config"].seed)
        seeds = [c["config"].seed for c in members]
        if len(set(seeds)) == len(seeds):
            groups.append((members, None))
            continue
        # the same conditions and the same seed: the same captures, which must not count twice
        twice = ", ".join(c["name"] for c in members if seeds.count(c["config"].seed) > 1)
        groups += [([c], f"not combined: cells {twice} ran the same conditions at the same seed") for c in members]
    out = []
    for members, note in groups:
        cond = _condition(members[0])
        others = [(m, _differences(cond, _condition(m[0]))) for m, _ in groups if m is not members
                  and (m[0]["probe"], m[0]["config"].model) == (cond["probe"], cond["model"])]
        why = [f"those at seed{'s' if len(m) > 1 else ''} {', '.join(str(c['config'].seed) for c in m)} differ in "
               f"{', '.join(diff)}"
               for m, diff in others if diff]
        if why and note is None:
            note = "not combined with other cells of this probe and model: " + "; ".join(why)
        out.append((members, note))
    return out


def combined_test(cells: list[dict], layout: str):
    """Seed-averaged captures of one probe × model × layout, then the sign-flip test with the
    first cell's statistics options; None where the captures are step-resolved or disagree on
    units or pair ids (the average of different pairs is no pair)."""
    from ..report.analysis import load_captures
    from ..stats.engine import compute_layout_stats

    arrays = [load_captures(c["dir"], layout) for c in cells]
    a0, b0, units, pair_ids = arrays[0]
    if a0.ndim != 2 or any(u != units or p != pair_ids for _, _, u, p in arrays):
        return None  # step-resolved, or cells that disagree on units or pairs
    a = np.mean([x[0] for x in arrays], axis=0)
    b = np.mean([x[1] for x in arrays], axis=0)
    config = cells[0]["config"]
    return compute_layout_stats(a, b, units, layout=layout, pair_ids=pair_ids,
                                options=attrs.evolve(config.stats_options(), splits=2))


def summarize(cells: list[dict]) -> dict[str, Any]:
    """Everything the card shows, JSON-ready."""
    replication, tmaps = [], {}
    for members, note in _groups(cells):
        config = members[0]["config"]
        probe, model, steps, scope = members[0]["probe"], config.model, config.steps, config.token_scope
        pair_ids = members[0]["manifest"].get("pair_ids") or ()
        layouts = [name for name in members[0]["units"] if all(name in m["units"] for m in members)]
        for layout in layouts:
            units = members[0]["units"][layout]["unit"]
            if any(m["units"][layout]["unit"] != units for m in members):
                continue
            hits = np.sum([m["units"][layout]["p_fwer"] < ALPHA for m in members], axis=0)
            entry = {"probe": probe, "model": model, "steps": steps, "token_scope": scope, "layout": layout,
                     "seeds": [m["config"].seed for m in members], "n_pairs": len(pair_ids), "n_units": len(units),
                     "hits_per_seed": [int(np.sum(m["units"][layout]["p_fwer"] < ALPHA)) for m in members],
                     "units_by_seeds_significant": {str(k): int(np.sum(hits == k)) for k in range(len(members) + 1)},
                     "in_every_seed": [units[i] for i in np.flatnonzero(hits == len(members))][:50],
                     "height": config.height, "width": config.width, "cells": [m["name"] for m in members],
                     "prevalence": prevalence_entry(members, layout)}
            if note:
                entry["not_combined"] = note
            combined = combined_test(members, layout) if "@" not in layout else None
            if combined is None and "@" not in layout:
                entry["combined_note"] = "the cells' captures disagree on units or pair ids: not combined"
            if combined is not None:
                t = combined.t
                top = np.argsort(-np.nan_to_num(np.abs(t), nan=-1), kind="stable")[:10]  # ties: unit order
                entry["combined"] = {"n_pairs": combined.n_pairs, "fwer_hits": int(np.sum(combined.p_fwer < ALPHA)),
                                     "flips": members[0]["config"].flips, "flips_used": combined.flips_used,
                                     "exact": combined.exact, "p_floor": _f(combined.min_p_fwer),
                                     "top": [{"unit": units[i], "t": _f(t[i]), "p_fwer": _f(combined.p_fwer[i]),
                                              "seeds_significant": int(hits[i])} for i in top]}
                tkey = (probe, model, steps, scope, layout)
                tmaps[tkey] = None if tkey in tmaps else (units, t)  # two pair sets: no one t map to correlate
            replication.append(entry)
    return {"cells": [{"name": c["name"], "probe": c["probe"], "model": c["config"].model, "seed": c["config"].seed,
                       "steps": c["config"].steps, "token_scope": c["config"].token_scope,
                       "n_pairs": len(c["manifest"].get("pair_ids") or [])} for c in cells],
            "replication": replication,
            "prevalence_models": models_prevalence(cells),
            "probe_correlations": _correlations({k: v for k, v in tmaps.items() if v is not None}, by="probe"),
            "model_correlations": _correlations({k: v for k, v in tmaps.items() if v is not None}, by="model")}


def _correlations(tmaps: dict, by: str) -> list[dict[str, Any]]:
    """Pearson r of t maps between probes (same model, layout) or models (same probe, layout)."""
    idx = 0 if by == "probe" else 1
    groups: dict[tuple, dict[str, tuple]] = defaultdict(dict)
    for key, value in tmaps.items():
        rest = key[:idx] + key[idx + 1:]
        groups[rest][key[idx]] = value
    out = []
    for rest, members in groups.items():
        names = sorted(members, key=str)
        if len(names) < 2:
            continue
        matrix = [[None] * len(names) for _ in names]
        for i, j in itertools.product(range(len(names)), repeat=2):
            (ui, ti), (uj, tj) = members[names[i]], members[names[j]]
            if ui != uj:
                continue  # unit layouts that cannot be matched unit for unit
            ok = np.isfinite(ti) & np.isfinite(tj)
            if ok.sum() > 2 and np.std(ti[ok]) > 0 and np.std(tj[ok]) > 0:
                matrix[i][j] = _f(np.corrcoef(ti[ok], tj[ok])[0, 1])
        other = ("model", "steps", "token_scope", "layout") if by == "probe" else ("probe", "steps", "token_scope", "layout")
        out.append({**dict(zip(other, rest)), by + "s": [str(n) for n in names], "r": matrix})
    return out


def report_sweep(sweep_dir, *, figures: bool = True) -> list[str]:
    """Write README.md, sweep_summary.json (and figures) in the sweep folder."""
    from ..rundir.fsutil import atomic_write_json, atomic_write_text

    sweep_dir = check_run_folder(sweep_dir)
    with locked(sweep_dir):
        cells = _cells(sweep_dir)
        if not cells:
            raise PlantainError(f"{sweep_dir}: no complete cell to report on; run the sweep first")
        summary = summarize(cells)
        for name, folder in ((CARD, False), (SUMMARY, False), (FIGURES, True)):
            path = sweep_dir / name
            if path.exists() and path.is_dir() != folder:
                raise PlantainError(f"{path} is a {'file' if folder else 'folder'}; move it away and rerun")
        with staged(sweep_dir) as stage:  # the card, its summary and figures land together, or none does
            figs = _figures(stage, summary) if figures else {}
            atomic_write_json(stage / SUMMARY, summary)
            atomic_write_text(stage / CARD, render(sweep_dir.name, summary, figs))
    return [CARD, SUMMARY] + ([f"{FIGURES}/"] if figs else [])


def _figures(sweep_dir: pathlib.Path, summary: dict) -> dict[str, str]:
    from ..report.figures import _new_figure, _save

    out = {}
    reps = [r for r in summary["replication"] if len(r["seeds"]) > 1]
    if reps:  # per probe × model × layout: units by the number of seeds they are FWER hits in
        fig = _new_figure(1.5 + 1.6 * len(reps), 3.0)
        axes = fig.subplots(1, len(reps), squeeze=False)[0]
        for ax, r in zip(axes, reps):
            ks = sorted(r["units_by_seeds_significant"], key=int)
            ax.bar([int(k) for k in ks], [r["units_by_seeds_significant"][k] for k in ks], color="C0")
            ax.set_xticks([int(k) for k in ks])
            ax.set_xlabel("seeds with p_fwer < 0.05", fontsize=7)
            ax.set_title(f"{r['probe']} / {r['model']}\n{r['layout']}", fontsize=7)
        axes[0].set_ylabel("units")
        _save(fig, sweep_dir / f"{FIGURES}/replication.png")
        out["replication"] = f"{FIGURES}/replication.png"
    for k, corr in enumerate(summary["probe_correlations"] + summary["model_correlations"]):
        names = corr.get("probes") or corr.get("models")
        m = np.array([[np.nan if v is None else v for v in row] for row in corr["r"]], dtype=float)
        fig = _new_figure(1.2 + 0.6 * len(names), 1.0 + 0.6 * len(names))
        ax = fig.add_subplot()
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i, j in itertools.product(range(len(names)), repeat=2):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        what = f"probes on {corr['model']}" if "probes" in corr else f"models, probe {corr['probe']}"
        ax.set_title(f"t-map r: {what}, {corr['layout']}", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
        rel = f"{FIGURES}/correlation_{k}.png"
        _save(fig, sweep_dir / rel)
        out[f"t-map correlation: {what}, {corr['layout']}"] = rel
    return out


def render(name: str, summary: dict, figs: dict[str, str]) -> str:
    cells = summary["cells"]
    lines = [f"# Sweep {name}", "", "## Cells", "", f"{len(cells)} complete cells. Each is an ordinary plantain run "
             "folder in this folder, with its own card.", "", "| cell | probe | model | seed | steps | pairs |",
             "|---|---|---|---:|---:|---:|"]
    # probe and model names come from spec files and options: text on the card, never markup
    lines += [f"| [{md_text(c['name'])}]({quote(c['name'])}/README.md) | {md_text(c['probe'])} | {md_text(c['model'])} | "
              f"{c['seed']} | {c['steps']} | "
              f"{c['n_pairs']} |" for c in cells]
    lines += ["", "## Replication over noise seeds (the same pairs)", "",
              "Per probe, model and layout, over cells whose conditions are equal in everything but the noise seed "
              "(spec file and every file it reads, pairs, size, layouts, dtype, steps, token scope, capture and "
              "statistics settings; cells that differ in any are reported apart, saying in what): how many "
              "units are FWER hits (p_fwer < 0.05) in how many of the noise seeds, and a combined test: each pair's "
              "captures averaged over the seeds, then the same sign-flip max-|t| test as one run, with the flips and "
              "statistics seed of the lowest-seed cell (the pairs are the replicates; the noise seed is averaged out, "
              "not counted as more data: this is robustness to the noise, not a replication with new stimuli). The "
              "top units are those of largest combined |t|; k/S is the number of the S seeds in which the unit is a "
              "FWER hit on its own.",
              ""]
    for r in summary["replication"]:
        dist = ", ".join(f"{k} of {len(r['seeds'])} seeds: {v}" for k, v in r["units_by_seeds_significant"].items())
        pairs = f"; {r['n_pairs']} pairs" if "n_pairs" in r else ""
        size = f"; {r['height']}×{r['width']}" if r.get("height") else ""
        lines += [f"**{md_text(r['probe'])} on {md_text(r['model'])}**, `{r['layout']}` (seeds "
                  f"{', '.join(map(str, r['seeds']))}{pairs}{size}): FWER hits per seed {r['hits_per_seed']}; units by "
                  f"seeds significant: {dist}.", ""]
        if r.get("not_combined"):
            lines += [f"_{md_text(r['not_combined'][0].upper() + r['not_combined'][1:])}._", ""]
        if r.get("combined_note"):
            lines += [f"Combined over seeds: none ({r['combined_note']}).", ""]
        comb = r.get("combined")
        if comb:
            top = ", ".join(f"{md_code(u['unit'])} (t {u['t']:+.2f}, p_fwer {u['p_fwer']:.3g}, {u['seeds_significant']}/"
                            f"{len(r['seeds'])})" for u in comb["top"][:5] if u["t"] is not None)
            floor = comb.get("p_floor")
            how = (f"all {comb.get('flips_used')} sign patterns (exact)" if comb.get("exact")
                   else f"{comb.get('flips')} random flips")
            floor_note = f"; p_fwer cannot go below {floor:.3g} with {how}" if floor else ""
            lines += [f"Combined over seeds ({comb['n_pairs']} pairs{floor_note}): {comb['fwer_hits']} FWER hits; "
                      f"top: {top}.", ""]
        lines += prevalence_lines(r)
    for title, key, what in (("Probe × probe", "probe_correlations", "probes"),
                             ("Model × model", "model_correlations", "models")):
        lines += [f"## {title}", ""]
        rows = summary[key]
        if not rows:
            other = "model" if what == "probes" else "probe"
            lines += [f"Fewer than two {what} share a {other} and layout here: nothing to correlate.", ""]
        for k, corr in enumerate(rows):
            names = corr[what]
            where = ", ".join(f"{f} {md_text(corr[f])}" for f in ("model", "probe", "layout", "steps") if f in corr)
            lines += [f"Pearson r of the combined t maps ({where}); blank: unit layouts that do not match unit for "
                      "unit.", "", "| | " + " | ".join(map(md_text, names)) + " |", "|---|" + "---:|" * len(names)]
            lines += [f"| {md_text(n)} | " + " | ".join("" if v is None else f"{v:.2f}" for v in row) + " |"
                      for n, row in zip(names, corr["r"])]
            lines.append("")
    lines += models_lines(summary.get("prevalence_models") or [])
    lines += ["## Steps", ""]
    stepped = [r for r in summary["replication"] if "@step" in r["layout"]]
    if not stepped:
        lines += ["No step-resolved cells (`steps` > 1) in this sweep.", ""]
    else:
        lines += ["| probe | model | layout | mean FWER hits over seeds | units significant in every seed |",
                  "|---|---|---|---:|---:|"]
        lines += [f"| {md_text(r['probe'])} | {md_text(r['model'])} | `{r['layout']}` | {np.mean(r['hits_per_seed']):.1f} | "
                  f"{r['units_by_seeds_significant'][str(len(r['seeds']))]} |" for r in stepped]
        lines.append("")
    if figs:
        lines += ["## Figures", ""] + [f"![{md_text(k)}]({v})" for k, v in figs.items()] + [""]
    tiny = sorted({_imitated(c["model"]) for c in cells if str(c["model"]).split("/")[-1].startswith("tiny")})
    if tiny:
        lines += [f"**Cells on embedded tiny models have random weights: their numbers say nothing about "
                  f"{' or '.join(tiny)} or any trained model.**",
                  ""]
    return "\n".join(lines)


def _imitated(model) -> str:
    """The model a tiny cell's model imitates (its family's, by its loader)."""
    from ..errors import PlantainError
    from ..models.loaders import resolve_loader
    from ..models.lookup import model_label

    try:
        family = getattr(resolve_loader(str(model))[1], "family", None)
    except PlantainError:
        family = None
    return model_label(getattr(family, "name", None))
