"""``plantain run NAME|SPEC.toml``: capture a probe on a model, then statistics and the card."""

from __future__ import annotations

import contextlib
import pathlib
import re
import shutil
import signal
import threading

import click

from ..errors import PlantainError
from ..plugins import get_registry
from .common import load_catalog, spec_dir_option, warn_plugin_failures
from .options import THRESHOLDS, LayoutList, check_device, check_dtype
from .report import echo_summary

def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", pathlib.Path(model).name if "/" in model else model).strip("-") or "model"


def default_out(name: str, model: str, seed: int) -> pathlib.Path:
    return pathlib.Path("runs") / f"{name}-{_slug(model)}-seed{seed}"


def update_manifest(out: pathlib.Path, **fields) -> None:
    """Add fields to the run's manifest (atomically): the statistics options, so
    ``plantain report`` redoes the same, and the final status."""
    import json

    from ..fsutil import atomic_write_json

    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    atomic_write_json(path, manifest)


@click.command("run")
@click.argument("probe")
@click.option("--model", default=None, help="tiny, a hub id or a local diffusers folder (default: the spec's [model] id).")
@click.option("--revision", default=None, help="Hub revision (default: the spec's, else main).")
@click.option("--device", default="auto", callback=check_device, show_default=True, help="auto = cuda, then mps, then cpu.")
@click.option("--dtype", default=None, callback=check_dtype, help="bf16, fp16 or fp32 (default: bf16 on cuda, fp32 elsewhere).")
@click.option("--units", "layouts", type=LayoutList(), default="heads,slices16", show_default=True,
              help="Unit layouts to capture, comma-separated.")
@click.option("--token-scope", type=click.Choice(["all", "image", "text"]), default="all", show_default=True,
              help="Tokens each unit's RMS covers.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Stimuli per forward (default: automatic).")
@click.option("--height", type=click.IntRange(min=16), default=None, help="Image height (default: model's / spec's).")
@click.option("--width", type=click.IntRange(min=16), default=None, help="Image width (default: model's / spec's).")
@click.option("--flips", type=click.IntRange(min=1), default=200, show_default=True, help="Sign-flip null size.")
@click.option("--splits", type=click.IntRange(min=1), default=100, show_default=True, help="Split-half splits.")
@click.option("--thresholds", type=THRESHOLDS, default="3,5", show_default=True, help="|t| thresholds.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Noise, flips and splits seed.")
@click.option("--out", type=click.Path(path_type=pathlib.Path), default=None,
              help="Run folder (default: runs/<probe>-<model>-seed<seed>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--cpu-offload", is_flag=True, help="Offload model parts to CPU between uses (small GPUs).")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--causal", is_flag=True,
              help="Then run the causal check (plantain causal with its defaults) and add it to the card.")
