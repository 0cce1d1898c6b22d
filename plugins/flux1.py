"""Built-in plugin: the FLUX.1 families ([dev]/[schnell], Kontext [dev]), their loaders and
tiny models, registered through the same hooks a third-party model plugin uses."""

from __future__ import annotations

from plantain_core import hookimpl


@hookimpl
def plantain_register_models(register):
    from .families.builtin import flux1_loaders

    for name, loader in flux1_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.flux1 import FLUX1, FLUX1_KONTEXT

    register(FLUX1.name, FLUX1)
    register(FLUX1_KONTEXT.name, FLUX1_KONTEXT)
