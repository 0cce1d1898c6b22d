"""Published runs (``plantain publish``) loaded back: ``hf://user/repo[@revision]`` is
downloaded through huggingface_hub's ``snapshot_download`` (offline: from the local hub
cache) and copied, as plain files and only the names a published run may hold, into a
folder of its own, which then passes every check a run folder from anyone passes."""

from __future__ import annotations

import os
import pathlib
import shutil

from ..errors import PlantainError

PREFIX = "hf://"
#: what a published run may hold (plantain_core.cli.publish.PUBLISHED, figures, captures)
PATTERNS = ("README.md", "manifest.json", "summary.json", "units.csv", "blocks.csv", "steps.csv", "causal.json",
            "explorer.html", "figures/*.png", "captures/*.npz", "placebo/manifest.json", "placebo/captures/*.npz")


def runs_cache() -> pathlib.Path:
    """Where downloaded runs are kept: ``$PLANTAIN_CACHE/runs`` (default ``~/.cache/plantain/runs``)."""
    base = os.environ.get("PLANTAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "plantain")
    return pathlib.Path(base) / "runs"


def resolve_run_path(path) -> pathlib.Path:
    """``path`` as a folder: a local path as given, or ``hf://user/repo[@revision]``
    downloaded (once per commit)."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if text is None:
        raise PlantainError(f"expected a run folder or hf://user/repo, got {type(path).__name__}")
    if not text.startswith(PREFIX):
        return pathlib.Path(text)
    return download_run(text[len(PREFIX):])


def download_run(ref: str) -> pathlib.Path:
    from fnmatch import fnmatch

    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = ref.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PlantainError(f"{PREFIX}{ref}: {repo_id!r} is not a hub repository id (user/name): {exc}") from None
    try:
        snapshot = pathlib.Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=list(PATTERNS)))
    except Exception as exc:  # offline without a cached copy, no such repo, no permission: one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PlantainError(f"cannot load {PREFIX}{ref}: {type(exc).__name__}: {reason[:300]}") from None
    dest = runs_cache() / f"{repo_id.replace('/', '--')}--{snapshot.name}"
    if not (dest / "manifest.json").is_file():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        for file in sorted(snapshot.rglob("*")):
            rel = file.relative_to(snapshot).as_posix()
            if not any(fnmatch(rel, p) and rel.count("/") == p.count("/") for p in PATTERNS) or not file.is_file():
                continue  # the cache's files are links to its blobs: copied as plain files, nothing else
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, tmp / rel)
        if not (tmp / "manifest.json").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise PlantainError(f"{PREFIX}{ref} holds no manifest.json: not a run published with plantain publish")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest
