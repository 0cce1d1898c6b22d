"""Specs as data: pairs from CSV/TSV/JSON Lines files next to the spec, TOML 1.0 through
tomllib, and `plantain new` skeletons that validate."""

from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.errors import SpecError
from plantain_core.plugins import get_registry
from plantain_core.spec.probe_spec import load_spec
from plantain_core.testing import spec_data, write_spec

PAIRS = [("mm-km", "a 1-kilometer grey object", "a 1-millimeter grey object", 6.0),
         ("cm-m", "a 1-meter grey object", "a 1-centimeter grey object", 2.0),
         ("um-mm", "a 1-millimeter grey object", "a 1-micrometer grey object", 3.0)]


def pairs_of(path):
    spec = load_spec(path, get_registry())
    return spec, get_registry().get("generator", spec.generator).obj.pairs(spec)


def problems_of(path) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_spec(path, get_registry())
    return [p.split(": ", 1)[1] for p in exc.value.problems]


def file_spec(tmp_path, name, text, **stimuli):
    (tmp_path / name).write_text(text, encoding="utf-8")
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": name, **stimuli}
    return write_spec(tmp_path, "probe", data)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_a_pairs_file_gives_the_same_pairs_as_inline_toml(tmp_path, fmt):
    inline = spec_data("inline")
    inline["stimuli"] = {"pairs": [{"id": i, "a": a, "b": b, "meta": {"decades": d}} for i, a, b, d in PAIRS]}
    _, want = pairs_of(write_spec(tmp_path / "inline", "inline", inline))
    if fmt == "jsonl":
        text = "\n".join(json.dumps({"id": i, "a": a, "b": b, "decades": d}) for i, a, b, d in PAIRS) + "\n"
    else:
        sep = "," if fmt == "csv" else "\t"
        text = sep.join(["id", "a", "b", "decades"]) + "\n" + "".join(
            sep.join([i, a if fmt == "tsv" else f'"{a}"', b, str(d)]) + "\n" for i, a, b, d in PAIRS)
    _, got = pairs_of(file_spec(tmp_path, f"pairs.{fmt}", text))
    assert got == want and [p.meta for p in got] == [{"decades": d} for *_, d in PAIRS]
    assert all(isinstance(p.meta["decades"], float) for p in got)


def test_a_pairs_file_probe_runs_and_records_its_pairs(tmp_path):
    text = "id,a,b,rank\n" + "".join(f"{i},{a},{b},{k}\n" for k, (i, a, b, _) in enumerate(PAIRS))
    spec = file_spec(tmp_path, "pairs.csv", text)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(spec), "--model", "tiny", "--units", "heads", "--flips", "10",
                                    "--splits", "5", "--out", str(out), "--no-figures", "--no-progress"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["id"] for p in manifest["pairs"]] == ["mm-km", "cm-m", "um-mm"]
    assert manifest["pairs"][2]["meta"] == {"rank": 2} and manifest["spec"]["stimuli"] == {"pairs_file": "pairs.csv"}


@pytest.mark.parametrize("name,text,problem", [
    ("pairs.csv", "id,a,b\nx,one prompt,other prompt\ny,one,\nz,p,q\n", "pairs.csv line 3, column b: required key is missing"),
    ("pairs.csv", "id,a,b\nx,one prompt,other prompt\ny,one\n", "pairs.csv line 3: 2 cells, but the header has 3"),
    ("pairs.csv", "a,b\none,two\n", "pairs.csv line 1: header: no 'id' column; expected columns id, a, b"),
    ("pairs.csv", "id,a,a\nx,y,z\n", "pairs.csv line 1: header: column 'a' appears twice"),
    ("pairs.csv", "id,a,b\nx,\"unclosed,b\n", "pairs.csv line 2: malformed"),
    ("pairs.tsv", "id\ta\tb\tscale\nx\tp\tq\t1\ny\tp\tq\tnan\nx\tr\ts\t2\n", "pairs.tsv line 4, column id: duplicate pair id 'x' (also pairs.tsv line 2)"),
    ("pairs.jsonl", '{"id": "x", "a": "p", "b": "q"}\n\n[1, 2]\n', "pairs.jsonl line 3: expected a JSON object"),
    ("pairs.jsonl", '{"id": "x", "a": "p", "b": "q"}\n{"id": "y", "a": "p" "b": "q"}\n', "pairs.jsonl line 2: invalid JSON"),
    ("pairs.jsonl", '{"id": "x", "a": "p", "b": "q", "s": NaN}\n', "pairs.jsonl line 1: invalid JSON: NaN is not a number"),
    ("pairs.jsonl", '{"id": "x\\u0000", "a": "p", "b": "q"}\n', "pairs.jsonl line 1, key id: expected a non-empty printable string"),
    ("pairs.csv", "", "pairs.csv line 1: empty file"),
])
def test_pairs_file_problems_name_the_file_and_line(tmp_path, name, text, problem):
    found = problems_of(file_spec(tmp_path, name, text))
    assert any(p.startswith(problem) for p in found), found


