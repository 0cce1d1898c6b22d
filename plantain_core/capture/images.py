"""Conditioning images: loaded from files, or generated once and cached on disk.

A generated image (reference image of a fixed-image probe, or an image of an image-pair
probe) is keyed by sha256 over model id, revision, prompt, seed, steps, guidance and
size. The key is a hex digest, so no prompt can steer a file name out of the cache.
Cache folder: ``$PLANTAIN_CACHE_DIR/images``, else ``$XDG_CACHE_HOME/plantain/images``,
else ``~/.cache/plantain/images``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Any

from ..errors import PlantainError
from ..rundir.fsutil import atomic_write_bytes, atomic_write_json
from ..spec.stimuli import ImageSource

CACHE_ENV = "PLANTAIN_CACHE_DIR"


def cache_root() -> pathlib.Path:
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "plantain"


def images_dir() -> pathlib.Path:
    return cache_root() / "images"


def key_fields(model_id: str, revision: str | None, source: ImageSource, height: int, width: int) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "revision": revision,
        "prompt": source.prompt,
        "seed": int(source.seed),
        "steps": int(source.steps),
        "guidance": float(source.guidance),
        "height": int(height),
        "width": int(width),
    }


def image_key(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_image_file(path: str):
    """An RGB PIL image from a file and its manifest record (with the file's sha256)."""
    from PIL import Image, UnidentifiedImageError

    p = pathlib.Path(path)
    try:
        data = p.read_bytes()
        img = Image.open(io.BytesIO(data))
        img.load()
    except FileNotFoundError:
        raise PlantainError(f"image file not found: {p}") from None
    except Image.DecompressionBombError as exc:  # a tiny file that decodes to gigabytes
        raise PlantainError(f"image {p} is too large to decode safely ({exc})") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise PlantainError(f"cannot read image {p}: {exc}") from None
    record = {"source": "file", "path": str(p), "sha256": hashlib.sha256(data).hexdigest(),
              "width": img.width, "height": img.height}
    return img.convert("RGB"), record


def generate_image(bundle, source: ImageSource, height: int, width: int):
    """One image from the bundle's pipeline with the source's prompt, seed, steps and guidance."""
    import torch

    from ..models.lookup import family_of

    generator = torch.Generator("cpu").manual_seed(int(source.seed))
    with torch.inference_mode():
        out = bundle.pipeline(
            prompt=source.prompt,
            height=height,
            width=width,
            num_inference_steps=int(source.steps),
            guidance_scale=float(source.guidance),
            generator=generator,
            **family_of(bundle).call_kwargs(bundle, (height, width)),
            output_type="pil",
        )
    return out.images[0].convert("RGB")


def get_image(bundle, source: ImageSource, height: int, width: int, *, cache_dir=None):
    """(PIL image, manifest record) for one source: read the file, or the cache, or generate."""
    if source.path is not None:
        return load_image_file(source.path)
    folder = pathlib.Path(cache_dir) if cache_dir is not None else images_dir()
    fields = key_fields(bundle.id, bundle.revision, source, height, width)
    key = image_key(fields)
    path = folder / f"{key}.png"
    record = {"source": "generated", "key": key, "path": str(path), **fields}
    cached = _read_cached(path, folder / f"{key}.json")
    if cached is not None:
        img, digest = cached
        return img, {**record, "sha256": digest, "cached": True}
    img = generate_image(bundle, source, height, width)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        atomic_write_bytes(path, data)
        atomic_write_json(folder / f"{key}.json", {**fields, "sha256": digest})
    except OSError as exc:
        raise PlantainError(f"cannot write the image cache {folder}: {exc}; set {CACHE_ENV} to a writable folder") from None
    return img, {**record, "sha256": digest, "cached": False}


def _read_cached(path: pathlib.Path, sidecar: pathlib.Path):
    """(image, sha256) of a cache entry whose bytes still have the hash recorded when it
    was generated; None (regenerate) for a missing, damaged or swapped entry."""
    from PIL import Image

    try:
        data = path.read_bytes()
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("sha256")
        digest = hashlib.sha256(data).hexdigest()
        if recorded != digest:  # changed on disk, or written before hashes were recorded
            return None
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB"), digest
    except (OSError, ValueError, AttributeError, Image.DecompressionBombError):
        return None


def get_images(bundle, sources, height: int, width: int, *, cache_dir=None) -> dict[ImageSource, tuple[Any, dict]]:
    """Every distinct source once, in first-seen order."""
    out: dict[ImageSource, tuple[Any, dict]] = {}
    for source in sources:
        if source not in out:
            out[source] = get_image(bundle, source, height, width, cache_dir=cache_dir)
    return out
