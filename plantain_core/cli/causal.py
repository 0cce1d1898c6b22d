"""``plantain causal RUN_DIR``: ablate or patch the units a probe selects and measure
how much of the A/B difference in the transformer's output goes with them."""

from __future__ import annotations

import pathlib
import sys

import click

from .options import DOSES, LayoutList, check_device, check_dtype


@click.command("causal")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--top", type=click.IntRange(min=1), default=16, show_default=True,
              help="K: intervene on the top K units by |t|, and by attribution, of each layout (capped at its tested units).")
@click.option("--controls", type=click.IntRange(min=0), default=20, show_default=True,
              help="R: at most this many random unit sets matched per block, per dose (the null; p ≥ 1/(R+1)); drawn "
                   "until p's side of 0.05 is settled.")
@click.option("--mode", type=click.Choice(["ablate", "patch"]), default="ablate", show_default=True,
              help="ablate: replace the units' slices in A and B passes; patch: run A with B's slices.")
@click.option("--ablate-value", type=click.Choice(["mean", "zero"]), default="mean", show_default=True,
              help="What an ablated slice becomes: its mean over the probe's stimuli (per token), or zero.")
@click.option("--doses", type=DOSES, default=None,
              help="Dose-response: numbers of top units to intervene on, e.g. 1,4,16,64 (default: K only; K is always "
                   "included).")
@click.option("--exhaustive", is_flag=True,
              help="The full check: doses 1,4,16,64 (unless --doses) and all R controls at every dose.")
@click.option("--confirm", "rankings", type=click.Choice(["t", "attribution", "both"]), default="t",
              show_default=True, callback=lambda ctx, param, v: ("t", "attribution") if v == "both" else (v,),
              help="Whose top units are tested against matched controls: by |t|, by the attribution screen, or "
                   "both (the other's top units are measured without controls).")
@click.option("--selection", type=click.Choice(["held-out", "same"]), default="held-out", show_default=True,
              help="held-out: select the top units on one half of the pairs and measure them on the other, both ways "
                   "(cross-fitting); same: select and measure on every pair (double-dipped).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the control sets, the pair halves and the bootstrap (default: the run's).")
@click.option("--units", "layouts", type=LayoutList(), default=None,
              help="Layouts to screen and confirm (default: the run's layouts screened, heads confirmed).")
@click.option("--model", default=None, help="Another copy of the run's model (default: the one the run recorded).")
@click.option("--device", default="auto", callback=check_device, show_default=True, help="auto = cuda, then mps, then cpu.")
@click.option("--dtype", default=None, callback=check_dtype, help="bf16, fp16 or fp32 (default: the run's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Stimuli per forward (default: automatic).")
@click.option("--cpu-offload", is_flag=True, help="Offload model parts to CPU between uses (small GPUs).")
@click.option("--no-figures", is_flag=True, help="Skip figures/causal_dose.png.")
@click.option("--no-report", is_flag=True, help="Do not re-render the card (README.md).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def cli(run_dir, no_figures, no_report, no_progress, cpu_offload, **options):
    """Ablate or patch the top units of RUN_DIR's probe; write causal.json and the card's section."""
    from ..causal.check import CausalOptions, run_causal

    data = run_causal(run_dir, CausalOptions(offload=cpu_offload, **options),
                      progress=not no_progress and sys.stderr.isatty(), figures=not no_figures, report=not no_report,
                      status=lambda line: click.echo(f"  {line}", err=True))
    echo_causal(data, run_dir, figures=not no_figures, report=not no_report)


def echo_causal(data: dict, run_dir, *, figures: bool = True, report: bool = True) -> None:
    """One line per layout, ranking and dose: effect, controls, p; then the cost."""
    from ..report.causal_section import rankings_of

    what = ("fraction of the way v_A moved toward v_B" if data["mode"] == "patch"
            else f"share of A/B output separation removed ({data['ablate_value']}-ablation)")
    click.echo(f"{data.get('probe')}: {data['mode']}, {data['n_pairs']} pairs; effect = {what}")
    for name, lay in data["layouts"].items():
        for by, k, doses in rankings_of(lay):
            for d in doses:
                c = d["controls"]
                eff = "n/a" if d["effect"] is None else f"{d['effect']:.3f}"
                drawn = f"n={c['n']}" + (f" of {c['planned']}, stopped early" if c["stopped_early"] else "")
                ctl = (f"controls {c['mean']:.3f}" + (f" ± {c['sd']:.3f}" if c["sd"] is not None else "")
                       + f" ({drawn}), p = {d['p']:.3g}") if c["mean"] is not None and d["p"] is not None else "no controls"
                mark = " *" if d["k"] == k else ""
                click.echo(f"  {name} top {d['k']} by {by}{mark}: effect {eff}; {ctl}")
    for note in data.get("notes") or []:
        click.echo(f"  note: {note}")
    cost = data["cost"]
    click.echo(f"  {cost['unit_sets_run']} of {cost['unit_sets_planned']} planned unit sets measured; "
               f"{cost['total_forward']:,} transformer passes (screen {cost['screen']['forward']}, clean "
               f"{cost['clean']}, interventions {cost['interventions']:,})")
    wrote = "causal.json" + (", figures/causal_dose.png" if figures else "") + (", README.md" if report else "")
    click.echo(f"wrote {wrote} in {run_dir}")
