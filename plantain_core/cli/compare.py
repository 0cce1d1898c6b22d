"""``plantain compare RUN_DIR RUN_DIR...``: overlap and t-map correlation across probes."""

from __future__ import annotations

import click

from .common import echo_json, json_option


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--step", type=click.IntRange(min=0), default=None,
              help="Compare this captured step of trajectory runs (default: every step they share).")
@click.option("--q", "q_level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="BH q below which a unit counts as significant.")
@json_option
def cli(run_dirs, step, q_level, as_json):
    """Compare runs of different probes on the same model and layouts (run folders, or
    hf://user/repo for published runs)."""
    from ..report.compare import compare_runs

    result = compare_runs(run_dirs, q_level, step=step)
    if as_json:
        echo_json(result)
        return
    click.echo(f"model {result['model']}; token scope {result['token_scope']}; FWER hit: p_fwer < 0.05; "
               f"BH hit: q < {q_level:g}")
    for line in table_lines(result["rows"]):
        click.echo(line)


#: (header, row key, format) of the printed table; pt.compare's DataFrame has every key
COLUMNS = (("layout", "layout", "{}"), ("step", "step", "{}"), ("a", "a", "{}"), ("b", "b", "{}"),
           ("units", "units", "{}"), ("pearson_r", "pearson_r", "{:.3f}"), ("spearman_r", "spearman_r", "{:.3f}"),
           ("fwer_a", "fwer_a", "{}"), ("fwer_b", "fwer_b", "{}"), ("fwer_both", "fwer_both", "{}"),
           ("bh_a", "bh_a", "{}"), ("bh_b", "bh_b", "{}"), ("bh_both", "bh_both", "{}"))


def table_lines(rows: list[dict]) -> list[str]:
    """The compare table, one line per row, columns aligned."""
    def cell(value, fmt):
        if value is None:
            return "-"
        if isinstance(value, float) and value != value:
            return "n/a"
        return fmt.format(value)

    table = [[h for h, _, _ in COLUMNS]] + [[cell(r[k], f) for _, k, f in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
