"""Built-in plugin: the PixArt-Sigma family, its loaders and tiny model, registered through the
same hooks a third-party model plugin uses."""

from __future__ import annotations

from plantain_core import hookimpl


@hookimpl
def plantain_register_models(register):
    from .families.builtin import pixart_loaders

    for name, loader in pixart_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.pixart import PIXART_SIGMA

    register(PIXART_SIGMA.name, PIXART_SIGMA)
