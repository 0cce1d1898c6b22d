"""The run configuration: one frozen value holding everything a run's result depends on.

The CLI, the Python API and the sweep layer build a :class:`RunConfig`; the runner,
the analysis, the causal check and the report take it whole; the manifest stores it
(``manifest["config"]``) and it is rebuilt from there for ``--resume``, ``plantain
report`` and the card's Reproduce block. :meth:`RunConfig.command` turns it back into
the ``plantain run`` command line that redoes the run.

Every value is checked when a config is made, whoever makes it (a flag, a keyword, a
downloaded manifest): a bad one is a :class:`ConfigError` naming the option.
"""

from __future__ import annotations

import math
import shlex
from typing import Any, Iterable, Mapping

import attrs

from .errors import PlantainError, suggest
from .models.devices import DTYPE_ALIASES
from .models.layouts import LAYOUT_NAMES, TOKEN_SCOPES
from .models.loaders import is_tiny_record
from .spec.stimuli import MAX_SEED

DEFAULT_FLIPS = 200
DEFAULT_SPLITS = 100
DEFAULT_THRESHOLDS = (3.0, 5.0)
# Bounds that keep a run's memory sane (flips and splits size dense arrays); MAX_SEED is
# spec.stimuli's, the bound of every seed.
MAX_FLIPS = 1_000_000
MAX_SPLITS = 100_000

#: The command-line spelling of each field, used in every message and command line.
FLAGS = {
    "probe": "PROBE", "model": "--model", "revision": "--revision", "device": "--device", "dtype": "--dtype",
    "layouts": "--units", "token_scope": "--token-scope", "height": "--height", "width": "--width",
    "batch_size": "--batch-size", "seed": "--seed", "flips": "--flips", "splits": "--splits",
    "thresholds": "--thresholds", "stats_seed": "plantain report --seed", "offload": "--cpu-offload",
    "length_control": "--length-control", "steps": "--steps", "capture_steps": "--capture-steps",
    "guidance": "--guidance", "tfce": "--tfce", "allow_outside_images": "--allow-outside-images",
    "compile": "--compile", "capture_method": "--capture-method", "attention_backend": "--attention-backend",
}
#: Fields that change the captured numbers: a resumed run must agree on every one.
CAPTURE_FIELDS = ("model", "revision", "dtype", "layouts", "token_scope", "height", "width", "batch_size", "seed",
                  "steps", "capture_steps", "guidance", "capture_method")
# ``compile`` and ``attention_backend`` are recorded but not capture fields: they change the
# kernels, not the arithmetic; compiled and eager captures agree to float tolerance (tests/
# test_compile.py) and the run's measured noise floor bounds what kernels change.
#: Capture methods (plantain_core.capture.hooks): "sumsq-v1" sums x**2 (the reference),
#: "norm-v2" squares torch.linalg.vector_norm (fused; equal to float tolerance, not bit-equal).
CAPTURE_METHODS = ("sumsq-v1", "norm-v2")
MAX_STEPS = 1000
#: Fields that change only the statistics (recomputed by ``plantain report``).
STATS_FIELDS = ("flips", "splits", "thresholds", "stats_seed", "tfce")


class ConfigError(PlantainError):
    """A run option with a bad value; the message names the option."""


def _fail(field: str, message: str):
    raise ConfigError(f"{FLAGS[field]}: {message}")


def _optional_str(field: str):
    def convert(value):
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            _fail(field, f"expected a non-empty printable string, got {value!r}")
        return value.strip()
    return convert


