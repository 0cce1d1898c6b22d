"""``plantain plugins``: loaded plugins, their hooks, versions and load errors."""

from __future__ import annotations

import click

from ..plugins import KINDS, debug_mode, get_registry
from .common import echo_json, json_option


@click.command("plugins")
@json_option
def cli(as_json):
    """List plugins, the hooks they implement and what they supplied."""
    reg = get_registry()
    rows = []
    for name, info in reg.plugins.items():
        supplied = {
            kind: sorted(n for n, e in reg.table(kind).items() if e.provider.plugin == name) for kind in KINDS
        }
        supplied["spec_dirs"] = [str(d) for d, p in reg.spec_dirs if p.plugin == name]
        rows.append({**info.provider.as_dict(), "status": info.status, "hooks": info.hooks, "supplies": supplied})
    if as_json:
        echo_json({"plugins": rows, "failures": [f.as_dict() for f in reg.failures]})
        return
    for r in rows:
        click.echo(f"{r['plugin']}  {r['distribution'] or '?'} {r['version'] or '?'}  [{r['status']}]  {r['module']}")
        click.echo(f"    hooks: {', '.join(r['hooks']) or '-'}")
        for kind, names in r["supplies"].items():
            if names:
                click.echo(f"    {kind}: {', '.join(names)}")
    for f in reg.failures:
        click.echo(f"ERROR {f.describe()}")
        if debug_mode() and f.traceback:
            click.echo(f.traceback.rstrip())
