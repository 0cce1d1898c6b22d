"""Options and helpers shared by several commands."""

from __future__ import annotations

import json

import click

from ..catalog import Catalog
from ..plugins import get_registry

spec_dir_option = click.option(
    "--spec-dir",
    "spec_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Extra directory of probe specs (repeatable); searched after PLANTAIN_SPEC_PATH.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def load_catalog(spec_dirs=()) -> Catalog:
    return Catalog.build(get_registry(), spec_dirs)


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def warn_plugin_failures() -> None:
    """One line per broken plugin on stderr, so a missing probe has a visible cause."""
    for f in get_registry().failures:
        click.echo(f"warning: plugin {f.plugin!r} failed at {f.stage}: {f.error}", err=True)
