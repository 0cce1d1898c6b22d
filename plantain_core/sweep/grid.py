"""A sweep file (``SWEEP.toml``): a declarative grid of runs, expanded into one
:class:`~plantain_core.config.RunConfig` per cell.

The smallest grid is three keys::

    probes = ["ray", "measure"]
    models = ["tiny"]
    seeds = [0, 1]

Optional axes: ``steps``, ``token_scopes``, ``layouts`` (each a list; a single value is
a one-value axis). ``[options]`` holds run options every cell shares (``flips``,
``splits``, ``thresholds``, ``height``, ``dtype``, ...; named as ``RunConfig`` fields).
Every problem of a file is reported at once as ``FILE: key: message``, like a spec's.
See ``docs/sweeps.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import pathlib
from typing import Any

import attrs

from ..config import ConfigError, RunConfig
from ..errors import PlantainError, SpecError, suggest
from ..execute import slug
from ..spec.probe_spec import read_toml

#: axis key -> RunConfig field, in the order cell names are built
AXES = {"probes": "probe", "models": "model", "seeds": "seed", "steps": "steps", "token_scopes": "token_scope",
        "layouts": "layouts"}
REQUIRED = ("probes", "models", "seeds")
MAX_VALUES = 10_000  # per axis
MAX_CELLS = 100_000  # a grid bigger than this is a typo, not a sweep
#: run options a sweep cannot fix for all cells: they are axes, or belong to one machine
NOT_OPTIONS = set(AXES.values())


@attrs.frozen
class Cell:
    """One run of a sweep: its folder name under the sweep folder and its configuration."""

    name: str
    config: RunConfig


@attrs.frozen
class SweepGrid:
    """A parsed sweep file: its path, sha256, axes (field -> values) and shared options."""

    path: pathlib.Path
    sha256: str
    axes: dict[str, tuple]
    options: dict[str, Any]

    def cells(self) -> list[Cell]:
        """Every combination of the axes, in file order; names are stable (they depend on the
        cell's own values, not on the rest of the grid)."""
        fields = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[f] for f in fields)):
            config = RunConfig(**self.options, **dict(zip(fields, values)))
            out.append(Cell(cell_name(config), config))
        seen: dict[str, Cell] = {}
        for cell in out:
            if cell.name in seen:  # e.g. two models whose last path parts agree
                raise PlantainError(f"{self.path}: cells {_describe(seen[cell.name].config)} and "
                                    f"{_describe(cell.config)} would share the folder {cell.name!r}")
            seen[cell.name] = cell
        return out


def _slug(text: str) -> str:
    """A probe or model reference as one part of a cell name, as ``plantain run`` names its folders."""
    return slug(pathlib.PurePath(text).stem if text.endswith(".toml") else text)


def cell_name(config: RunConfig) -> str:
    """``<probe>-<model>-seed<N>``, then the other axes where they differ from the default;
    a short hash of the full probe and model references keeps names of look-alikes apart."""
    default = RunConfig(probe=config.probe)
    parts = [_slug(config.probe), _slug(config.model or "spec-model"), f"seed{config.seed}"]
    if config.steps != default.steps:
        parts.append(f"steps{config.steps}")
    if config.token_scope != default.token_scope:
        parts.append(config.token_scope)
    if config.layouts != default.layouts:
        parts.append("+".join(config.layouts))
    if _slug(config.probe) != config.probe or (config.model and _slug(config.model) != config.model):
        parts.append(hashlib.sha256(f"{config.probe}\0{config.model}".encode()).hexdigest()[:6])
    return "-".join(parts)


def _describe(config: RunConfig) -> str:
    return f"({config.probe}, {config.model}, seed {config.seed})"


#: what a grid given as a Python dict is called in messages and in sweep.json
DICT_GRID = "grid"


