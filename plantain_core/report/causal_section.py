"""The card's "Causal check" section and the dose-response figure, from ``causal.json``.

``plantain causal`` writes ``RUN_DIR/causal.json``; :func:`causal_section` turns it into
card lines (none when the file is absent), :func:`write_causal_figure` draws
``figures/causal_dose.png`` (matplotlib imported inside, Agg canvas, no pyplot).
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
from typing import Any, Mapping

from ..models.loaders import is_tiny_record
from .markup import md_code, md_text

CAUSAL_JSON = "causal.json"
FIGURE = "figures/causal_dose.png"


def _pct(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _ci(ci, fmt=_pct) -> str:
    """ " [lo, hi]" of a 95% bootstrap interval, or nothing where there is none."""
    return f" [{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _num(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}"


def held_out(data: Mapping[str, Any]) -> bool:
    """Whether the units were selected on other pairs than those they were measured on
    (a causal.json without ``selection`` predates held-out selection: double-dipped)."""
    return (data.get("selection") or {}).get("method") == "held-out"


def _selection(data: Mapping[str, Any]) -> list[str]:
    sel = data.get("selection") or {}
    if held_out(data):
        halves = sel.get("halves") or [[], []]
        return [f"**Held-out selection.** The {data.get('n_pairs')} pairs were split in two halves (seed "
                f"{sel.get('seed')}: {len(halves[0])} and {len(halves[1])} pairs); the top units by |t| and by "
                "attribution computed on one half only were measured on the other half, both ways (cross-fitting), "
                "so every effect below is measured on pairs that did not choose its units. An effect is the mean "
                "over all pairs; its [95% interval] is a bootstrap over the measured pairs (resampled within each "
                f"half, {(sel.get('bootstrap') or {}).get('resamples', '')} resamples).", ""]
    why = ("this causal.json predates held-out selection" if not sel else "too few pairs to split in halves of 2"
           if sel.get("asked") == "held-out" else "`--selection same`")
    return [f"**Double-dipped: the units were selected and measured on the same pairs** ({why}), so the effects below are biased upward by the selection; rerun `plantain causal` with held-out "
            "selection (the default, at least 4 pairs) for effects not inflated by the selection."
            + (" An effect's [95% interval] is a bootstrap over the pairs." if sel else ""), ""]


def _p(p, controls: int, early: bool = False) -> str:
    if p is None:
        return "—"
    floor = " (the smallest possible)" if controls and not early and abs(p - 1 / (controls + 1)) < 1e-12 else ""
    return f"{p:.3g}{' (sequential)' if early else ''}{floor}"


def _band(c: Mapping[str, Any]) -> str:
    if c.get("mean") is None:
        return "—"
    sd = f" ± {_pct(c['sd'])}" if c.get("sd") is not None else ""
    return f"{_pct(c['mean'])}{sd} [{_pct(c.get('q05'))}, {_pct(c.get('q95'))}]"


def _what(data: Mapping[str, Any]) -> list[str]:
    n = data.get("n_pairs")
    a, b = (md_text(d) for d in (list(data.get("direction") or ["A", "B"]) + ["A", "B"])[:2])
    if data.get("mode") == "patch":
        return [
            f"Intervention (**patch**): the A pass (\"{a}\") of each pair ran with the selected units' slices of the "
            f"attention output-projection input taken from the B pass (\"{b}\") of the same pair. Effect: the fraction "
            "of the way the output moved from v_A to v_B, 1 − ‖v_A^patched − v_B‖ / ‖v_A − v_B‖, averaged over the "
            f"{n} pairs (1 = all the way, 0 = not at all, negative = away from v_B).",
        ]
    how = ("its mean over all the probe's stimuli (A and B of every pair), per token position and feature"
           if data.get("ablate_value") == "mean" else "zero")
    return [
        f"Intervention (**{data.get('ablate_value')}-ablation**): each selected unit's slice of the attention "
        f"output-projection input was replaced by {how}, in the A and the B pass. Effect: the share of the A/B "
        "output separation that went away, 1 − ‖v_A' − v_B'‖ / ‖v_A − v_B‖, averaged over the "
        f"{n} pairs (1 = all of it, 0 = none, negative = it grew).",
    ]


def _verdict(name: str, data, lay, dose) -> str:
    c = dose["controls"]
    by = "attribution" if dose.get("by") == "attribution" else "|t|"
    units = f"the top {dose['k']} of {lay['n_units']:,} units by {by}"
    if held_out(data):
        units += " of each half of the pairs (on the other half)"
    effect = _pct(dose["effect"]) + _ci(dose.get("effect_ci"))
    if data.get("mode") == "patch":
        text = f"On `{name}`, patching {units} from B into A moved v_A {effect} of the way toward v_B"
    else:
        text = f"On `{name}`, ablating {units} removed {effect} of the A/B output separation"
    if c["n"]:
        early = (f" (drawn one at a time, stopped once p > 0.05 was settled: {c['n']} of {c.get('planned')})"
                 if c.get("stopped_early") else "")
        text += (f"; {c['n']} random sets of {dose['k']} units from the same blocks{early} gave {_band(c)} "
                 f"(mean ± sd [5%, 95%]); p = {_p(dose['p'], c['n'], c.get('stopped_early'))}.")
        overlap = any(isinstance(n, str) and n.startswith(f"`{name}` K={dose['k']}:") and "overlap" in n
                      for n in data.get("notes") or [])
        if dose["p"] is not None and dose["p"] <= 0.05:
            text += (" **The selected units carry more of the A/B difference in the output than matched random "
                     "units** at this step and noise level"
                     + (" (some blocks had too few other units, so some controls share units with the selection: "
                        "see the note below)." if overlap else "."))
        else:
            text += " No evidence that the selected units carry more of the A/B output difference than matched random units."
    elif dose.get("by") == "attribution" and not data.get("exhaustive"):
        text += ("; measured without controls, so not comparable with the other selection's effect (random units "
                 "of other blocks remove different amounts): `plantain causal --confirm both` tests it against random "
                 "units of its own blocks.")
    else:
        text += "; no controls were run, so there is nothing to compare it with."
    return text


def _cell(text: str) -> str:
    """Text for a markdown table cell: a bare | would end the cell."""
    return text.replace("|", "\\|")


def rankings_of(lay: Mapping[str, Any]):
    """(label, headline K, doses) per ranking the layout's selections came from."""
    out = [("|t|", lay.get("k"), lay.get("doses") or [])]
    att = lay.get("attribution") or {}
    return out + [("attribution", att.get("k"), att.get("doses") or [])]


