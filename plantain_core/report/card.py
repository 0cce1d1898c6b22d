"""The run's README.md: a model card shaped like the seed probe cards.

Everything in it is written from the summary (numbers), the manifest (what was run)
and the spec; the interpretation starts with neutral sentences generated from the
numbers, then the interpreter's sections. Nothing here computes statistics.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from ..models.loaders import is_local_model, is_tiny_record
from .blocks_section import block_lines
from .checks_section import checks_section, length_sentence
from .markup import md_code, md_prose, md_text
from .reading import default_interpretation, num, pct, ratio_text
from .reproduce import reproduce_section
from .trajectory_section import trajectory_section

CARD = "README.md"
DEFAULT_TAGS = ("interpretability", "per-unit-attention", "paired-prompt-probe", "flux2", "plantain")
PER_PAIR_IMAGE = "the conditioning image"


def model_info(manifest: Mapping[str, Any]) -> dict[str, Any]:
    model = manifest.get("model") or {}
    mid = model.get("id") or "unknown"
    # a local folder is named by its last component (runs made before manifests did so hold the path)
    local = model.get("local") is True or is_local_model(mid)
    if local:
        mid = pathlib.PurePath(str(mid).replace("\\", "/")).name or "local-model"
    return {"id": mid, "revision": model.get("revision"), "name": model.get("name") or mid,
            "tiny": is_tiny_record(model) or mid == "tiny", "family": model.get("family"), "local": local}


def front_matter(summary, manifest, spec_data) -> str:
    """The YAML front matter, rendered by huggingface_hub (the hub's own format): values
    from a spec (tags) or a manifest are quoted as data and cannot add keys."""
    from huggingface_hub import ModelCardData

    m = model_info(manifest)
    family = recorded_family(m["family"])
    tags = [(family.card_tag or family.name) if t == "flux2" and family else t for t in DEFAULT_TAGS]
    if "heads" in summary.get("layouts", {}):
        tags.insert(1, "per-head-attention")
    tags += [str(t) for t in spec_data.get("tags", []) if t not in tags]
    # a local folder is no hub model: no base_model (the hub would link a stranger's repository of that name)
    data = ModelCardData(language="en", license="apache-2.0", base_model=None if m["local"] else str(m["id"]),
                         library_name="diffusers", tags=tags)
    return f"---\n{data.to_yaml()}\n---\n"


def describe_layout(name: str, s: Mapping[str, Any]) -> str:
    """What a unit of ``name`` is, in words every family shares: which projections a family
    hooks (stream names) is its own note, printed after these lines."""
    u = s["n_units"]
    if name == "heads":
        return (f"`heads`: {u:,} true attention heads. A unit is the feature slice [h·d, (h+1)·d) of one head in the "
                "input of the attention output projection; where a block has an image and a text stream, the unit "
                "covers both projections together (the model family's note below names them).")
    if name == "slices16":
        mlp = s.get("mlp_units")
        mlp_text = (f" **{mlp:,} of these {u:,} units are MLP channels of single blocks, not attention heads** "
                    "(a single block's output projection takes the attention output followed by the MLP's "
                    f"activations); {u - mlp:,} are 16-feature pieces of attention heads.") if mlp else ""
        return (f"`slices16`: {u:,} 16-feature slices of the whole input of each attention output projection (the "
                f"image stream's where a block has two), the unit the seed cards call \"heads\".{mlp_text}")
    return f"`{name}`: {u:,} units."


def stimulus_text(manifest, spec_data) -> list[str]:
    """What A and B differ in, read from the recorded pairs rather than assumed."""
    pairs = manifest.get("pairs") or []
    gen = spec_data.get("generator", "?")
    lines = [f"Stimuli: {len(pairs) or '?'} matched pairs from generator {md_code(gen)}."]
    if not pairs:
        return lines
    prompts_differ = sum(1 for p in pairs if (p.get("a") or {}).get("prompt") != (p.get("b") or {}).get("prompt"))
    images_differ = sum(1 for p in pairs if (p.get("a") or {}).get("image") != (p.get("b") or {}).get("image"))
    images = [(p.get("a") or {}).get("image") for p in pairs] + [(p.get("b") or {}).get("image") for p in pairs]
    if prompts_differ:
        lines.append(f"A and B differ in the prompt in {prompts_differ} of {len(pairs)} pairs.")
    if images_differ:
        lines.append(f"A and B differ in {PER_PAIR_IMAGE} in {images_differ} of {len(pairs)} pairs; "
                     "the prompt is " + ("the same within each pair." if not prompts_differ else "also varied."))
    distinct = {repr(i) for i in images if i}
    if distinct and not images_differ:
        img = next(i for i in images if i)
        if len(distinct) == 1 and img.get("prompt"):
            lines.append(f"Every pass is conditioned on one fixed reference image generated once from the prompt "
                         f"\"{md_text(img['prompt'])}\" at "
                         f"{md_text(img.get('steps', manifest.get('image_steps', 14)))} steps, guidance "
                         f"{md_text(img.get('guidance', manifest.get('image_guidance', 4.0)))}, seed "
                         f"{md_text(img.get('seed', '?'))}.")
        elif len(distinct) == 1:
            lines.append(f"Every pass is conditioned on one fixed reference image read from {md_code(img.get('path'))}.")
    generated = any(i and i.get("prompt") for i in images)
    if images_differ and generated:
        lines.append(f"Images given by prompt were generated once at {manifest.get('image_steps', 14)} steps, guidance "
                     f"{manifest.get('image_guidance', 4.0)}, and cached.")
    return lines


def pairs_table(manifest) -> list[str]:
    pairs = manifest.get("pairs") or []
    if not pairs:
        return []
    # one shared reference image is described above; list images only when they vary
    images = {repr((p.get(side) or {}).get("image")) for p in pairs for side in ("a", "b")}
    show_images = len(images) > 1
    out = ["<details><summary>The pairs</summary>", "", "| id | A | B |", "|---|---|---|"]
    for p in pairs:
        def cell(side):
            s = p.get(side) or {}
            img = s.get("image") or {}
            extra = f" [image: {img.get('path') or img.get('prompt')}]" if img and show_images else ""
            return md_text(f"{s.get('prompt', '')}{extra}")
        out.append(f"| {md_text(p.get('id', ''))} | {cell('a')} | {cell('b')} |")
    return out + ["", "</details>", ""]


def recorded_family(name):
    """The registered model family a manifest names (an untrusted value: looked up, never
    printed raw); None for an unknown one or a run made before families were recorded."""
    from ..models.lookup import families
    from ..models.family import guarded

    found = next((f for f in families() if f.name == name), None)
    return None if found is None else guarded(found, f"the plugin of model family {name!r}")


def family_notes(name) -> tuple[str, ...]:
    """What a unit is in the model family ``name``."""
    family = recorded_family(name)
    return tuple(family.unit_notes) if family else ()


def method_section(summary, manifest, spec_data, sheet: str | None = None) -> list[str]:
    m = model_info(manifest)
    a_name, b_name = summary.get("direction", ["A", "B"])
    st = summary.get("stats", {})
    size = f"{manifest.get('height', '?')}×{manifest.get('width', '?')}" if manifest.get("height") else "the model default size"
    rev = f" at revision {md_code(m['revision'])}" if m["revision"] else ""
    rev += " (a local diffusers folder)" if m["local"] else ""
    embedded = " (embedded: a guidance-distilled model)" if manifest.get("guidance_embedded") is True else ""
    # runs made before families recorded "cfg" ran CFG at guidance > 1 (FLUX.2 Klein base)
    cfg = manifest["cfg"] if isinstance(manifest.get("cfg"), bool) else (manifest.get("guidance") or 1) > 1
    out = ["## Method", ""]
    out += stimulus_text(manifest, spec_data) + [""]
    if sheet:
        out += [f"![the conditioning images, as thumbnails]({sheet})", ""]
    out += pairs_table(manifest)
    out += [
        f"Each stimulus runs once through {md_code(m['id'])}{rev} ({md_text(manifest.get('dtype', '?'))} on "
        f"{md_text(manifest.get('device', '?'))}) "
        + (f"at 1 inference step with guidance {manifest.get('guidance', 1.0)}{embedded} (no CFG)"
           if manifest.get("steps", 1) == 1
           else f"through the pipeline's denoising loop of {manifest['steps']} steps, guidance "
                f"{manifest.get('guidance', 1.0)}{embedded}" + (" (CFG with the empty prompt; only the conditional pass "
                                                                 "is captured)" if cfg else " (no CFG)"))
        + f", at {size}; the initial noise is seeded per pair (run seed {manifest.get('seed', '?')}) so A and B share it.",
        "",
        "A forward pre-hook on every attention output projection takes the RMS of its input over tokens and the "
        f"unit's features (token scope: {manifest.get('token_scope', 'all')}; {_capture_text(manifest)}), one number "
        "per unit per pass. "
        "Unit layouts:",
        "",
    ]
    out += [f"- {describe_layout(n, s)}" for n, s in summary["layouts"].items()]
    notes = family_notes(m["family"])
    if notes:
        out.append(f"- Model family {md_code(m['family'])}: " + "; ".join(md_text(n) for n in notes) + ".")
    elif isinstance(m["family"], str) and recorded_family(m["family"]) is None:
        out.append(f"- Model family {md_code(m['family'], 60)} (as recorded; not installed where this card was "
                   "written, so what its units are is not described here).")
    out += [
        "",
        f"Per unit, with D = A − B over the N = {summary.get('n_pairs')} pairs (A = \"{md_text(a_name)}\", "
        f"B = \"{md_text(b_name)}\"): "
        "paired t = mean(D) / (sd(D)/√N), Cohen's d_z = mean(D)/sd(D), a parametric two-sided p (t, N−1 df), "
        "Benjamini–Hochberg q, and a max-|t| sign-flip permutation p that controls the family-wise error. "
        "Positive t means a larger RMS under A.",
        f"Null: {_null_text(summary)}; seed {st.get('seed')}. Split-half: {st.get('splits')} random 50/50 splits of "
        "the pairs, Pearson r of per-unit t between halves. See plantain's `docs/statistics.md`.",
        "",
    ]
    return out


def _capture_text(manifest) -> str:
    """The capture method and how the transformer ran (compiled, attention backend), as recorded."""
    config = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    text = f"capture method {md_code(config.get('capture_method', 'sumsq-v1'))}"
    if config.get("compile") is True:
        text += ", transformer compiled with torch.compile"
    if config.get("attention_backend"):
        text += f", attention backend {md_code(config['attention_backend'])}"
    return text


def _noise_text(nf, units: int) -> str:
    return (f"Kernel noise floor: {nf['stimuli']} stimuli passed twice changed a unit's RMS by at most "
            f"{num(nf['max_abs'])} (median {num(nf['median_abs'])}); {nf['units_at_or_below']:,} of {units:,} units "
            "have a \\|mean D\\| at or below their own floor (an effect kernels alone could make).")


def _null_text(summary) -> str:
    null = next(iter(summary["layouts"].values()))["null"]
    if null["exact"]:
        return f"all {null['flips']:,} sign patterns enumerated exactly (first sign fixed; |t| is symmetric)"
    return f"{null['flips']:,} random sign flips of D within pairs"


def results_section(name, s, figs) -> list[str]:
    u = s["n_units"]
    out = [f"### Layout `{name}` ({u:,} units)", "",
           "| metric | observed | null mean | null p99 | observed / null p99 |", "|---|---:|---:|---:|---:|"]
    for row in s["thresholds"]:
        out.append(f"| units with \\|t\\| > {row['threshold']:g} | {row['observed']:,} ({pct(row['observed'], u)}) | "
                   f"{num(row['null_mean'])} | {num(row['null_p99'])} | {ratio_text(row)} |")
    ld = s["large_d"]
    out.append(f"| units with \\|d\\| > {ld['threshold']:g} (large) | {ld['count']:,} ({pct(ld['count'], u)}) | — | — | — |")
    sh = s["split_half"]
    if sh["median"] is not None:
        out.append(f"| split-half r (median of {sh['valid_splits']}) | {sh['median']:.3f} [IQR {sh['q25']:.3f}, "
                   f"{sh['q75']:.3f}] | — | — | — |")
    else:
        out.append(f"| split-half r | — ({sh.get('note') or 'undefined'}) | — | — | — |")
    where = f" ({md_code(s['max_abs_t_unit'])})" if s.get("max_abs_t_unit") else ""
    mx = f"{s['max_abs_t']:.2f}" if s["max_abs_t"] is not None else "—"
    out.append(f"| max \\|t\\| | {mx}{where} | — | — | — |")
    sig = s["significant"]
    out.append(f"| units with BH q < 0.05 | {sig['q_lt_0.05']:,} | — | — | — |")
    out.append(f"| units with FWER p < 0.05 (max-\\|t\\|) | {sig['p_fwer_lt_0.05']:,} | — | — | — |")
    out.append("")
    if s.get("noise_floor"):
        out += [_noise_text(s["noise_floor"], u), ""]
    untested = s["n_zero_variance"] + s["n_nonfinite"]
    if untested:
        out += [f"{untested:,} {'unit was' if untested == 1 else 'units were'} not tested ({s['n_zero_variance']:,} with zero variance of D, "
                f"{s['n_nonfinite']:,} with non-finite captures): their t is NaN and they count as not exceeding any "
                "threshold; fractions are of all units.", ""]
    if s["top_blocks"]:
        out += ["**Top blocks by max |t|:**", ""]
        for b in s["top_blocks"]:
            key = next(k for k in b if k.startswith("n_abs_t_gt_"))
            out.append(f"- {md_text(b['block'])}: max|t|={b['max_abs_t']:.2f}, {b[key]:,}/{b['units']:,} units at "
                       f"|t|>{key.rsplit('_', 1)[1]}, median |d|={b['median_abs_d']:.2f}")
        out.append("")
    out += block_lines(s)
    f = figs.get(name) or {}
    for kind, alt in (("heatmap", "per-unit t by block"), ("null", "null counts and observed count"),
                      ("split_half", "split-half t scatter")):
        if kind in f:
            out.append(f"![{name}: {alt}]({f[kind]})")
    return out + [""]


def render_card(run_name: str, summary: Mapping[str, Any], manifest: Mapping[str, Any], config, interpretation,
                figs: Mapping[str, Mapping[str, str]], causal: list[str]) -> str:
    """The card's text. ``run_name`` is the run folder's name (the Reproduce commands use
    it); ``causal`` the lines of the causal section (``causal_section``), or []."""
    spec_data = dict(manifest.get("spec") or {})
    title = spec_data.get("title") or spec_data.get("name") or "plantain probe"
    m = model_info(manifest)
    direction = summary.get("direction") or ["A", "B"]
    lines = [front_matter(summary, manifest, spec_data), f"# {md_text(title) or 'plantain probe'}", ""]
    if m["tiny"]:  # before any number, so no reader takes them for a trained model's
        lines += [tiny_warning(m), ""]
    lines += [f"A paired-stimulus, per-unit attention probe of {md_code(m['name'] if m['tiny'] else m['id'])} made with "
              f"plantain. {md_text(spec_data.get('description') or '')}".strip(), ""]
    lines += ["## Question", "",
              f"Do the model's attention units respond differently to \"{md_text(direction[0])}\" (A) than to "
              f"\"{md_text(direction[1])}\" (B) when everything else in a pair is held fixed? t = mean(A − B).", ""]
    lines += method_section(summary, manifest, spec_data, (figs.get("_stimuli") or {}).get("sheet"))
    lines += ["## Results", ""]
    for name, s in summary["layouts"].items():
        lines += results_section(name, s, figs)
    lines += trajectory_section(summary, manifest, figs)
    lines += ["## Interpretation", ""]
    for n, s in summary["layouts"].items():
        lines += [default_interpretation(n, s, direction), ""]
    if interpretation is not None:
        for sec in interpretation.sections:
            # a plugin's section: its text and emphasis, no HTML, link, image or block structure
            lines += [f"### {md_text(sec.title)}", "", md_prose(sec.markdown), ""]
    for note in summary.get("notes", []):
        lines += [f"_Note: {md_text(note)}._", ""]
    lines += causal
    lines += confounds_section(summary, m)
    lines += checks_section(summary)
    lines += limitations_section(summary, manifest, m, causal=bool(causal))
    lines += reproduce_section(summary, manifest, config, run_name)
    lines += ["## License", "", "Apache 2.0 (this card and its numbers); the model keeps its own license.", ""]
    return "\n".join(lines)


def confounds_section(summary, m) -> list[str]:
    c = summary.get("confounds")
    if not c:
        return []
    out = ["## Confounds", ""]
    tc = c.get("token_counts")
    if tc:
        out.append(f"Prompt length: mean {num(tc['mean_a'])} tokens for A and {num(tc['mean_b'])} for B "
                   f"(mean difference {num(tc['mean_diff'])}, largest {num(tc['max_abs_diff'])}; "
                   f"{tc['pairs_unequal']} pairs differ in length).")
        if tc.get("constant_diff"):
            out.append(f"**Condition and prompt length are fully confounded: {length_sentence(tc)}.** No "
                       "statistic here can tell the condition from the length; match the prompts' lengths, or see "
                       "the length placebo below (`--length-control`).")
        if tc.get("pairs_truncated"):
            limit = md_text(getattr(recorded_family(m["family"]), "prompt_limit", 512))
            out.append(f"**{tc['pairs_truncated']} pairs have a prompt longer than {limit} tokens**: the text encoder "
                       f"saw only the first {limit}, so any difference after that is not in these numbers.")
        for name, r in (c.get("token_diff_vs_score_r") or {}).items():
            out.append(f"- `{name}`: r between token-count difference and the pair's probe score = "
                       + (f"{r:.2f}" if r is not None else "— (no variation or no units above the first threshold)"))
    for key, value in c.items():
        if key not in ("token_counts", "token_diff_vs_score_r"):
            out.append(f"- {md_text(key)}: {md_text(value)}")
    return out + [""]


def tiny_warning(m) -> str:
    from ..models.lookup import model_label

    return ("**This run used an embedded tiny model with random weights: its numbers say nothing about "
            f"{model_label(m['family'])} or any trained model.** It exists to test the pipeline.")


def limitations_section(summary, manifest, m, causal: bool = False) -> list[str]:
    n = summary.get("n_pairs")
    family = recorded_family(m["family"])
    padding = md_text(family.padding_note()) if family else "The text stream is padded to 512 tokens with no attention mask"
    out = ["## Limitations", ""]
    out += [
        "- The probe is correlational: a unit whose RMS differs between A and B is not shown to cause anything"
        + (" (the causal check above tests the selected units directly)." if causal else
           "; `plantain causal` tests whether the selected units carry the A/B difference."),
        f"- {n} pairs; " + ("one inference step at one noise level" if manifest.get("steps", 1) == 1 else
                             f"one trajectory of {manifest.get('steps')} steps per stimulus (one noise draw per pair)")
        + "; RMS magnitude only (not direction or attention pattern).",
        f"- {padding}. Prompt length can move unit RMS" + ("; see the confounds above." if summary.get("confounds") else
                      "; this run recorded no token counts to check it."),
        "- The null p99 comes from a finite number of sign patterns, and observed / null p99 is large whenever the "
        "null p99 is small — and small when a strong effect shared by many units inflates the null counts too; "
        "the FWER p and BH q per unit (units.csv) are the per-unit evidence.",
    ]
    s16 = summary.get("layouts", {}).get("slices16")
    if s16 is not None:
        mlp = f" ({s16['mlp_units']:,} of {s16['n_units']:,} are MLP channels)" if s16.get("mlp_units") else ""
        out.append(f"- `slices16` units are not attention heads{mlp}. Use `heads` for claims about attention heads.")
    return out + [""]
