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

    Call ``register(name, loader)`` once per model family. A loader is any object with
    ``description`` (str), ``accepts(model: str) -> bool`` (does this loader handle a
    ``--model`` value) and ``load(model, device, dtype, **options)`` returning a loaded
    pipeline bundle. The embedded ``tiny`` model is registered this way too.

    :param register: ``register(name: str, loader) -> None``.
    """


@hookspec
def plantain_spec_dirs():
    """Return directories of TOML probe specs this plugin ships.

    :return: a list of :class:`pathlib.Path` (or str); every ``*.toml`` file directly
        inside each directory is one probe spec whose name is the file stem.
    """
