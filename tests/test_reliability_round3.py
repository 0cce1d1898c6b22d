"""Reliability, round 3 (issue 26): the last tracebacks and hangs, and the guards no test
pinned. Each file-system fault, hostile plugin value, out-of-memory and unreachable
cluster is one ``Error:`` line with nothing half-written; each guard is pinned by a test
that the one-line slip in it fails."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid

import attrs
import pytest
from click.testing import CliRunner

from plantain_core.cli import main
from plantain_core.errors import PlantainError
from plantain_core.testing import spec_data, write_spec
from test_hostile_folders import ARGS, copy, good  # noqa: F401 (good: the finished run every fault starts from)

CAUSAL = ("--top", "1", "--controls", "1", "--doses", "1", "--no-progress")


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
            if not p.name.startswith(".plantain")}


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _replace_with_dir(name):
    def apply(run):
        path = run / name
        if path.exists():
            path.unlink()
        path.mkdir()
        (path / "keep").write_text("x")
    return apply


def _replace_with_file(name):
    def apply(run):
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        path.write_text("not a folder")
    return apply


# --- 9. file-system faults: report and causal, as run already does -------------------------------------------------
FAULTS = [
    ("lock-dir", _replace_with_dir(".plantain.lock"), "cannot lock the run folder", True),
    ("holder-dir", _replace_with_dir(".plantain.holder"), "cannot lock the run folder", True),
    ("units-dir", _replace_with_dir("units.csv"), "units.csv is not a regular file", True),
    ("card-dir", _replace_with_dir("README.md"), "README.md is not a regular file", True),
    ("causal-json-dir", _replace_with_dir("causal.json"), "causal.json is not a regular file", False),
    ("staging-file", _replace_with_file(".staging"), ".staging is not a folder", True),
    ("figures-file", _replace_with_file("figures"), "figures is a file where plantain writes the folder", True),
]


@pytest.mark.parametrize("build,message,report", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_report_on_a_file_system_fault_is_one_line_and_changes_nothing(good, tmp_path, build, message, report):
    run = copy(good, tmp_path / "run")
    build(run)
    before = snapshot(run)
    result = CliRunner().invoke(main, ["report", str(run)])  # figures on: the figures folder is written
    if not report:  # causal.json is read (a note on the card when unreadable), never written, by report
        assert result.exit_code == 0, result.output
        return
    assert message in one_error(result)
    assert snapshot(run) == before  # nothing half-written: every output or none
    assert not (run / ".staging").is_dir()


@pytest.mark.parametrize("build,message", [f[1:3] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_causal_on_a_file_system_fault_is_refused_before_the_work(good, tmp_path, monkeypatch, build, message):
    import plantain_core.causal.check as check

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the folder was checked")

    monkeypatch.setattr(check, "_load_run_model", no_model)
    run = copy(good, tmp_path / "run")
    build(run)
    before = snapshot(run)
    assert message in one_error(CliRunner().invoke(main, ["causal", str(run), *CAUSAL]))
    assert snapshot(run) == before


def test_a_read_only_run_folder_is_one_line(good, tmp_path, monkeypatch):
    """Tests run as root, whom permissions do not stop: the refusals root would meet are
    planted (the lock file cannot be made; the folder is not writable)."""
    import filelock

    run = copy(good, tmp_path / "run")

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", self.lock_file)

    with monkeypatch.context() as m:
        m.setattr(filelock.BaseFileLock, "acquire", refused)
        for args in (["report", str(run)], ["causal", str(run), *CAUSAL]):
            line = one_error(CliRunner().invoke(main, args))
            assert line == f"Error: cannot lock the run folder {run}: Permission denied ({run / '.plantain.lock'})"
    real_access = os.access
    monkeypatch.setattr("os.access", lambda path, mode, **kw: not (pathlib.Path(path) == run and mode & os.W_OK)
                        and real_access(path, mode))
    for args in (["report", str(run)], ["causal", str(run), *CAUSAL]):
        assert one_error(CliRunner().invoke(main, args)) == (f"Error: {run}: . is read-only; plantain cannot write its "
                                                             "outputs there")


# --- the run folder's guards ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts", [("..",), ("a", ".."), ("..", "x"), (".",), ("",), ("a/b",), ("a\\b",), ("/",),
                                   ("a\x00",)])
def test_inside_accepts_only_plain_names(tmp_path, parts):
    from plantain_core.rundir.folder import RunFolderError, inside

    with pytest.raises(RunFolderError, match="is not a plain file name"):
        inside(tmp_path, *parts)
    assert inside(tmp_path, "figures", "a.png") == tmp_path / "figures" / "a.png"


def _hostile_commit(run: pathlib.Path, names) -> None:
    staging = run / ".staging"
    staging.mkdir()
    (staging / "COMMIT").write_text(json.dumps(names))


@pytest.mark.parametrize("name", ["../x.txt", "../../x.txt", "figures/../../x.txt"])
def test_recovery_moves_nothing_out_of_the_folder(tmp_path, name):
    """A hostile COMMIT naming ``..``: the file stays, nothing lands outside, and the
    refusal is one RunFolderError."""
    from plantain_core.rundir.folder import RunFolderError, locked

    run = tmp_path / "a" / "b" / "run"
    run.mkdir(parents=True)
    (run / "x.txt").write_text("mine")
    (run / "figures").mkdir()
    _hostile_commit(run, [name])
    with pytest.raises(RunFolderError, match="is not a plain file name"):
        with locked(run):
            pass
    assert (run / "x.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.rglob("x.txt")) == ["x.txt"]


def test_a_refused_recovery_releases_the_lock_every_time(tmp_path):
    """recover() refusing inside locked(): the file lock and the in-process entry are let
    go, so the next locked() recovers (and refuses) again instead of entering."""
    import filelock

    import plantain_core.rundir.folder as runfolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "x.txt").write_text("mine")
    _hostile_commit(run, ["../x.txt"])
    for _ in range(2):
        with pytest.raises(runfolder.RunFolderError):
            with runfolder.locked(run):
                pytest.fail("entered a folder whose recovery was refused")
        assert run.resolve() not in runfolder._held
        assert not (run / runfolder.HOLDER).exists()
        other = filelock.FileLock(str(run / runfolder.LOCK), timeout=0)
        other.acquire()  # free: an unreleased lock would time out here
        other.release()
    assert (run / ".staging" / "COMMIT").is_file()  # refused, not silently dropped


def test_a_commit_into_a_folder_where_a_file_goes_moves_nothing(tmp_path):
    """All names are checked before the first move: a refused commit moves none."""
    from plantain_core.rundir.folder import RunFolderError, locked

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("old")
    _hostile_commit(run, ["summary.json", "units.csv"])
    (run / ".staging" / "summary.json").write_text("new")
    (run / ".staging" / "units.csv").write_text("new")
    (run / "units.csv").mkdir()
    with pytest.raises(RunFolderError, match="units.csv is not a regular file"):
        with locked(run):
            pass
    assert (run / "summary.json").read_text() == "old"


# --- manifest and config guards ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("seed", True), ("height", False), ("batch_size", True), ("guidance", True),
                                         ("steps", False), ("token_counts", [{"id": "p", "a": True, "b": 1}])])
def test_a_boolean_is_not_a_number_in_a_manifest(field, value):
    from plantain_core.rundir.manifest import ManifestError, check_manifest

    with pytest.raises(ManifestError, match="expected an integer|expected a number"):
        check_manifest({field: value})
    check_manifest({"cfg": True, "seed": 3, "guidance": 1})  # the real types pass


@pytest.mark.parametrize("thresholds", [(0, 3), (0.0,), "0,5", (3, -1)])
def test_a_threshold_of_zero_or_less_is_refused(thresholds):
    from plantain_core.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="--thresholds: .* must be positive finite numbers"):
        RunConfig(probe="p", thresholds=thresholds)
    assert RunConfig(probe="p", thresholds=(1e-9, 3)).thresholds == (1e-9, 3.0)


@pytest.mark.parametrize("steps,capture", [(4, (4,)), (4, (0, 4)), (1, (1,)), (3, (7,))])
def test_a_capture_step_past_the_last_step_is_refused(steps, capture):
    from plantain_core.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match=f"--capture-steps: step {max(capture)} does not exist with --steps {steps}"):
        RunConfig(probe="p", steps=steps, capture_steps=capture)
    assert RunConfig(probe="p", steps=steps, capture_steps=(steps - 1,)).captured_steps == (steps - 1,)


def test_a_resume_with_another_guidance_is_refused(good, tmp_path):
    from plantain_core.config import RunConfig

    assert RunConfig(probe="p", guidance=2.0).capture_differences(RunConfig(probe="p")) == \
        ["--guidance: was 1, now 2"]
    run = copy(good, tmp_path / "run")
    m = json.loads((run / "manifest.json").read_text())
    m["config"]["steps"] = 2  # guidance means something only with a loop
    (run / "manifest.json").write_text(json.dumps(m))
    result = CliRunner().invoke(main, ["run", "probe", "--spec-dir", str(good.parent / "specs"), "--out", str(run),
                                       "--resume", "--guidance", "3", "--no-progress"])
    assert "--guidance: was 1, now 3" in one_error(result)


# --- model family guards -------------------------------------------------------------------------------------------
def _klein_family_class():
    from plantain_plugins.families.flux2 import Flux2KleinFamily

    return Flux2KleinFamily


@pytest.mark.parametrize("method", ["sites", "prompt_tokens", "encode_prompts", "noise", "text_kwargs",
                                    "transformer_kwargs", "schedule"])
def test_a_family_leaving_a_required_method_unimplemented_is_refused(method):
    from plantain_core.models.family import ModelFamily, contract_problem, guarded

    lazy = type("Lazy", (_klein_family_class(),), {"name": "lazy", method: getattr(ModelFamily, method)})()
    assert contract_problem(lazy) == f"it does not implement `{method}`"
    with pytest.raises(PlantainError, match=f"breaks the contract .*it does not implement `{method}`"):
        guarded(lazy, "model loader 'lazy'")
    assert contract_problem(_klein_family_class()()) is None


@pytest.fixture(scope="module")
def klein():
    from plantain_core.models.loaders import TinyLoader
    from plantain_plugins.families.builtin import TINY_KLEIN

    return TinyLoader(TINY_KLEIN).load("tiny", "cpu")


@pytest.mark.parametrize("change", [{"attn_dim": +1}, {"attn_dim": -1}, {"head_dim": +1}, {"heads": +1}])
def test_an_attention_width_other_than_heads_times_head_dim_is_refused(klein, change):
    from plantain_core.models.family import checked_sites
    from plantain_core.models.lookup import family_of

    family = family_of(klein)
    sites = family.sites(klein.pipeline.transformer)
    (key, delta), = change.items()
    site = sites[0]
    bad = attrs.evolve(site, block=attrs.evolve(site.block, **{key: getattr(site.block, key) + delta}))
    wrong = type("Wrong", (_klein_family_class(),), {"name": "wrong", "sites": lambda self, tr: [bad, *sites[1:]]})()
    with pytest.raises(PlantainError, match=r"attn_dim = heads x head_dim"):
        checked_sites(wrong, klein.pipeline.transformer)
    assert checked_sites(family, klein.pipeline.transformer)  # the real sites pass


def test_early_exit_leaves_a_pipeline_reading_layer_0_as_it_is(klein):
    """hidden_states[0] is the embedding output, which no layer hook sees: the early exit
    must not take over (it would hand the pipeline a missing or a wrong layer)."""
    import torch

    from plantain_core.models.early_exit import early_exit

    pipe = klein.pipeline
    prompts = ["a red cube on a table"]

    def encode(layers, early):
        with torch.inference_mode():
            if early:
                with early_exit(pipe.text_encoder, layers):
                    assert "forward" not in vars(pipe.text_encoder)  # left as is
                    return pipe.encode_prompt(prompt=prompts, device="cpu", max_sequence_length=512,
                                              text_encoder_out_layers=layers)[0]
            return pipe.encode_prompt(prompt=prompts, device="cpu", max_sequence_length=512,
                                      text_encoder_out_layers=layers)[0]

    for layers in ((0, 1), (0,), (1, 0, 2)):
        assert torch.equal(encode(layers, True), encode(layers, False))


# --- 10. a plugin generator's pair meta, checked as JSON data where it is returned ----------------------------------
META_PLUGIN = """
import math
import os

