"""``plantain units MODEL``: unit counts per layout and per block, with no weights.

The model's loader names its family and its transformer config (a bundled preset for
the published checkpoints, a local folder's ``transformer/config.json``, a cached hub
config, or a tiny model's); the family's transformer class is built on the meta
device from it and its capture sites counted, so this works offline and instantly for
every family and size.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import PlantainError, plugin_call


#: Bounds on a transformer config's whole numbers (it is untrusted: a local file or a
#: plugin's): the largest published models have 60-odd blocks, 48 heads, 15,360 features.
MAX_LAYERS, MAX_HEADS, MAX_FEATURES = 1_000, 4_096, 1 << 20
#: slices16 units summed over blocks: FLUX.2 [dev], the largest preset, has 76,800.
MAX_UNITS = 1_000_000


def meta_transformer(model: str):
    """(transformer on the meta device, where its config came from, its family)."""
    import diffusers
    import torch

    from ..models.lookup import family_for_class
    from ..models.family import guarded
    from ..models import hub
    from ..models.loaders import NoLoader, resolve_loader

    try:
        name, loader = resolve_loader(model)
    except NoLoader:  # a transformer folder or a config file: no loader, a config
        name, loader = None, None
        local = hub.local_pipeline_dir(model)
        if local is not None:
            raise PlantainError(f"MODEL: {local} holds a {hub.folder_pipeline_class(local) or 'unnamed'} pipeline "
                                "(model_index.json), which no model family loads; `plantain plugins` lists the "
                                "families") from None
    if getattr(loader, "family", None) is not None and hasattr(loader, "transformer_config"):
        family = guarded(loader.family, f"model loader {name!r}")
        found = plugin_call(f"model loader {name!r}: transformer_config({model!r})", loader.transformer_config, model)
        if not (isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], dict)
                and isinstance(found[1], str)):
            raise PlantainError(f"model loader {name!r}: transformer_config({model!r}) must return (config dict, "
                                f"where it came from), not {type(found).__name__}")
        config, source = found
    else:
        config, source = hub.transformer_config(model)
        if not isinstance(config, dict):
            raise PlantainError(f"{source}: a transformer config is a JSON object, not {type(config).__name__}")
        family = family_for_class(str(config.get("_class_name", "Flux2Transformer2DModel")))
    expected = family.transformer_class
    if config.get("_class_name", expected) != expected:
        raise PlantainError(f"{model!r}: transformer is {config['_class_name']!r}, not {expected} "
                            f"(model family {family.name})")
    builder = getattr(diffusers, expected, None)
    if not isinstance(builder, type) or not issubclass(builder, torch.nn.Module):
        raise PlantainError(f"model family {family.name!r}: transformer_class {expected!r} is not a diffusers model")
    params = _checked_params(config, source)
    try:
        with torch.device("meta"):  # from_config: keys of a newer diffusers are ignored, as a load would
            transformer = builder.from_config(params)
    except Exception as exc:  # a config that does not describe a model of this class
        raise PlantainError(f"{source}: transformer config does not fit {expected}: {type(exc).__name__}: {exc}") \
            from None
    return transformer, source, family


def _checked_params(config: dict, source: str) -> dict:
    """The config's constructor arguments, every whole number within :data:`MAX_LAYERS`,
    :data:`MAX_HEADS` or :data:`MAX_FEATURES` (a huge count would build for minutes)."""
    params = {k: v for k, v in config.items() if not str(k).startswith("_")}
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        limit = MAX_LAYERS if "layer" in key else MAX_HEADS if "head" in key and "dim" not in key else MAX_FEATURES
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and not -1 <= v <= limit:
                raise PlantainError(f"{source}: {key} = {v} is outside 0..{limit:,}")
    return params


def unit_report(model: str) -> dict[str, Any]:
    from ..models.family import checked_sites
    from ..models.layouts import LAYOUT_NAMES, blocks_of, build_layouts

    transformer, source, family = meta_transformer(model)
    blocks = blocks_of(checked_sites(family, transformer))
    slices = sum((b.attn_dim + b.mlp_dim) // 16 for b in blocks)
    if slices > MAX_UNITS:
        raise PlantainError(f"{source}: {len(blocks)} blocks of {slices:,} 16-feature slices in all is more than "
                            f"{MAX_UNITS:,}; no published model is that large")
    layouts = build_layouts(LAYOUT_NAMES, blocks)
    return {
        "model": model,
        "family": family.name,
        "config_source": source,
        "notes": list(family.unit_notes),
        "blocks": [
            {"block": b.name, "kind": b.kind, "heads": b.heads, "head_dim": b.head_dim,
             "attention_features": b.attn_dim, "mlp_features": b.mlp_dim, "streams": list(b.streams)}
            for b in blocks
        ],
        "layouts": {name: {**lay.info(), "per_block": lay.per_block()} for name, lay in layouts.items()},
    }


def _summary_lines(report: dict[str, Any]) -> list[str]:
    blocks = report["blocks"]
    kinds = list(dict.fromkeys(b["kind"] for b in blocks))
    single = [b for b in blocks if b["kind"] == "single"]
    heads, slices = report["layouts"]["heads"], report["layouts"]["slices16"]
    first = blocks[0]
    lines = [
        f"model: {report['model']} (family {report['family']}; {report['config_source']}; built on the meta device, "
        "no weights)",
        "blocks: " + " + ".join(f"{sum(b['kind'] == k for b in blocks)} {k}" for k in kinds)
        + f"; {first['heads']} heads x {first['head_dim']} features"
        + (f"; single-block MLP {single[0]['mlp_features']:,} features" if single else ""),
        "",
        f"{'layout':<10}{'units':>10}{'MLP units':>12}",
        f"{'heads':<10}{heads['units']:>10,}{heads['mlp_units']:>12,}",
        f"{'slices16':<10}{slices['units']:>10,}{slices['mlp_units']:>12,}",
        "",
        f"heads: {heads['units']:,} true attention heads = "
        + " + ".join(f"{n} x {h}" for n, h in _groups([(b['kind'], b['heads']) for b in blocks])),
    ]
    per = {p["block"]: p for p in slices["per_block"]}
    terms = _groups([(b["kind"], per[b["block"]]["units"]) for b in blocks])
    lines.append(f"slices16: {slices['units']:,} 16-feature slices = " + " + ".join(f"{n} x {u}" for n, u in terms)
                 + (f"; {slices['mlp_units']:,} of them are MLP channels of single blocks, not attention"
                    if slices["mlp_units"] else ""))
    lines += [""] + [f"note: {n}" for n in report["notes"]]
    lines += ["", f"{'block':<12}{'heads':>7}{'slices16':>10}{'(MLP)':>8}"]
    hper = {p["block"]: p for p in heads["per_block"]}
    for b in blocks:
        s = per[b["block"]]
        lines.append(f"{b['block']:<12}{hper[b['block']]['units']:>7}{s['units']:>10}{s['mlp_units']:>8}")
    return lines


def _groups(items):
    """(kind, count) per block -> [(blocks, count)] per distinct (kind, count), in first-seen
    order, for 'N x count' arithmetic (SD3.5 medium interleaves joint and attn2 blocks)."""
    out: dict[tuple, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return [(n, count) for (_, count), n in out.items()]


@click.command("units")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def cli(model: str, as_json: bool) -> None:
    """Unit counts per layout and per block for MODEL (a tiny model, a hub id, or a local folder).

    Needs no weights and no network: the transformer is built on the meta device.
    """
    report = unit_report(model.strip())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(_summary_lines(report)))
