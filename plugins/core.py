"""The built-in plugin: the three stimulus generators, the default interpreter, the FLUX.2
families (Klein and [dev]) with their loaders and tiny models, and the built-in spec
directory. FLUX.1 and SD3 are plugins of their own (``flux1.py``, ``sd3.py``)."""

from __future__ import annotations

import pathlib

from plantain_core import Interpretation, hookimpl


class DefaultInterpreter:
    """Adds nothing: the card's neutral interpretation is written from the numbers."""

    description = "no probe-specific analysis; the card's default interpretation only"

    def interpret(self, spec, pairs, result) -> Interpretation:
        return Interpretation()


@hookimpl
def plantain_register_generators(register):
    from .generators import FixedImageTextPair, ImagePair, TextPair

    register("text-pair", TextPair())
    register("fixed-image-text-pair", FixedImageTextPair())
    register("image-pair", ImagePair())


@hookimpl
def plantain_register_interpreters(register):
    register("default", DefaultInterpreter())


@hookimpl
def plantain_register_models(register):
    from .families.builtin import flux2_loaders

    for name, loader in flux2_loaders().items():
        register(name, loader)


@hookimpl
def plantain_register_families(register):
    from .families.flux2 import FLUX2_DEV, FLUX2_KLEIN

    register(FLUX2_KLEIN.name, FLUX2_KLEIN)
    register(FLUX2_DEV.name, FLUX2_DEV)


@hookimpl
def plantain_spec_dirs():
    import plantain_specs

    return [pathlib.Path(plantain_specs.__file__).parent]
