"""Helpers for testing plantain plugins and specs (used by plantain's own tests).

:func:`write_plugin_dist` lays out an importable module plus a ``.dist-info`` folder with
an ``entry_points.txt`` under a directory: put that directory on ``sys.path`` (or
``PYTHONPATH``) and plantain discovers the plugin exactly as an installed package.
"""

from __future__ import annotations

import pathlib
import textwrap

import toml


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