from plantain_core import Pair, Stimulus, hookimpl

METAS = {"nan": {"x": math.nan}, "object": {"x": object()}, "deep-inf": {"x": [1, {"y": -math.inf}]},
         "key": {1: "one"}, "list": [1, 2], "fine": {"x": 1.5, "y": ["a", {"z": True}]}}


class MetaGen:
    description = "pairs whose meta is chosen by META_KIND"

    def validate(self, stimuli, spec_dir):
        return []

    def pairs(self, spec):
        meta = METAS[os.environ["META_KIND"]]
        return [Pair(f"p{i}", Stimulus(f"a cat {i}"), Stimulus(f"a dog {i}"), meta) for i in range(3)]


@hookimpl
def plantain_register_generators(register):
    register("metagen", MetaGen())
"""


@pytest.mark.parametrize("kind,why", [
    ("nan", "meta.x: nan is not a finite number"), ("object", "meta.x: a object cannot be pair meta"),
    ("deep-inf", "meta.x: -inf is not a finite number"), ("key", "meta is a dict, not a table with string keys"),
    ("list", "meta is a list, not a table"),
])
def test_a_plugin_pair_meta_that_is_not_json_data_is_one_line_naming_the_plugin(tmp_path, monkeypatch, kind, why):
    from plantain_core.testing import write_plugin_dist

    site = tmp_path / "site"
    write_plugin_dist(site, f"metagen_{uuid.uuid4().hex[:8]}", META_PLUGIN, entry_name="metagen_plug",
                      distribution="metagen-plug", version="1.2.0")
    monkeypatch.syspath_prepend(str(site))
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", generator="metagen"))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(spec), *ARGS, "--out", str(out)], env={"META_KIND": kind})
    line = one_error(result)
    assert "generator 'metagen' from plugin metagen_plug (metagen-plug 1.2.0): pair 'p0' " in line and why in line, line
    assert not out.exists()
    ok = CliRunner().invoke(main, ["run", str(spec), *ARGS, "--out", str(out)], env={"META_KIND": "fine"})
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "manifest.json").read_text())["pairs"][0]["meta"] == {"x": 1.5, "y": ["a", {"z": True}]}


# --- 11. a spec's reference_seed, bounded like --seed --------------------------------------------------------------
@pytest.mark.parametrize("seed", [10**23, 2**32, 2**64])
def test_a_reference_seed_out_of_the_seed_range_is_one_line(tmp_path, seed):
    from plantain_core.config import MAX_SEED

    data = spec_data("probe", generator="fixed-image-text-pair", n_pairs=3)
    data["stimuli"]["reference_seed"] = seed
    spec = write_spec(tmp_path / "specs", "probe", data)
    why = f"the image seed {seed} is not an integer in [0, {MAX_SEED}]"
    line = one_error(CliRunner().invoke(main, ["run", str(spec), *ARGS, "--out", str(tmp_path / "run")]))
    assert why in line, line
    checked = CliRunner().invoke(main, ["validate", str(spec)])  # validate lists its problems, then one Error line
    assert checked.exit_code == 1 and why in checked.stderr and "Traceback" not in checked.output, checked.output
    assert not (tmp_path / "run").exists()
    assert MAX_SEED == 2**32 - 1  # the bound of --seed, whose noise seeds must fit torch's generator


def test_the_seed_bound_is_the_one_of_seed():
    from plantain_core.config import ConfigError, MAX_SEED, RunConfig
    from plantain_core.spec.stimuli import MAX_SEED as IMAGE_MAX_SEED

    assert MAX_SEED is IMAGE_MAX_SEED
    with pytest.raises(ConfigError, match=f"out of range \\[0, {MAX_SEED}\\]"):
        RunConfig(probe="p", seed=MAX_SEED + 1)


# --- 12. out of memory: a family's method, a pass, and a pass that cannot fit --------------------------------------
def _klein_with(method, behaviour):
    cls = _klein_family_class()

    def replaced(self, *args, **kwargs):
        return behaviour(getattr(cls, method).__get__(self), *args, **kwargs)

    return type("Hungry", (cls,), {"name": "hungry", method: replaced})()


def _probe():
    from plantain_core import Pair, Stimulus
    from plantain_core.spec.probe_spec import ProbeSpec
    from plantain_core.spec.probes import Probe

    spec = ProbeSpec(name="oom", description="out of memory", generator="text-pair", stimuli={})
    return Probe(spec, tuple(Pair(f"p{i}", Stimulus(f"a red cube {i}"), Stimulus(f"a blue ball {i}"))
                             for i in range(3)), {})


def _raise(exc):
    def behaviour(*args, **kwargs):
        raise exc
    return behaviour


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                                             "can't allocate memory: you tried to allocate 1 bytes")])
def test_a_family_method_out_of_memory_is_one_line_naming_family_and_method(klein, tmp_path, exc):
    from plantain_core.config import RunConfig
    from plantain_core.execute import execute

    bundle = attrs.evolve(klein, family=_klein_with("noise", _raise(exc)))
    with pytest.raises(PlantainError, match=r"^model family 'hungry': noise\(\) ran out of memory \("
                                            f"{type(exc).__name__}\\); try a smaller --batch-size"):
        execute(_probe(), RunConfig(probe="oom", layouts=("heads",)), tmp_path / "run", progress=False, figures=False,
                model=bundle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("batch,hint", [(4, "try --batch-size 2"), (2, "try --batch-size 1"),
                                        (1, "one stimulus per pass does not fit: choose a smaller --height/--width")])
def test_a_pass_out_of_memory_names_the_batch_size_to_try(klein, tmp_path, monkeypatch, batch, hint):
    """A CPU allocator failure in the forward is the machine's, not "the family's inputs"."""
    from plantain_core.config import RunConfig
    from plantain_core.execute import execute

    transformer = klein.pipeline.transformer

    def forward(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(transformer, "forward", forward)
    with pytest.raises(PlantainError) as err:
        execute(_probe(), RunConfig(probe="oom", layouts=("heads",), batch_size=batch), tmp_path / "run",
                progress=False, figures=False, model=klein)
    assert str(err.value).startswith(f"out of memory in a transformer pass of {batch} "
                                     f"stimul{'us' if batch == 1 else 'i'} (RuntimeError); {hint}")
    assert "family" not in str(err.value)


def test_a_pass_that_cannot_fit_is_refused_before_any_image_or_capture(klein, tmp_path, monkeypatch):
    """The estimate (passes.pass_bytes: tokens x the block's widths x dtype bytes, x2)
    against the memory available: a huge --height is one line, before any pass."""
    import plantain_core.capture.passes as passes
    from plantain_core.config import RunConfig
    from plantain_core.execute import execute
    from plantain_core.models.lookup import family_of

    size = 16384
    family = family_of(klein)
    tokens = family.text_tokens + family.latent_tokens(klein.pipeline, (size, size))
    one = passes.pass_bytes(klein, tokens)
    cfg = klein.pipeline.transformer.config
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    assert one == tokens * (8 * inner + 4 * int(inner * getattr(cfg, "mlp_ratio", 4.0))) * 4 * 2  # fp32
    monkeypatch.setattr(passes, "free_memory", lambda device: one - 1)
    monkeypatch.setattr(passes.PassInputs, "prepare", _raise(AssertionError("encoded before the memory check")))
    with pytest.raises(PlantainError, match=f"^a pass at {size}x{size} \\({tokens:,} tokens\\) needs about "
                                            f"{one / 2**30:.1f} GiB of activations on cpu, more than the "):
        execute(_probe(), RunConfig(probe="oom", layouts=("heads",), height=size, width=size), tmp_path / "big",
                progress=False, figures=False, model=klein)
    assert not (tmp_path / "big").exists()
    # a batch that cannot fit names one that can
    monkeypatch.setattr(passes, "free_memory", lambda device: 3 * one)
    with pytest.raises(PlantainError, match=f"^--batch-size 8: .*; try --batch-size 3$"):
        execute(_probe(), RunConfig(probe="oom", layouts=("heads",), height=size, width=size, batch_size=8),
                tmp_path / "big", progress=False, figures=False, model=klein)


def test_free_memory_reads_the_host_and_an_address_space_limit(monkeypatch):
    import resource

    from plantain_core.capture.passes import free_memory

    host = free_memory("cpu")
    assert host is not None and 0 < host
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        import psutil

        assert abs(host - psutil.virtual_memory().available) < 2**30
    assert free_memory("mps") is None


def test_an_out_of_memory_anywhere_is_one_line(good, monkeypatch):
    import plantain_core.report.analysis as analysis

    monkeypatch.setattr(analysis, "analyze_run", _raise(MemoryError()))
    line = one_error(CliRunner().invoke(main, ["report", str(good)]))
    assert line == "Error: out of memory (MemoryError); try a smaller --batch-size or --height/--width"


def test_a_broken_local_model_folder_is_not_told_to_download(tmp_path):
    folder = tmp_path / "local-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Flux2KleinPipeline",
                                                         "transformer": ["diffusers", "Flux2Transformer2DModel"]}))
    spec = write_spec(tmp_path / "specs", "probe", spec_data("probe", n_pairs=3))
    line = one_error(CliRunner().invoke(main, ["run", str(spec), "--model", str(folder), "--units", "heads",
                                               "--no-progress", "--out", str(tmp_path / "run")]))
    assert f"cannot load the local model folder {str(folder)!r}" in line and "complete `save_pretrained` folder" in line
    assert "hf download" not in line


