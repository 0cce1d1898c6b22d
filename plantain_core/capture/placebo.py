"""The length placebo (``--length-control``): passes in which only the prompt length changes.

For each pair whose prompts differ in token count, the placebo pair holds the shorter
prompt twice, once padded with neutral filler to the longer one's token count, on the A
side if A is the longer (else on the B side). Its D measures what the length difference
alone does to each unit, in the probe's own direction. The placebo is a run of its own
(``RUN_DIR/placebo/``, same configuration, same noise per pair), so it resumes like any run;
the report compares its per-unit effect with the probe's.
"""

from __future__ import annotations

import pathlib
from typing import Any

from ..spec.stimuli import Pair, Stimulus

PLACEBO = "placebo"
#: Filler appended to the shorter prompt, one piece at a time, until the token counts match.
FILLERS = (" .", ".", " ,", ",")


def pad_to(count, prompt: str, tokens: int) -> str | None:
    """``prompt`` with neutral filler appended until it has exactly ``tokens`` tokens
    (``count(prompt)``: the family's token count, after any chat template), or None when
    no filler lands exactly there."""
    for filler in FILLERS:
        text = prompt
        for _ in range(4 * tokens):
            n = count(text)
            if n == tokens:
                return text
            if n > tokens:
                break
            text += filler
    return None


def placebo_pairs(count, pairs) -> tuple[list[Pair], list[str]]:
    """The placebo pairs (ids as the probe's) and notes on pairs that have none;
    ``count(prompt)`` is the prompt's token count."""
    out, skipped = [], []
    for p in pairs:
        ta, tb = count(p.a.prompt), count(p.b.prompt)
        if ta == tb:
            continue
        short, image = (p.b, p.b.image) if ta > tb else (p.a, p.a.image)
        padded = pad_to(count, short.prompt, max(ta, tb))
        if padded is None:
            skipped.append(p.id)
            continue
        longer, shorter = Stimulus(padded, image), Stimulus(short.prompt, image)
        out.append(Pair(p.id, longer, shorter) if ta > tb else Pair(p.id, shorter, longer))
    notes = [f"no filler matched the token count of pairs {', '.join(skipped[:5])}"] if skipped else []
    return out, notes


def run_placebo(probe, run_dir: pathlib.Path, config, options: dict[str, Any], bundle, run_probe) -> dict | None:
    """Capture the placebo pairs into ``run_dir/placebo`` (None when no pair differs in
    length) with ``run_probe`` (the runner's, handed down so this module never imports the
    runner back). ``options``: ``resume`` and ``progress`` of the main run."""
    from ..models.lookup import family_of
    from ..spec.probes import Probe

    family = family_of(bundle)
    pairs, notes = placebo_pairs(lambda prompt: len(family.prompt_tokens(bundle.pipeline, prompt)), probe.pairs)
    if len(pairs) < 3:
        return None
    placebo = Probe(probe.spec, tuple(pairs), dict(probe.providers), probe.reference)
    manifest = run_probe(placebo, run_dir / PLACEBO, config.evolve(length_control=False),
                         resume=options["resume"] or (run_dir / PLACEBO / "manifest.json").is_file(),
                         progress=options["progress"], model=bundle)
    manifest["placebo_notes"] = notes
    return manifest