def _screen(screen) -> list[str]:
    if not isinstance(screen, Mapping) or not screen.get("layouts"):
        return []
    passes = screen.get("passes")
    cost = f"{passes} forward and {passes // 2} backward passes" if isinstance(passes, int) else "one forward and one " \
        "backward pass per pass of the probe"
    out = [f"**Attribution screen of every unit** ({cost}: a first-order estimate of each unit's patch effect):", ""]
    for name, s in screen["layouts"].items():
        top = ", ".join(f"`{u['unit']}`" for u in s["top_by_attribution"][:8])
        chance = s.get("overlap_chance")
        shared = (f"share {s['overlap']} units{_ci(s.get('overlap_ci'), _num)} with the top {s['k']} by |t| (chance: "
                  f"{s['k']}²/{s.get('units_ranked')} = {_num(chance)})" if chance is not None else
                  f"share {s['overlap']} units with the top {s['k']} by |t|")
        rank = s.get("spearman_t_vs_attribution")
        ranks = (f" Over all {s.get('units_ranked')} units, |t| and the estimate agree with Spearman ρ = {_num(rank)}"
                 f"{_ci(s.get('spearman_t_vs_attribution_ci'), _num)} (chance: 0)." if rank is not None else "")
        out.append(f"- `{name}`, over every pair: the top {s['k']} by attribution ({top}{', …' if s['k'] > 8 else ''}) "
                   f"{shared}.{ranks}{_sets_agreement(s)}")
    return out + ["", "Intervals are 95% bootstrap intervals over the pairs.", ""]


