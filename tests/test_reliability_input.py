"""Reliability, part 1: bad input. Every bad spec and every bad option of ``plantain run``
ends in one clear ``Error:`` message (naming the file and key, or the option), a non-zero
exit, no traceback, and no run folder: nothing on disk changes. Specs are data."""

from __future__ import annotations

import json
import os
import pathlib
import re

import numpy as np
import pytest
import toml
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.testing import spec_data, write_spec

QUIET = ("--no-figures", "--no-progress")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from threads; on a busy shared CPU two OpenMP threads
    per process slow it down many times over."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Root and everything under it with size and mtime (a folder made and removed again
    still changes its parent's mtime): 'nothing changed' is testable."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in [root, *root.rglob("*")]}


def invoke(args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_clean_error(result, code=1):
    """A user error: the given exit code, no traceback, and only an error on stderr."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return result.stderr


# --- bad specs --------------------------------------------------------------------------

def _tiny_png(path: pathlib.Path) -> pathlib.Path:
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8)).save(path)
    return path


def _image_spec(d: pathlib.Path, a_image: str) -> pathlib.Path:
    _tiny_png(d / "ok.png")
    data = spec_data("probe", generator="image-pair")
    data["stimuli"]["pairs"][0] = {"id": "p0", "a_image": a_image, "b": "a red cube"}
    return write_spec(d, "probe", data)


def _edit(**changes):
    """A case: the valid 3-pair spec with top-level keys replaced (None deletes)."""
    def build(d):
        data = spec_data("probe")
        for key, value in changes.items():
            if value is None:
                data.pop(key)
            else:
                data[key] = value
        return write_spec(d, "probe", data)
    return build


def _pairs(*rows):
    return {"pairs": [{"id": i, "a": a, "b": b} for i, a, b in rows]}


def _malformed(d):
    path = d / "probe.toml"
    path.write_text('schema = 1\nname = "probe"\ngenerator = "text-pair"\n[stimuli\npairs = []\n')
    return path


def _not_utf8(d):
    path = d / "probe.toml"
    path.write_bytes(b'schema = 1\nname = "pr\xff\xfeobe"\n')
    return path


def _text_file(path):
    path.write_text("just text, whatever the extension says")
    return path.name


def _name_mismatch(d):
    return write_spec(d, "probe", spec_data("other"))


# (id, builder(dir) -> spec path, expected message after "FILE: ", as a regex)
SPEC_CASES = [
    ("malformed-toml", _malformed, r"line 4, column \d+: invalid TOML: .+"),
    ("not-utf8", _not_utf8, r"cannot read file: 'utf-8' codec can't decode .+"),
    ("unknown-key", _edit(titel="x"), r"titel: unknown key \(did you mean 'title'\?\)"),
    ("wrong-type", _edit(direction="big"), r"direction: expected a list of two strings, got string"),
    ("wrong-type-table", _edit(stimuli="pairs"), r"stimuli: expected a table, got string"),
    ("missing-field", _edit(stimuli=None), r"stimuli: required key is missing"),
    ("too-few-pairs", _edit(stimuli=_pairs(("p0", "a cat", "a dog"), ("p1", "a car", "a bus"))),
     r"stimuli\.pairs: at least 3 pairs are needed for a paired test, got 2"),
    ("duplicate-ids", _edit(stimuli=_pairs(("p0", "a cat", "a dog"), ("p1", "a car", "a bus"), ("p1", "a sun", "a moon"))),
     r"stimuli\.pairs\[2\]\.id: duplicate pair id 'p1' \(also stimuli\.pairs\[1\]\)"),
    ("a-equals-b", _edit(stimuli=_pairs(("p0", "a cat", "a dog"), ("p1", "a car", "a car"), ("p2", "a sun", "a moon"))),
     r"stimuli\.pairs\[1\]: A and B of pair 'p1' are identical"),
    ("unknown-generator", _edit(generator="image-pairs"),
     r"generator: unknown generator 'image-pairs' \(did you mean 'image-pair'.*\); known: fixed-image-text-pair, image-pair, text-pair"),
    ("unknown-interpreter", _edit(interpreter="mesure"),
     r"interpreter: unknown interpreter 'mesure' \(did you mean 'measure'\?\); known: .*default.*"),
    ("missing-image", lambda d: _image_spec(d, "missing.png"),
     r"stimuli\.pairs\[0\]\.a_image: image file not found: {dir}/missing\.png"),
    ("not-an-image", lambda d: _image_spec(d, _text_file(d / "notes.png")),
     r"stimuli\.pairs\[0\]\.a_image: not an image file: {dir}/notes\.png \(UnidentifiedImageError\)"),
    ("name-not-file", _name_mismatch, r"name: 'other' must equal the file name stem 'probe'"),
]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """Run from an empty folder, so a default runs/ folder would show up in the snapshot."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("build,expected", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_bad_spec_is_one_clear_error_and_no_run_folder(tmp_path, cwd, build, expected):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    path = build(spec_dir).resolve()
    before = snapshot(tmp_path)
    for out in (tmp_path / "out", None):  # explicit --out, and the default runs/<probe>-... in cwd
        args = ["run", path, "--model", "tiny", *QUIET] + (["--out", out] if out else [])
        err = assert_clean_error(invoke(args))
        pattern = f"Error: {re.escape(str(path))}: " + expected.replace("{dir}", re.escape(str(spec_dir.resolve()))) + "\n"
        assert re.fullmatch(pattern, err), err
    assert snapshot(tmp_path) == before


def test_bad_spec_by_name_reports_every_problem_of_the_file(tmp_path, cwd):
    """Run by name from a --spec-dir: the same FILE: key: message lines, all of them."""
    spec_dir = tmp_path / "specs"
    path = write_spec(spec_dir, "probe", spec_data("probe", title=3, colour="red")).resolve()
    before = snapshot(tmp_path)
    err = assert_clean_error(invoke(["run", "probe", "--spec-dir", spec_dir, "--model", "tiny", "--out", tmp_path / "out"]))
    assert err.splitlines() == [f"Error: {path}: colour: unknown key", f"{path}: title: expected a string, got integer"]
    assert snapshot(tmp_path) == before


def test_unreadable_image_file(tmp_path, cwd):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    path = _image_spec(spec_dir, "ok.png")
    image = spec_dir / "ok.png"
    image.chmod(0)
    try:
        if os.access(image, os.R_OK):
            pytest.skip("running as root: chmod 000 does not make a file unreadable")
        before = snapshot(tmp_path)
        err = assert_clean_error(invoke(["run", path, "--model", "tiny", "--out", tmp_path / "out"]))
        assert err == f"Error: {path.resolve()}: stimuli.pairs[0].a_image: image file is not readable: {image.resolve()}\n"
        assert snapshot(tmp_path) == before
    finally:
        image.chmod(0o644)


def test_unreadable_image_file_even_as_root(tmp_path, cwd, monkeypatch):
    """The same check where chmod cannot deny reading (root): the OS refuses the open."""
    import PIL.Image

    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    path = _image_spec(spec_dir, "ok.png")
    image = (spec_dir / "ok.png").resolve()
    real_open = PIL.Image.open

    def guarded_open(fp, *args, **kwargs):
        if pathlib.Path(str(fp)).resolve() == image:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", guarded_open)
    before = snapshot(tmp_path)
    err = assert_clean_error(invoke(["run", path, "--model", "tiny", "--out", tmp_path / "out"]))
    assert err == f"Error: {path.resolve()}: stimuli.pairs[0].a_image: image file is not readable: {image}\n"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("how", ["spec-dir-twice", "env-and-spec-dir"])
def test_one_name_in_two_directories(tmp_path, cwd, how):
    first, second = tmp_path / "one", tmp_path / "two"
    write_spec(first, "twin")
    write_spec(second, "twin", spec_data("twin", n_pairs=4))
    args = ["run", "twin", "--model", "tiny", "--out", tmp_path / "out"]
    env = None
    if how == "spec-dir-twice":
        args += ["--spec-dir", first, "--spec-dir", second]
    else:
        args += ["--spec-dir", second]
        env = {"PLANTAIN_SPEC_PATH": str(first)}  # searched before --spec-dir
    before = snapshot(tmp_path)
    err = assert_clean_error(invoke(args, env=env))
    a, b = (first / "twin.toml").resolve(), (second / "twin.toml").resolve()
    assert err == f"Error: {a}: probe 'twin' is defined twice: {a} and {b}\n"
    assert snapshot(tmp_path) == before


def test_missing_spec_file(tmp_path, cwd):
    err = assert_clean_error(invoke(["run", tmp_path / "nowhere" / "probe.toml", "--model", "tiny"]))
    assert err == f"Error: spec file not found: {tmp_path / 'nowhere' / 'probe.toml'}\n"
    assert [p for p in cwd.rglob('*')] == []


# --- bad options ------------------------------------------------------------------------

@pytest.fixture
def good_spec(tmp_path):
    return write_spec(tmp_path / "specs", "probe")


OPTION_CASES = [
    ("unknown-probe", ["mesure"], 1, "Error: unknown probe 'mesure' (did you mean 'measure'?); known: after, dense, measure, "),
    ("units", ["{spec}", "--units", "heads,slice16"], 2,
     "Error: Invalid value for '--units': 'heads,slice16': unknown unit layout 'slice16' (did you mean 'slices16'?); choose from heads, slices16"),
    ("units-empty", ["{spec}", "--units", ","], 2,
     "Error: Invalid value for '--units': ',': no unit layout given; choose from heads, slices16"),
    ("device", ["{spec}", "--device", "gpu0"], 2,
     "Error: Invalid value for '--device': 'gpu0' is not a device; use auto, cpu, cuda, cuda:N or mps"),
    ("dtype", ["{spec}", "--dtype", "int8"], 2, "Error: Invalid value for '--dtype': 'int8' is not a dtype; use bf16, fp16 or fp32"),
    ("flips", ["{spec}", "--flips", "0"], 2, "Error: Invalid value for '--flips': 0 is not in the range x>=1."),
    ("splits", ["{spec}", "--splits", "-3"], 2, "Error: Invalid value for '--splits': -3 is not in the range x>=1."),
    ("batch-size", ["{spec}", "--batch-size", "0"], 2, "Error: Invalid value for '--batch-size': 0 is not in the range x>=1."),
    ("height", ["{spec}", "--height", "100"], 2, "Error: Invalid value for '--height': 100 is not a multiple of 16"),
    ("thresholds", ["{spec}", "--thresholds", "3,-1"], 2, "Error: Invalid value for '--thresholds': '3,-1': thresholds must be positive numbers (e.g. 3,5)"),
    ("model", ["{spec}", "--model", "no-such-model"], 1, "Error: no model loader accepts 'no-such-model'; pass a tiny model"),
]


@pytest.mark.parametrize("args,code,message", [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_bad_option_names_the_option_and_creates_nothing(tmp_path, cwd, good_spec, args, code, message):
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    args = [a.replace("{spec}", str(good_spec)) for a in args]
    model = [] if "--model" in args else ["--model", "tiny"]
    err = assert_clean_error(invoke(["run", *args, *model, "--out", out, *QUIET]), code)
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and lines[0].startswith(message.replace("{out}", str(out))), err
    assert snapshot(tmp_path) == before


def test_device_without_cuda_is_refused_before_any_work(tmp_path, cwd, good_spec):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    before = snapshot(tmp_path)
    for device in ("cuda", "cuda:1"):
        err = assert_clean_error(invoke(["run", good_spec, "--model", "tiny", "--device", device, "--out", tmp_path / "out"]))
        assert err == f"Error: device '{device}' requested but CUDA is not available; use --device cpu or auto\n"
    assert snapshot(tmp_path) == before


def test_out_that_is_not_empty_or_not_a_folder_is_left_alone(tmp_path, cwd, good_spec):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    afile = tmp_path / "results.txt"
    afile.write_text("also precious")
    before = snapshot(tmp_path)
    err = assert_clean_error(invoke(["run", good_spec, "--model", "tiny", "--out", folder, *QUIET]))
    assert err == f"Error: --out {folder} exists and is not empty; pass --resume to continue it or choose another --out\n"
    err = assert_clean_error(invoke(["run", good_spec, "--model", "tiny", "--out", afile, *QUIET]))
    assert err == f"Error: --out {afile} is a file, not a folder; choose another --out\n"
    # --resume into a folder that holds no run must not start a fresh run among the user's files
    err = assert_clean_error(invoke(["run", good_spec, "--model", "tiny", "--out", folder, "--resume", *QUIET]))
    assert err == f"Error: --resume: {folder} holds no plantain run (no manifest.json) and is not empty; choose another --out\n"
    assert snapshot(tmp_path) == before
    assert (folder / "notes.txt").read_text() == "precious" and afile.read_text() == "also precious"


# --- specs are data ---------------------------------------------------------------------

def test_python_in_a_spec_is_just_a_prompt(tmp_path, cwd):
    """TOML strings that look like code, template syntax or paths stay literal prompts."""
    canary = tmp_path / "PWNED"
    code = f"__import__('os').system('touch {canary}')"
    data = spec_data("probe")
    data["stimuli"] = {
        "template": {"a": "{x} as a photo", "b": "{x} as a drawing"},
        "items": [
            {"id": "code", "x": code},
            {"id": "format", "x": "{x.__class__.__mro__} {0} {}"},  # a value is never formatted again
            {"id": "path", "x": "../../etc/passwd"},
        ],
    }
    path = write_spec(tmp_path / "specs", "probe", data)
    result = invoke(["show", path, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    prompts = {p["id"]: (p["a"]["prompt"], p["b"]["prompt"]) for p in shown["pairs"]}
    assert prompts == {
        "code": (f"{code} as a photo", f"{code} as a drawing"),
        "format": ("{x.__class__.__mro__} {0} {} as a photo", "{x.__class__.__mro__} {0} {} as a drawing"),
        "path": ("../../etc/passwd as a photo", "../../etc/passwd as a drawing"),
    }
    assert not canary.exists()


def test_image_paths_resolve_relative_to_the_spec_not_the_cwd(tmp_path, monkeypatch):
    spec_dir = tmp_path / "project" / "specs"
    spec_dir.mkdir(parents=True)
    path = _image_spec(spec_dir, "ok.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ok.png here: resolving against the cwd would fail validation
    result = invoke(["show", os.path.relpath(path, elsewhere), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["pairs"][0]["a"]["image"] == {"path": str((spec_dir / "ok.png").resolve())}
    # and a decoy in the cwd with the same name is not picked up
    _tiny_png(elsewhere / "ok.png")
    shown = json.loads(invoke(["show", os.path.relpath(path, elsewhere), "--json"]).stdout)
    assert shown["pairs"][0]["a"]["image"]["path"] == str((spec_dir / "ok.png").resolve())


def test_image_cache_files_stay_inside_the_cache_dir(tmp_path, monkeypatch):
    """A prompt shaped like a path generates an image whose file is a hex digest in the cache."""
    from plantain_core.capture.images import get_image, images_dir
    from plantain_core.models import TinyLoader
    from plantain_core.spec.stimuli import ImageSource

    cache = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("PLANTAIN_CACHE_DIR", str(cache))
    bundle = TinyLoader().load("tiny", "cpu")
    source = ImageSource(prompt="../../etc/passwd", seed=1, steps=2)
    img, record = get_image(bundle, source, 128, 128)
    assert img.size == (128, 128)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    key = record["key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert files == [pathlib.Path("a/b/cache/images") / f"{key}.json", pathlib.Path("a/b/cache/images") / f"{key}.png"]
    assert pathlib.Path(record["path"]).resolve().parent == images_dir().resolve() == (cache / "images").resolve()
    assert json.loads((cache / "images" / f"{key}.json").read_text())["prompt"] == "../../etc/passwd"
    # the second time it is read from the cache, not generated
    again, record2 = get_image(bundle, source, 128, 128)
    assert record2["cached"] is True and np.array_equal(np.asarray(again), np.asarray(img))


def test_spec_toml_with_a_table_where_a_string_belongs_lists_every_problem(tmp_path, cwd):
    """Deeply wrong data (tables, arrays, booleans in odd places) is reported, never evaluated."""
    data = spec_data("probe")
    data["stimuli"]["pairs"][0] = {"id": "p0", "a": {"__class__": "x"}, "b": ["list"]}
    data["schema"] = True
    path = write_spec(tmp_path / "specs", "probe", data).resolve()
    err = assert_clean_error(invoke(["run", path, "--model", "tiny", "--out", tmp_path / "out"]))
    lines = err.splitlines()
    assert lines[0] == f"Error: {path}: schema: expected an integer, got boolean"
    assert f"{path}: stimuli.pairs[0].a: expected a non-empty string" in lines
    assert f"{path}: stimuli.pairs[0].b: expected a non-empty string" in lines
    assert not (tmp_path / "out").exists()
    assert toml.loads(path.read_text())["schema"] is True  # the file itself is untouched


def test_missing_model_folder_is_named(tmp_path):
    from plantain_core.errors import PlantainError
    from plantain_core.models.loaders import resolve_loader

    with pytest.raises(PlantainError, match="--model: folder not found: /no/such/dir"):
        resolve_loader("/no/such/dir")


def test_third_party_model_loader_is_used(tmp_path, monkeypatch):
    from plantain_core.models.loaders import resolve_loader
    from plantain_core.testing import write_plugin_dist

    monkeypatch.syspath_prepend(str(tmp_path))
    write_plugin_dist(tmp_path, "sd_plug", """
        from plantain_core import hookimpl

        class SD:
            description = "another family"
            def accepts(self, model):
                return model.startswith("acme/")
            def load(self, model, device, dtype, **options):
                raise NotImplementedError

        @hookimpl
        def plantain_register_models(register):
            register("acme", SD())
        """)
    name, loader = resolve_loader("acme/diffuser-1")
    assert name == "acme" and type(loader).__name__ == "SD"
    assert resolve_loader("tiny")[0] == "tiny"
