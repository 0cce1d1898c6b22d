"""``plantain validate [PATH...]``: check spec files, or every known probe."""

from __future__ import annotations

import pathlib

import click

from ..errors import PlantainError, SpecError
from ..plugins import get_registry
from ..spec.probe_spec import load_spec
from .common import load_catalog, spec_dir_option


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=pathlib.Path))
@spec_dir_option
def cli(paths, spec_dirs):
    """Validate spec files (or all known probes when no PATH is given)."""
    problems: list[str] = []
    checked = 0
    if paths:
        for path in paths:
            checked += 1
            if not path.is_file():
                problems.append(f"{path}: file not found")
                continue
            try:
                load_spec(path, get_registry())
            except SpecError as exc:
                problems += exc.problems
    else:
        for entry in load_catalog(spec_dirs).entries.values():
            checked += 1
            if not entry.ok:
                problems += entry.problems or [f"{entry.path}: {entry.error}"]
    # A plugin that failed to load can hide specs or the generator a spec names: not OK.
    problems += [f"plugin: {f.describe()}" for f in get_registry().failures]
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise PlantainError(f"{len(problems)} problem(s) in {checked} spec file(s)")
    click.echo(f"{checked} spec file(s) OK")
