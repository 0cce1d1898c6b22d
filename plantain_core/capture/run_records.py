"""What a run records about its inputs, safely for publishing: the probe and image files
by name and sha256 (no local paths), the conditioning images checked on resume, and the
prompts' token counts with the 512-token cut.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any

from ..errors import PlantainError, TruncationWarning
from ..spec.stimuli import Stimulus


def stored_probe(reference: str) -> str:
    """The probe as a manifest records it: a name as is; a spec path as typed when
    relative, else relative to the working folder when below it, else its file name."""
    if not reference.endswith(".toml") and "/" not in reference and os.sep not in reference:
        return reference
    p = pathlib.Path(reference)
    if not p.is_absolute():
        return reference
    rel = os.path.relpath(p)
    return p.name if rel.startswith("..") else rel


def local_name(path: str, spec_dir) -> str:
    """A file as a published manifest may name it: relative to the spec's folder when it
    lies inside, else its bare file name (the sha256 beside it identifies it)."""
    p = pathlib.Path(path)
    if spec_dir is not None and p.is_relative_to(spec_dir):
        return p.relative_to(spec_dir).as_posix()
    return p.name


def stimulus_record(stim: Stimulus, spec_dir) -> dict[str, Any]:
    image = stim.image.describe() if stim.image is not None else None
    if image and "path" in image:
        image = {"path": local_name(image["path"], spec_dir)}
    return {"prompt": stim.prompt, "image": image}


def image_record(rec: dict, spec_dir) -> dict:
    """A manifest's record of one conditioning image, without local paths: a file by its
    name and sha256, a generated image by its cache key, settings and sha256."""
    out = {k: v for k, v in rec.items() if k != "path"}
    if rec.get("source") == "file":
        out = {"source": "file", "file": local_name(rec["path"], spec_dir), **{k: v for k, v in out.items() if k != "source"}}
    return out


def check_images(run_dir: pathlib.Path, old: list, new: list, doing: str = "resume") -> None:
    """A resumed run (or a causal check) must see the images the run started with (file
    contents, cache entries), compared by sha256."""
    before = {r.get("key") or r.get("file"): r.get("sha256") for r in old if isinstance(r, dict)}
    for rec in new:
        name = rec.get("key") or rec.get("file")
        was = before.get(name)
        if was and rec.get("sha256") and was != rec["sha256"]:
            what = f"image file {name}" if rec.get("source") == "file" else f"generated image {name[:12]}…"
            raise ResumeRefused(f"cannot {doing} {run_dir}: the conditioning {what} changed since the run started "
                                f"(sha256 was {str(was)[:12]}…, now {rec['sha256'][:12]}…); captures made with both "
                                "would be mixed. Restore it, or start a new --out")


def token_records(bundle, pairs) -> list[dict[str, Any]]:
    """Per pair, the prompt tokens the text encoder sees (``a``, ``b``) and, for a prompt
    it cuts, its full length (``a_full``, ``b_full``). A pair whose A and B differ only
    past the cut would be two identical passes counted as a pair: refused."""
    from ..models.lookup import family_of

    family = family_of(bundle)
    limit = family.prompt_limit
    cache: dict[str, list[int]] = {}

    def ids_of(prompt: str) -> list[int]:
        if prompt not in cache:
            cache[prompt] = family.prompt_tokens(bundle.pipeline, prompt)
        return cache[prompt]

    records, identical = [], []
    for p in pairs:
        ids = [ids_of(p.a.prompt), ids_of(p.b.prompt)]
        rec: dict[str, Any] = {"id": p.id, "a": min(len(ids[0]), limit),
                               "b": min(len(ids[1]), limit)}
        for side, x in zip("ab", ids):
            if len(x) > limit:
                rec[f"{side}_full"] = len(x)
        if p.a.image == p.b.image and ids[0][:limit] == ids[1][:limit]:
            identical.append(p.id)
        records.append(rec)
    if identical:
        raise PlantainError(f"pairs {', '.join(map(repr, identical[:5]))} differ only after the first "
                            f"{limit} prompt tokens, which the text encoder never sees: A and B would "
                            "be identical passes. Shorten their prompts")
    cut = []
    for r in records:
        long = [f"{side.upper()} {r[side + '_full']}" for side in "ab" if side + "_full" in r]
        if long:
            cut.append(f"{r['id']} ({', '.join(long)} tokens)")
    if cut:
        warnings.warn(f"{len(cut)} pair(s) have prompts longer than {limit} tokens; the text encoder "
                      f"sees only the first {limit}: {'; '.join(cut[:5])}", PromptTruncated, stacklevel=2)
    return records


class ResumeRefused(PlantainError):
    """A resume (or causal check) would mix captures made under different conditions."""


#: the 0.1 name of :class:`~plantain_core.errors.TruncationWarning`
PromptTruncated = TruncationWarning
