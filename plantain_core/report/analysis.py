"""From a run folder's saved captures to every output: stats, result files, card, figures.

``plantain report RUN_DIR`` and the end of ``plantain run`` both call
:func:`analyze_run`; it needs no model, only ``manifest.json`` and ``captures/*.npz``.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping, Sequence

import attrs
import numpy as np

from .. import __version__
from ..capture.noise import noise_summary
from ..capture.placebo import PLACEBO
from ..config import RunConfig, config_from_manifest
from ..errors import PlantainError
from ..rundir.folder import check_run_folder, inside, locked, settle, staged
from ..rundir.manifest import check_manifest
from ..stats.across_steps import across_steps, write_family_files
from ..stats.checks import review
from ..stats.engine import LayoutStats, compute_layout_stats, count_mlp_units, top_by_abs_t
from ..stats.results import json_safe, layout_summary, write_results
from .interpretation import Interpretation, Section

MANIFEST = "manifest.json"
CAPTURES = "captures"


@attrs.frozen(eq=False)
class ProbeResult:
    """What an interpreter's ``interpret(spec, pairs, result)`` receives as ``result``.

    - ``layouts``: layout name -> :class:`~plantain_core.stats.engine.LayoutStats` (per-unit
      ``t``, ``d``, ``p``, ``q``, ``p_fwer`` of length U in ``units`` order, and the
      N×U differences ``diff`` = A − B, rows in ``pair_ids`` order);
    - ``summary``: layout name -> that layout's entry of ``summary.json``;
    - ``manifest``: the run's ``manifest.json`` content;
    - ``pair_ids``: the row order of every ``diff``, which is also the order of ``pairs``;
    - ``config``: the run's :class:`~plantain_core.config.RunConfig` (seed, layouts, ...).
    """

    layouts: dict[str, LayoutStats]
    summary: dict[str, Any]
    manifest: dict[str, Any]
    pair_ids: tuple[str, ...]
    config: RunConfig | None = None

    @property
    def primary(self) -> LayoutStats:
        """The true-heads layout when captured, else the first one."""
        return self.layouts.get("heads") or next(iter(self.layouts.values()))


def read_manifest(run_dir: pathlib.Path) -> dict[str, Any]:
    """The manifest of a run folder that passed :func:`~plantain_core.rundir.folder.check_run_folder`
    (and whose interrupted report, if any, was finished)."""
    run_dir = check_run_folder(run_dir)
    settle(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        raise PlantainError(f"{path} not found: not a plantain run folder (expected manifest.json and captures/)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested 100,000 deep
        raise PlantainError(f"{path}: cannot read manifest: {exc}") from exc
    return check_manifest(manifest, str(path))


def load_captures(run_dir: pathlib.Path, layout: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``a``, ``b`` (N×U, or N×S×U for a trajectory run: S captured steps), unit names and
    pair ids of one layout; errors if incomplete."""
    path = inside(run_dir, CAPTURES, f"{layout}.npz")
    if not path.is_file():
        raise PlantainError(f"{path} not found: layout {layout!r} was not captured in this run")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("a", "b", "units", "pair_ids") if k not in z.files]
            if missing:
                raise PlantainError(f"{path}: missing arrays {', '.join(missing)}")
            a = np.asarray(z["a"], dtype=np.float64)
            b = np.asarray(z["b"], dtype=np.float64)
            units = [str(u) for u in z["units"]]
            pair_ids = [str(p) for p in z["pair_ids"]]
            done = np.asarray(z["done"], dtype=bool) if "done" in z.files else np.ones(len(pair_ids), bool)
            steps = len(z["steps"]) if "steps" in z.files else None
    except PlantainError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise PlantainError(f"{path}: cannot read captures: {type(exc).__name__}: {exc}") from exc
    if not done.all():
        raise PlantainError(
            f"run {run_dir} is incomplete: {int(done.sum())} of {done.size} pairs captured for layout "
            f"{layout!r}; finish it with `plantain run ... --out {run_dir} --resume` before reporting"
        )
    n = len(pair_ids)
    want = (n, len(units)) if steps is None else (n, steps, len(units))
    if a.shape != want or b.shape != a.shape:
        raise PlantainError(f"{path}: a {a.shape} and b {b.shape} do not match {n} pairs × "
                            f"{'' if steps is None else f'{steps} steps × '}{len(units)} units")
    return a, b, units, pair_ids


