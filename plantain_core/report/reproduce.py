"""The card's Reproduce section: the commands that redo the run, versions and provenance.

The commands come from the run's :class:`~plantain_core.config.RunConfig` and name the
run folder by its own name, so they work as written from the folder that holds it. A
published card carries no local paths: a spec that came from a file is named by its
file name, a model loaded from a local folder by the folder's name.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Mapping

from ..config import RunConfig
from ..models.loaders import is_local_model
from .markup import md_code, md_text

PARTS = (("spec", "spec"), ("generator", "generator"), ("interpreter", "interpreter"),
         ("model_loader", "model loader"))


def publishable(config: RunConfig, manifest: Mapping[str, Any]) -> tuple[RunConfig, str, list[str]]:
    """The config and probe argument as a card may show them, and notes on what was renamed."""
    notes = []
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), Mapping) else {}
    name = str(spec.get("name") or config.probe)
    providers = manifest.get("providers") if isinstance(manifest.get("providers"), Mapping) else {}
    source = providers.get("spec") if isinstance(providers.get("spec"), Mapping) else {}
    probe = name
    if source.get("plugin") in (None, "local"):
        probe = f"{name}.toml"
        notes.append(f"beside the spec file {md_code(probe)} (sha256 below)")
    model = manifest.get("model") if isinstance(manifest.get("model"), Mapping) else {}
    # the manifest names a local folder only (runs made before it did hold its path)
    if config.model and (model.get("local") is True or is_local_model(config.model)):
        folder = pathlib.PurePath(config.model).name
        notes.append(f"with `--model` the path of the local diffusers folder {md_code(folder)} the run loaded")
        config = config.evolve(model=folder)
    return config, probe, notes


def provenance_lines(manifest: Mapping[str, Any]) -> list[str]:
    providers = manifest.get("providers")
    if not isinstance(providers, Mapping):
        return []
    out = []
    for key, label in PARTS:
        p = providers.get(key)
        if isinstance(p, Mapping):
            dist = f" ({md_text(p.get('distribution'))} {md_text(p.get('version') or '?')})" if p.get("distribution") else ""
            out.append(f"{label}: plugin {md_code(p.get('plugin'))}{dist}")
    return ["Supplied by: " + "; ".join(out) + "."] if out else []


def reproduce_section(summary: Mapping[str, Any], manifest: Mapping[str, Any], config: RunConfig,
                      folder: str) -> list[str]:
    shown, probe, notes = publishable(config, manifest)
    commands = [shown.command(folder, probe=probe), shown.report_command(folder)]
    # shell-quoted, but a quoted word may hold a newline or backticks: the fence outlasts them
    fence = "`" * max(3, 1 + max((len(r) for c in commands for r in re.findall(r"`+", c)), default=0))
    commands = [c.replace("\r", " ").replace("\n", " ") for c in commands]
    out = ["## Reproduce", "", f"From the folder that holds {md_code(folder + '/')}" + "".join(f", {n}" for n in notes)
           + ":", "", fence, *commands, fence, ""]
    versions = {k: v for k, v in manifest.items() if k.endswith("_version") and isinstance(v, str)}
    versions.update({f"{k}": v for k, v in (manifest.get("versions") or {}).items()})
    vtext = md_text(", ".join(f"{k.replace('_version', '')} {v}" for k, v in sorted(versions.items())))
    if vtext:
        out.append(f"Versions: {vtext}; statistics by plantain {summary.get('plantain_version')}.")
    out += provenance_lines(manifest)
    if manifest.get("spec_sha256"):
        out.append(f"Spec sha256: {md_code(manifest['spec_sha256'])}.")
    return out + [""]
