"""Causal check: a planted mechanism in the tiny transformer is found by ablation and
patching, matched random heads are not; hooks go away; `plantain causal` on a run folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plantain_core.capture.hooks import SliceEditor, capture_units, unit_features
from plantain_core.causal.effects import Intervention, Passes, measure_effects
from plantain_core.stats.engine import top_by_abs_t as top_units
from plantain_core.causal.unit_sets import (SELECTED, UnitSet, doses_for, matched_controls, permutation_p, plan_layout,
                                     sequential_p, settled, stop_after)
from plantain_core.cli import main
from plantain_core.models import tiny
from plantain_core.models.lookup import transformer_layouts

TEXT_LEN = 24  # short synthetic text: the planted tests need no 512-token prompt
N_PAIRS = 6
CHOSEN = ("joint[0].h01", "joint[1].h02", "single[0].h00", "single[1].h03")
LEAK = 0.1  # the other heads keep 10% of their output weights


def _planted_transformer():
    """The tiny transformer with every head's output-projection columns scaled by LEAK
    except one chosen head per block: text reaches the image tokens only through
    attention, so the A/B difference of the output flows (90%) through the chosen heads."""
    from diffusers import Flux2Transformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        tr = Flux2Transformer2DModel(**tiny.TRANSFORMER_CONFIG).eval()
    d = tr.config.attention_head_dim
    chosen = {u.rsplit(".", 1)[0]: int(u.rsplit(".h", 1)[1]) for u in CHOSEN}
    with torch.no_grad():
        for kind, blocks in (("joint", tr.transformer_blocks), ("single", tr.single_transformer_blocks)):
            for i, block in enumerate(blocks):
                mods = [block.attn.to_out[0], block.attn.to_add_out] if kind == "joint" else [block.attn.to_out]
                for h in range(block.attn.heads):
                    if h != chosen[f"{kind}[{i}]"]:
                        for m in mods:
                            m.weight[:, h * d:(h + 1) * d] *= LEAK
    return tr


@pytest.fixture(scope="module")
def planted():
    return planted_setup()


def planted_setup():
    """The planted transformer, its heads layout and ``forward(items) -> v`` on
    synthetic inputs: per pair one noise and one base text, A and B add their own text."""
    tr = _planted_transformer()
    layout = transformer_layouts(tr, ("heads",))["heads"]
    from diffusers import Flux2KleinPipeline as P

    g = torch.Generator().manual_seed(0)
    cfg = tr.config
    base = torch.randn(N_PAIRS, TEXT_LEN, cfg.joint_attention_dim, generator=g)
    delta = torch.randn(N_PAIRS, 2, TEXT_LEN, cfg.joint_attention_dim, generator=g)
    noise = torch.randn(N_PAIRS, 64, cfg.in_channels, generator=g)  # shared by A and B of a pair
    img_ids = P._prepare_latent_ids(torch.zeros(1, 1, 8, 8))
    txt_ids = P._prepare_text_ids(base[:1])

    def forward(items):
        n = len(items)
        text = torch.stack([base[i] + delta[i, s] for i, s in items])
        out = tr(hidden_states=torch.stack([noise[i] for i, _ in items]), encoder_hidden_states=text,
                 timestep=torch.full((n,), 0.9), img_ids=img_ids.expand(n, -1, -1),
                 txt_ids=txt_ids.expand(n, -1, -1), guidance=None, return_dict=False)[0]
        return out.reshape(n, -1).float()

    return tr, layout, forward


def _sets(layout, replicates=8, seed=0):
    chosen = np.array([layout.units.index(u) for u in CHOSEN])
    strata = layout.block_index()
    ctrl, short = matched_controls(strata, chosen, replicates, np.random.default_rng(seed))
    assert not short
    sets = [UnitSet("heads", 4, SELECTED, tuple(chosen))]
    return sets + [UnitSet("heads", 4, r, tuple(c)) for r, c in enumerate(ctrl)]


def _measure(tr, forward, sets, layout, tests=None, *, rows=2 * N_PAIRS, **how):
    passes = Passes(transformer=tr, forward=forward, n_pairs=N_PAIRS, layouts={"heads": layout}, token_scope="all",
                    batch_rows=rows)
    return measure_effects(passes, sets, tests, Intervention(**how))


def _no_hooks(tr) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in tr.modules())


@pytest.mark.parametrize("mode,value", [("ablate", "mean"), ("ablate", "zero"), ("patch", "mean")])
def test_planted_heads_carry_the_output_difference(planted, mode, value):
    tr, layout, forward = planted
    sets = _sets(layout)
    res = _measure(tr, forward, sets, layout, mode=mode, ablate_value=value)
    assert _no_hooks(tr)
    assert (res["separation"] > 0).all()
    effect = res["effect"].mean(axis=1)
    assert effect[0] > 0.7, effect  # the chosen heads: most of the separation
    assert effect[1:].max() < 0.3, effect  # matched random heads: little
    assert permutation_p(effect[0], effect[1:]) == pytest.approx(1 / len(sets))
    if mode == "patch":  # v_A moves toward v_B on every pair
        assert (res["effect"][0] > 0.5).all()


def test_mean_ablation_writes_the_mean_over_stimuli(planted):
    """SliceEditor reads and writes one mechanism: what is read after a mean-ablation is the mean."""
    tr, layout, forward = planted
    from plantain_core.capture.hooks import SliceMeans

    feats = unit_features(layout, [layout.units.index("single[0].h00")], "all")
    means, seen = SliceMeans(), []
    items = [(i, s) for i in range(N_PAIRS) for s in (0, 1)]
    with capture_units(tr, ("heads",), measure=False) as cap, torch.inference_mode():
        cap.editor = SliceEditor(feats, "all", read=means)
        forward(items)
        key = next(iter(feats))
        tokens = TEXT_LEN + 64
        mean = means.mean(key, tokens)
        cap.editor = SliceEditor(feats, "all", write=lambda k, part: mean.expand(part.shape[0], -1, -1))
        forward(items[:2])
        cap.editor = SliceEditor(feats, "all", write=lambda k, part: mean.expand(part.shape[0], -1, -1),
                                 read=lambda k, part: seen.append(part.clone()))
        forward(items[:2])
    assert mean.shape == (tokens, 16)
    # the read happens before the write: it sees the clean slice, not the mean
    assert not torch.allclose(seen[0][0], mean)
    assert _no_hooks(tr)


def test_hooks_removed_on_exit_and_on_error(planted):
    tr, layout, forward = planted
    assert _no_hooks(tr)
    feats = unit_features(layout, [0, 5], "all")
    with capture_units(tr, ("heads",), editor=SliceEditor(feats, "all", write=lambda k, part: 0 * part)) as cap:
        with torch.inference_mode():
            forward([(0, 0)])
        assert not _no_hooks(tr) and cap.editor.calls > 0
    assert _no_hooks(tr)

    def bad(key, part):
        raise ValueError("editor failed")

    with pytest.raises(ValueError, match="editor failed"):
        with capture_units(tr, ("heads",), editor=SliceEditor(feats, "all", write=bad)), torch.inference_mode():
            forward([(0, 0)])
    assert _no_hooks(tr)
    with pytest.raises(RuntimeError, match="replacement"):  # a wrong-shaped replacement is refused
        with capture_units(tr, ("heads",), editor=SliceEditor(feats, "all", write=lambda k, part: part[:, :1])), \
                torch.inference_mode():
            forward([(0, 0)])
    assert _no_hooks(tr)

    def boom(items):
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        _measure(tr, boom, _sets(layout, 1), layout)
    assert _no_hooks(tr)


def test_unit_features_follow_layout_and_scope(planted):
    tr, layout, _ = planted
    j = layout.units.index("joint[1].h02")
    s = layout.units.index("single[0].h03")
    f = unit_features(layout, [j, s], "all")
    streams = sorted((k[0].name, k[1]) for k in f)
    assert streams == [("joint[1]", "image"), ("joint[1]", "text"), ("single[0]", "single")]
    assert all(list(v) == list(range(32, 48)) for k, v in f.items() if k[0].kind == "joint")
    assert list(f[next(k for k in f if k[0].kind == "single")]) == list(range(48, 64))
    assert sorted(k[1] for k in unit_features(layout, [j], "image")) == ["image"]
    s16 = transformer_layouts(tr, ("slices16",))["slices16"]
    mlp = int(np.flatnonzero(s16.mlp)[0])
    (key, feats), = unit_features(s16, [mlp], "all").items()
    assert key[1] == "single" and feats[0] >= key[0].attn_dim


def test_selection_controls_and_p():
    t = np.array([0.5, -4.0, np.nan, 3.0, 1.0, -2.0])
    assert list(top_units(t, 3)) == [1, 3, 5]
    assert len(top_units(t, 10)) == 5  # NaN never selected
    strata = np.array([0, 0, 0, 1, 1, 1])
    sets, short = matched_controls(strata, np.array([1, 3]), 50, np.random.default_rng(0))
    assert not short
    for c in sets:
        assert sorted(strata[c]) == [0, 1] and not set(c) & {1, 3}
    sets, short = matched_controls(strata, np.array([0, 1, 2]), 3, np.random.default_rng(0))
    assert short == [0]  # the block has no other units: drawn from all of it
    assert permutation_p(0.5, [0.1, 0.6, 0.2]) == pytest.approx(2 / 4)
    assert permutation_p(0.5, []) is None
    assert doses_for(16, (1, 4, 16, 64), 20) == (16, [1, 4, 16, 20])


def test_plan_layout_matches_blocks(planted):
    tr, layout, _ = planted
    t = np.arange(len(layout), dtype=float)
    k, sets, notes = plan_layout(layout, t, top=3, doses=(1, 3, 99), controls=4, seed=1, ordinal=0)
    assert k == 3 and sorted({s.k for s in sets}) == [1, 3, 16]
    blocks = layout.block_index()
    for dose in (1, 3):
        sel = next(s for s in sets if s.k == dose and s.replicate == SELECTED)
        for c in (s for s in sets if s.k == dose and s.replicate != SELECTED):
            assert sorted(blocks[list(c.indices)]) == sorted(blocks[list(sel.indices)])
    assert notes  # K = all 16 units: controls cannot avoid the selected set


SPEC = """schema = 1
name = "causal-test"
generator = "text-pair"
direction = ["large", "small"]

