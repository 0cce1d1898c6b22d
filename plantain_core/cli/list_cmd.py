"""``plantain list``: every probe the catalog knows, with its provider and status."""

from __future__ import annotations

import click

from .common import echo_json, json_option, load_catalog, spec_dir_option, warn_plugin_failures


def probe_row(entry) -> dict:
    spec = entry.spec
    src = entry.source
    return {
        "name": entry.name,
        "title": spec.title if spec else None,
        "kind": spec.generator if spec else None,
        "interpreter": spec.interpreter if spec else None,
        "pairs": entry.n_pairs,
        "file": str(entry.path),
        "origin": src.origin,
        "plugin": src.provider.plugin if src.provider else None,
        "distribution": src.provider.distribution if src.provider else None,
        "version": src.provider.version if src.provider else None,
        "status": "OK" if entry.ok else "ERROR",
        "error": entry.error,
    }


@click.command("list")
@json_option
@spec_dir_option
def cli(as_json, spec_dirs):
    """List the available probes."""
    catalog = load_catalog(spec_dirs)
    rows = [probe_row(e) for e in sorted(catalog.entries.values(), key=lambda e: e.name)]
    if as_json:
        from ..plugins import get_registry

        failures = [f.as_dict() for f in get_registry().failures]
        echo_json({"probes": rows, "plugin_failures": failures})
        return
    warn_plugin_failures()
    if not rows:
        click.echo("no probes found")
        return
    width = max(len(r["name"]) for r in rows)
    kind_w = max(len(r["kind"] or "-") for r in rows)
    for r in rows:
        provider = r["plugin"] or r["origin"]
        if r["distribution"]:
            provider += f" ({r['distribution']} {r['version']})"
        if r["status"] == "OK":
            click.echo(f"{r['name']:<{width}}  {r['kind']:<{kind_w}}  {r['pairs']:>3} pairs  OK     {provider}  "
                       f"{r['title']}  [{_short(r['file'])}]")
        else:
            click.echo(f"{r['name']:<{width}}  {'-':<{kind_w}}  {'-':>3} pairs  ERROR  {provider}  "
                       f"[{_short(r['file'])}]  {r['error']}")


def _short(path: str) -> str:
    """A spec file relative to the working directory when it lies below it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