def pairs_from_manifest(manifest: Mapping[str, Any], pair_ids: Sequence[str]) -> list:
    """The stimuli exactly as the run recorded them (``manifest["pairs"]``), in capture order."""
    from ..spec.stimuli import ImageSource, Pair, Stimulus

    records = manifest.get("pairs")
    recs = {str(r.get("id")): r for r in records if isinstance(r, dict)} if isinstance(records, list) else {}
    missing = [i for i in pair_ids if i not in recs]
    if missing:
        raise PlantainError(f"the manifest records no stimuli for pairs {', '.join(missing[:5])}")

    def stim(rec):
        rec = rec if isinstance(rec, dict) else {}
        img = rec.get("image")
        keys = ("path", "prompt", "seed", "steps", "guidance")
        image = ImageSource(**{k: v for k, v in img.items() if k in keys}) if isinstance(img, dict) else None
        return Stimulus(prompt=str(rec.get("prompt", "")), image=image)

    meta = {i: recs[i].get("meta") for i in pair_ids}
    return [Pair(i, stim(recs[i].get("a")), stim(recs[i].get("b")), dict(meta[i]) if isinstance(meta[i], dict) else {})
            for i in pair_ids]


def rebuild_spec_and_pairs(manifest: Mapping[str, Any], registry, pair_ids: Sequence[str]):
    """The spec and pairs the interpreter sees: as the run recorded them (the pairs that
    were captured, in capture order), plus notes on what could not be rebuilt.

    Nothing is re-read from the spec's files: a run folder is reported where its spec,
    pairs file or images may not be.
    """
    from ..spec.probe_spec import ModelSettings, ProbeSpec

    notes: list[str] = []
    data = manifest.get("spec") if isinstance(manifest.get("spec"), Mapping) else {}
    spec = None
    try:
        model = data.get("model") or {}
        spec = ProbeSpec(
            name=str(data["name"]), generator=str(data.get("generator", "?")), stimuli=dict(data.get("stimuli") or {}),
            title=str(data.get("title", data["name"])), description=str(data.get("description", "")),
            interpreter=str(data.get("interpreter", "default")),
            direction=tuple(str(d) for d in data.get("direction", ("A", "B"))),
            tags=tuple(str(t) for t in data.get("tags", ())),
            model=ModelSettings(**{k: v for k, v in model.items() if k in ("id", "revision", "height", "width")}),
        )
    except Exception as exc:
        notes.append(f"the spec could not be rebuilt from the manifest ({type(exc).__name__}: {exc})")

    try:
        pairs = pairs_from_manifest(manifest, pair_ids)
    except Exception as exc:
        notes.append(f"pairs could not be rebuilt ({type(exc).__name__}: {exc})")
        pairs = None
    return spec, pairs, notes