@spec_dir_option
def cli(probe, model, revision, device, dtype, layouts, token_scope, batch_size, height, width, flips, splits,
        thresholds, seed, out, resume, cpu_offload, no_figures, no_progress, causal, spec_dirs):
    """Run probe PROBE (a name or a spec file): capture, statistics, card."""
    with _sigterm_as_interrupt():
        _run(probe, model, revision, device, dtype, layouts, token_scope, batch_size, height, width, flips,
             splits, thresholds, seed, out, resume, cpu_offload, no_figures, no_progress, causal, spec_dirs)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A scheduler's SIGTERM (preemption, ``kill``) is handled like Ctrl-C: the run is marked
    interrupted and says how to resume, instead of dying with its manifest still 'running'."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(probe, model, revision, device, dtype, layouts, token_scope, batch_size, height, width, flips, splits,
         thresholds, seed, out, resume, cpu_offload, no_figures, no_progress, causal, spec_dirs):
    from ..analysis import analyze_run
    from ..runner import run_probe

    for name, value in (("--height", height), ("--width", width)):
        if value is not None and value % 16:
            raise click.BadParameter(f"{value} is not a multiple of 16", param_hint=name)
    warn_plugin_failures()  # a broken plugin is the likely cause of an unknown name below
    spec = load_catalog(spec_dirs).resolve(probe)
    generator = get_registry().get("generator", spec.generator)
    try:
        pairs = generator.obj.pairs(spec)
    except Exception as exc:  # validation built them once; a plugin that fails now is still named
        raise PlantainError(f"generator {spec.generator!r} from plugin {generator.provider.label()} failed to "
                            f"build the pairs of {spec.path or spec.name}: {type(exc).__name__}: {exc}") from None
    get_registry().get("interpreter", spec.interpreter)  # fail before any work
    model = model or spec.model.id
    # The spec's size belongs to the spec's model: another --model keeps its own default.
    spec_size = (spec.model.height, spec.model.width) if model == spec.model.id else (None, None)
    out = out or default_out(spec.name, model, seed)
    created = not out.exists()
    if not created and not out.is_dir():
        raise PlantainError(f"--out {out} is a file, not a folder; choose another --out")
    if not created and any(out.iterdir()) and not resume:
        raise PlantainError(f"--out {out} exists and is not empty; pass --resume to continue it or choose another --out")
    if resume and not (out / "manifest.json").is_file():
        what = "does not exist" if created else "holds no plantain run (no manifest.json)"
        raise PlantainError(f"--resume: {out} {what}; nothing to resume")
    try:
        if causal:  # load once for both the probe passes and the intervention passes
            from ..models.loaders import load_model

            pinned = revision or (spec.model.revision if model == spec.model.id else None)
            model = load_model(model, device, dtype, revision=pinned, offload=cpu_offload)
        run_probe(
            spec, pairs, out, model=model, revision=revision, device=device, dtype=dtype,
            layouts=layouts, batch_size=batch_size, seed=seed, token_scope=token_scope,
            height=height or spec_size[0], width=width or spec_size[1], resume=resume,
            progress=not no_progress, offload=cpu_offload,
        )
        update_manifest(out, flips=flips, splits=splits, seed=seed, thresholds=list(thresholds))
        summary = analyze_run(out, flips=flips, splits=splits, seed=seed, thresholds=thresholds,
                              figures=not no_figures)
    except BaseException as exc:
        # Leave nothing half-written: a run that failed before capturing anything is removed.
        if created and out.exists() and not any((out / "captures").glob("*.npz")):
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            _interrupted(probe, out)
        raise
    error = summary.get("interpreter_error")
    if error:
        # The statistics, result files and card are written; the plugin's analyses are not.
        update_manifest(out, status="failed", error=error)
        echo_summary(summary, out, figures=not no_figures)
        raise PlantainError(f"{error}; the run is marked failed (statistics, result files and card were written "
                            f"without its analyses). Fix the plugin, then: plantain run {probe} --out {out} --resume "
                            f"(and the same options)")
    update_manifest(out, status="complete")
    echo_summary(summary, out, figures=not no_figures)
    if causal:
        from ..causal import run_causal
        from .causal import echo_causal

        data = run_causal(out, model=model, device=device, dtype=dtype, batch_size=batch_size,
                          offload=cpu_offload, progress=not no_progress, figures=not no_figures)
        echo_causal(data, out, figures=not no_figures)


def _interrupted(probe: str, out: pathlib.Path):
    """Ctrl-C: one line saying what was kept and how to continue; exit 130, no traceback."""
    if not (out / "manifest.json").is_file():
        click.echo("Error: interrupted before any pair was captured; nothing was kept", err=True)
        raise click.exceptions.Exit(130)
    import json

    import numpy as np

    try:  # what --resume will reuse: pairs done in every layout (a layout not yet written has none)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        done = np.ones(len(manifest["pair_ids"]), dtype=bool)
        for name in manifest["layouts"]:
            path = out / "captures" / f"{name}.npz"
            if not path.is_file():
                done[:] = False
                continue
            with np.load(path, allow_pickle=False) as z:
                done &= z["done"].astype(bool)
    except Exception:
        done = None
    count = f"{int(done.sum())} of {done.size} pairs are" if done is not None else "the captures are"
    click.echo(f"Error: interrupted: {count} captured and kept in {out}; continue with: "
               f"plantain run {probe} --out {out} --resume (and the same options)", err=True)
    raise click.exceptions.Exit(130)