def _int(field: str, low: int, high: int, optional: bool = False):
    def convert(value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(field, f"expected an integer, got {value!r}")
        value = int(value)
        if not low <= value <= high:
            _fail(field, f"{value} is out of range [{low}, {high}]")
        return value
    return convert


def _size(field: str):
    base = _int(field, 16, 16384, optional=True)

    def convert(value):
        value = base(value)
        if value is not None and value % 16:
            _fail(field, f"{value} is not a multiple of 16")
        return value
    return convert


def _probe(value):
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        _fail("probe", f"expected a probe name or spec path, got {value!r}")
    return value


def _device(value):
    import re

    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value.strip().lower()):
        _fail("device", f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return value.strip().lower()


def _dtype(value):
    if value is None:
        return None
    from .models.devices import dtype_name

    if not isinstance(value, str):
        try:
            return dtype_name(value)  # a torch.dtype from Python
        except PlantainError:
            pass
    key = str(value).strip().lower().removeprefix("torch.")
    if key not in DTYPE_ALIASES:
        _fail("dtype", f"{value!r} is not a dtype; use bf16, fp16 or fp32")
    return DTYPE_ALIASES[key]


def _names(value) -> list:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)


def _layouts(value):
    if not isinstance(value, (str, list, tuple)):
        _fail("layouts", f"expected layout names, got {value!r}")
    names = [n for n in _names(value) if not isinstance(n, str) or n]
    for name in names:
        if name not in LAYOUT_NAMES:
            _fail("layouts", f"unknown unit layout {name!r}{suggest(str(name), LAYOUT_NAMES)}; "
                             f"choose from {', '.join(LAYOUT_NAMES)}")
    if not names:
        _fail("layouts", f"no unit layout given; choose from {', '.join(LAYOUT_NAMES)}")
    return tuple(dict.fromkeys(names))


def _scope(value):
    if value not in TOKEN_SCOPES:
        _fail("token_scope", f"unknown token scope {value!r}{suggest(str(value), TOKEN_SCOPES)}; "
                             f"choose from {', '.join(TOKEN_SCOPES)}")
    return value


def _thresholds(value):
    if not isinstance(value, (str, list, tuple)) or any(isinstance(x, bool) for x in value):
        _fail("thresholds", f"{value!r} is not a list of numbers (e.g. 3,5)")
    try:
        out = tuple(float(x) for x in _names(value) if not isinstance(x, str) or x)
    except (TypeError, ValueError):
        _fail("thresholds", f"{value!r} is not a list of numbers (e.g. 3,5)")
    if not out or any(isinstance(x, bool) or not math.isfinite(x) or x <= 0 for x in out):
        _fail("thresholds", f"{value!r}: thresholds must be positive finite numbers (e.g. 3,5)")
    if len(set(out)) != len(out):
        _fail("thresholds", f"{value!r}: a threshold is given twice")
    return out


def _capture_steps(value):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = [int(x) for x in value.split(",") if x.strip()]
        except ValueError:
            _fail("capture_steps", f"{value!r} is not a list of step indices (e.g. 0,3,7)")
    if not isinstance(value, (list, tuple)) or not value or \
            any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in value):
        _fail("capture_steps", f"{value!r} is not a list of step indices (e.g. 0,3,7)")
    return tuple(sorted(set(value)))


