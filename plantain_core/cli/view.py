"""``plantain view RUN_DIR|SWEEP_DIR``: the interactive explorer page (``explorer.html``)
of a run, or of a sweep's complete cells side by side."""

from __future__ import annotations

import pathlib

import click

from ..errors import PlantainError
from ..report.explorer import EXPLORER, MAX_VALUES


def panels_of(path: pathlib.Path) -> tuple[list, str]:
    """The explorer's panels and page title: one run, or every complete cell of a sweep
    (one row per probe and model, seeds side by side)."""
    from ..api.run_folder import open_run as load_run
    from ..report.explorer import Panel
    from ..sweep.state import SWEEP_JSON

    if (path / SWEEP_JSON).is_file():
        from ..sweep.report import _cells

        cells = sorted(_cells(path), key=lambda c: (c["probe"], c["config"].model, c["config"].seed, c["name"]))
        if not cells:
            raise PlantainError(f"{path} has no complete cell yet: finish the sweep (plantain sweep ... --out {path})")
        panels = []
        for cell in cells:
            config = cell["config"]
            steps = f", {config.steps} steps" if config.steps > 1 else ""
            panels.append(Panel(f"seed {config.seed}{steps}: {cell['name']}", load_run(cell["dir"]),
                                f"{cell['probe']} · {config.model}"))
        return panels, f"plantain sweep {path.resolve().name}"
    run = load_run(path)
    return [Panel(path.resolve().name, run)], f"plantain run {path.resolve().name}: {run.config.probe} on {run.config.model}"


@click.command("view")
@click.argument("path")
@click.option("--out", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help=f"Where to write the page (default: PATH/{EXPLORER}).")
@click.option("--max-values", type=click.IntRange(min=0), default=MAX_VALUES, show_default=True,
              help="Most per-pair A − B values embedded in the page; past it a layout keeps its heatmap only.")
def cli(path, out, max_values):
    """Write one self-contained interactive HTML page of the run (or sweep) folder PATH
    (or a published run: hf://user/repo)."""
    from ..report.explorer import write_explorer
    from ..rundir.hub import resolve_run_path

    path = resolve_run_path(path)
    if not path.is_dir():
        raise PlantainError(f"{path}: not a run or sweep folder")
    panels, title = panels_of(path)
    written = write_explorer(panels, out or path / EXPLORER, title, max_values)
    click.echo(f"wrote {written} ({written.stat().st_size:,} bytes, {len(panels)} run{'s' if len(panels) > 1 else ''}); "
               "open it in a browser, no network needed")
