"""What a run records about its inputs, safely for publishing: the probe and image files
by name and sha256 (no local paths), every file the run reads (its identity, checked on
resume and by a sweep), the conditioning images checked on resume, and the prompts'
token counts with the 512-token cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
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


#: In the run folder, never published: the local model folder's full path, for --resume
#: and ``plantain causal`` (the manifest names the folder only).
LOCAL = ".plantain.local.json"


def stored_config(config):
    """The config as a manifest records it: the probe as :func:`stored_probe` says, a
    local model folder by its name (its path goes to :data:`LOCAL`)."""
    from ..models.loaders import is_local_model, local_model_name

    model = local_model_name(config.model) if config.model and is_local_model(config.model) else config.model
    return config.evolve(probe=stored_probe(config.probe), model=model)


def write_local(run_dir: pathlib.Path, config) -> None:
    from ..models.loaders import is_local_model
    from ..rundir.fsutil import atomic_write_json

    if config.model and is_local_model(config.model):
        atomic_write_json(run_dir / LOCAL, {"model": os.path.realpath(os.path.expanduser(config.model))})


def local_model(run_dir: pathlib.Path) -> str | None:
    """The local model folder a run recorded in :data:`LOCAL`, or None."""
    import json

    path = pathlib.Path(run_dir) / LOCAL
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model") if path.is_file() else None
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) and os.path.isabs(value) else None


def local_model_differs(run_dir: pathlib.Path, config) -> list[str]:
    """``--model: was the folder X, now Y`` when a resumed run names another local folder
    than the one it recorded (the manifest's name alone cannot tell two folders apart)."""
    path = local_model(run_dir)
    if path is None or not config.model or os.path.realpath(os.path.expanduser(config.model)) == path:
        return []
    return [f"--model: was the folder {path}, now {config.model}"]


def with_local_model(run_dir: pathlib.Path, recorded, given=None):
    """``recorded`` (a config rebuilt from a manifest) with the local model folder put
    back: the folder ``given`` (a --model value) when it has the recorded name and, where
    the run recorded its path, is that same folder; else the recorded path. A --model of
    another folder is left for the resume check to refuse."""
    from ..models.loaders import is_local_model, local_model_name

    path = local_model(run_dir)
    if given and (is_local_model(given) or os.path.isdir(os.path.expanduser(str(given)))):
        same_name = local_model_name(given) == recorded.model
        same_path = path is None or os.path.realpath(os.path.expanduser(given)) == path
        return recorded.evolve(model=given) if same_name and same_path else recorded
    if path is not None and recorded.model == local_model_name(path):
        return recorded.evolve(model=path)
    return recorded


def spec_record(spec) -> dict[str, Any]:
    """The spec as a manifest records it (``spec.as_dict()``) with every image path that
    leaves the spec's folder (absolute, ``~``, ``..``; read only with
    ``allow_outside_images``) cut to its file name: the sha256 in ``images`` identifies it."""
    def scrub(value, key=""):
        if isinstance(value, dict):
            return {k: scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v, key) for v in value]
        if isinstance(value, str) and key.endswith("image"):
            p = pathlib.PurePath(value.replace("\\", "/"))
            if value.startswith("~") or p.is_absolute() or ".." in p.parts or re.match(r"[A-Za-z]:", value):
                return p.name
        return value
    return scrub(spec.as_dict())


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


def pair_records(pairs, spec_dir) -> list[dict[str, Any]]:
    """The manifest's ``pairs``: each pair's prompts, image names and meta, as JSON data
    (what a manifest read back from disk compares equal to)."""
    records = [{"id": p.id, "a": stimulus_record(p.a, spec_dir), "b": stimulus_record(p.b, spec_dir), "meta": p.meta}
               for p in pairs]
    return json.loads(json.dumps(records))


def _pairs_files(table) -> list[str]:
    """Every ``pairs_file`` value of a stimulus table, nested tables included (a
    generator may keep its pair list deeper)."""
    if not isinstance(table, dict):
        return []
    found = [v for k, v in table.items() if k == "pairs_file" and isinstance(v, str)]
    return found + [f for v in table.values() if isinstance(v, dict) for f in _pairs_files(v)]


def input_files(probe) -> dict[str, str]:
    """Every file a run of ``probe`` reads, by the name its manifest may publish (relative
    to the spec's folder), to its sha256: the spec file, its pairs file, every image file
    of its pairs. They are the run's identity with its settings: a resume refuses, and a
    sweep does not take as complete, a run any of whose files changed since."""
    from ..spec.pairfile import pairs_file_path

    spec = probe.spec
    paths = [pathlib.Path(spec.path)] if spec.path else []
    paths += [path for value in _pairs_files(spec.stimuli)
              if (path := pairs_file_path(value, spec.spec_dir)) is not None]
    paths += [pathlib.Path(s.image.path) for p in probe.pairs for s in p.stimuli()
              if s.image is not None and s.image.path is not None]
    out: dict[str, str] = {}
    for path in paths:
        name = local_name(str(path), spec.spec_dir)
        if name in out:
            continue
        try:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:  # a file that cannot be read fails the run where it is read, naming it
            continue
    return out


def check_inputs(run_dir: pathlib.Path, old: Any, new: dict[str, str], doing: str = "resume") -> None:
    """Refuse a run whose files (:func:`input_files`) are not those it started with,
    naming the first that changed. A manifest from before inputs were recorded has none
    to compare (``old`` None)."""
    if not isinstance(old, dict):
        return
    for name in sorted(set(old) | set(new)):
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if was is None:
            what = f"it now reads {name}, which it did not read when it started"
        elif now is None:
            what = f"{name}, which it read when it started, is no longer read or readable"
        else:
            what = f"{name} changed since the run started (sha256 was {str(was)[:12]}…, now {now[:12]}…)"
        raise ResumeRefused(f"cannot {doing} {run_dir}: {what}; captures made with both would be mixed. Restore it, "
                            "or start a new --out")


def check_pairs(run_dir: pathlib.Path, old: Any, new: list[dict[str, Any]], doing: str = "resume") -> None:
    """Refuse a run whose pairs (prompts, image names, meta) are not those it started
    with, naming the first pair that differs; a plugin's generator reads what no file
    names."""
    if not isinstance(old, list) or old == new:
        return
    for was, now in zip(old, new):
        if was != now:
            pair = now.get("id") if isinstance(now, dict) else None
            raise ResumeRefused(f"cannot {doing} {run_dir}: pair {pair!r} is not the one the run started with (its "
                                "prompts, images or meta differ); captures made with both would be mixed. Restore "
                                "the spec's pairs, or start a new --out")
    raise ResumeRefused(f"cannot {doing} {run_dir}: the probe now has {len(new)} pairs, the run started with "
                        f"{len(old)}; start a new --out")


def image_record(rec: dict, spec_dir) -> dict:
    """A manifest's record of one conditioning image, without local paths: a file by its
    name and sha256, a generated image by its cache key, settings and sha256."""
    from ..models.loaders import is_local_model

    out = {k: v for k, v in rec.items() if k != "path"}
    if is_local_model(out.get("model_id")):  # generated by a local model folder: named as the manifest names it
        out["model_id"] = pathlib.PurePath(str(out["model_id"])).name
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