def _sets_agreement(s: Mapping[str, Any]) -> str:
    """How the summed estimates rank the sets measured exactly, or why that is not said."""
    n, rho = s.get("sets_compared"), s.get("spearman_sets_estimate_vs_exact")
    if rho is not None:
        return (f" Over the {n} unit sets measured exactly, the summed estimates (over each set's measured pairs) "
                f"rank them with Spearman ρ = {rho:.2f}{_ci(s.get('spearman_sets_estimate_vs_exact_ci'), _num)} "
                "against the measured effects (chance: 0).")
    why = s.get("spearman_sets_withheld")
    if not n or why is None:
        return ""
    if why.startswith("too few"):
        return (f" Estimates against measured effects: too few sets to tell ({n} measured, at least "
                f"{s.get('min_sets', 5)} needed; with 3, ρ = 1 happens 1 time in 6 by chance).")
    if why.startswith("withheld"):
        return (" Estimates against measured effects: not compared in ablate mode (the screen estimates patch "
                "effects, not ablation effects; `--mode patch` compares like with like).")
    return f" Estimates against measured effects: not computed ({md_safe(why)})."


def _listed(units, ts) -> str:
    listed = ", ".join(f"{md_code(u)} ({t:+.2f})" if t is not None else md_code(u) for u, t in zip(units[:32], ts[:32]))
    return listed + (f" and {len(units) - 32} more" if len(units) > 32 else "")


def _units_listed(name: str, by: str, head: Mapping[str, Any]) -> list[str]:
    """The headline's units with their t: per half when held out."""
    folds = head.get("folds")
    if not folds:
        return [f"<details><summary>The {head['k']} `{name}` units selected by {by} (t)</summary>", "",
                _listed(head["units"], head["t"]), "", "</details>", ""]
    out = [f"<details><summary>The top {head['k']} `{name}` units by {by} of each half of the pairs (t on the "
           "half that chose them)</summary>", ""]
    for f, fold in enumerate(folds):
        out += [f"Chosen on half {f + 1}, measured on half {2 - f}: "
                + _listed(fold["units"], fold.get("t_selection") or [None] * len(fold["units"])), ""]
    return out + ["</details>", ""]


def _named(model: Mapping[str, Any]) -> str:
    name = model.get("id") or model.get("name") or "an unrecorded model"
    return f"{name} @ {model['revision']}" if model.get("revision") else str(name)


def _on_model(model: Mapping[str, Any], check: Mapping[str, Any]) -> tuple[str, str]:
    """Where the claim is made, the model the check ran on, and when it is not the run's,
    so: (the model, a note that opens the parenthesis after it)."""
    if (check.get("id"), check.get("revision")) == (model.get("id"), model.get("revision")):
        return f"on the run's own model, `{_named(check)}`", ""
    return f"on **another model than the run's, `{_named(check)}`**", f"the run was captured on `{_named(model)}`; "


