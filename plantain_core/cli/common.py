"""Options and helpers shared by several commands."""

from __future__ import annotations

import contextlib
import json
import signal
import threading

import click

from ..plugins import DEBUG_ENV, debug_mode, get_registry
from ..spec.catalog import Catalog

spec_dir_option = click.option(
    "--spec-dir",
    "spec_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Extra directory of probe specs (repeatable); searched after PLANTAIN_SPEC_PATH.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _set_debug(ctx, param, value):
    if value:
        ctx.find_root().meta[DEBUG_ENV] = True
    return value


#: Added to the group and to every command: ``plantain --debug run ...`` or ``plantain run ... --debug``.
debug_param = click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                           help=f"Show tracebacks of plugin and other errors (also {DEBUG_ENV}=1).")


def given_options(options: dict) -> dict:
    """The options of the current command that the user gave (command line or environment),
    not click's defaults."""
    ctx = click.get_current_context()
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) in given}


def load_catalog(spec_dirs=()) -> Catalog:
    return Catalog.build(get_registry(), spec_dirs)


def echo_json(obj) -> None:
    from ..stats.results import json_safe

    click.echo(json.dumps(json_safe(obj), indent=2, allow_nan=False))


def warn_plugin_failures() -> None:
    """One line per broken plugin on stderr (with its traceback under --debug), so a
    missing probe has a visible cause."""
    for f in get_registry().failures:
        click.echo(f"warning: {f.describe()}", err=True)
        if debug_mode() and f.traceback:
            click.echo(f.traceback.rstrip(), err=True)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """A scheduler's SIGTERM (preemption, ``kill``) is handled like Ctrl-C: a run (or a
    sweep's running cell) is marked interrupted and says how to resume, instead of dying
    with its manifest still 'running'."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
