"""Pipelines from the hub or a local diffusers folder, and the bundled transformer presets.

The presets (``presets/*.json``) are the transformer configs of the published
checkpoints of every built-in family (sources in docs/models.md), so ``plantain units``
can count units with no download and no weights.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any

from ..errors import PlantainError

PRESET_DIR = pathlib.Path(__file__).with_name("presets")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_SIZE = 1024


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def find_preset(model: str) -> pathlib.Path | None:
    """The bundled config for a hub id (``black-forest-labs/FLUX.2-klein-base-4B``) or its
    repository name, case-insensitively."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    for path in PRESET_DIR.glob("*.json"):
        if path.stem.lower() == name:
            return path
    return None


def json_presets(folder, files: dict[str, str]) -> dict[str, dict]:
    """``{hub id: config}`` from ``{hub id: JSON file name in folder}``: what a family's
    :meth:`~plantain_core.models.family.ModelFamily.presets` returns for configs it ships."""
    folder = pathlib.Path(folder)
    return {hub_id: read_json(folder / name, "preset") for hub_id, name in files.items()}


def family_presets() -> dict[str, tuple[str, dict]]:
    """``{hub id: (family name, config)}`` over every installed family's presets (the first
    family to name a hub id keeps it)."""
    from ..errors import plugin_call
    from .lookup import families

    out: dict[str, tuple[str, dict]] = {}
    for family in families():
        method = getattr(family, "presets", None)
        found = plugin_call(f"model family {family.name!r}: presets()", method) if callable(method) else {}
        if not isinstance(found, dict):
            raise PlantainError(f"model family {family.name!r}: presets() must return {{hub id: config dict}}")
        for hub_id, config in found.items():
            if isinstance(hub_id, str) and isinstance(config, dict):
                out.setdefault(hub_id, (family.name, config))
    return out


def find_family_preset(model: str) -> tuple[str, str, dict] | None:
    """(hub id, family name, config) of an installed family's preset for a hub id or its
    repository name, case-insensitively."""
    name = model.strip().rstrip("/").lower()
    for hub_id, (family, config) in family_presets().items():
        if name in (hub_id.lower(), hub_id.rsplit("/", 1)[-1].lower()):
            return hub_id, family, config
    return None


def is_hub_id(model: str) -> bool:
    return bool(_HUB_ID.match(model)) and not os.path.exists(model)


#: A config.json or model_index.json is a few KiB; a bigger one is not read (it is untrusted).
MAX_CONFIG_BYTES = 1 << 20


def check_model_value(model: str) -> None:
    """Refuse a ``--model`` value no file system or hub takes, before any loader is asked."""
    if not model.strip() or not model.isprintable() or len(model) > 4096:
        raise PlantainError(f"--model: expected a printable name or path of at most 4,096 characters, got "
                            f"{model[:80]!r}{'...' if len(model) > 80 else ''}")
    if any(len(part) > 255 for part in re.split(r"[\\/]", model)):
        raise PlantainError("--model: a path component is longer than 255 characters")


def user_path(model: str) -> pathlib.Path:
    """``model`` as a path, ``~`` expanded (an unknown ``~user`` stays as written)."""
    return pathlib.Path(os.path.expanduser(model))


def read_json(path: pathlib.Path, what: str):
    """A small JSON file (at most :data:`MAX_CONFIG_BYTES`), or one PlantainError naming it."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise PlantainError(f"cannot read {what} {path}: larger than {MAX_CONFIG_BYTES:,} bytes")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested 100,000 deep
        raise PlantainError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None


def local_pipeline_dir(model: str) -> pathlib.Path | None:
    """``model`` as a local diffusers pipeline folder (has ``model_index.json``), or None."""
    path = user_path(model)
    try:
        if path.is_dir() and (path / "model_index.json").is_file():
            return path.resolve()
    except OSError:  # a name the file system cannot take is not a folder
        return None
    return None


def folder_pipeline_class(path: pathlib.Path) -> str | None:
    """The pipeline class a local diffusers folder's ``model_index.json`` names."""
    try:
        index = read_json(path / "model_index.json", "model index")
    except PlantainError:
        return None
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) else None


