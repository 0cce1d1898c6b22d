"""An example third-party plantain plugin.

It ships:

- a spec-only probe (``specs/warmth.toml``, built-in ``text-pair`` generator);
- a generator of its own, ``negation`` (:mod:`plantain_example.negation`): it builds
  pairs from a list of objects rather than from written-out prompts;
- an interpreter of its own, ``sign-balance`` (:mod:`plantain_example.balance`), which
  reads the computed statistics;
- a probe that uses both (``specs/negation.toml``);
- a model family of its own, ``chroma`` (:mod:`plantain_example.chroma`: diffusers'
  ``ChromaPipeline``, a FLUX.1 [schnell] derivative with T5 only and a text attention
  mask), with two model loaders: ``tiny-chroma`` (random weights built in code, offline)
  and ``chroma`` (hub ids like ``lodestones/Chroma1-HD``, or a local ChromaPipeline folder).

The entry point in this package's pyproject.toml (group ``plantain``) is all plantain
needs to find it once the package is installed. Nothing here imports torch: the family
and its loaders import torch and diffusers only when a model is built or run.
"""

import pathlib

from plantain_core import hookimpl


@hookimpl
def plantain_spec_dirs():
    return [pathlib.Path(__file__).parent / "specs"]


@hookimpl
def plantain_register_generators(register):
    from .negation import NegationGenerator

    register("negation", NegationGenerator())


@hookimpl
def plantain_register_interpreters(register):
    from .balance import SignBalance

    register("sign-balance", SignBalance())


@hookimpl
def plantain_register_families(register):
    from .chroma import CHROMA

    register(CHROMA.name, CHROMA)


@hookimpl
def plantain_register_models(register):
    from .chroma import loaders

    for name, loader in loaders().items():
        register(name, loader)
