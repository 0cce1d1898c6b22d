"""``plantain run NAME|SPEC.toml``: capture a probe on a model, then statistics and the card."""

from __future__ import annotations

import pathlib
import sys
import warnings

import click

from ..config import RunConfig
from .common import given_options, sigterm_as_interrupt, spec_dir_option, warn_plugin_failures
from .options import THRESHOLDS, LayoutList, check_device, check_dtype, check_size
from .report import echo_summary

#: click parameter name -> RunConfig field, for the options that make the run configuration.
CONFIG_OPTIONS = {"model": "model", "revision": "revision", "device": "device", "dtype": "dtype", "layouts": "layouts",
                  "token_scope": "token_scope", "batch_size": "batch_size", "height": "height", "width": "width",
                  "flips": "flips", "splits": "splits", "thresholds": "thresholds", "seed": "seed",
                  "cpu_offload": "offload", "length_control": "length_control", "steps": "steps",
                  "capture_steps": "capture_steps", "guidance": "guidance", "tfce": "tfce",
                  "allow_outside_images": "allow_outside_images", "compile": "compile",
                  "capture_method": "capture_method", "attention_backend": "attention_backend"}


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
@click.option("--height", type=click.IntRange(min=16), default=None, callback=check_size,
              help="Image height, a multiple of 16 (default: the spec's, else the model's).")
@click.option("--width", type=click.IntRange(min=16), default=None, callback=check_size,
              help="Image width, a multiple of 16 (default: the spec's, else the model's).")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Denoising steps: 1 is one pass at pure noise (the seed protocol); K > 1 runs the pipeline's loop.")
@click.option("--capture-steps", default=None,
              help="Step indices to capture with --steps K, comma-separated, 0 to K-1 (default: all).")
@click.option("--guidance", type=float, default=1.0, show_default=True,
              help="Guidance scale of the loop (above 1: CFG with the empty prompt, on models that are not distilled).")
@click.option("--tfce", is_flag=True,
              help="With --steps K: also TFCE along the captured steps (MNE's definition), a FWER p per unit and step.")
@click.option("--flips", type=click.IntRange(min=1), default=200, show_default=True, help="Sign-flip null size.")
@click.option("--splits", type=click.IntRange(min=1), default=100, show_default=True, help="Split-half splits.")
@click.option("--thresholds", type=THRESHOLDS, default="3,5", show_default=True, help="|t| thresholds.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Noise, flips and splits seed.")
@click.option("--out", type=click.Path(path_type=pathlib.Path), default=None,
              help="Run folder (default: runs/<probe>-<model>-seed<seed>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out with its recorded options (starts it when --out is new or empty).")
@click.option("--cpu-offload", is_flag=True, help="Offload model parts to CPU between uses (small GPUs).")
@click.option("--length-control", is_flag=True,
              help="Also run the length placebo: pairs in which only the prompt length differs (RUN_DIR/placebo).")
@click.option("--allow-outside-images", is_flag=True,
              help="Read image files from outside the spec's folder (absolute, ~ or .. paths); refused by default.")
@click.option("--compile", is_flag=True,
              help="torch.compile the transformer with the capture inside the graph (first batches compile).")
@click.option("--capture-method", type=click.Choice(["sumsq-v1", "norm-v2"]), default="sumsq-v1", show_default=True,
              help="How the per-unit sums are reduced: sumsq-v1 (reference) or norm-v2 (fused vector_norm).")
@click.option("--attention-backend", default=None,
              help="diffusers' attention dispatcher backend, e.g. native, _native_math, flash (default: the model's).")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--causal", is_flag=True,
              help="Then run the causal check (plantain causal with its defaults) and add it to the card.")
@spec_dir_option
def cli(**options):
    """Run probe PROBE (a name or a spec file): capture, statistics, card."""
    from ..execute import build_config

    given = {CONFIG_OPTIONS[k]: v for k, v in given_options(options).items() if k in CONFIG_OPTIONS}
    config = build_config(options["probe"], given, options["out"], options["resume"])
    with sigterm_as_interrupt():
        _run(config, options)


def _run(config: RunConfig, options: dict) -> None:
    from ..execute import InterpreterFailed, default_out, execute
    from ..spec.probes import load_probe
    from ..capture.run_records import PromptTruncated

    warn_plugin_failures()  # a broken plugin is the likely cause of an unknown name below
    probe = load_probe(config.probe, options["spec_dirs"])
    model = None
    if options["causal"]:  # load once for both the probe passes and the intervention passes
        from ..models.loaders import load_model

        pinned = config.for_spec(probe.spec)
        model = load_model(pinned.model, config.device, config.dtype, revision=pinned.revision, offload=config.offload)
    out = options["out"] or default_out(probe.name, config.model or probe.spec.model.id, config.seed)
    # a bar only for a person watching: logs and pipes get no carriage-return frames
    figures, progress = not options["no_figures"], not options["no_progress"] and sys.stderr.isatty()
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", PromptTruncated)
            outcome = execute(probe, config, out, resume=options["resume"], progress=progress, figures=figures,
                              model=model)
        for w in said:
            if issubclass(w.category, PromptTruncated):
                click.echo(f"warning: {w.message}", err=True)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except KeyboardInterrupt:
        _interrupted(config, out)
    except InterpreterFailed as exc:
        echo_summary(exc.outcome.summary, out, figures=figures)
        raise
    if not outcome.main:  # another process of a split run: the main one reports
        return
    echo_summary(outcome.summary, out, figures=figures)
    if options["causal"]:
        from ..causal.check import CausalOptions, run_causal
        from .causal import echo_causal

        options = CausalOptions(device=config.device, dtype=config.dtype, batch_size=config.batch_size,
                                offload=config.offload)
        data = run_causal(out, options, model=model, progress=progress, figures=figures,
                          status=lambda line: click.echo(f"  {line}", err=True))
        echo_causal(data, out, figures=figures)


def _interrupted(config: RunConfig, out: pathlib.Path):
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
    try:  # the recorded config pins what the run resolved (dtype, size, batch size)
        from ..config import config_from_manifest

        config = config_from_manifest(manifest).evolve(probe=config.probe)
    except Exception:
        pass
    count = f"{int(done.sum())} of {done.size} pairs are" if done is not None else "the captures are"
    click.echo(f"Error: interrupted: {count} captured and kept in {out}; continue with: "
               f"{config.command(out, resume=True)}", err=True)
    raise click.exceptions.Exit(130)
