"""The example plugin's own tests, written with plantain_core.testing as a plugin author would.

Run them after installing the package (``pip install -e examples/plantain-example``):
``python -m pytest examples/plantain-example/tests``.
"""

import os

import numpy as np

from plantain_core import probe
from plantain_core.testing import run_on_tiny

os.environ.setdefault("OMP_NUM_THREADS", "1")


def test_generator_builds_pairs_from_objects():
    p = probe("negation")
    assert p.providers["generator"].distribution == "plantain-example"
    assert [pair.id for pair in p.pairs][:2] == ["red-apple", "glass-of-water"]
    first = p.pairs[0]
    assert first.a.prompt == "A photo of a wooden table with a red apple on it"
    assert first.b.prompt == "A photo of a wooden table with no red apple on it"
    assert first.meta == {"object": "a red apple", "words": 3}


def test_probe_runs_on_tiny_and_the_interpreter_reads_the_statistics(tmp_path):
    run = run_on_tiny("negation", tmp_path / "run", layouts=["heads"], seed=1)
    numbers = run.summary["interpretation"]
    heads = run.units("heads")
    responsive = heads[heads["t"].abs() > 3]
    # the interpreter's counts are the statistics' own
    assert numbers["responsive_units"] == len(responsive)
    assert numbers["larger_under_a"] == int((responsive["t"] > 0).sum())
    assert 0 <= numbers["pairs_with_probe_sign"] <= numbers["pairs"] == 6
    assert "## Interpretation" in run.card_path.read_text() and "### Sign balance" in run.card_path.read_text()
    a, b, units, pair_ids = run.captures("heads")
    assert a.shape == (6, len(units)) and pair_ids[0] == "red-apple"
    np.testing.assert_allclose((a - b).mean(axis=0), heads["mean_diff"], rtol=1e-8)
