"""``plantain report RUN_DIR``: recompute statistics, result files, card and figures
from a run folder's saved captures (no model needed)."""

from __future__ import annotations

import click

from .options import THRESHOLDS

#: click parameter name -> RunConfig field; ``--seed`` here seeds only flips and splits.
STATS_OPTIONS = {"flips": "flips", "splits": "splits", "seed": "stats_seed", "thresholds": "thresholds"}


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--flips", type=click.IntRange(min=1), default=None,
              help="Sign-flip null size (default: the run's, else 200). Exact enumeration when 2^(N-1) <= flips.")
@click.option("--splits", type=click.IntRange(min=1), default=None,
              help="Random 50/50 splits for split-half r (default: the run's, else 100).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of flips and splits (default: the run's, else 0).")
@click.option("--thresholds", type=THRESHOLDS, default=None, help="|t| thresholds for counts, e.g. 3,5 (default 3,5).")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures (faster).")
def cli(run_dir, no_figures, **stats):
    """Recompute summary.json, units.csv, blocks.csv, README.md and figures of RUN_DIR
    (or of a published run, hf://user/repo, in its downloaded copy)."""
    import pathlib

    from ..rundir.hub import resolve_run_path

    run_dir = str(resolve_run_path(run_dir))
    from ..report.analysis import MANIFEST, analyze_run, read_manifest
    from ..config import config_from_manifest

    config = config_from_manifest(read_manifest(pathlib.Path(run_dir)), str(pathlib.Path(run_dir) / MANIFEST))
    config = config.evolve(**{STATS_OPTIONS[k]: v for k, v in stats.items() if v is not None})
    summary = analyze_run(run_dir, config, figures=True if not no_figures else _kept_figures(run_dir, config))
    echo_summary(summary, run_dir, figures=not no_figures)
    if summary.get("interpreter_error"):
        from ..errors import PlantainError

        raise PlantainError(f"{summary['interpreter_error']}; the files were written without its analyses")


def _kept_figures(run_dir, config) -> bool | str:
    """``--no-figures`` draws none and deletes none: the card links the figures already there
    when they were drawn with these statistics options (flips, splits, seed, thresholds) and
    none otherwise, so no figure on the card shows another null than the card's numbers."""
    import json
    import pathlib

    from ..stats.results import SUMMARY

    try:
        drawn = json.loads((pathlib.Path(run_dir) / SUMMARY).read_text(encoding="utf-8")).get("stats")
    except (OSError, ValueError, AttributeError, RecursionError):
        return False
    return "keep" if drawn == config.stats_options().as_dict() else False


def echo_summary(summary: dict, run_dir, *, figures: bool = True) -> None:
    """A few lines per layout: counts against the null, max |t|, FWER/BH, split-half r."""
    click.echo(f"{summary.get('probe')}: {summary['n_pairs']} pairs, t = mean({' − '.join(summary['direction'])})")
    for name, s in summary["layouts"].items():
        parts = []
        for row in s["thresholds"]:
            ratio = f"{row['ratio']:.1f}x" if row["ratio"] is not None else (
                "inf" if row["ratio_note"] == "null p99 is 0" else f"n/a: {row['ratio_note']}")
            parts.append(f"|t|>{row['threshold']:g}: {row['observed']} (null p99 {row['null_p99']:g}, {ratio})")
        sh = s["split_half"]["median"]
        mx = s["max_abs_t"]
        mx_text = f"{mx:.2f}" if mx is not None else "n/a"
        sh_text = f"{sh:.3f}" if sh is not None else "n/a"
        sig = s["significant"]
        click.echo(f"  {name} ({s['n_units']} units): " + "; ".join(parts) + f"; max |t| {mx_text}")
        click.echo(f"    FWER p<0.05: {sig['p_fwer_lt_0.05']}, BH q<0.05: {sig['q_lt_0.05']}, split-half r: {sh_text}")
    from ..errors import ConfoundWarning, SmallSampleWarning
    from ..report.advisories import advisories

    for category, text in advisories(summary):  # the specificity sentence is the card's: the console keeps to these
        if category in (SmallSampleWarning, ConfoundWarning):
            click.echo(f"  warning: {text}")
    for note in summary.get("notes", []):
        click.echo(f"  note: {note}")
    click.echo(f"wrote summary.json, units.csv, blocks.csv, README.md{', figures/' if figures else ''} in {run_dir}")
