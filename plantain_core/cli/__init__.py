"""The ``plantain`` command line: one module per command, imported only when used.

Lazy loading keeps ``plantain list`` from importing matplotlib or torch. Every
:class:`~plantain_core.errors.PlantainError` becomes one ``Error: ...`` message on
stderr and a non-zero exit, with no traceback.

The top of the house: a command may import any package of plantain_core; nothing in
plantain_core imports ``cli`` (``__main__`` aside).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback

import click

from .. import __version__
from ..errors import PlantainError
from ..plugins import debug_mode
from .common import debug_param

#: command name -> module in this package defining a click command named ``cli``.
COMMANDS = {
    "list": "list_cmd",
    "show": "show",
    "validate": "validate",
    "plugins": "plugins_cmd",
    "units": "units",
    "run": "run",
    "report": "report",
    "compare": "compare",
    "causal": "causal",
    "new": "new",
    "publish": "publish",
    "sweep": "sweep",
    "view": "view",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name, mod in COMMANDS.items() if importlib.util.find_spec(f"{__name__}.{mod}")]

    def get_command(self, ctx, name):
        mod = COMMANDS.get(name)
        if mod is None or importlib.util.find_spec(f"{__name__}.{mod}") is None:
            return None
        cmd = importlib.import_module(f"{__name__}.{mod}").cli
        if not any(p.name == "debug" for p in cmd.params):
            cmd.params.append(debug_param)
        return cmd

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and self.get_command(ctx, name) is None and not name.startswith("-"):
            from ..errors import suggest

            raise click.UsageError(f"no such command {name!r}{suggest(name, self.list_commands(ctx))}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (PlantainError, MemoryError) as exc:
            if debug_mode():
                traceback.print_exception(exc, file=sys.stderr)
            if isinstance(exc, MemoryError):  # the machine's, wherever it struck: no traceback either
                raise click.ClickException(f"out of memory (MemoryError{f': {exc}' if str(exc) else ''}); try a "
                                           "smaller --batch-size or --height/--width") from None
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plantain")
def main():
    """Paired-stimulus, per-unit attention probes for diffusion transformers (FLUX.2, FLUX.1, SD3, Qwen-Image,
    Z-Image, PixArt-Sigma, and the families plugins add)."""


main.params.append(debug_param)