[stimuli]
pairs = [
  { id = "km", a = "a 1-kilometer object", b = "a 1-millimeter object" },
  { id = "city", a = "an object the size of a city", b = "an object the size of a cell" },
  { id = "hill", a = "an object as tall as a hill", b = "an object as small as a flea" },
]
"""


def test_plantain_causal_on_a_tiny_run(tmp_path):
    spec = tmp_path / "causal-test.toml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--out", str(run),
                               "--flips", "16", "--splits", "4", "--no-progress", "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "## Causal check" not in (run / "README.md").read_text()
    assert "`plantain causal` tests whether the selected units" in (run / "README.md").read_text()
    res = runner.invoke(main, ["causal", str(run), "--top", "2", "--controls", "2", "--doses", "2",
                               "--no-progress", "--exhaustive"])
    assert res.exit_code == 0, res.output
    data = json.loads((run / "causal.json").read_text())
    lay = data["layouts"]["heads"]
    assert data["mode"] == "ablate" and data["ablate_value"] == "mean" and lay["k"] == 2
    assert [d["k"] for d in lay["doses"]] == [2] and len(lay["doses"][0]["controls"]["effects"]) == 2
    assert math.isfinite(lay["doses"][0]["effect"]) and lay["doses"][0]["p"] in (1 / 3, 2 / 3, 1.0)
    # the clean passes reproduce the run's captures
    assert data["clean"]["capture_check_max_rel_diff"]["heads"] < 1e-4
    assert data["timings"]["seconds_per_unit_set"] > 0
    same = not lay["attribution"]["doses"]  # the attribution top is measured (no controls) unless it is the |t| top
    assert data["cost"]["unit_sets_run"] == (3 if same else 4) == data["timings"]["unit_sets"]
    assert same or lay["attribution"]["doses"][0]["controls"]["n"] == 0
    assert data["cost"]["interventions"] == data["cost"]["unit_sets_run"] * 2 * 3  # 2 passes per pair, 3 pairs
    card = (run / "README.md").read_text()
    assert "## Causal check" in card and "figures/causal_dose.png" in card and "says nothing about FLUX" in card
    assert (run / "figures" / "causal_dose.png").stat().st_size > 0
    # `plantain report` keeps the section (it is rendered from causal.json)
    res = runner.invoke(main, ["report", str(run), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "## Causal check" in (run / "README.md").read_text()
    # --confirm both: the attribution top gets its own matched controls
    res = runner.invoke(main, ["causal", str(run), "--top", "2", "--controls", "2", "--confirm", "both",
                               "--no-progress", "--no-figures"])
    assert res.exit_code == 0, res.output
    data = json.loads((run / "causal.json").read_text())
    assert data["rankings"] == ["t", "attribution"]
    for d in data["layouts"]["heads"]["attribution"]["doses"]:
        assert d["by"] == "attribution" and d["controls"]["planned"] == 2 and d["p"] is not None
    # errors are one clear message
    res = runner.invoke(main, ["causal", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "not found" in res.output


def test_plantain_run_with_causal_adds_the_section(tmp_path):
    spec = tmp_path / "causal-test.toml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--out", str(run),
                                    "--flips", "16", "--splits", "4", "--no-progress", "--no-figures", "--causal"])
    assert res.exit_code == 0, res.output
    data = json.loads((run / "causal.json").read_text())
    assert data["mode"] == "ablate" and data["clean"]["capture_check_max_rel_diff"]["heads"] < 1e-4
    assert not data["exhaustive"] and data["rankings"] == ["t"] and data["doses"] == []
    # a status line per settled test, with --no-progress too
    assert "heads K=" in res.stderr and "(top by |t|): effect" in res.stderr
    cost = data["cost"]
    assert cost["total_forward"] == cost["screen"]["forward"] + cost["clean"] + cost["interventions"]
    assert cost["interventions"] <= cost["every_control_would_take"]
    card = (run / "README.md").read_text()
    assert "## Causal check" in card and "the causal check above tests the selected units directly" in card
    assert f"{cost['total_forward']:,} transformer passes in all" in card
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("mode", ["ablate", "patch"])
def test_each_control_effect_is_its_own_sets_effect(planted, mode):
    """A control's recorded effect comes from its own intervention passes: run each set
    alone and the numbers agree (an engine that scored every row with the selected set's
    passes would give the controls the selected effect)."""
    tr, layout, forward = planted
    sets = _sets(layout, replicates=3)
    together = _measure(tr, forward, sets, layout, rows=5, mode=mode)  # rows of one forward carry different sets
    for r, unit_set in enumerate(sets):
        alone = _measure(tr, forward, [unit_set], layout, mode=mode)
        # rows batched differently round differently: ~2e-6 here, against effects 0.7 apart
        np.testing.assert_allclose(together["effect"][r], alone["effect"][0], rtol=1e-4, atol=2e-5)
    effects = together["effect"].mean(axis=1)
    assert effects[0] > 0.7 and effects[1:].max() < 0.3  # and they differ, so a mix-up could not pass


def test_small_blocks_give_each_distinct_control_set_once():
    """Two units per block left to draw from, two needed: one possible control set. It is
    used once (not 20 times), and p cannot claim 1/21."""
    strata = np.repeat(np.arange(4), 4)  # 4 blocks of 4 units
    selected = np.array([0, 1, 4, 5])
    sets, _ = matched_controls(strata, selected, 20, np.random.default_rng(0))
    assert [list(c) for c in sets] == [[2, 3, 6, 7]]
    sets, _ = matched_controls(strata, np.array([0, 4]), 20, np.random.default_rng(0))
    assert len(sets) == 9 and len({tuple(c) for c in sets}) == 9  # 3 × 3 distinct sets, all of them
    sets, _ = matched_controls(np.repeat(np.arange(4), 24), np.array([0, 24]), 20, np.random.default_rng(0))
    assert len({tuple(c) for c in sets}) == 20  # many possible: 20 distinct draws


def test_permutation_p_counts_ties_as_at_least_as_large():
    assert permutation_p(0.5, [0.5, 0.1, 0.2]) == pytest.approx(2 / 4)  # a tie counts against the selection
    assert permutation_p(0.5, [0.4999999, 0.1, 0.2]) == pytest.approx(1 / 4)
    assert permutation_p(0.5, [0.5, 0.5, 0.5]) == pytest.approx(1.0)


def test_a_headline_k_that_covers_its_blocks_is_not_compared_with_itself(planted):
    _, layout, _ = planted
    blocks = layout.block_index()
    rank_in_block = np.array([np.count_nonzero(blocks[:i] == blocks[i]) for i in range(len(layout))])
    t = 5.0 - rank_in_block - 0.01 * blocks  # every head tested; the top 4 lie in 4 blocks
    k, sets, notes = plan_layout(layout, t, top=len(layout), doses=(1, 4, len(layout)), controls=5, seed=0, ordinal=0)
    assert k == 4 and any("covers every unit of its blocks" in n for n in notes)
    assert not [s for s in sets if s.k == len(layout) and s.replicate != SELECTED]  # no fake controls


def test_attribution_ranks_heads_as_exact_single_unit_patching_does(planted):
    """Every head's attribution estimate against its exact patch effect (one set per head):
    the planted heads lead both, and the ranks agree (Spearman, docs/causal.md)."""
    from scipy.stats import spearmanr

    from plantain_core.causal.attribution import attribution_scores

    tr, layout, forward = planted
    att = attribution_scores(tr, forward, N_PAIRS, {"heads": layout}, "all", batch_pairs=N_PAIRS)
    singles = [UnitSet("heads", 1, SELECTED, (u,)) for u in range(len(layout))]
    exact = _measure(tr, forward, singles, layout, mode="patch")
    estimate, measured = att["score"]["heads"], exact["effect"].mean(axis=1)
    np.testing.assert_allclose(att["separation"], exact["separation"], rtol=1e-5)  # the same clean passes
    planted_idx = {layout.units.index(u) for u in CHOSEN}
    assert set(np.argsort(-estimate)[:4]) == planted_idx == set(np.argsort(-measured)[:4])
    assert spearmanr(estimate, measured).statistic > 0.9  # 0.97 here
    assert att["passes"] == 2 * N_PAIRS and _no_hooks(tr)


@pytest.mark.parametrize("controls", [5, 10, 19, 20, 25, 30, 39, 50, 99])
def test_sequential_controls_settle_p_on_the_side_all_controls_give(controls):
    """Besag–Clifford: drawing controls until h reach the effect gives p > 0.05 exactly
    when all R would; p = h / drawn then; a selection beating every control draws all R."""
    rng = np.random.default_rng(controls)
    h = stop_after(controls)
    assert h == max(1, math.floor(0.05 * (controls + 1)))
    stopped = 0
    for _ in range(400):
        effect = rng.normal(1.0, 1.0)
        ctl = list(rng.normal(0.0, 1.0, size=controls))
        drawn = []
        while not settled(effect, drawn, controls):
            drawn.append(ctl[len(drawn)])
        p_seq, p_all = sequential_p(effect, drawn, controls), permutation_p(effect, ctl)
        assert (p_seq <= 0.05) == (p_all <= 0.05)
        if len(drawn) < controls:
            stopped += 1
            assert p_seq == pytest.approx(max(h / len(drawn), (1 + h) / (1 + controls))) and p_seq > 0.05
            assert sum(x >= effect for x in drawn) == h and drawn[-1] >= effect
        else:
            assert p_seq == p_all
    assert stopped > 50  # the rule does stop early on weak selections


def test_sequential_check_reaches_todays_conclusions_on_the_planted_model(planted):
    """The default check (controls drawn until p's side of 0.05 is settled) and the
    exhaustive one (every control at every dose) on the planted model, for a ranking that
    puts the planted heads first and one that puts them last: the same units, the same
    effects, p on the same side of 0.05 for every dose, at fewer passes."""
    from plantain_core.causal.effects import tests_of

    tr, layout, forward = planted
    planted_idx = [layout.units.index(u) for u in CHOSEN]
    good = np.random.default_rng(0).uniform(0, 3, size=len(layout))
    good[planted_idx] = [10, 9, 8, 7]
    bad = 10 - good  # the planted heads last
    sets = []
    for ordinal, (by, strength) in enumerate((("t", good), ("attribution", bad))):
        k, planned, _ = plan_layout(layout, strength, top=4, doses=(1, 2, 4), controls=20, seed=0, ordinal=ordinal,
                                    by=by)
        sets += planned
    tests = tests_of(sets)
    full = _measure(tr, forward, sets, layout, tests, sequential=False)
    seq = _measure(tr, forward, sets, layout, tests)
    assert len(tests) == 6
    for test, a, b in zip(tests, full["tests"], seq["tests"]):
        n = len(test.controls)  # 20, or every distinct matched set where a block has few others
        assert a["drawn"] == n and not a["stopped_early"]
        assert b["effect"] == pytest.approx(a["effect"], rel=1e-6)
        planted_first = sets[test.selected].by == "t"
        assert (a["p"] <= 0.05) == (b["p"] <= 0.05) == (planted_first and n >= 19)
    # the planted top 4 against 20 controls; K = 1 and 2 have only 3 and 9 distinct matched sets
    assert [len(t.controls) for t in tests[:3]] == [3, 9, 20] and full["tests"][2]["p"] == pytest.approx(1 / 21)
    assert all(r["stopped_early"] for r in seq["tests"][3:])  # the planted heads last: stopped at once
    assert seq["passes"]["interventions"] < full["passes"]["interventions"] == len(sets) * 2 * N_PAIRS


def test_a_verdict_on_controls_that_overlap_the_selection_says_so():
    from plantain_core.report.causal_section import causal_markdown

    controls = {"n": 20, "planned": 20, "stopped_early": False, "effects": [0.0] * 20, "mean": 0.0, "sd": 0.01,
                "q05": -0.01, "q95": 0.01, "max": 0.02, "output_change_mean": 0.01}
    dose = {"k": 4, "by": "t", "units": ["joint[0].h00"], "t": [5.0], "blocks": {}, "effect": 0.5,
            "effect_per_pair": [0.5], "output_change": 0.1, "controls": controls, "p": 1 / 21}
    data = {"mode": "ablate", "ablate_value": "mean", "controls": 20, "rankings": ["t"], "n_pairs": 5,
            "layouts": {"heads": {"n_units": 16, "k": 4, "doses": [dose], "attribution": {"k": None, "doses": []}}},
            "notes": []}
    plain = causal_markdown(data)
    assert "**The selected units carry more" in plain and "share units with the selection" not in plain
    data["notes"] = ["`heads` K=4: joint[1] had too few other units, so the controls there were drawn from all of "
                     "the block's units and can overlap the selected set"]
    assert "some controls share units with the selection" in causal_markdown(data)


@pytest.mark.parametrize("mode", ["ablate", "patch"])
def test_a_set_measured_on_half_the_pairs_gives_those_pairs_effects(planted, mode):
    """Held-out selection measures each half's sets on the other half only: the same set on a
    subset of the pairs gives exactly the per-pair effects it gives on every pair, there and
    nowhere else, and a cross-fitted test's effect is the mean over the pairs of whichever
    half measured each."""
    import attrs

    from plantain_core.causal.effects import per_pair, tests_of

    tr, layout, forward = planted
    whole = _sets(layout, replicates=1)
    first, second = (0, 2, 4), (1, 3, 5)
    halves = [attrs.evolve(s, fold=0, pairs=first) for s in whole] + [attrs.evolve(s, fold=1, pairs=second)
                                                                     for s in whole]
    tests = tests_of(halves)
    assert len(tests) == 1 and tests[0].selected_rows() == (0, 2) and tests[0].control_rows(0) == (1, 3)
    full = _measure(tr, forward, whole, layout, mode=mode, sequential=False)
    split = _measure(tr, forward, halves, layout, tests, mode=mode, sequential=False)
    for r, pairs in ((0, first), (1, first), (2, second), (3, second)):
        other = [i for i in range(N_PAIRS) if i not in pairs]
        np.testing.assert_allclose(split["effect"][r, list(pairs)], full["effect"][r % 2, list(pairs)], rtol=1e-4,
                                   atol=2e-5)
        assert np.isnan(split["effect"][r, other]).all()
    rec = split["tests"][0]
    assert rec["effect"] == pytest.approx(full["effect"][0].mean(), rel=1e-4)
    assert rec["controls"][0] == pytest.approx(full["effect"][1].mean(), rel=1e-4)
    np.testing.assert_allclose(per_pair(split["effect"], (0, 2)), full["effect"][0], rtol=1e-4, atol=2e-5)
    # half the pairs per set: the same intervention passes as every pair for one set
    assert split["passes"]["interventions"] == full["passes"]["interventions"]