def interpret(spec, pairs, result: ProbeResult, registry) -> tuple[Interpretation | None, list[str], str | None]:
    """Run the spec's interpreter: (interpretation, notes, error).

    A missing interpreter leaves a note (reporting a run where its plugin is not
    installed); one that raises or returns the wrong thing is a plugin fault: ``error``
    names the interpreter and its plugin, and the statistics are kept without it.
    """
    if spec is None or pairs is None:
        return None, ["no interpreter was run: the spec or its pairs could not be rebuilt"], None
    try:
        entry = registry.get("interpreter", spec.interpreter)
    except Exception as exc:
        return None, [f"interpreter {spec.interpreter!r} not available: {exc}"], None
    who = f"interpreter {spec.interpreter!r} from plugin {entry.provider.label()}"
    try:
        out = entry.obj.interpret(spec, pairs, result)
    except (Exception, SystemExit) as exc:  # SystemExit: a plugin's sys.exit() must not end the run unrecorded
        error = f"{who} failed: {type(exc).__name__}: {exc}"
        return None, [error], error
    why = None
    if not isinstance(out, Interpretation):
        why = f"returned {type(out).__name__}, not an Interpretation"
    elif (bad := not_json_data(out.numbers, "numbers")) is not None:
        why = f"returned {bad}"
    elif not all(isinstance(sec, Section) and isinstance(sec.title, str) and isinstance(sec.markdown, str)
                 for sec in out.sections):
        why = "returned sections that are not Section(title: str, markdown: str)"
    if why:
        error = f"{who} {why}"
        return None, [error], error
    return out, [], None


def not_json_data(obj: Any, where: str) -> str | None:
    """Where ``obj`` holds something summary.json cannot hold as data (numpy numbers and
    arrays are fine; NaN becomes null), else None."""
    if isinstance(obj, Mapping):
        return next((bad for k, v in obj.items() if (bad := not_json_data(v, f"{where}.{k}"))), None)
    if isinstance(obj, (list, tuple, np.ndarray)):
        items = obj.tolist() if isinstance(obj, np.ndarray) else obj
        return next((bad for i, v in enumerate(items) if (bad := not_json_data(v, f"{where}[{i}]"))), None)
    if obj is None or isinstance(obj, (str, bool, int, float, np.bool_, np.integer, np.floating)):
        return None
    return f"a {type(obj).__name__} at {where}, which is not JSON data"


def step_layout(layout: str, step: int) -> str:
    """The name a captured step's statistics go by: ``heads@step3``."""
    return f"{layout}@step{step}"