def transformer_config(model: str) -> tuple[dict[str, Any], str]:
    """The transformer config of ``model`` (hub id with a preset, a local pipeline folder,
    a transformer folder or a config.json) and where it came from. No weights, no network."""
    path = user_path(model)
    candidates = [path / "transformer" / "config.json", path / "config.json", path]
    for cand in candidates:
        try:
            found = cand.is_file() and cand.suffix == ".json"
        except OSError:
            found = False
        if found:
            return read_json(cand, "transformer config"), str(cand.resolve())
    preset = find_preset(model)
    if preset is not None:
        return json.loads(preset.read_text(encoding="utf-8")), f"preset {preset.stem}"
    found = find_family_preset(model)
    if found is not None:
        return dict(found[2]), f"preset {found[0]} (model family {found[1]})"
    cached = _cached_hub_config(model) if is_hub_id(model) else None
    if cached is not None:
        return json.loads(pathlib.Path(cached).read_text(encoding="utf-8")), cached
    raise PlantainError(
        f"no transformer config for {model!r}: not a local folder with transformer/config.json, "
        f"not in the hub cache, and no bundled preset; presets: {', '.join(preset_names() + sorted(family_presets()))}, "
        "or a tiny model"
    )


def _cached_hub_config(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(repo_id, "transformer/config.json")
    return hit if isinstance(hit, str) else None


def download_hint(model: str, tiny: str = "tiny") -> str:
    """How to get ``model``; ``tiny``: the embedded tiny model of its family to try instead."""
    return (
        f"download it first with `hf download {model}` (or `huggingface-cli download {model}`; "
        f"gated models need `hf auth login`), pass a local diffusers folder, or use --model {tiny}"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _is_cached(model: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model_index.json", revision=revision), str)


def _short(exc: BaseException) -> str:
    """The first sentence of an error: diffusers' and the hub's messages run to paragraphs."""
    text = " ".join(str(exc).split())
    for stop in (". ", " (", "; "):
        if stop in text:
            text = text[: text.index(stop)]
    return text[:200] or type(exc).__name__


def load_pipeline(class_name: str, model: str, revision: str | None, dtype, tiny: str = "tiny"):
    """``<class_name>.from_pretrained`` (a diffusers pipeline class) with every "not here"
    failure turned into one PlantainError that says how to get the model (or its family's
    tiny model ``tiny``)."""
    import diffusers

    pipeline_class = getattr(diffusers, class_name)

    local = local_pipeline_dir(model)
    if local is None and not is_hub_id(model):
        preset = find_preset(model) if "/" not in model else None
        raise PlantainError(f"model {model!r} is neither a local diffusers folder (with model_index.json) nor a hub id"
                            + (f"; {preset.stem} is a bundled config that `plantain units` reads, and a run loads the "
                               "model by its hub id (docs/models.md lists them)" if preset else ""))
    cached = local is not None or _is_cached(model, revision)
    if not cached and _offline():
        raise PlantainError(f"model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                            + download_hint(model, tiny))
    try:
        pipe = pipeline_class.from_pretrained(str(local or model), revision=revision, dtype=dtype)
    except Exception as exc:
        # OSError covers missing files and no network; the hub's HTTP errors (gated, not
        # found) are not OSErrors in every huggingface_hub version.
        if not isinstance(exc, (OSError, ValueError)) and not type(exc).__module__.startswith("huggingface_hub"):
            raise
        if local is not None:  # nothing to download: the folder itself is incomplete or damaged
            raise PlantainError(f"cannot load the local model folder {model!r}: {_short(exc)}; it needs "
                                f"model_index.json and every component {class_name} lists, with its weights "
                                "(a complete `save_pretrained` folder)") from None
        if cached:
            raise PlantainError(f"cannot load model {model!r}: {_short(exc)}; " + download_hint(model, tiny)) from None
        raise PlantainError(f"model {model!r} is not in the local Hugging Face cache and could not be downloaded "
                            f"({_short(exc)}); " + download_hint(model, tiny)) from None
    if not isinstance(pipe, pipeline_class):
        raise PlantainError(f"model {model!r} loads as {type(pipe).__name__}, not {class_name}")
    return pipe


def resolved_revision(model: str, revision: str | None) -> str | None:
    """The hub commit that a load of ``model`` used (its snapshot folder), else the request."""
    if not is_hub_id(model):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return revision
    hit = try_to_load_from_cache(model, "model_index.json", revision=revision)
    parts = pathlib.PurePath(hit).parts if isinstance(hit, str) else ()
    if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts):
        return parts[parts.index("snapshots") + 1]
    return revision
