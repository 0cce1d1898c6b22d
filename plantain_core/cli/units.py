"""``plantain units MODEL``: unit counts per layout and per block, with no weights.

The transformer is built on the meta device from its config (a bundled preset for the
published Klein checkpoints, a local folder's ``transformer/config.json``, a cached hub
config, or the tiny model's), so this works offline and instantly for 4B and 9B alike.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import PlantainError


def meta_transformer(model: str):
    """(transformer on the meta device, where its config came from)."""
    import torch
    from diffusers import Flux2Transformer2DModel

    from ..models.loaders import TinyLoader

    if TinyLoader.NAME.fullmatch(model.strip().lower()):
        from ..models import tiny

        config, source = dict(tiny.TRANSFORMER_CONFIG), "embedded tiny model"
    else:
        from ..models.klein import transformer_config

        config, source = transformer_config(model)
    if config.get("_class_name", "Flux2Transformer2DModel") != "Flux2Transformer2DModel":
        raise PlantainError(f"{model!r}: transformer is {config['_class_name']}, not Flux2Transformer2DModel")
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            transformer = Flux2Transformer2DModel(**params)
    except TypeError as exc:
        raise PlantainError(f"{model!r}: transformer config does not fit Flux2Transformer2DModel: {exc}") from None
    return transformer, source


def unit_report(model: str) -> dict[str, Any]:
    from ..models.layouts import LAYOUT_NAMES, describe_blocks, build_layouts

    transformer, source = meta_transformer(model)
    blocks = describe_blocks(transformer)
    layouts = build_layouts(LAYOUT_NAMES, blocks)
    return {
        "model": model,
        "config_source": source,
        "blocks": [
            {"block": b.name, "kind": b.kind, "heads": b.heads, "head_dim": b.head_dim,
             "attention_features": b.attn_dim, "mlp_features": b.mlp_dim}
            for b in blocks
        ],
        "layouts": {name: {**lay.info(), "per_block": lay.per_block()} for name, lay in layouts.items()},
    }


def _summary_lines(report: dict[str, Any]) -> list[str]:
    blocks = report["blocks"]
    joint = [b for b in blocks if b["kind"] == "joint"]
    single = [b for b in blocks if b["kind"] == "single"]
    heads, slices = report["layouts"]["heads"], report["layouts"]["slices16"]
    first = (joint or single)[0]
    lines = [
        f"model: {report['model']} ({report['config_source']}; built on the meta device, no weights)",
        f"blocks: {len(joint)} joint + {len(single)} single; {first['heads']} heads x {first['head_dim']} features"
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
                 + f"; {slices['mlp_units']:,} of them are MLP channels of single blocks, not attention")
    lines += ["", f"{'block':<12}{'heads':>7}{'slices16':>10}{'(MLP)':>8}"]
    hper = {p["block"]: p for p in heads["per_block"]}
    for b in blocks:
        s = per[b["block"]]
        lines.append(f"{b['block']:<12}{hper[b['block']]['units']:>7}{s['units']:>10}{s['mlp_units']:>8}")
    return lines


def _groups(items):
    """Run-length groups of (kind, count) -> [(blocks, count)] for 'N x count' arithmetic."""
    out: list[list] = []
    for kind, count in items:
        if out and out[-1][1] == (kind, count):
            out[-1][0] += 1
        else:
            out.append([1, (kind, count)])
    return [(n, count) for n, (_, count) in out]


@click.command("units")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def cli(model: str, as_json: bool) -> None:
    """Unit counts per layout and per block for MODEL (tiny, a hub id, or a local folder).

    Needs no weights and no network: the transformer is built on the meta device.
    """
    report = unit_report(model)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(_summary_lines(report)))