def causal_markdown(data: Mapping[str, Any], *, stale: bool = False, figure: bool = False) -> str:
    """The "Causal check" section for one ``causal.json`` content."""
    n = data.get("n_pairs")
    model = data.get("model") or {}
    check = data.get("check_model") if isinstance(data.get("check_model"), dict) else model
    tiny = is_tiny_record(check)
    on, was = _on_model(model, check)
    out = ["## Causal check", ""]
    if stale:
        out += ["_Warning: causal.json was computed from other captures than this run's current ones; rerun "
                "`plantain causal`._", ""]
    out += [
        f"Do the units this probe flags carry the A/B difference into the model's output? `plantain causal` re-ran "
        f"the {n} pairs {on} ({was}the run's noise seeds, {data.get('height')}×{data.get('width')}, token scope "
        f"{data.get('token_scope')}) with an intervention on the top K units by |t| and on the top K by the "
        "attribution screen, tested the top units by "
        f"{' and by '.join('attribution' if r == 'attribution' else '|t|' for r in data.get('rankings') or ['t'])} "
        f"against up to {data.get('controls')} random sets of as many units drawn from the same blocks (and, for "
        "`slices16`, the same attention/MLP part), and measured the transformer's output v at the probe step (the "
        "predicted velocity, noisy-latent tokens only).",
        "",
    ]
    if data.get("sequential"):
        out += ["Controls were drawn one at a time and stopped as soon as p > 0.05 was settled (Besag & Clifford "
                "1991: at the h-th control reaching the selected effect, h = ⌊0.05 (R + 1)⌋, "
                "p = max(h / drawn, (1 + h) / (1 + R)) > 0.05); a selection that beats every control draws all R, "
                "so p ≤ 0.05 is always judged on all of them (`--exhaustive` draws all R at every dose).", ""]
    out += _selection(data)
    out += _what(data) + [""]
    rows = ["| layout | top K by | K | effect [95% interval] | controls: mean ± sd [5%, 95%] (drawn) | p | output change: "
            "selected / controls |", "|---|---|---:|---:|---|---:|---|"]
    for name, lay in (data.get("layouts") or {}).items():
        for by, k, doses in rankings_of(lay):
            head = next((d for d in doses if d["k"] == k), None)
            if head is not None:
                out += [_verdict(name, data, lay, head), ""]
            for d in doses:
                c = d["controls"]
                rows.append(f"| `{name}` | {_cell(by)} | {d['k']:,}{' (headline)' if d['k'] == k else ''} | "
                            f"{_pct(d['effect'])}{_ci(d.get('effect_ci'))} | {_band(c)} ({c['n']}) | {_p(d['p'], c['n'], c.get('stopped_early'))} | "
                            f"{_pct(d['output_change'])} / {_pct(c.get('output_change_mean'))} |")
    out += rows + [""]
    out += _screen(data.get("screen"))
    out += ["\"Output change\" is ‖v' − v‖ / ‖v‖ averaged over the intervened passes: how much the intervention "
            "moved the output at all, whatever the direction.", ""]
    for name, lay in (data.get("layouts") or {}).items():
        for by, k, doses in rankings_of(lay):
            head = next((d for d in doses if d["k"] == k), None)
            if head is not None and head["units"]:
                out += _units_listed(name, by, head)
    if figure:
        out += [f"![causal check: effect vs K with the control band]({FIGURE})", ""]
    out += ["What this shows, and what not:", "",
            "- It shows whether intervening on these units' slices changes the A/B separation of the transformer's "
            "output more than intervening on as many random units of the same blocks. It does not show that other "
            "units are irrelevant, nor that the units encode the concept as named.",
            f"- One denoising step at one noise level (the probe timestep), the run's noise seed per pair, {n} pairs; "
            "the output is the predicted velocity, not a decoded image, and no later step is run.",
            ("- Each half's units were selected on its pairs and measured on the other half's, so the effects are "
             "not inflated by the selection; the two halves may select different units, and p is about the selection "
             "rule (top K by |t| or attribution), not about each unit." if held_out(data) else
             "- **The units were selected on the same pairs the effect is measured on (no held-out pairs): the "
             "effects are biased upward by the selection.**"),
            f"- p = (1 + #controls ≥ effect) / (1 + R) with R = {data.get('controls')}: it cannot be smaller than "
            f"1/{(data.get('controls') or 0) + 1}.",
            "- The attribution ranking is a first-order estimate of each unit's patch effect; its top units are "
            "measured exactly like the top units by |t|.",
            "- Mean ablation keeps each slice's average over the probe's stimuli (per token position); zero ablation "
            "moves activations off their usual range; patching asks whether B's activations of these units are "
            "enough to move A's output toward B's."]
    if tiny:
        from ..models.lookup import model_label

        out.append("- **This ran on an embedded tiny model with random weights: it says nothing about "
                   f"{model_label(model.get('family') if isinstance(model, dict) else None)} or any trained model.**")
    out.append("")
    for note in data.get("notes") or []:
        out += [f"_Note: {note}._", ""]
    t, cost = data.get("timings") or {}, data.get("cost") or {}
    if t.get("seconds_per_unit_set") is not None:
        line = (f"Cost: {t.get('unit_sets')} unit sets × {t.get('passes_per_unit_set')} passes"
                f"{' (each on its half of the pairs)' if held_out(data) else ''}, "
                f"{t['seconds_per_unit_set']:.3g} s per unit set on {data.get('device')} ({data.get('dtype')})")
        if cost.get("total_forward") is not None:
            line += (f"; {cost['total_forward']:,} transformer passes in all (screen {cost['screen']['forward']}, "
                     f"clean {cost['clean']}, interventions {cost['interventions']:,}; drawing every control would "
                     f"have taken {cost['every_control_would_take']:,} intervention passes)")
        out += [line + ".", ""]
    return "\n".join(out)


