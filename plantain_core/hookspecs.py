"""The plugin contract: the hooks a plantain plugin may implement.

Every hook takes a ``register`` callback where it supplies things, so the host owns the
storage and records which plugin supplied each name. Implement hooks with
:data:`plantain_core.hookimpl`::

    from plantain_core import hookimpl

    @hookimpl
    def plantain_spec_dirs():
        return [pathlib.Path(__file__).parent / "specs"]

A plugin module must not import torch or diffusers at import time: ``plantain list``
imports every plugin and must stay fast. Import heavy libraries inside the functions
that run a probe.
"""

from __future__ import annotations

import pluggy

PROJECT = "plantain"

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def plantain_register_generators(register):
    """Register stimulus generators.

    Call ``register(name, generator)`` once per generator. A generator turns a spec's
    ``[stimuli]`` table into pairs and is any object with:

    - ``description`` (str): one line for ``plantain plugins``;
    - ``validate(stimuli, spec_dir) -> list[tuple[str, str]]``: the problems of the
      ``[stimuli]`` table as ``(key.path, message)``, empty when it is valid;
    - ``pairs(spec) -> list[plantain_core.Pair]``: the matched pairs of a valid spec.

    :param register: ``register(name: str, generator) -> None``; a name registered by
        two plugins is an error naming both.
    """


@hookspec
def plantain_register_interpreters(register):
    """Register interpreters.

    Call ``register(name, interpreter)`` once per interpreter. An interpreter is any
    object with ``description`` (str) and
    ``interpret(spec, pairs, result) -> plantain_core.Interpretation``: it receives the
    spec, the pairs and the computed statistics and returns extra numbers (written to
    ``summary.json``) and card sections (markdown).

    :param register: ``register(name: str, interpreter) -> None``.
    """


@hookspec
def plantain_register_models(register):
    """Register model loaders.

    Call ``register(name, loader)`` once per loader. A loader is any object with
    ``description`` (str), ``accepts(model: str) -> bool`` (does this loader handle a
    ``--model`` value) and ``load(model, device, dtype, **options)`` returning a
    :class:`plantain_core.LoadedModel` whose ``family`` is its model family. Optional:
    ``transformer_config(model) -> (config dict, source)`` with no weights and no network,
    and ``family``, so ``plantain units MODEL`` can count units offline. The embedded tiny
    models are registered this way too.

    :param register: ``register(name: str, loader) -> None``.
    """


@hookspec
def plantain_register_families(register):
    """Register model families.

    Call ``register(name, family)`` once per family. A family is a
    :class:`plantain_core.ModelFamily` (subclass it): its capture sites, how one probe
    pass and one trajectory step are built from its pipeline, and which stimulus kinds it
    runs. docs/writing-a-model-plugin.md describes every method. A family that misses a
    required method is refused when registered.

    :param register: ``register(name: str, family) -> None``.
    """


@hookspec
def plantain_spec_dirs():
    """Return directories of TOML probe specs this plugin ships.

    :return: a list of :class:`pathlib.Path` (or str); every ``*.toml`` file directly
        inside each directory is one probe spec whose name is the file stem.
    """
