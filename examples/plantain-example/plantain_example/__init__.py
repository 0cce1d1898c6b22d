"""An example third-party plantain plugin.

It ships:

- a spec-only probe (``specs/warmth.toml``, built-in ``text-pair`` generator);
- a generator of its own, ``negation`` (:mod:`plantain_example.negation`): it builds
  pairs from a list of objects rather than from written-out prompts;
- an interpreter of its own, ``sign-balance`` (:mod:`plantain_example.balance`), which
  reads the computed statistics;
- a probe that uses both (``specs/negation.toml``).

The entry point in this package's pyproject.toml (group ``plantain``) is all plantain
needs to find it once the package is installed. Nothing here imports torch.
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