# --- 13. a Ray address nothing answers; SIGTERM on a sweep; a requeued cell's model load ---------------------------
SWEEP_GRID = """probes = ["ray"]
models = ["tiny"]
seeds = [0, 1]

[options]
flips = 16
splits = 4
batch_size = 2
"""


def test_a_ray_address_nothing_answers_is_one_bounded_error(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    grid = tmp_path / "grid.toml"
    grid.write_text(SWEEP_GRID)
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "plantain_core", "sweep", str(grid), "--out", str(tmp_path / "out"),
                          "--executor", "ray", "--address", f"127.0.0.1:{port}"], capture_output=True, text=True,
                         timeout=300)
    assert time.monotonic() - start < 120  # ray.init alone retried for more than 600 s
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [f"Error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused within "
                     "10 s); start one with `ray start --head` on that machine, or leave --address out to start a "
                     "local one"], res.stderr
    cells = json.loads((tmp_path / "out" / "sweep.json").read_text())["cells"]
    assert {c["status"] for c in cells.values()} == {"pending"}  # nothing started, nothing marked running


def test_check_address_takes_what_answers_and_refuses_the_rest():
    import socket

    from plantain_core.sweep.execute import check_address

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_address(f"127.0.0.1:{port}")
        check_address(f"ray://127.0.0.1:{port}")
    for address in ("auto", "local"):
        check_address(address)
    for address in ("nonsense", "host:", ":123", "host:99999", "host:http"):
        with pytest.raises(PlantainError, match="expected HOST:PORT"):
            check_address(address)