def causal_section(run_dir, layouts) -> list[str]:
    """Card lines for RUN_DIR/causal.json; [] when there is none. A causal.json that is
    not what ``plantain causal`` writes (damaged, or made by hand) gives one line saying so."""
    run_dir = pathlib.Path(run_dir)
    path = run_dir / CAUSAL_JSON
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        stale = False
        for name, digest in (data.get("captures_sha256") or {}).items():
            if name not in layouts:  # names select files: only the run's own layouts
                raise ValueError(f"unknown layout {name!r}")
            cap = run_dir / "captures" / f"{name}.npz"
            if cap.is_file() and hashlib.sha256(cap.read_bytes()).hexdigest() != digest:
                stale = True
        text = causal_markdown(data, stale=stale, figure=(run_dir / FIGURE).is_file())
    except Exception as exc:  # garbage in a received folder must not stop the report
        return ["## Causal check", "", f"_causal.json could not be read ({type(exc).__name__}: "
                f"{md_safe(str(exc))[:200]}); rerun `plantain causal` to redo it._", ""]
    return text.split("\n") + [""]


def md_safe(text: str) -> str:
    return md_text(text)


def write_causal_figure(run_dir, data: Mapping[str, Any]) -> pathlib.Path | None:
    """figures/causal_dose.png: per layout, effect vs K for the selected units, the
    controls' mean and their 5–95% band."""
    from .figures import _new_figure, _save

    layouts = {n: lay for n, lay in (data.get("layouts") or {}).items() if lay.get("doses")}
    if not layouts:
        return None
    fig = _new_figure(4.2 * len(layouts), 3.4)
    axes = fig.subplots(1, len(layouts), squeeze=False)[0]
    ylabel = ("fraction of the way v_A moved toward v_B" if data.get("mode") == "patch"
              else "share of A/B output separation removed")
    for ax, (name, lay) in zip(axes, layouts.items()):
        ks = [d["k"] for d in lay["doses"]]
        nan = float("nan")
        val = lambda x: nan if x is None else x  # noqa: E731
        ax.plot(ks, [val(d["effect"]) for d in lay["doses"]], "o-", color="C3", label="top K by |t|")
        att = (lay.get("attribution") or {}).get("doses") or []
        if att:
            ax.plot([d["k"] for d in att], [val(d["effect"]) for d in att], "s", color="C2",
                    label="top K by attribution")
        if len(ks) == 1 and lay["doses"][0]["controls"]["n"]:  # one dose: the band as an error bar
            c = lay["doses"][0]["controls"]
            mean, low, high = val(c["mean"]), val(c["q05"]), val(c["q95"])
            ax.errorbar(ks, [mean], yerr=[[mean - low], [high - mean]], fmt="s", color="C0", capsize=4,
                        label="matched random: mean, 5–95%")
        elif any(d["controls"]["n"] for d in lay["doses"]):
            ax.fill_between(ks, [val(d["controls"]["q05"]) for d in lay["doses"]],
                            [val(d["controls"]["q95"]) for d in lay["doses"]], color="C0", alpha=0.25,
                            label="matched random: 5–95%")
            ax.plot(ks, [val(d["controls"]["mean"]) for d in lay["doses"]], "--", color="C0",
                    label="matched random: mean")
        if max(ks) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("K (units intervened on)")
        ax.set_title(f"{name}: {data.get('mode')}" + (f" ({data.get('ablate_value')})" if data.get("ablate_value") else ""))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="best")
    path = pathlib.Path(run_dir) / FIGURE
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path
