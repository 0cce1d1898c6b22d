"""Checking a run's ``manifest.json`` before anything reads it.

A run folder may come from anyone, so every field the report, the card, the causal check
and the Python API read is checked for its type here, once; a bad one is a single
error naming the field (``manifest.json: pairs[3].a.prompt: expected a string``). The
run configuration inside it (``config``) is checked by :mod:`plantain_core.config`.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import PlantainError


class ManifestError(PlantainError):
    """A manifest field plantain cannot trust."""


Check = Callable[[Any, str], None]


def _fail(where: str, what: str, value: Any) -> None:
    shown = repr(value)
    raise ManifestError(f"{where}: expected {what}, got {shown[:60]}{'…' if len(shown) > 60 else ''}")


def kind(types, what: str, optional: bool = True) -> Check:
    allowed = types if isinstance(types, tuple) else (types,)

    def check(value, where):
        if value is None and optional:
            return
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            _fail(where, what, value)
    return check


STR, INT, NUM, DICT = kind(str, "a string"), kind(int, "an integer"), kind((int, float), "a number"), kind(dict, "an object")
BOOL = kind(bool, "true or false")


def list_of(item: Check) -> Check:
    def check(value, where):
        if value is None:
            return
        if not isinstance(value, list):
            _fail(where, "a list", value)
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")
    return check


def obj(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(value, where):
        if value is None and not required:
            return
        if not isinstance(value, dict):
            _fail(where, "an object", value)
        for key in required:
            if key not in value:
                raise ManifestError(f"{where}.{key}: required field is missing")
        for key, sub in fields.items():
            if key in value:
                sub(value[key], f"{where}.{key}")
    return check


def dict_of(item: Check) -> Check:
    def check(value, where):
        if value is None:
            return
        if not isinstance(value, dict):
            _fail(where, "an object", value)
        for k, v in value.items():
            item(v, f"{where}.{k}")
    return check


STIMULUS = obj({"prompt": STR, "image": DICT}, required=("prompt",))
FIELDS: dict[str, Check] = {
    "status": STR, "error": STR, "created": STR, "device": STR, "dtype": STR,
    "seed": INT, "height": INT, "width": INT, "batch_size": INT, "steps": INT, "guidance": NUM,
    "cfg": BOOL, "guidance_embedded": BOOL,
    "token_scope": STR, "spec_sha256": STR, "spec_file": STR,
    "inputs": dict_of(STR),
    "layouts": list_of(STR), "pair_ids": list_of(STR),
    "spec": obj({"name": STR, "title": STR, "description": STR, "generator": STR, "interpreter": STR,
                 "direction": list_of(STR), "tags": list_of(STR), "model": DICT, "stimuli": DICT}),
    "model": obj({"id": STR, "revision": STR, "name": STR, "family": STR, "tiny": BOOL}),
    "pairs": list_of(obj({"id": STR, "a": STIMULUS, "b": STIMULUS, "meta": DICT}, required=("id", "a", "b"))),
    "token_counts": list_of(obj({"id": STR, "a": INT, "b": INT, "a_full": INT, "b_full": INT},
                                required=("id", "a", "b"))),
    "images": list_of(DICT),
    "layout_info": dict_of(obj({"units": INT, "mlp_units": INT})),
    "providers": dict_of(obj({"plugin": STR, "distribution": STR, "version": STR})),
    "versions": dict_of(STR),
    "confounds": DICT,
    "timings": DICT,
    "placebo_notes": list_of(STR),
    "trajectory": list_of(obj({"index": INT, "timestep": NUM, "sigma": NUM}, required=("index",))),
}


def check_manifest(manifest: Any, where: str = "manifest.json") -> dict:
    """``manifest`` after checking every field plantain reads; one error naming the first bad one."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
    for key, check in FIELDS.items():
        if key in manifest:
            check(manifest[key], f"{where}: {key}")
    for key, value in manifest.items():
        if key.endswith("_version"):
            STR(value, f"{where}: {key}")
    return manifest


def unit_rows(manifest: dict) -> dict[str, int]:
    """How many rows per layout a run's units.csv has, by its manifest: each captured
    layout's unit count (``layout_info``), per captured step in a trajectory run
    (``heads@step3``). Empty when the manifest records no unit counts."""
    info = manifest.get("layout_info") or {}
    steps = [s.get("index") for s in manifest.get("trajectory") or []] if (manifest.get("steps") or 1) > 1 else []
    out = {}
    for name, lay in info.items():
        if isinstance(lay, dict) and lay.get("units") is not None:
            out.update({f"{name}@step{s}": lay["units"] for s in steps} if steps else {name: lay["units"]})
    return out


def check_unit_rows(path, found: dict[str, int], manifest: dict, run_dir) -> None:
    """A units table read back (``found``: rows per layout) against the manifest's unit
    counts: a table cut short or edited would drop units from whatever reads it silently."""
    for layout, want in unit_rows(manifest).items():
        got = found.get(layout, 0)
        if got != want:
            raise PlantainError(f"{path}: layout {layout!r} has {got} rows, the run has {want} units; rerun "
                                f"`plantain report {run_dir}`")