def test_sigterm_stops_a_sweep_with_one_line_and_a_resumable_cell(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    grid = tmp_path / "grid.toml"
    grid.write_text(SWEEP_GRID)
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "plantain_core", "sweep", str(grid), "--out", str(out), "--no-figures"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end, name = time.monotonic() + 300, None
        while name is None and time.monotonic() < end:
            assert proc.poll() is None, proc.communicate()
            for manifest in out.glob("*/manifest.json"):
                try:
                    status = json.loads(manifest.read_text()).get("status")
                except ValueError:
                    continue
                if status == "running" and (manifest.parent / "captures" / "heads.npz").is_file():
                    name = manifest.parent.name
            time.sleep(0.05)
        assert name is not None
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    error = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith("Error: interrupted: ") and \
        error[0].endswith(f"continue with: plantain sweep {grid} --out {out}"), stderr
    cell = json.loads((out / "sweep.json").read_text())["cells"][name]
    assert cell["status"] == "pending" and cell["error"] == "interrupted"
    assert json.loads((out / name / "manifest.json").read_text())["status"] == "interrupted"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "2 of 2 cells complete" in res.stdout


@attrs.define(eq=False)
class _Ref:
    handle: object
    name: str
    args: tuple


class _FakeRay:
    """Just enough of Ray for run_ray's bookkeeping: actors run cells in this process; the
    first cell's worker dies once after loading its model."""

    class exceptions:
        class ActorDiedError(Exception):
            pass

        class RayTaskError(Exception):
            pass

    def __init__(self):
        self.died = False

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 1}

    def remote(self, **options):
        fake = self

        def wrap(cls):
            class Handle:
                def __init__(self, *args):
                    self.obj = cls(*args)

            class Method:
                def __init__(self, handle, name):
                    self.call = lambda *a: _Ref(handle, name, a)

                def remote(self, *args):
                    return self.call(*args)

            class Actor:
                @staticmethod
                def remote(*args):
                    handle = Handle(*args)
                    handle.name = Method(handle, "name")
                    handle.run = Method(handle, "run")
                    return handle
            return Actor

        wrap.fake = fake
        return wrap

    def get(self, ref):
        if isinstance(ref, list):
            return [self.get(r) for r in ref]
        handle, name, args = ref.handle, ref.name, ref.args
        if name == "run" and not self.died:
            self.died = True
            handle.obj.cache.loads += 1  # it loaded the model, then died
            raise self.exceptions.ActorDiedError()
        return getattr(handle.obj, name)(*args)

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]


def test_a_requeued_ray_cells_model_load_is_counted(tmp_path, monkeypatch):
    import plantain_core.sweep.execute as execute
    from plantain_core.sweep.grid import load_grid

    class Worker:
        def __init__(self, threads):
            self.cache = execute.ModelCache()

        def name(self):
            return f"worker {id(self)}"

        def run(self, config_data, cell_dir, figures):
            self.cache.loads += 1  # a fresh worker loads the model for its first cell
            return {"seconds": 0.0, "resumed": False, "loads_delta": 1}

    monkeypatch.setattr(execute, "_ray", _FakeRay)
    monkeypatch.setattr(execute, "_CellWorker", Worker)
    grid = tmp_path / "grid.toml"
    grid.write_text(SWEEP_GRID.replace("seeds = [0, 1]", "seeds = [0]"))
    cells = load_grid(grid).cells()
    tally = {"model_loads": 0}
    outcomes = list(execute.run_ray(cells, tmp_path, execute.SweepOptions(executor="ray"), lambda c, w: None, tally))
    assert [o.error for o in outcomes] == ["worker lost; requeued", None]
    assert tally["model_loads"] == 2  # the dead worker's load and its replacement's
