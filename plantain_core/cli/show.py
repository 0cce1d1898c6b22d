"""``plantain show NAME``: the resolved spec and its pairs."""

from __future__ import annotations

import click
import toml

from ..plugins import get_registry
from .common import echo_json, json_option, load_catalog, spec_dir_option


@click.command("show")
@click.argument("name")
@json_option
@spec_dir_option
def cli(name, as_json, spec_dirs):
    """Show probe NAME (or a spec file): resolved settings and every pair."""
    spec = load_catalog(spec_dirs).resolve(name)
    pairs = get_registry().get("generator", spec.generator).obj.pairs(spec)
    resolved = spec.as_dict()
    resolved.pop("stimuli")
    listing = [
        {"id": p.id, "a": _stim(p.a), "b": _stim(p.b), **({"meta": p.meta} if p.meta else {})} for p in pairs
    ]
    if as_json:
        echo_json({"file": spec.path, "spec": resolved, "pairs": listing})
        return
    click.echo(f"# {spec.path}")
    click.echo(toml.dumps(resolved).rstrip())
    a_name, b_name = spec.direction
    click.echo(f"\n# {len(pairs)} pairs (A = {a_name}, B = {b_name})")
    for p in listing:
        click.echo(f"\n[{p['id']}]")
        click.echo(f"  A: {_line(p['a'])}")
        click.echo(f"  B: {_line(p['b'])}")
        if "meta" in p:
            click.echo(f"  meta: {p['meta']}")


def _stim(stimulus) -> dict:
    out = {"prompt": stimulus.prompt}
    if stimulus.image is not None:
        out["image"] = stimulus.image.describe()
    return out


def _line(stim: dict) -> str:
    if "image" not in stim:
        return stim["prompt"]
    img = stim["image"]
    what = f"file {img['path']}" if "path" in img else f"generated from {img['prompt']!r} (seed {img['seed']})"
    return f"{stim['prompt']}  | image: {what}"
