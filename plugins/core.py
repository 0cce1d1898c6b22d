"""The built-in plugin: the three stimulus generators, the default interpreter, the model
loaders and the built-in spec directory."""

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
    from plantain_core.models.loaders import KleinLoader, TinyLoader

    register("tiny", TinyLoader())
    register("flux2-klein", KleinLoader())


@hookimpl
def plantain_spec_dirs():
    import plantain_specs

    return [pathlib.Path(plantain_specs.__file__).parent]
