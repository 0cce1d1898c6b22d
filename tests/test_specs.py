"""Every spec validation rule: each problem named as FILE: key.path: message, all at once."""

import pathlib

import pytest
import toml

from plantain_core.errors import SpecError
from plantain_core.plugins import get_registry
from plantain_core.spec.probe_spec import load_spec
from plantain_core.testing import spec_data, write_spec


def problems_of(path):
    with pytest.raises(SpecError) as exc:
        load_spec(path, get_registry())
    prefix = f"{pathlib.Path(path).resolve()}: "
    assert all(p.startswith(prefix) for p in exc.value.problems), exc.value.problems
    return [p[len(prefix):] for p in exc.value.problems]


def write(tmp_path, name="probe", **overrides):
    return write_spec(tmp_path, name, spec_data(name, **overrides))


def pairs(*rows):
    return {"pairs": [dict(id=i, a=a, b=b) for i, a, b in rows]}


THREE = [("p0", "a cat", "a dog"), ("p1", "a car", "a bus"), ("p2", "a sun", "a moon")]


@pytest.mark.parametrize("generator", ["text-pair", "fixed-image-text-pair", "image-pair"])
def test_valid_spec_loads(tmp_path, generator):
    spec = load_spec(write(tmp_path, generator=generator), get_registry())
    assert spec.name == "probe" and spec.generator == generator
    assert len(get_registry().generators[generator].obj.pairs(spec)) == 3


CASES = [
    ("schema", dict(schema=2), ["schema: unsupported schema version 2; this plantain reads 1"]),
    ("name-stem", dict(name="other"), ["name: 'other' must equal the file name stem 'probe'"]),
    ("unknown-key", dict(titel="x"), ["titel: unknown key (did you mean 'title'?)"]),
    ("wrong-type", dict(title=3), ["title: expected a string, got integer"]),
    ("bool-not-int", dict(schema=True), ["schema: expected an integer, got boolean"]),
    ("missing", dict(generator=None), ["generator: required key is missing"]),
    ("direction", dict(direction=["only"]), ["direction: expected two non-empty strings: the names of condition A and B"]),
    ("model-key", dict(model={"hieght": 512}), ["model.hieght: unknown key (did you mean 'height'?)"]),
    ("model-size", dict(model={"height": 100}), ["model.height: must be a positive multiple of 16, got 100"]),
    ("generator", dict(generator="text-pairs"),
     ["generator: unknown generator 'text-pairs' (did you mean 'text-pair' or 'image-pair'?); known: fixed-image-text-pair, image-pair, text-pair"]),
    ("interpreter", dict(interpreter="defualt"), ["interpreter: unknown interpreter 'defualt' (did you mean 'default'?); known: after, default, dense, measure, otherview"]),
    ("duplicate-ids", dict(stimuli=pairs(("p0", "a", "b"), ("p1", "c", "d"), ("p0", "e", "f"))),
     ["stimuli.pairs[2].id: duplicate pair id 'p0' (also stimuli.pairs[0])"]),
    ("too-few", dict(stimuli=pairs(("p0", "a", "b"), ("p1", "c", "d"))),
     ["stimuli.pairs: at least 3 pairs are needed for a paired test, got 2"]),
    ("a-equals-b", dict(stimuli=pairs(("p0", "a", "b"), ("p1", "same", "same"), ("p2", "e", "f"))),
     ["stimuli.pairs[1]: A and B of pair 'p1' are identical"]),
    ("missing-b", dict(stimuli={"pairs": [{"id": "p0", "a": "x"}, {"id": "p1", "a": "y", "b": "z"}, {"id": "p2", "a": "u", "b": "v"}]}),
     ["stimuli.pairs[0].b: required key is missing"]),
    ("empty-prompt", dict(stimuli=pairs(("p0", " ", "b"), ("p1", "c", "d"), ("p2", "e", "f"))),
     ["stimuli.pairs[0].a: expected a non-empty string"]),
    ("pair-key", dict(stimuli={"pairs": [{"id": "p0", "a": "x", "bb": "y", "b": "z"}] + pairs(*THREE[1:])["pairs"]}),
     ["stimuli.pairs[0].bb: unknown key (did you mean 'b'?)"]),
    ("stimuli-key", dict(stimuli={**pairs(*THREE), "reference_prompt": "x"}),
     ["stimuli.reference_prompt: unknown key"]),
    ("no-pairs", dict(stimuli={}), ["stimuli.pairs: required key is missing (or give pairs_file, or template + items)"]),
]


@pytest.mark.parametrize("overrides,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_the_key(tmp_path, overrides, expected):
    data = spec_data("probe")
    for key, value in overrides.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = write_spec(tmp_path, "probe", data)
    assert problems_of(path) == expected


def test_fixed_image_needs_exactly_one_reference(tmp_path):
    data = spec_data("probe", generator="fixed-image-text-pair")
    del data["stimuli"]["reference_prompt"]
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.reference_prompt: give exactly one of reference_prompt or reference_image"
    ]


