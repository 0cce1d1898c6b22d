"""Built-in plugin: the Qwen-Image family, its loaders and tiny model, registered through the
same hooks a third-party model plugin uses."""

from __future__ import annotations

from plantain_core import hookimpl


@hookimpl
def plantain_register_models(register):
    from .families.builtin import qwen_image_loaders

    for name, loader in qwen_image_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.qwen_image import QWEN_IMAGE

    register(QWEN_IMAGE.name, QWEN_IMAGE)
