"""``plantain sweep SWEEP.toml``: a grid of runs (probes × models × seeds × ...), on this
machine or a Ray cluster; ``plantain sweep plan SWEEP.toml`` prices it first and
``plantain sweep report DIR`` writes the card across its cells. See docs/sweeps.md."""

from __future__ import annotations

import pathlib
import sys

import click

from .common import debug_param, sigterm_as_interrupt


class SweepGroup(click.Group):
    """``plantain sweep FILE`` runs the sweep; ``plantain sweep plan|report ...`` are subcommands."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group("sweep", cls=SweepGroup, invoke_without_command=False,
             context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Run a sweep file (a grid of runs), or `plan` / `report` one.

    \b
    plantain sweep SWEEP.toml [--out DIR] [--executor local|ray] [--retries N]
    plantain sweep plan SWEEP.toml [--passes-per-second X]
    plantain sweep report DIR
    """


@cli.command("run")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--out", type=str, default=None,
              help="Sweep folder (default: sweeps/<file stem>); one run folder per cell inside.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: cells one after another in this process; ray: Ray actors, one per GPU or --workers CPUs.")
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray workers (default: one per GPU, else one per CPU).")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Extra attempts for a cell that fails (a lost worker is always requeued).")
@click.option("--no-figures", is_flag=True, help="No PNG figures in the cells' folders.")
def run_cmd(sweep_file, out, executor, address, workers, retries, no_figures):
    """Run every cell of SWEEP_FILE not complete yet; resume partial cells."""
    from ..sweep.run import run_sweep
    from ..sweep.execute import SweepOptions

    options = SweepOptions(executor=executor, address=address, workers=workers, retries=retries,
                           figures=not no_figures)
    try:
        with sigterm_as_interrupt():
            result = run_sweep(sweep_file, out, options, say=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        _interrupted(sweep_file, out)
    counts = result["counts"]
    click.echo(f"sweep {result['out']}: {counts['complete']} of {result['cells']} cells complete"
               + (f", {counts['failed']} failed" if counts["failed"] else "")
               + f"; {result['model_loads']} model loads")
    if counts["failed"]:
        click.echo(f"rerun `plantain sweep {sweep_file} --out {result['out']}` to retry the failed cells", err=True)
        sys.exit(1)
    click.echo(f"next: plantain sweep report {result['out']}")


def _interrupted(sweep_file, out) -> None:
    """Ctrl-C or SIGTERM: one line saying what is kept and how to continue; exit 130."""
    import json
    import shlex

    from ..sweep.run import default_sweep_out
    from ..sweep.state import SWEEP_JSON

    folder = pathlib.Path(out) if out is not None else default_sweep_out(sweep_file)
    try:
        cells = json.loads((folder / SWEEP_JSON).read_text(encoding="utf-8"))["cells"]
        done = f"{sum(c['status'] == 'complete' for c in cells.values())} of {len(cells)} cells are complete; "
    except Exception:
        done = ""
    again = shlex.join(["plantain", "sweep", str(sweep_file), "--out", str(folder)])
    click.echo(f"Error: interrupted: {done}a cell cut short keeps the pairs it captured in {folder} and resumes; "
               f"continue with: {again}", err=True)
    raise click.exceptions.Exit(130)


def _rate(ctx, param, value):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a rate; give measured passes per second, e.g. 3.5", ctx, param)
    return value


@cli.command("plan")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--passes-per-second", type=click.FloatRange(min=1e-6), default=None, callback=_rate,
              help="Measured transformer passes per second per device (default: a benchmark figure where one "
                   "exists for the model).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plan_cmd(sweep_file, passes_per_second, as_json):
    """Passes per cell and in total, and device-hours, before any model is loaded."""
    import json

    from ..sweep.plan import format_plan, plan_sweep

    plan = plan_sweep(sweep_file, passes_per_second)
    click.echo(json.dumps(plan, indent=2) if as_json else format_plan(plan))


@cli.command("report")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
def report_cmd(sweep_dir, no_figures):
    """Write SWEEP_DIR/README.md: replication over seeds, probe × probe and model comparisons."""
    from ..sweep.report import report_sweep

    wrote = report_sweep(sweep_dir, figures=not no_figures)
    click.echo(f"wrote {', '.join(wrote)} in {sweep_dir}")


for _command in cli.commands.values():
    _command.params.append(debug_param)