def test_image_pair_needs_an_image_per_side(tmp_path):
    data = spec_data("probe", generator="image-pair")
    data["stimuli"]["pairs"][1] = {"id": "p1", "a": "x", "b_image": "nope.png", "b": "y"}
    data["stimuli"]["pairs"][2] = {"id": "p2", "b": "x"}
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.pairs[1].b: give exactly one of b (an image prompt) or b_image (a file)",
        "stimuli.pairs[2].a: give exactly one of a (an image prompt) or a_image (a file)",
    ]


def test_image_files_resolve_relative_to_the_spec_and_must_be_images(tmp_path):
    from PIL import Image

    sub = tmp_path / "imgs"
    sub.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(sub / "ok.png")
    (sub / "fake.png").write_text("not an image")
    data = spec_data("probe", generator="image-pair")
    data["stimuli"]["pairs"] = [
        {"id": "p0", "a_image": "imgs/ok.png", "b": "a prompt"},
        {"id": "p1", "a_image": "imgs/missing.png", "b": "x"},
        {"id": "p2", "a_image": "imgs/fake.png", "b": "y"},
    ]
    probs = problems_of(write_spec(tmp_path, "probe", data))
    assert probs[0] == f"stimuli.pairs[1].a_image: image file not found: {sub / 'missing.png'}"
    assert probs[1].startswith(f"stimuli.pairs[2].a_image: not an image file: {sub / 'fake.png'}")
    data["stimuli"]["pairs"] = [data["stimuli"]["pairs"][0]] + [
        {"id": f"q{i}", "a_image": "imgs/ok.png", "b": f"prompt {i}"} for i in range(2)
    ]
    spec = load_spec(write_spec(tmp_path, "probe", data), get_registry())
    pair = get_registry().generators["image-pair"].obj.pairs(spec)[0]
    assert pair.a.image.path == str(sub / "ok.png")
    assert pair.a.prompt == "Describe what is depicted in this image."
    assert pair.b.image.prompt == "a prompt"


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    data = spec_data("probe", title=3, colour="x", generator="nope")
    probs = problems_of(write_spec(tmp_path, "wrongname", data))
    assert len(probs) == 4
    assert {p.split(":")[0] for p in probs} == {"colour", "title", "name", "generator"}


def test_malformed_toml_names_file_and_line(tmp_path):
    path = tmp_path / "probe.toml"
    path.write_text('schema = 1\nname = "probe"\ngenerator = \n')
    (problem,) = problems_of(path)
    assert problem.startswith("line 3, column ")
    assert "invalid TOML" in problem


def test_template_expands_items_into_pairs_with_meta(tmp_path):
    data = spec_data("probe")
    data["stimuli"] = {
        "template": {"a": "from the viewpoint of {creature}", "b": "with {creature} in it"},
        "items": [{"id": c, "creature": f"a {c}", "rank": i} for i, c in enumerate(["cat", "dog", "ant"], 1)],
    }
    spec = load_spec(write_spec(tmp_path, "probe", data), get_registry())
    ps = get_registry().generators["text-pair"].obj.pairs(spec)
    assert [p.id for p in ps] == ["cat", "dog", "ant"]
    assert ps[2].a.prompt == "from the viewpoint of a ant" and ps[2].b.prompt == "with a ant in it"
    assert ps[1].meta == {"creature": "a dog", "rank": 2}


def test_template_placeholder_missing_in_an_item(tmp_path):
    data = spec_data("probe")
    data["stimuli"] = {
        "template": {"a": "{x} one", "b": "{x} two {y}"},
        "items": [{"id": "i0", "x": "a", "y": "b"}, {"id": "i1", "x": "c"}, {"id": "i2", "x": "e", "y": "f"}],
    }
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.items[1]: template.b needs y, missing in this item"
    ]


def test_pairs_and_template_are_exclusive(tmp_path):
    data = spec_data("probe")
    data["stimuli"]["template"] = {"a": "x", "b": "y"}
    data["stimuli"]["items"] = []
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.pairs: give one of pairs, pairs_file or template + items, not pairs and template + items"
    ]


def test_specs_are_data_never_code(tmp_path):
    data = spec_data("probe")
    data["stimuli"] = {
        "template": {"a": "{x.__class__} one", "b": "two {x}"},
        "items": [{"id": f"i{i}", "x": f"v{i}"} for i in range(3)],
    }
    # str.format would follow attributes and indexes; templates only take plain names.
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.template.a: placeholder {x.__class__} must be a plain {name}"
    ]


BUILTINS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "specs").glob("*.toml"))


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_spec_validates(name):
    path = pathlib.Path(__file__).parents[1] / "specs" / f"{name}.toml"
    spec = load_spec(path, get_registry())
    ps = get_registry().generators[spec.generator].obj.pairs(spec)
    expected = {"measure": 25, "otherview": 30, "after": 25, "ray": 25, "dense": 25}[name]
    assert len(ps) == expected
    assert toml.loads(path.read_text())["name"] == name
