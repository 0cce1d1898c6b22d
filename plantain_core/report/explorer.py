"""``explorer.html``: one self-contained, interactive page of a run or a sweep.

Block × unit heatmaps of t, d_z and the specific t per layout (and per captured step of a
trajectory run), a hover label per unit (t, d_z with its interval, p_fwer, q), and a
click that shows the unit's per-pair A − B values. plotly.js is inlined, so the page
needs no network when it is opened (a published run's page works offline and keeps
working when a CDN moves); the page's own script (``explorer.js``) only assembles
plotly traces and wires the controls.

Everything read from a run folder is untrusted: it reaches the page only as JSON inside
a ``<script type="application/json">`` element with ``<``, ``>`` and ``&`` escaped, the
script writes strings with ``textContent`` and escapes the ones plotly renders. The runs
are read through :class:`plantain_core.api.Run` (passed in by the caller: this module
does not import the API), so the folders are checked as every other reader checks them.
"""

from __future__ import annotations

import html
import importlib.resources
import json
import math
import pathlib
from typing import Any, Iterable

import attrs
import numpy as np

from ..errors import PlantainError
from ..rundir.fsutil import atomic_write_text

EXPLORER = "explorer.html"
#: units.csv columns the page shows (hover and colour); the check columns may be absent.
COLUMNS = ("t", "d", "d_low", "d_high", "p_fwer", "q", "t_specific", "p_fwer_specific")
#: Per-pair A − B values embedded at most, over all panels and layouts; past this a layout's
#: heatmap stays but its per-pair values are left out (a sweep of large slices16 runs would
#: otherwise make a page of hundreds of MB that no browser opens).
MAX_VALUES = 4_000_000
#: Significant digits of the embedded per-pair values (the page shows 4).
DIGITS = 7


@attrs.frozen
class Panel:
    """One heatmap panel: a run and how the page labels it. ``group``: the row of panels it
    sits in (a sweep: probe · model, seeds side by side)."""

    name: str
    run: Any
    group: str = ""


def _num(value: float, digits: int | None = None) -> float | None:
    """A JSON number, or None for NaN/inf (JSON has neither)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}") if digits else value


def _split(layout: str) -> tuple[str, int | None]:
    base, _, step = layout.partition("@step")
    return base, (int(step) if step else None)


def layout_data(run, layout: str, budget: list[int]) -> dict[str, Any]:
    """One layout of one run: units, their heatmap cell (row = block in capture order,
    column = position within the block), the statistics columns and, while ``budget[0]``
    (values left) allows, every unit's per-pair A − B."""
    table = run.units(layout)
    units = [str(u) for u in table["unit"]]
    rows: dict[str, int] = {}
    filled: dict[str, int] = {}
    row, col = [], []
    for block in table["block"]:
        block = str(block)
        row.append(rows.setdefault(block, len(rows)))
        col.append(filled.get(block, 0))
        filled[block] = col[-1] + 1
    data: dict[str, Any] = {"units": units, "blocks": list(rows), "row": row, "col": col}
    for name in COLUMNS:
        if name in table.columns:
            data[name] = [_num(v) for v in table[name].to_numpy(dtype=float)]
    a, b, cap_units, pair_ids = run.captures(layout)
    if list(cap_units) != units:
        raise PlantainError(f"{run.path}: captures of {layout!r} list other units than units.csv; run "
                            f"plantain report {run.path}")
    diff = np.asarray(a - b, dtype=np.float64)
    if diff.size <= budget[0]:
        budget[0] -= diff.size
        data["pairs"] = [str(p) for p in pair_ids]
        data["diff"] = [[_num(v, DIGITS) for v in column] for column in diff.T]
    else:
        data["omitted"] = int(diff.size)
    return data


def panel_data(panel: Panel, budget: list[int]) -> dict[str, Any]:
    run = panel.run
    config = run.config
    try:
        direction = [str(x) for x in run.summary.get("direction", ())][:2]
    except PlantainError:
        direction = []
    return {"name": panel.name, "group": panel.group, "probe": str(config.probe), "model": str(config.model),
            "seed": config.seed, "direction": direction,
            "layouts": {name: layout_data(run, name, budget) for name in run.layouts}}


def explorer_data(panels: Iterable[Panel], title: str, max_values: int = MAX_VALUES) -> dict[str, Any]:
    """The page's data: panels, the union of their layouts (base names, capture order)
    and captured steps (empty for single-step runs)."""
    budget = [int(max_values)]
    out = [panel_data(p, budget) for p in panels]
    if not out:
        raise PlantainError("nothing to show: no complete run")
    layouts: dict[str, None] = {}
    steps: set[int] = set()
    for p in out:
        for name in p["layouts"]:
            base, step = _split(name)
            layouts[base] = None
            if step is not None:
                steps.add(step)
    return {"title": title, "panels": out, "layouts": list(layouts), "steps": sorted(steps), "max_values": max_values}


def script_json(obj: Any) -> str:
    """``obj`` as JSON that cannot end the ``<script>`` element it sits in or start markup."""
    text = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _asset(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render(data: dict[str, Any]) -> str:
    """The HTML page: plotly.js, the data, the page script."""
    from plotly.offline import get_plotlyjs

    return PAGE.format(title=html.escape(data["title"]), style=_asset("explorer.css"), plotly=get_plotlyjs(),
                       data=script_json(data), script=_asset("explorer.js"))


def write_explorer(panels: Iterable[Panel], out: str | pathlib.Path, title: str,
                   max_values: int = MAX_VALUES) -> pathlib.Path:
    """Write the explorer page of ``panels`` to ``out`` (atomically) and return its path."""
    text = render(explorer_data(panels, title, max_values))
    try:
        return atomic_write_text(out, text)
    except OSError as exc:
        raise PlantainError(f"cannot write {out}: {exc.strerror or exc}; choose another place with --out") from None


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
<script>{plotly}</script>
</head>
<body>
<header>
<h1 id="title"></h1>
<p id="subtitle"></p>
<div class="controls">
<label>layout <select id="layout"></select></label>
<label>colour <select id="metric"></select></label>
<label id="step-box" hidden>step <input type="range" id="step" min="0" max="0" step="1" value="0">
<output id="step-label"></output></label>
</div>
<p class="hint">Hover a cell for its statistics; click it for its per-pair A − B values. Circles mark FWER p &lt; 0.05.</p>
</header>
<main id="panels"></main>
<section id="detail">
<h2 id="detail-title">Click a unit to see its per-pair A − B values</h2>
<div id="detail-plot"></div>
<table id="detail-table"></table>
</section>
<pre id="plantain-state" hidden></pre>
<script type="application/json" id="plantain-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
