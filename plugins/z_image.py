"""Built-in plugin: the Z-Image family, its loaders and tiny model, registered through the
same hooks a third-party model plugin uses."""

from __future__ import annotations

from plantain_core import hookimpl


@hookimpl
def plantain_register_models(register):
    from .families.builtin import z_image_loaders

    for name, loader in z_image_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.z_image import Z_IMAGE

    register(Z_IMAGE.name, Z_IMAGE)
