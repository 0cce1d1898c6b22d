"""``plantain view``: the explorer page loaded in a real browser (headless Chromium).

The page's test hook (see plantain_core/report/explorer.js) clicks a unit through
plotly's own ``plotly_click`` event and hovers it with plotly's hover, then writes what
the page shows into ``<pre id="plantain-state">``; ``--dump-dom`` returns the rendered
DOM. Everything is checked against the run's units.csv and captures read by the API.
Skipped only when Chromium is missing outside CI (``CI=true``: missing is a failure).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest
from click.testing import CliRunner

import plantain_core as pt
from plantain_core.cli import main
from plantain_core.cli.publish import files_to_publish
from plantain_core.report.explorer import script_json
from plantain_core.testing import run_on_tiny

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
STATE = re.compile(r'<pre id="plantain-state" hidden="">(.*?)</pre>', re.S)


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium is installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return BROWSER


def page(browser, path, tmp_path, **fragment) -> tuple[dict, str]:
    """Load ``path`` with the fragment's settings; the page's state and its rendered DOM."""
    url = path.resolve().as_uri() + "#" + urllib.parse.urlencode(fragment, quote_via=urllib.parse.quote)
    proc = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=180)
    found = STATE.search(proc.stdout)
    assert found and found.group(1), f"no page state (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), proc.stdout


def view(*args) -> str:
    result = CliRunner().invoke(main, ["view", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", line.split("=", 1)[1])]


def check_unit(state: dict, run, layout: str, unit: str) -> None:
    """The clicked unit's table, bars, colour and hover label equal the run's files."""
    table = run.units(layout).set_index("unit")
    a, b, units, pair_ids = run.captures(layout)
    u = units.index(unit)
    assert state["clicked"]["unit"] == unit and state["clicked"]["layout"] == layout
    rows = state["table"]
    assert [r[0] for r in rows[1:]] == pair_ids and state["bars"] == len(pair_ids)
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], a[:, u] - b[:, u], rtol=6e-4, atol=1e-12)
    label = {line.split(" = ")[0]: line for line in state["hover"][1:]}
    assert state["hover"][0] == unit
    row = table.loc[unit]
    np.testing.assert_allclose(numbers(label["t"]), [row["t"]], rtol=6e-4)
    np.testing.assert_allclose(numbers(label["d_z"]), [row["d"], row["d_low"], row["d_high"]], rtol=6e-4)
    np.testing.assert_allclose(numbers(label["p_fwer"]) + numbers(label["q"]), [row["p_fwer"], row["q"]], rtol=6e-4)


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    return run_on_tiny("ray", tmp_path_factory.mktemp("view") / "ray", layouts=["heads", "slices16"], seed=2)


def test_a_run_page_has_one_cell_per_unit_and_a_click_shows_the_units_pairs(browser, ray_run, tmp_path):
    path = ray_run.path / "explorer.html"
    assert not path.exists() and "explorer.html" not in files_to_publish(ray_run.path, False)  # run/report: none
    out = view(ray_run.path)
    assert str(path) in out and path.is_file() and "explorer.html" in files_to_publish(ray_run.path, False)
    text = path.read_text(encoding="utf-8")
    assert "https://" not in text.split('<script type="application/json"')[1]  # the data and script fetch nothing
    for layout, metric, column in (("heads", "t", "t"), ("slices16", "d", "d"), ("heads", "t_specific", "t_specific")):
        units = ray_run.units(layout)
        unit = units["unit"].iloc[int(np.nanargmax(np.abs(units["t"].to_numpy())) // 2)]
        state, dom = page(browser, path, tmp_path, layout=layout, metric=metric, click=unit, hover=1)
        assert state["layouts"] == ["heads", "slices16"] and state["slider"] is None
        (panel,) = state["panels"]
        assert panel["drawn"] and panel["layout"] == layout
        assert panel["cells"] == len(units) and panel["finite"] == int(np.isfinite(units[column]).sum())
        assert panel["rows"] == list(dict.fromkeys(units["block"]))
        assert state["clicked"]["z"] == pytest.approx(units.set_index("unit").loc[unit, column], rel=1e-12)
        check_unit(state, ray_run, layout, unit)
    assert 'id="step-box" hidden=""' in dom  # no slider without steps


def test_past_max_values_a_layout_keeps_its_map_and_says_its_values_were_left_out(browser, ray_run, tmp_path):
    heads, slices = (len(ray_run.units(name)) * 25 for name in ("heads", "slices16"))
    view(ray_run.path, "--out", tmp_path / "small.html", "--max-values", heads + slices - 1)
    unit = ray_run.units("slices16")["unit"].iloc[0]
    state, dom = page(browser, tmp_path / "small.html", tmp_path, layout="slices16", click=unit)
    assert state["panels"][0]["cells"] == len(ray_run.units("slices16")) and state["bars"] == 0
    assert state["table"] == [["per-pair values were left out of this page (raise plantain view --max-values)"]]
    assert f"per-pair values left out ({slices} values" in dom
    state, _ = page(browser, tmp_path / "small.html", tmp_path, layout="heads", click=ray_run.units("heads")["unit"].iloc[1],
                    hover=1)
    check_unit(state, ray_run, "heads", ray_run.units("heads")["unit"].iloc[1])  # the first layout fitted


def test_a_trajectory_page_has_one_slider_position_per_captured_step(browser, tmp_path):
    run = run_on_tiny("ray", tmp_path / "traj", layouts=["heads"], steps=4, capture_steps=[0, 2, 3], seed=1)
    view(run.path, "--out", tmp_path / "traj.html")
    assert not (run.path / "explorer.html").exists()
    unit = run.units("heads@step2")["unit"].iloc[5]
    state, dom = page(browser, tmp_path / "traj.html", tmp_path, step=2, click=unit, hover=1)
    assert state["slider"] == {"min": 0, "max": 2, "positions": 3} and state["step"] == 2
    assert re.search(r'<input type="range" id="step" min="0" max="2"', dom)
    assert state["panels"][0]["layout"] == "heads@step2" and state["panels"][0]["cells"] == len(run.units("heads@step2"))
    check_unit(state, run, "heads@step2", unit)
    t0 = run.units("heads@step0").set_index("unit").loc[unit, "t"]
    state, _ = page(browser, tmp_path / "traj.html", tmp_path, click=unit)  # the first step by default
    assert state["step"] == 0 and state["clicked"]["z"] == pytest.approx(t0, rel=1e-12)


def test_a_sweep_page_has_one_panel_per_cell(browser, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('probes = ["ray"]\nmodels = ["tiny"]\nseeds = [0, 1]\nlayouts = ["heads"]\n\n'
                    '[options]\nflips = 16\nsplits = 4\n')
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "sweep"), "--no-figures"])
    assert result.exit_code == 0, result.output
    view(tmp_path / "sweep")
    cells = sorted(p for p in (tmp_path / "sweep").iterdir() if (p / "units.csv").is_file())
    assert len(cells) == 2
    second = pt.load_run(cells[1])
    unit = second.units("heads")["unit"].iloc[3]
    state, dom = page(browser, tmp_path / "sweep" / "explorer.html", tmp_path, panel=1, click=unit, hover=1)
    assert [p["name"] for p in state["panels"]] == [f"seed {s}: {c.name}" for s, c in zip((0, 1), cells)]
    assert all(p["drawn"] and p["cells"] == len(second.units("heads")) for p in state["panels"])
    assert dom.count('class="panel"') == 2 and dom.count('class="group"') == 1 and "ray · tiny" in dom
    check_unit(state, second, "heads", unit)
    abs_t = np.sort(np.abs(np.concatenate([pt.load_run(c).units("heads")["t"].to_numpy() for c in cells])))
    clip = abs_t[int(np.ceil(0.99 * (len(abs_t) - 1)))]  # one colour scale for every panel
    assert [p["zmax"] for p in state["panels"]] == [pytest.approx(clip, rel=1e-12)] * 2


def test_strings_from_the_folder_stay_text(browser, ray_run, tmp_path):
    """A folder name and a block name that are markup are shown as text, never run."""
    folder = tmp_path / "<img src=x onerror=document.body.append('PWNED')>"
    shutil.copytree(ray_run.path, folder)
    csv = folder / "units.csv"
    csv.write_text(csv.read_text().replace(",joint[0],", ',"<b>x</b>&amp;",'))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["model"] = "x</title></script><img src=x onerror=document.body.append('PWNED')>"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    view(folder)
    state, dom = page(browser, folder / "explorer.html", tmp_path)
    assert "<img" not in dom.split("</title>", 1)[1] and "PWNED" not in dom.replace("onerror=document.body.append('PWNED')", "")
    assert state["panels"][0]["name"] == folder.name and state["panels"][0]["rows"][0] == "<b>x</b>&amp;"
    assert "<title>plantain run &lt;img src=x onerror=" in dom and "on x&lt;/title&gt;&lt;/script&gt;&lt;img" in dom
    assert script_json({"k": "</script><!--&"}) == '{"k":"\\u003c/script\\u003e\\u003c!--\\u0026"}'


def test_a_sweep_with_no_complete_cell_is_refused_in_one_line(tmp_path):
    (tmp_path / "sweep.json").write_text('{"cells": {"ray-tiny-seed0": {"status": "pending", "attempts": 0}}}')
    result = CliRunner().invoke(main, ["view", str(tmp_path)])
    assert result.exit_code == 1 and "has no complete cell yet" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "explorer.html").exists()