def _guidance(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 1.0 <= value <= 30.0:
        _fail("guidance", f"{value!r}: expected a number from 1 (no CFG) to 30")
    return float(value)


def _capture_method(value):
    if value not in CAPTURE_METHODS:
        _fail("capture_method", f"unknown capture method {value!r}{suggest(str(value), CAPTURE_METHODS)}; "
                                f"choose from {', '.join(CAPTURE_METHODS)}")
    return value


def _bool(field: str):
    def convert(value):
        if not isinstance(value, bool):
            _fail(field, f"expected true or false, got {value!r}")
        return value
    return convert


@attrs.frozen(kw_only=True)
class RunConfig:
    """Everything a run's result depends on. Make one with keywords named as the
    ``plantain run`` options (``layouts`` is ``--units``, ``offload`` is
    ``--cpu-offload``); ``None`` means "the spec's, else the model's default".

    ``stats_seed`` seeds the sign flips and splits when it differs from ``seed`` (the
    noise seed); ``plantain report --seed`` sets it.
    """

    probe: str = attrs.field(converter=_probe)
    model: str | None = attrs.field(default=None, converter=_optional_str("model"))
    revision: str | None = attrs.field(default=None, converter=_optional_str("revision"))
    device: str = attrs.field(default="auto", converter=_device)
    dtype: str | None = attrs.field(default=None, converter=_dtype)
    layouts: tuple[str, ...] = attrs.field(default=LAYOUT_NAMES, converter=_layouts)
    token_scope: str = attrs.field(default="all", converter=_scope)
    height: int | None = attrs.field(default=None, converter=_size("height"))
    width: int | None = attrs.field(default=None, converter=_size("width"))
    batch_size: int | None = attrs.field(default=None, converter=_int("batch_size", 1, 4096, optional=True))
    seed: int = attrs.field(default=0, converter=_int("seed", 0, MAX_SEED))
    flips: int = attrs.field(default=DEFAULT_FLIPS, converter=_int("flips", 1, MAX_FLIPS))
    splits: int = attrs.field(default=DEFAULT_SPLITS, converter=_int("splits", 1, MAX_SPLITS))
    thresholds: tuple[float, ...] = attrs.field(default=DEFAULT_THRESHOLDS, converter=_thresholds)
    stats_seed: int | None = attrs.field(default=None, converter=_int("stats_seed", 0, MAX_SEED, optional=True))
    offload: bool = attrs.field(default=False, converter=_bool("offload"))
    #: also capture the length placebo (plantain_core.capture.placebo) into RUN_DIR/placebo
    length_control: bool = attrs.field(default=False, converter=_bool("length_control"))
    #: denoising steps (1: the seed protocol, one pass at pure noise) and which to capture (None: all)
    steps: int = attrs.field(default=1, converter=_int("steps", 1, MAX_STEPS))
    capture_steps: tuple[int, ...] | None = attrs.field(default=None, converter=_capture_steps)
    guidance: float = attrs.field(default=1.0, converter=_guidance)
    #: also TFCE along the captured steps (plantain_core.stats.clusters), FWER p per unit × step
    tfce: bool = attrs.field(default=False, converter=_bool("tfce"))
    #: read image files from outside the spec's folder (absolute, ``~`` or ``..`` paths in a
    #: spec or pairs file); refused by default, as a spec may come from anyone
    allow_outside_images: bool = attrs.field(default=False, converter=_bool("allow_outside_images"))
    #: torch.compile the transformer, capture inside the graph (plantain_core.capture.compiled)
    compile: bool = attrs.field(default=False, converter=_bool("compile"))
    capture_method: str = attrs.field(default=CAPTURE_METHODS[0], converter=_capture_method)
    #: diffusers' attention dispatcher backend (None: the model's own)
    attention_backend: str | None = attrs.field(default=None, converter=_optional_str("attention_backend"))

    def __attrs_post_init__(self):
        if self.length_control and self.steps > 1:
            _fail("length_control", "the length placebo runs with --steps 1 only")
        if self.tfce and len(self.captured_steps) < 2:
            _fail("tfce", "TFCE runs along the captured steps: use it with --steps K > 1 and two or more captured steps")
        if self.capture_steps is not None and self.capture_steps[-1] >= self.steps:
            _fail("capture_steps", f"step {self.capture_steps[-1]} does not exist with --steps {self.steps} "
                                   f"(steps are 0 to {self.steps - 1})")

    @property
    def captured_steps(self) -> tuple[int, ...]:
        """The step indices whose passes are captured."""
        return self.capture_steps if self.capture_steps is not None else tuple(range(self.steps))

    # ---- making one ------------------------------------------------------------------
    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in attrs.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config") -> "RunConfig":
        """From ``as_dict()`` output (a manifest's ``config``); unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = cls.fields()
        for key in data:
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r}{suggest(str(key), known)}")
        if "probe" not in data:
            raise ConfigError(f"{where}: required key 'probe' is missing")
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def from_keywords(cls, probe: str, options: Mapping[str, Any]) -> "RunConfig":
        """From Python keywords; an unknown keyword is an error with a suggestion."""
        known = cls.fields()
        for key in options:
            if key not in known or key == "probe":
                raise ConfigError(f"unknown run option {key!r}{suggest(key, known)}; "
                                  f"options: {', '.join(k for k in known if k != 'probe')}")
        return cls(probe=probe, **dict(options))

    def evolve(self, **changes) -> "RunConfig":
        return attrs.evolve(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``RunConfig.from_dict(c.as_dict()) == c``."""
        out = attrs.asdict(self)
        out["layouts"] = list(self.layouts)
        out["thresholds"] = list(self.thresholds)
        if self.capture_steps is not None:
            out["capture_steps"] = list(self.capture_steps)
        return out

    # ---- what it means -----------------------------------------------------------------
    @property
    def effective_stats_seed(self) -> int:
        return self.seed if self.stats_seed is None else self.stats_seed

    def stats_options(self):
        """The statistics options of this run (:class:`plantain_core.stats.engine.StatsOptions`)."""
        from .stats.engine import StatsOptions

        return StatsOptions(self.flips, self.splits, self.effective_stats_seed, self.thresholds)

    def for_spec(self, spec) -> "RunConfig":
        """The spec's ``[model]`` defaults filled in. Its revision and size belong to its
        model: another ``--model`` keeps that model's own defaults."""
        model = self.model or spec.model.id
        same = model == spec.model.id
        return self.evolve(
            model=model,
            revision=self.revision or (spec.model.revision if same else None),
            height=self.height or (spec.model.height if same else None),
            width=self.width or (spec.model.width if same else None),
        )

    def capture_differences(self, other: "RunConfig") -> list[str]:
        """What differs in the fields that change captured numbers, as ``--flag: was X, now Y``."""
        return [f"{FLAGS[f]}: was {_show(getattr(other, f))}, now {_show(getattr(self, f))}"
                for f in CAPTURE_FIELDS if getattr(self, f) != getattr(other, f)]

    # ---- back to a command line ----------------------------------------------------------
    def cli_args(self, probe: str | None = None) -> list[str]:
        """``plantain run`` arguments that rebuild this config: the model and seed always,
        other options where they differ from the default."""
        default = RunConfig(probe=self.probe)
        args = [probe or self.probe]
        for field in self.fields():
            value = getattr(self, field)
            if field in ("probe", "stats_seed") or value is None:
                continue
            if value == getattr(default, field) and field not in ("model", "seed"):
                continue
            if field in ("offload", "length_control", "tfce", "allow_outside_images", "compile"):
                args.append(FLAGS[field])
            else:
                args += [FLAGS[field], _show(value)]
        return args

    def command(self, out, *, resume: bool = False, probe: str | None = None) -> str:
        """The ``plantain run`` command that redoes (or, with ``resume``, continues) this run in ``out``."""
        words = ["plantain", "run", *self.cli_args(probe), "--out", str(out)] + (["--resume"] if resume else [])
        return shlex.join(words)

    def report_command(self, out) -> str:
        words = ["plantain", "report", str(out)]
        if self.stats_seed is not None and self.stats_seed != self.seed:
            words += ["--seed", str(self.stats_seed)]
        return shlex.join(words)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_from_manifest(manifest: Mapping[str, Any], where: str = "manifest.json") -> RunConfig:
    """A run's config: its ``config`` record, or, for folders written before there was
    one, rebuilt from the manifest's top-level fields."""
    if "config" in manifest:
        return RunConfig.from_dict(manifest["config"], where=f"{where}: config")
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), Mapping) else {}
    model = manifest.get("model") if isinstance(manifest.get("model"), Mapping) else {}
    legacy: dict[str, Any] = {
        "probe": spec.get("name") or "probe",
        "model": str(model.get("id", "")).split("/", 1)[-1] if is_tiny_record(model) else model.get("id"),
        "revision": None if is_tiny_record(model) else model.get("revision"),
    }
    for key in ("dtype", "layouts", "token_scope", "height", "width", "batch_size", "seed", "flips", "splits",
                "thresholds"):
        if manifest.get(key) is not None:
            legacy[key] = manifest[key]
    try:
        return RunConfig(**legacy)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def explicit_options(values: Mapping[str, Any], given: Iterable[str]) -> dict[str, Any]:
    """The options of ``values`` that were given (not defaults), keyed by config field."""
    given = set(given)
    return {k: v for k, v in values.items() if k in given}
