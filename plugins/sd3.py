"""Built-in plugin: the Stable Diffusion 3 / 3.5 family, its loader and tiny model,
registered through the same hooks a third-party model plugin uses."""

from __future__ import annotations

from plantain_core import hookimpl


@hookimpl
def plantain_register_models(register):
    from .families.builtin import sd3_loaders

    for name, loader in sd3_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.sd3 import SD3

    register(SD3.name, SD3)