def placebo_summary(run_dir: pathlib.Path, st: LayoutStats, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """How much of each significant unit's effect the length placebo reproduces: counts,
    and the top units by |t| with their placebo share (placebo mean D / probe mean D)."""
    eff = placebo_effects(run_dir, st.layout, st.diff, st.pair_ids)
    if eff is None:
        delta = token_delta(manifest, st.pair_ids)
        unequal = int(np.count_nonzero(delta)) if delta is not None else 0
        why = ("fewer than 3 pairs differ in token count" if unequal < 3 else
               "its captures are not in this folder (placebo/ travels only with `plantain publish --with-captures`)")
        return {"pairs": 0, "note": f"no placebo: {why}"}
    sig = np.isfinite(st.p_fwer) & (st.p_fwer < 0.05)
    share = eff["share"]
    mostly = sig & np.isfinite(share) & (share >= 0.5)
    top = top_by_abs_t(st.t, 10)
    return {"pairs": eff["pairs"], "significant": int(sig.sum()), "mostly_length": int(mostly.sum()),
            "top_units": [{"unit": st.units[i], "t": float(st.t[i]), "placebo_share": float(share[i])} for i in top]}


def token_delta(manifest: Mapping[str, Any], pair_ids: Sequence[str]) -> np.ndarray | None:
    """Per pair (in ``pair_ids`` order), tokens of A minus tokens of B as the text encoder
    saw them; None when the run recorded no token counts for every pair."""
    counts = {str(r["id"]): (r["a"], r["b"]) for r in manifest.get("token_counts") or []}
    if not counts or not all(i in counts for i in pair_ids):
        return None
    return np.array([counts[i][0] - counts[i][1] for i in pair_ids], dtype=np.float64)


def token_confounds(manifest: Mapping[str, Any], layouts: Mapping[str, LayoutStats], pair_ids) -> dict[str, Any] | None:
    """Prompt length as a confound: token counts of A and B, and per layout the Pearson r
    across pairs between the token-count difference and the pair's probe score (mean over
    units with |t| > first threshold of sign(t)·D / sd(D))."""
    recs = manifest.get("token_counts")
    if not recs:
        return None
    counts = {str(r["id"]): (float(r["a"]), float(r["b"])) for r in recs}
    if not all(i in counts for i in pair_ids):
        return {"note": "token counts do not cover every captured pair"}
    ta = np.array([counts[i][0] for i in pair_ids])
    tb = np.array([counts[i][1] for i in pair_ids])
    delta = ta - tb
    out: dict[str, Any] = {
        "token_counts": {
            "mean_a": float(ta.mean()), "mean_b": float(tb.mean()), "mean_diff": float(delta.mean()),
            "max_abs_diff": float(np.abs(delta).max()), "pairs_unequal": int(np.count_nonzero(delta)),
            # one difference for every pair: condition and length cannot be told apart
            "constant_diff": bool(np.ptp(delta) == 0 and delta[0] != 0),
            # prompts the text encoder cut at 512 tokens: their differences past the cut are unseen
            "pairs_truncated": sum(1 for r in recs if isinstance(r, dict) and ("a_full" in r or "b_full" in r)),
        },
        "token_diff_vs_score_r": {},
    }
    for name, st in layouts.items():
        sel = np.isfinite(st.t) & (np.abs(st.t) > st.thresholds[0])
        if not sel.any() or np.ptp(delta) == 0:
            out["token_diff_vs_score_r"][name] = None
            continue
        sd = st.diff[:, sel].std(axis=0, ddof=1)
        score = (np.sign(st.t[sel]) * st.diff[:, sel] / sd).mean(axis=1)
        r = np.corrcoef(delta, score)[0, 1] if np.ptp(score) > 0 else math.nan
        out["token_diff_vs_score_r"][name] = float(r)
    return out


def analyze_run(run_dir, config: RunConfig | None = None, *, figures: bool | str = True,
                registry=None) -> dict[str, Any]:
    """Recompute every output of a run folder from its captures; return summary.json's content.

    ``config`` (default: the one the manifest records) supplies the statistics options:
    flips, splits, thresholds and the seed of flips and splits. ``figures="keep"``: draw
    none and link those a previous report drew (for a card that only gains a section).
    """
    run_dir = pathlib.Path(run_dir)
    with locked(run_dir):
        manifest = read_manifest(run_dir)
        if config is None:
            config = config_from_manifest(manifest, str(run_dir / MANIFEST))
        return _analyze(run_dir, manifest, config, figures, registry)


def _analyze(run_dir: pathlib.Path, manifest: dict, config: RunConfig, figures: bool | str,
             registry) -> dict[str, Any]:
    from ..rundir.fsutil import atomic_write_text
    from .card import CARD, render_card
    from .causal_section import causal_section

    options = config.stats_options()
    names = config.layouts  # checked names: a manifest cannot point the reads elsewhere
    steps = config.captured_steps if config.steps > 1 else None

    layouts: dict[str, LayoutStats] = {}
    pair_ids: list[str] | None = None
    for name in names:
        a, b, units, ids = load_captures(run_dir, name)
        if pair_ids is not None and ids != pair_ids:
            raise PlantainError(f"{run_dir}: layout {name!r} lists its pairs in a different order from the others")
        if (a.ndim == 3) != (steps is not None) or (steps is not None and a.shape[1] != len(steps)):
            raise PlantainError(f"{run_dir}: captures of {name!r} do not have the steps the run's config records")
        pair_ids = ids
        # a trajectory run: one "layout" per captured step (heads@step3), every statistic per step
        for label, sa, sb in ([(name, a, b)] if steps is None else
                              [(step_layout(name, s), a[:, k], b[:, k]) for k, s in enumerate(steps)]):
            st = compute_layout_stats(sa, sb, units, layout=label, pair_ids=ids, options=options)
            layouts[label] = review(st, token_delta(manifest, ids))

    info = manifest.get("layout_info") or {}
    layout_summaries = {}
    for name, st in layouts.items():
        s = layout_summary(st)
        if config.length_control:
            s["length_placebo"] = placebo_summary(run_dir, st, manifest)
        mlp = (info.get(name) or {}).get("mlp_units")
        if mlp is None and name == "slices16":
            mlp = count_mlp_units(st.units)
        if mlp is not None:
            s["mlp_units"] = int(mlp)
        floor = noise_summary(manifest.get("noise_floor"), name, st.mean_diff)
        if floor is not None:
            s["noise_floor"] = floor
        layout_summaries[name] = s

    spec_data = manifest.get("spec") or {}
    summary: dict[str, Any] = {
        "plantain_version": __version__,
        "probe": spec_data.get("name"),
        "direction": list(spec_data.get("direction", ["A", "B"])),
        "n_pairs": len(pair_ids or []),
        "model": manifest.get("model"),
        "stats": options.as_dict(),
        "layouts": layout_summaries,
    }
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    result = ProbeResult(layouts, layout_summaries, manifest, tuple(pair_ids or ()), config)
    spec, pairs, notes = rebuild_spec_and_pairs(manifest, registry, result.pair_ids)
    interp, more, interp_error = interpret(spec, pairs, result, registry)
    notes += more
    summary["interpreter"] = spec.interpreter if spec is not None else None
    summary["interpretation"] = json_safe(interp.numbers) if interp is not None else {}
    if interp_error:
        summary["interpreter_error"] = interp_error
    confounds = token_confounds(manifest, layouts, result.pair_ids)
    if isinstance(manifest.get("confounds"), dict):
        confounds = {**manifest["confounds"], **(confounds or {})}
    if confounds is not None:
        summary["confounds"] = json_safe(confounds)
    if notes:
        summary["notes"] = notes

    causal = causal_section(run_dir, config.layouts)
    families = {name: across_steps({s: layouts[step_layout(name, s)] for s in steps}, config.tfce) for name in names} \
        if steps is not None else {}
    if families:
        summary["trajectory"] = json_safe({name: fam["summary"] for name, fam in families.items()})
    with staged(run_dir) as stage:  # every output of this report lands together, or none does
        write_results(stage, summary, layouts)
        figs: dict[str, dict[str, str]] = {}
        write_family_files(stage, families)
        if figures == "keep":
            from .figures import existing_figures

            figs = existing_figures(run_dir, layouts, families)
        elif figures:
            from .figures import trajectory_figures, write_figures

            figs = write_figures(stage, layouts)
            figs.update({f"{name}@trajectory": trajectory_figures(stage, name, fam) for name, fam in families.items()})
        from .figures import STIMULI

        if (run_dir / STIMULI).is_file():  # written by the run from its conditioning images
            figs = {**figs, "_stimuli": {"sheet": STIMULI}}
        card = render_card(run_dir.name, json_safe(summary), manifest, config, interp, figs, causal)
        atomic_write_text(stage / CARD, card)
    return json_safe(summary)


def placebo_effects(run_dir: pathlib.Path, layout: str, diff: np.ndarray, pair_ids) -> dict[str, Any] | None:
    """Per unit, the placebo's mean D over the pairs it has, and the share of the probe's
    mean D over the same pairs that it predicts (placebo / probe); None without a placebo."""
    folder = run_dir / PLACEBO
    if not (folder / "captures" / f"{layout}.npz").is_file():
        return None
    a, b, _, ids = load_captures(folder, layout)
    rows = [list(pair_ids).index(i) for i in ids if i in pair_ids]
    if len(rows) != len(ids):
        return None
    placebo = (a - b).mean(axis=0)
    probe = diff[rows].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(probe != 0, placebo / probe, np.nan)
    return {"pairs": len(ids), "mean": placebo, "share": share}
