"""Helpers for testing plantain plugins and specs in pytest (plantain's own tests use them too).

- :func:`run_on_tiny`: run a probe (a name or a spec file) on the embedded ``tiny`` model
  into a folder and get the :class:`~plantain_core.api.Run` back;
- :func:`plugins_registered`: make plugin modules that are not installed (yet) visible,
  beside the installed ones, for the block;
- :func:`write_plugin_dist`: lay out a module plus a ``.dist-info`` so entry-point
  discovery sees it exactly as an installed package (put its folder on ``sys.path``);
- :func:`spec_data` / :func:`write_spec`: a valid spec as a dict or a file;
- :func:`prove_family`: the conformance kit: a model family's captures against hooks on its
  capture sites inside its own pipeline's ``__call__`` (1 and K steps, with and without CFG,
  each kind it runs), a :class:`ConformanceReport` of the max relative difference per layout
  and step (:mod:`plantain_core.capture.conformance`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import textwrap
from typing import Any

import toml

from .capture.conformance import TOLERANCE, Case, ConformanceError, ConformanceReport, prove_family

__all__ = ["FAST", "TOLERANCE", "Case", "ConformanceError", "ConformanceReport", "plugins_registered", "prove_family",
           "run_on_tiny", "spec_data", "write_plugin_dist", "write_spec"]

#: Fast statistics for tests: small null and split counts (the numbers stay exact for a seed).
FAST = {"flips": 50, "splits": 10}


def run_on_tiny(probe: str | os.PathLike, out: str | os.PathLike, *, spec_dirs=(), figures: bool = False,
                **config: Any):
    """Run ``probe`` on ``tiny`` (CPU, fp32) into ``out`` and return the ``Run``.

    ``config`` are run options as for :func:`plantain_core.run` (``layouts``, ``seed``,
    ...); flips and splits default to :data:`FAST`. Figures are off unless asked.
    """
    from .api import probe as load_probe, run

    options = {"model": "tiny", "device": "cpu", **FAST, **config}
    return run(load_probe(probe, spec_dirs=spec_dirs), out=out, progress=False, figures=figures, **options)


@contextlib.contextmanager
def plugins_registered(**plugins: Any):
    """``with plugins_registered(mine=my_plugin_module): ...``: the installed plugins plus
    these, registered under the given names, for the block."""
    from .plugins import load_registry, using_registry

    with using_registry(load_registry(extra=plugins.items())) as registry:
        yield registry


def write_plugin_dist(
    root: str | pathlib.Path,
    module: str,
    source: str,
    *,
    entry_name: str | None = None,
    distribution: str | None = None,
    version: str = "0.1.0",
) -> pathlib.Path:
    """Write ``root/<module>.py`` and ``root/<distribution>-<version>.dist-info``."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entry_name = entry_name or module
    distribution = distribution or module.replace("_", "-")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[plantain]\n{entry_name} = {module}\n")
    return root


def spec_data(name: str, generator: str = "text-pair", n_pairs: int = 3, **overrides) -> dict:
    """A valid spec as a dict (override any key); text-pair prompts differ per pair."""
    data = {
        "schema": 1,
        "name": name,
        "title": f"{name} test probe",
        "generator": generator,
        "direction": ["A", "B"],
        "stimuli": {
            "pairs": [{"id": f"p{i}", "a": f"a red cube number {i}", "b": f"a blue sphere number {i}"} for i in range(n_pairs)]
        },
    }
    if generator == "fixed-image-text-pair":
        data["stimuli"]["reference_prompt"] = "a grey object on a grey background"
    if generator == "image-pair":
        data["stimuli"] = {
            "pairs": [{"id": f"p{i}", "a": f"a red cube number {i}", "b": f"a broken red cube number {i}"} for i in range(n_pairs)]
        }
    data.update(overrides)
    return data


def write_spec(directory: str | pathlib.Path, name: str, data: dict | None = None, **overrides) -> pathlib.Path:
    """Write ``directory/<name>.toml`` from :func:`spec_data` (or ``data``)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(toml.dumps(data if data is not None else spec_data(name, **overrides)))
    return path