@pytest.mark.parametrize("value,problem", [
    ("../outside.csv", "stimuli.pairs_file: '../outside.csv' must be a relative path inside the spec's folder"),
    ("/etc/passwd", "stimuli.pairs_file: '/etc/passwd' must be a relative path inside the spec's folder"),
    ("pairs.xlsx", "stimuli.pairs_file: 'pairs.xlsx': unknown format; use .csv, .tsv or .jsonl"),
    ("missing.csv", "stimuli.pairs_file: pairs file not found"),
    ("link.csv", "stimuli.pairs_file: 'link.csv' leads out of the spec's folder (a link?)"),
    (3, "stimuli.pairs_file: expected a file name like \"pairs.csv\""),
])
def test_a_pairs_file_stays_in_the_spec_folder(tmp_path, value, problem):
    (tmp_path / "outside.csv").write_text("id,a,b\nx,p,q\n")
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "link.csv").symlink_to(tmp_path / "outside.csv")
    data = spec_data("probe")
    data["stimuli"] = {"pairs_file": value}
    (found,) = problems_of(write_spec(spec_dir, "probe", data))
    assert found.startswith(problem), found


def test_pairs_and_pairs_file_are_exclusive_and_key_paths_follow_the_table(tmp_path):
    data = spec_data("probe")
    data["stimuli"]["pairs_file"] = "pairs.csv"
    assert problems_of(write_spec(tmp_path, "probe", data)) == [
        "stimuli.pairs: give one of pairs, pairs_file or template + items, not pairs and pairs_file"]
    from plantain_core import read_pairs

    rows, problems = read_pairs({"pairs": [{"id": "x", "a": "p"}, {"a": "q"}]}, ("a",), key="stimuli.conditions")
    assert problems == [("stimuli.conditions.pairs[1].id", "required key is missing")]
    assert rows[0].at("a") == "stimuli.conditions.pairs[0].a"


def test_toml_1_0_that_the_old_parser_refused(tmp_path):
    path = tmp_path / "probe.toml"
    path.write_text('\ufeffschema = 1\nname = "probe"\ngenerator = "text-pair"\n[stimuli]\n'
                    'pairs = [ { id = "a", a = "x 1", b = "y 1", meta = { mixed = [1, "two", 3.0] } },\n'
                    '          { id = "b", a = "x 2", b = "y 2" }, { id = "c", a = "x 3", b = "y 3" } ]\n')
    spec, pairs = pairs_of(path)
    assert pairs[0].meta == {"mixed": [1, "two", 3.0]}
    path.write_text(path.read_text().replace('mixed = [1, "two", 3.0]', "scale = nan"))
    assert problems_of(path) == ["stimuli.pairs[0].meta.scale: nan is not a finite number (pair meta is written to JSON)"]


@pytest.mark.parametrize("kind", ["text-pair", "fixed-image-text-pair", "image-pair"])
def test_plantain_new_writes_a_skeleton_that_validates(tmp_path, kind):
    res = CliRunner().invoke(main, ["new", "my-probe", "--kind", kind, "--dir", str(tmp_path / "specs")])
    assert res.exit_code == 0, res.output
    path = tmp_path / "specs" / "my-probe.toml"
    spec, pairs = pairs_of(path)
    assert (spec.name, spec.generator, len(pairs)) == ("my-probe", kind, 3)
    assert path.read_text().startswith(f"# A plantain probe spec ({kind})")
    assert CliRunner().invoke(main, ["validate", str(path)]).exit_code == 0
    again = CliRunner().invoke(main, ["new", "my-probe", "--kind", kind, "--dir", str(tmp_path / "specs")])
    assert again.exit_code == 1 and again.stderr == f"Error: {path} exists; choose another NAME or --dir\n"


def test_plantain_new_refuses_a_name_that_is_not_a_file_stem(tmp_path):
    res = CliRunner().invoke(main, ["new", "../evil", "--dir", str(tmp_path)])
    assert res.exit_code == 1 and "NAME '../evil': use up to 100 letters, digits" in res.stderr
    assert list(tmp_path.iterdir()) == []
