"""``plantain compare RUN_DIR RUN_DIR...``: overlap and t-map correlation across probes."""

from __future__ import annotations

import click

from .common import echo_json, json_option


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--q", "q_level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="BH q below which a unit counts as significant.")
@json_option
def cli(run_dirs, q_level, as_json):
    """Compare runs of different probes on the same model and layouts."""
    from ..report.compare import compare_runs

    result = compare_runs(run_dirs, q_level)
    if as_json:
        echo_json(result)
        return
    click.echo(f"model {result['model']}; token scope {result['token_scope']}; significant = BH q < {q_level:g}")
    for layout, info in result["layouts"].items():
        click.echo(f"\n{layout}: {info['units']} shared units, {info['significant_in_all']} significant in every run")
        for row in info["pairs"]:
            r = "n/a" if row["t_correlation"] is None else f"{row['t_correlation']:.3f}"
            j = "n/a" if row["jaccard"] is None else f"{row['jaccard']:.3f}"
            click.echo(f"  {row['a']} vs {row['b']}: r(t) = {r}; significant {row['significant_a']} / "
                       f"{row['significant_b']}, both {row['significant_both']} (Jaccard {j})")