def load_grid(path, *, check_probes: bool = True, registry=None) -> SweepGrid:
    """Read and validate a sweep file, or a dict with its keys (spec paths relative to the
    working folder); every problem at once as a :class:`SpecError`. ``check_probes``:
    resolve every probe (names and spec paths, relative to the file)."""
    if isinstance(path, dict):
        import toml

        data, label, base = dict(path), DICT_GRID, pathlib.Path.cwd()
        try:
            raw = toml.dumps(data).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PlantainError(f"grid: not a table of sweep keys ({type(exc).__name__}: {exc})") from None
        path = base / DICT_GRID
    else:
        path = pathlib.Path(path)
        if not path.is_file():
            raise PlantainError(f"sweep file {path} not found")
        data, label, base = read_toml(path), str(path), path.parent
        raw = path.read_bytes()
    problems: list[tuple[str, str]] = []
    axes: dict[str, tuple] = {}
    for key in data:
        if key not in AXES and key != "options":
            problems.append((_key(key), "unknown key" + suggest(key, [*AXES, "options"])))
    for key in REQUIRED:
        if key not in data:
            problems.append((key, "required key is missing (e.g. " + {"probes": 'probes = ["ray"]', "models":
                                                                       'models = ["tiny"]', "seeds": "seeds = [0, 1]"}[key] + ")"))
    for key, field in AXES.items():
        if key not in data:
            continue
        values = data[key] if isinstance(data[key], list) else [data[key]]
        if key == "layouts" and isinstance(data[key], list) and data[key] and all(isinstance(v, str) for v in data[key]) \
                and not any("," in v for v in data[key]):
            values = [data[key]]  # layouts = ["heads", "slices16"] is one value, not an axis of two
        if not values:
            problems.append((key, "expected a non-empty list"))
            continue
        if len(values) > MAX_VALUES:
            problems.append((key, f"{len(values):,} values; at most {MAX_VALUES:,} per axis"))
            continue
        checked, seen = [], set()
        for i, value in enumerate(values):
            where = f"{key}[{i}]" if isinstance(data[key], list) and len(values) > 1 else key
            if field == "probe":
                value = _probe_ref(value, base)
                if value is None:
                    problems.append((where, "expected a probe name or a spec path (a string)"))
                    continue
            try:
                config = RunConfig(**{"probe": "check", field: value})
            except ConfigError as exc:
                problems.append((where, str(exc)))
                continue
            value = getattr(config, field) if field != "probe" else value
            if value in seen:
                problems.append((where, f"{value!r} is listed twice"))
                continue
            seen.add(value)
            checked.append(value)
        axes[field] = tuple(checked)
    options = data.get("options", {})
    if not isinstance(options, dict):
        problems.append(("options", "expected a table ([options])"))
        options = {}
    most_steps = max(axes.get("steps", (1,)) or (1,))
    for key, value in options.items():
        if key not in RunConfig.fields() or key in NOT_OPTIONS:
            why = f"is an axis: use the top-level key {next(k for k, f in AXES.items() if f == key)!r}" \
                if key in NOT_OPTIONS else "unknown run option" + suggest(key, [f for f in RunConfig.fields()
                                                                               if f not in NOT_OPTIONS])
            problems.append((f"options.{_key(key)}", why))
            continue
        try:  # alone (with the longest trajectory); combinations with each steps value below
            RunConfig(probe="check", steps=most_steps, **{key: value})
        except ConfigError as exc:
            problems.append((f"options.{key}", str(exc)))
    total = 1
    for values in axes.values():
        total *= max(1, len(values))
    if total > MAX_CELLS:
        problems.append(("", f"{total:,} cells; a sweep may have at most {MAX_CELLS:,}"))
    if check_probes:  # reported with the other problems
        problems += _probe_problems(axes.get("probe", ()), axes.get("model", ()), data, registry)
    if not problems:
        try:
            for steps in axes.get("steps", (1,)):  # combinations (e.g. length_control with steps > 1)
                RunConfig(probe="check", steps=steps, **options)
        except ConfigError as exc:
            problems.append(("options", str(exc)))
    if problems:
        raise SpecError([f"{label}: {key}: {msg}" if key else f"{label}: {msg}" for key, msg in problems])
    grid = SweepGrid(path=path.resolve(), sha256=hashlib.sha256(raw).hexdigest(), axes=axes,
                     options=dict(options))
    grid.cells()  # folder-name clashes are an error of the file too
    return grid


def _key(key) -> str:
    """A key from the file as it may be shown: control characters escaped."""
    key = str(key)
    return key if key.isprintable() else repr(key)


def _probe_ref(value, base: pathlib.Path) -> str | None:
    """A probe name as given, or a spec path made absolute against the sweep file's folder."""
    if not isinstance(value, str) or not value.strip():
        return None
    if value.endswith(".toml") or "/" in value or "\\" in value:
        return str((base / value).resolve())
    return value


def _probe_problems(probes, models, data, registry) -> list[tuple[str, str]]:
    """Probes that do not load, models no loader takes, and probe x model cells whose
    stimulus kind the model's family cannot run: refused before any cell starts."""
    from ..models.loaders import canonical_model
    from ..spec.probes import load_probe
    from ..capture.prepare import check_family_kind

    out, loaded = [], {}
    many = isinstance(data.get("probes"), list) and len(data["probes"]) > 1
    for i, ref in enumerate(probes):
        try:
            loaded[ref] = load_probe(ref, registry=registry)
        except PlantainError as exc:
            out.append((f"probes[{i}]" if many else "probes", str(exc).replace("\n", "; ")))
    many = isinstance(data.get("models"), list) and len(data["models"]) > 1
    spelled: dict[str, int] = {}
    for j, model in enumerate(models):
        try:
            key = canonical_model(model, registry)
        except PlantainError:
            key = None  # reported below, with the probes
        if key is not None and spelled.setdefault(key, j) != j:
            out.append((f"models[{j}]", f"{model!r} is the same model as models[{spelled[key]}] "
                                        f"{models[spelled[key]]!r}"))
            continue
        for probe in loaded.values():
            try:
                check_family_kind(probe, model, registry)
            except PlantainError as exc:
                out.append((f"models[{j}]" if many else "models", str(exc).replace("\n", "; ")))
                if "no model loader" in str(exc) or "folder not found" in str(exc):
                    break  # one line per unknown model, not one per probe
    return out
