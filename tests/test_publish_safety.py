"""What `plantain publish` would upload, from a spec or plugin someone else wrote: a card
with no active markup, no remote resource and no structure from them (rendered by a real
CommonMark renderer with raw HTML on, as the hub and GitHub render it), image files held
to the spec's folder, and no absolute local path in the manifest, the card or its front
matter."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
from markdown_it import MarkdownIt

from plantain_core.report.markup import md_code, md_prose, md_text
from plantain_core.testing import spec_data, write_plugin_dist, write_spec
from test_hostile_runs import invoke, one_error

FAST = ("--model", "tiny", "--units", "heads", "--flips", "20", "--splits", "5", "--no-progress")
BEACON = "http://evil.example/beacon.png"
HOSTILE = f"x\n---\nlicense: other\n---\n<script>alert(1)</script> ![b]({BEACON}) <img src={BEACON}> [l](javascript:x)"


def render(markdown: str) -> str:
    """The card as the hub renders it: front matter off, CommonMark with raw HTML allowed."""
    body = markdown.split("\n---\n", 1)[1] if markdown.startswith("---\n") else markdown
    return MarkdownIt("commonmark", {"html": True}).render(body)


def assert_inert(html: str, allowed_tags=("h1", "h2", "h3", "p", "ul", "li", "strong", "em", "code", "pre", "table",
                                            "thead", "tbody", "tr", "th", "td", "img", "details", "summary", "a")):
    assert "<script" not in html
    assert not re.search(r"<img[^>]*src=\"?https?:", html), "a remote image would be fetched by every reader"
    assert not re.search(r"<a[^>]*href=\"?(https?:|javascript:)", html)
    tags = set(re.findall(r"<([a-zA-Z][\w-]*)", html))
    assert tags <= set(allowed_tags), tags - set(allowed_tags)


# ---- the escaping functions, through the renderer ----------------------------------------

@pytest.mark.parametrize("text", [HOSTILE, "# heading", "1. item", "- item", "***", "```", "> quote", "| a | b |",
                                  "a\\<b>", "&lt;script&gt;", "<http://x.example>", "a\u2028---\u2029# b",
                                  "[r]: http://x.example", "`code` *em* _u_ ~~s~~ $x$"])
def test_md_text_renders_exactly_the_text_on_one_line(text):
    html = MarkdownIt("commonmark", {"html": True}).render(md_text(text))
    assert html.startswith("<p>") and html.count("<p>") == 1 and html.endswith("</p>\n")
    inner = html[3:-5]
    assert "<" not in inner.replace("&lt;", "")  # no tag of any kind, only escaped text
    import html as html_lib

    shown = html_lib.unescape(inner)
    assert shown == " ".join(text.split())  # the same characters, whitespace and line breaks as single spaces


def test_md_code_cannot_be_closed_from_inside():
    for text in ["a`b", "``x``", "`", "x` <script>alert(1)</script> `y"]:
        html = MarkdownIt("commonmark", {"html": True}).render(md_code(text))
        assert html.count("<code>") == 1 and "<script" not in html, html


def test_md_prose_keeps_emphasis_and_paragraphs_only():
    text = ("**Bold** and _em_ and `code`.\n\n* a list\n\n<script>x</script> ![i](" + BEACON + ")\n---\n"
            "| a | b |\n|---|---|\n\n# heading\n\n<details><summary>s</summary>x</details>")
    html = MarkdownIt("commonmark", {"html": True}).render(md_prose(text))
    assert "<strong>Bold</strong>" in html and "<em>em</em>" in html and "<code>code</code>" in html
    assert html.count("<p>") == 5  # the five paragraphs, and no list, heading, table or rule
    assert_inert(html, allowed_tags=("p", "strong", "em", "code"))


# ---- a run from a hostile spec and plugin -----------------------------------------------

INTERPRETER = f'''
from plantain_core import Interpretation, Section, hookimpl

class Loud:
    description = "hostile sections"
    def interpret(self, spec, pairs, result):
        return Interpretation({{}}, (Section({HOSTILE!r}, {HOSTILE!r} + "\\n\\n**kept**"),))

@hookimpl
def plantain_register_interpreters(register):
    register("loud", Loud())
'''


def test_a_card_from_a_hostile_spec_and_plugin_renders_inert(tmp_path, monkeypatch):
    write_plugin_dist(tmp_path / "site", "loud_plug", INTERPRETER, distribution="loud-plug", version="1.0")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    data = spec_data("probe", interpreter="loud", title=HOSTILE, description=HOSTILE,
                     direction=["<b>big</b>", f"![s]({BEACON})"], tags=["ok", "---\nbad: 1"])
    for i, pair in enumerate(data["stimuli"]["pairs"]):
        pair["id"] = f"<i>p{i}</i>|x"
        pair["a"] = f"<img src={BEACON}> {i}"
    spec = write_spec(tmp_path / "specs", "probe", data)
    out = tmp_path / "run"
    result = invoke("run", spec, *FAST, "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    # exactly one front matter, at the top, and the hub reads it back as the data it was
    assert card.startswith("---\n") and len(re.findall(r"(?m)^---$", card)) == 2, card[:600]
    from huggingface_hub import ModelCard

    meta = ModelCard.load(out / "README.md").data.to_dict()
    assert set(meta) == {"language", "license", "library_name", "tags", "base_model"}
    assert meta["license"] == "apache-2.0" and "---\nbad: 1" in meta["tags"]
    html = render(card)
    assert_inert(html)
    tags = re.findall(r"<(?!/)([a-zA-Z][\w-]*)", html)
    assert tags.count("h1") == 1 and "kept" in html and "<strong>kept</strong>" in html
    # the hostile text is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and f"![b]({BEACON})" in html
    # the pair table still has three columns per row: a "|" in an id cannot add one
    rows = [r for r in card.splitlines() if r.startswith("| &lt;") or r.startswith("| \\<i")]
    assert len(rows) == 3 and all(len(re.split(r"(?<!\\)\|", r)) == 5 for r in rows), rows


def test_markdown_it_is_in_the_test_extra():
    import tomllib

    project = tomllib.loads((pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert any(dep.startswith("markdown-it-py") for dep in project["project"]["optional-dependencies"]["test"])


# ---- image paths held to the spec's folder ----------------------------------------------

def _image(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _reference_spec(root: pathlib.Path, value: str) -> pathlib.Path:
    data = spec_data("probe", generator="fixed-image-text-pair")
    data["stimuli"].pop("reference_prompt", None)
    data["stimuli"]["reference_image"] = value
    return write_spec(root / "specs", "probe", data)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "home"])
def test_a_reference_image_outside_the_spec_folder_is_refused(tmp_path, monkeypatch, where):
    outside = _image(tmp_path / "secret" / "photo.png")
    monkeypatch.setenv("HOME", str(tmp_path / "secret"))
    value = {"absolute": str(outside), "dotdot": "../secret/photo.png", "home": "~/photo.png"}[where]
    spec = _reference_spec(tmp_path, value)
    out = tmp_path / "run"
    line = one_error(invoke("run", spec, *FAST, "--out", out))
    assert f"{spec}: stimuli.reference_image: image " in line and "is outside the spec's folder" in line
    assert "--allow-outside-images" in line and not out.exists()


def test_a_link_out_of_the_spec_folder_is_refused(tmp_path):
    outside = _image(tmp_path / "secret" / "photo.png")
    spec = _reference_spec(tmp_path, "photo.png")
    (spec.parent / "photo.png").symlink_to(outside)
    assert "is outside the spec's folder" in one_error(invoke("run", spec, *FAST, "--out", tmp_path / "run"))


def test_pairs_file_image_paths_outside_are_refused_naming_file_pair_and_key(tmp_path):
    specs = tmp_path / "specs"
    _image(specs / "a.png")
    _image(tmp_path / "b.png", seed=1)
    rows = ["id,a_image,b_image"] + [f"p{i},a.png,../b.png" for i in range(3)]
    (specs / "pairs.csv").write_text("\n".join(rows) + "\n")
    data = spec_data("probe", generator="image-pair")
    data["stimuli"] = {"pairs_file": "pairs.csv"}
    spec = write_spec(specs, "probe", data)
    line = one_error(invoke("run", spec, *FAST, "--no-figures", "--out", tmp_path / "run"))
    assert f"{spec}: stimuli.pairs_file 'pairs.csv': pair 'p0': b_image: image " in line
    assert "(and 2 more)" in line


def test_allow_outside_images_reads_them_and_records_no_path(tmp_path):
    outside = _image(tmp_path / "secret" / "photo.png")
    spec = _reference_spec(tmp_path, str(outside))
    out = tmp_path / "run"
    result = invoke("run", spec, *FAST, "--allow-outside-images", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["stimuli"]["reference_image"] == "photo.png"
    assert manifest["config"]["allow_outside_images"] is True
    for name in ("manifest.json", "README.md", "summary.json"):
        assert str(tmp_path) not in (out / name).read_text(), name
    # --no-figures draws no figure, the conditioning images' sheet included
    assert not (out / "figures").exists()
    assert "--allow-outside-images" in (out / "README.md").read_text()  # the Reproduce line keeps it


def test_the_api_option_allows_them_too(tmp_path):
    import plantain_core as pt

    outside = _image(tmp_path / "secret" / "photo.png")
    spec = _reference_spec(tmp_path, str(outside))
    with pytest.raises(pt.PlantainError, match="is outside the spec's folder"):
        pt.run(spec, model="tiny", layouts=["heads"], flips=20, splits=5, out=tmp_path / "a", figures=False)
    run = pt.run(spec, model="tiny", layouts=["heads"], flips=20, splits=5, out=tmp_path / "b", figures=False,
                 allow_outside_images=True)
    assert run.manifest["images"][0]["file"] == "photo.png"


# ---- local model folders and publish ----------------------------------------------------

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from plantain_core.models import TinyLoader

    folder = tmp_path_factory.mktemp("models") / "klein-folder"
    TinyLoader().load("tiny", "cpu").pipeline.save_pretrained(folder)
    return folder


LOCAL = ("--device", "cpu", "--dtype", "fp32", "--height", "64", "--width", "64", "--units", "heads", "--flips", "20",
         "--splits", "5", "--no-progress")


def test_a_local_model_folder_is_named_not_pathed_and_resumes(tmp_path, model_folder):
    # a reference image generated by the local model: its record names the model too
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", generator="fixed-image-text-pair"))
    out = tmp_path / "run"
    result = invoke("run", spec, "--model", model_folder, *LOCAL, "--out", out)
    assert result.exit_code == 0, result.output
    texts = {p.name: p.read_text() for p in [out / "manifest.json", out / "summary.json", out / "README.md"]}
    for name, text in texts.items():
        assert str(model_folder.parent) not in text, name
    manifest = json.loads(texts["manifest.json"])
    assert manifest["config"]["model"] == "klein-folder"
    assert manifest["model"]["id"] == "klein-folder" and manifest["model"]["local"] is True
    assert [i["model_id"] for i in manifest["images"]] == ["klein-folder"]
    from huggingface_hub import ModelCard

    assert "base_model" not in ModelCard.load(out / "README.md").data.to_dict()
    assert "`klein-folder` (a local diffusers folder)" in texts["README.md"]
    assert "with `--model` the path of the local diffusers folder `klein-folder` the run loaded" in texts["README.md"]
    # the folder's path stays in the run folder, unpublished, so --resume (with or without --model) finds it
    assert json.loads((out / ".plantain.local.json").read_text()) == {"model": str(model_folder.resolve())}
    dry = invoke("publish", out, "someone/card", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert ".plantain.local.json" not in dry.stdout and str(tmp_path) not in dry.stdout
    before = (out / "captures" / "heads.npz").read_bytes()
    _interrupt(out)
    resumed = invoke("run", spec, "--resume", "--out", out)
    assert resumed.exit_code == 0, resumed.output
    assert (out / "captures" / "heads.npz").read_bytes() == before
    _interrupt(out)
    again = invoke("run", spec, "--model", model_folder, "--resume", "--out", out)
    assert again.exit_code == 0, again.output
    # plantain causal finds the folder the same way, and names it as the manifest does
    causal = invoke("causal", out, "--top", "2", "--controls", "2", "--doses", "2", "--no-progress", "--exhaustive")
    assert causal.exit_code == 0, causal.output
    data = json.loads((out / "causal.json").read_text())
    assert data["check_model"]["id"] == "klein-folder" and str(model_folder.parent) not in json.dumps(data)
    assert not any("this check used" in n for n in data.get("notes") or [])
    # another folder of the same name is not the same model
    other_real = tmp_path / "copy" / "klein-folder"
    import shutil

    shutil.copytree(model_folder, other_real)
    _interrupt(out)
    line = one_error(invoke("run", spec, "--model", other_real, "--resume", "--out", out))
    assert "cannot resume" in line and "--model" in line


def _interrupt(out: pathlib.Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (out / "manifest.json").write_text(json.dumps(manifest))
    for npz in (out / "captures").glob("*.npz"):
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["done"] = np.array([True] + [False] * (len(arrays["done"]) - 1))
        np.savez(npz, **arrays)


def test_publish_refuses_a_run_that_names_a_local_path(tmp_path):
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe"))
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--no-figures", "--out", out).exit_code == 0
    assert invoke("publish", out, "someone/card", "--dry-run").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())  # as a run made before the fix recorded it
    manifest["model"]["id"] = str(tmp_path / "models" / "klein")
    (out / "manifest.json").write_text(json.dumps(manifest))
    line = one_error(invoke("publish", out, "someone/card", "--dry-run"))
    assert line.startswith(f"Error: {out / 'manifest.json'} names the local path '{tmp_path}/models/klein'")
    assert "nothing was uploaded" in line


def test_no_figures_draws_no_stimulus_sheet(tmp_path):
    specs = tmp_path / "specs"
    _image(specs / "before.png")
    _image(specs / "after.png", seed=1)
    data = spec_data("probe", generator="image-pair")
    for pair in data["stimuli"]["pairs"]:
        pair.clear()
    for i, pair in enumerate(data["stimuli"]["pairs"]):
        pair.update({"id": f"p{i}", "a_image": "before.png", "b_image": "after.png"})
    spec = write_spec(specs, "probe", data)
    out = tmp_path / "run"
    assert invoke("run", spec, *FAST, "--no-figures", "--out", out).exit_code == 0
    assert not (out / "figures").exists()
    assert "stimuli.png" not in (out / "README.md").read_text()
    assert invoke("run", spec, *FAST, "--out", tmp_path / "with").exit_code == 0
    assert (tmp_path / "with" / "figures" / "stimuli.png").is_file()  # drawn when figures are
