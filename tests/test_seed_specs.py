"""The built-in seed specs are faithful to their cards (../shared/seeds/)."""

import math
import pathlib

import pytest

from plantain_core.plugins import get_registry
from plantain_core.spec.probe_spec import load_spec

SPECS = pathlib.Path(__file__).resolve().parents[1] / "specs"


def pairs_of(name):
    spec = load_spec(SPECS / f"{name}.toml", get_registry())
    return spec, get_registry().get("generator", spec.generator).obj.pairs(spec)


def test_measure_pairs_span_three_orders_of_magnitude_and_share_object():
    spec, pairs = pairs_of("measure")
    assert spec.stimuli["reference_prompt"] == "A neutral matte rounded grey object on a neutral grey background"
    assert spec.direction == ("large", "small")
    for p in pairs:
        assert math.log10(p.meta["scale_a_m"] / p.meta["scale_b_m"]) >= 3, p.id
        assert p.meta["scale_a_m"] >= 10 and p.meta["scale_b_m"] <= 0.003, p.id
        assert "object" in p.a.prompt and "object" in p.b.prompt
        assert p.a.image == p.b.image and p.a.image.prompt == spec.stimuli["reference_prompt"]


CARD_CREATURES = ["adult human", "tall person", "child", "toddler", "infant", "small dog", "cat", "parrot",
                  "snake", "spider", "ant", "fly", "moth", "bee with ultraviolet vision", "echolocating bat",
                  "shark with electroreception", "sea turtle with magnetoreception",
                  "creature with thermal-infrared eyes", "alien with non-visual senses"]


def test_otherview_follows_the_card_axis_in_order():
    spec, pairs = pairs_of("otherview")
    assert len(pairs) == 30
    assert [p.meta["rank"] for p in pairs] == list(range(1, 31))
    creatures = [p.meta["creature"] for p in pairs]
    positions = [next(i for i, c in enumerate(creatures) if c.split(" ", 1)[1] == name) for name in CARD_CREATURES]
    assert positions == sorted(positions)
    for p in pairs:
        c = p.meta["creature"]
        assert p.a.prompt == f"Render this kitchen from the viewpoint of {c}"
        assert p.b.prompt == f"Render this kitchen with {c} in it"


CARD_EVENTS = ["shattered glass", "spilled coffee", "cracked egg", "fallen dominoes", "snuffed candle",
               "melted ice cube", "collapsed sandcastle", "eaten apple", "broken vase", "flat tire", "burnt match",
               "opened envelope", "melted pond", "smashed watermelon", "scattered books", "used pencil",
               "popped balloon", "wilted flower", "melted snowman", "bread crumbs", "footprints in sand",
               "collapsed block tower", "post-cooking kitchen counter", "worn sneaker", "scattered jigsaw pieces"]


def test_after_has_the_card_events_with_a_fixed_prompt():
    spec, pairs = pairs_of("after")
    assert [p.meta["event"] for p in pairs] == CARD_EVENTS
    assert {p.a.prompt for p in pairs} | {p.b.prompt for p in pairs} == {"Describe what is depicted in this image."}
    assert all(p.a.image.prompt != p.b.image.prompt for p in pairs)
    assert spec.direction == ("after", "before")


@pytest.mark.parametrize("name", ["ray", "dense"])
def test_text_pairs_hold_the_scene_and_roughly_match_length(name):
    _, pairs = pairs_of(name)
    assert len(pairs) == 25 and len({p.id for p in pairs}) == 25
    for p in pairs:
        wa, wb = len(p.a.prompt.split()), len(p.b.prompt.split())
        assert abs(wa - wb) <= (0 if name == "ray" else 4), (p.id, wa, wb)
        key = "scene" if name == "ray" else "subject"
        assert p.meta[key] in p.a.prompt and p.meta[key] in p.b.prompt


def test_dense_records_limbs_moved():
    _, pairs = pairs_of("dense")
    assert all(p.meta["limbs"] in (1, 2, 3, 4) for p in pairs)
    assert len({p.meta["limbs"] for p in pairs}) >= 3  # a graded covariate, not a constant
