"""The conformance kit: a model family proven equal to its own diffusers pipeline's ``__call__``.

:func:`prove_family` runs, for each stimulus kind the family declares, each step count and
each guidance scale asked for, the same seeded stimuli twice:

- through plantain (:func:`~plantain_core.capture.runner.run_probe`, batched as a run
  batches, captures written to ``captures/<layout>.npz``), and
- through the pipeline's own ``__call__`` (``num_inference_steps=K``, the guidance as
  :meth:`ModelFamily.pipeline_guidance` passes it, the stimulus's prompt and conditioning
  image, the run's per-pair generator and :meth:`ModelFamily.call_kwargs`), with capture
  hooks on the family's capture sites (which read each forward's text length through
  :meth:`ModelFamily.text_length`),

and compares every unit of every step (K = 1 against step 0 of an N-step ``__call__``
where the family's ``reference_steps_for_one`` is N > 1): the report holds the maximum
relative difference |plantain - pipeline| / |pipeline| per kind, steps, guidance, layout
and step. With CFG
the pipeline's forwards carry an unconditional row per step too (batched or not): each of
plantain's conditional rows is compared with the pipeline's row of that step it is
nearest to, and the pipeline must run as many rows per step as the family's ``uses_cfg``
says. What the kit cannot catch: a capture site the family leaves out (both sides hook
the family's sites; test those by hand, as plantain's tests/test_families.py does).

Torch, numpy and diffusers are imported inside functions: ``plantain_core.testing``
re-exports this module's names and stays light to import.
"""

from __future__ import annotations

import tempfile
from typing import Any, Sequence

import attrs

from ..errors import PlantainError
from ..models.family import ALL_KINDS, IMAGE_KINDS
from ..spec.stimuli import ImageSource, Pair, Stimulus

#: The kit's default bound on the relative difference of any unit at any step.
TOLERANCE = 1e-5

_PROMPTS = (("a photo of a red cube", "a photo of a small blue sphere on a wooden table"),
            ("a cat", "a dog asleep in the morning light"))
_REFERENCE = ImageSource(prompt="a neutral grey object on a grey background", seed=3, steps=2, guidance=1.0)
_IMAGE_PROMPT = "Describe what is depicted in this image."


def _worst(values) -> float:
    """The largest of ``values``; NaN if any is NaN (a NaN capture is no agreement) or none is given."""
    values = [float(v) for v in values]
    return float("nan") if not values or any(v != v for v in values) else max(values)


class ConformanceError(AssertionError):
    """A family whose captures differ from its pipeline's beyond the tolerance (or whose
    pipeline runs another number of forwards per step than the family says)."""


@attrs.frozen
class Case:
    """One comparison: a stimulus kind at ``steps`` steps and ``guidance``, one layout."""

    kind: str
    steps: int
    guidance: float
    cfg: bool  # does the family run classifier-free guidance here (its uses_cfg)
    layout: str
    per_step: tuple[float, ...]  # max relative difference over units, pairs and sides, per step
    problem: str = ""  # what is wrong beyond the numbers (rows per step, shapes)

    @property
    def max_rel(self) -> float:
        return _worst(self.per_step)

    def line(self) -> str:
        steps = ", ".join(f"{v:.1e}" for v in self.per_step)
        return (f"{self.kind:<22} steps {self.steps:<2} guidance {self.guidance:<4g} cfg {'yes' if self.cfg else 'no ':<3} "
                f"{self.layout:<9} max rel {self.max_rel:.2e}  per step [{steps}]" + (f"  {self.problem}" if self.problem
                                                                                     else ""))


@attrs.frozen
class ConformanceReport:
    """What :func:`prove_family` found; ``str()`` is a table, :meth:`check` raises on failures."""

    family: str
    model: str
    tolerance: float
    cases: tuple[Case, ...]
    skipped: tuple[str, ...] = ()  # kinds the kit has no stimuli for

    @property
    def max_rel(self) -> float:
        return _worst([c.max_rel for c in self.cases])

    @property
    def failures(self) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.problem or not c.max_rel <= self.tolerance)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.failures

    def by_layout(self) -> dict[str, float]:
        """The max relative difference of each layout over every case."""
        return {layout: _worst([c.max_rel for c in self.cases if c.layout == layout])
                for layout in dict.fromkeys(c.layout for c in self.cases)}

    def __str__(self) -> str:
        head = (f"model family {self.family} on {self.model}: max relative difference {self.max_rel:.2e} "
                f"(tolerance {self.tolerance:.0e}); {len(self.failures)} of {len(self.cases)} cases fail")
        skipped = [f"skipped: {s}" for s in self.skipped]
        return "\n".join([head, *(("FAIL " if c in self.failures else "ok   ") + c.line() for c in self.cases), *skipped])

    def check(self) -> "ConformanceReport":
        if not self.cases:
            raise ConformanceError(f"model family {self.family}: nothing was compared\n{self}")
        if self.failures:
            raise ConformanceError(str(self))
        return self


def prove_family(model, *, family=None, steps: Sequence[int] = (1, 3), guidance: Sequence[float] = (1.0, 3.0),
                 kinds: Sequence[str] | None = None, seed: int = 5, tolerance: float = TOLERANCE,
                 check: bool = True) -> ConformanceReport:
    """Prove a model family equal to its own pipeline's ``__call__`` (see the module docstring).

    ``model``: a loaded bundle (:class:`~plantain_core.models.loaders.LoadedModel`), a model
    name (``tiny-sd3``: loaded on the CPU in fp32) or a registered family or its name (its
    embedded tiny model, e.g. ``"chroma"``); ``family``: prove this family object on ``model``'s pipeline
    instead of the bundle's own. ``steps``: step counts (1 is the probe pass; K > 1 the
    trajectory); ``guidance``: guidance scales (above 1 runs CFG where the family does, or
    embeds it); ``kinds``: stimulus kinds (default: every built-in kind the family runs).
    With ``check`` a failing report raises :class:`ConformanceError` (an AssertionError, so
    pytest shows the table). Runs on the bundle's device; captures go to a temporary folder.
    """
    from ..models.lookup import family_of

    bundle = _bundle(model)
    if family is not None:
        bundle = attrs.evolve(bundle, family=family)
    fam = family_of(bundle)
    wanted = tuple(fam.kinds) if kinds is None else tuple(kinds)
    for kind in wanted:
        fam.check_kind(kind, kind in IMAGE_KINDS, "conformance")
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="plantain-conformance-") as tmp:
        for kind in (k for k in wanted if k in ALL_KINDS):
            for k in steps:
                for g in guidance:
                    cases += _compare(bundle, kind, int(k), float(g), int(seed), f"{tmp}/{kind}-{k}-{g}")
    skipped = tuple(f"{k} (the kit has stimuli for the built-in kinds only)" for k in wanted if k not in ALL_KINDS)
    report = ConformanceReport(fam.name, bundle.name, float(tolerance), tuple(cases), skipped)
    return report.check() if check else report


def _bundle(model):
    """A loaded bundle from a bundle, a model name or a family's name (its tiny model)."""
    if hasattr(model, "pipeline"):
        return model
    from ..models.loaders import load_model
    from ..plugins import get_registry

    name = getattr(model, "name", model)
    if isinstance(name, str):
        for entry in get_registry().models.values():
            tiny = getattr(entry.obj, "tiny", None)
            if tiny is not None and getattr(tiny.family, "name", None) == name:
                return entry.obj.load(tiny.stem, "cpu")
    if not isinstance(model, str):
        raise PlantainError(f"no embedded tiny model of model family {name!r} is registered: pass a loaded model")
    return load_model(model, "cpu")


def kit_pairs(kind: str) -> list[Pair]:
    """The kit's two pairs of a built-in kind: prompts of unequal length (text masks show),
    a shared generated reference image, or two generated images under one prompt."""
    if kind == "image-pair":
        return [Pair(f"p{i}", Stimulus(_IMAGE_PROMPT, ImageSource(prompt=a, seed=i, steps=2, guidance=1.0)),
                     Stimulus(_IMAGE_PROMPT, ImageSource(prompt=b, seed=i, steps=2, guidance=1.0)))
                for i, (a, b) in enumerate(_PROMPTS)]
    ref = _REFERENCE if kind == "fixed-image-text-pair" else None
    return [Pair(f"p{i}", Stimulus(a, ref), Stimulus(b, ref)) for i, (a, b) in enumerate(_PROMPTS)]


def _compare(bundle, kind: str, steps: int, guidance: float, seed: int, out: str) -> list[Case]:
    """One kind at ``steps`` and ``guidance``: plantain's captures against the pipeline's rows."""
    import numpy as np

    from ..config import RunConfig
    from ..models.lookup import family_of
    from ..spec.probe_spec import ProbeSpec
    from ..spec.probes import Probe
    from .images import get_image
    from .runner import run_probe

    family, size = family_of(bundle), int(bundle.default_size)
    pairs = kit_pairs(kind)
    spec = ProbeSpec(name="conformance", generator=kind, stimuli={"pairs": []})
    # batch 4: two pairs per forward, so a batch's rows must not leak into each other
    config = RunConfig(probe="conformance", seed=seed, steps=steps, guidance=guidance, batch_size=4, height=size,
                       width=size, flips=50, splits=10)
    run_probe(Probe.from_pairs(spec, pairs), out, config, model=bundle, progress=False)
    cfg = bool(family.uses_cfg(bundle.pipeline, guidance))
    # a family whose __call__ cannot run one step is compared with step 0 of the call it names
    calls = int(getattr(family, "reference_steps_for_one", 1)) if steps == 1 else steps
    worst: dict[str, np.ndarray] = {}
    problem = ""
    for i, pair in enumerate(pairs):
        for side, stim in zip("ab", pair.stimuli()):
            image = None if stim.image is None else get_image(bundle, stim.image, size, size)[0]
            rows = pipeline_rows(bundle, stim.prompt, image, (seed, i), calls, guidance)
            for layout, ref in rows.items():
                with np.load(f"{out}/captures/{layout}.npz", allow_pickle=False) as z:
                    ours = z[side][i].reshape(steps, -1)
                if ref.shape[0] % calls or ref.shape[1] != ours.shape[1]:
                    raise PlantainError(f"conformance: the pipeline gave {ref.shape} rows for {calls} steps of "
                                        f"{ours.shape[1]} units")
                ref = ref.reshape(calls, -1, ref.shape[-1])[:steps]  # (steps, rows per step, units)
                if ref.shape[1] != 1 + cfg:
                    problem = (f"the pipeline runs {ref.shape[1]} rows per step, the family's uses_cfg "
                               f"says {1 + cfg}")
                rel = np.abs(ours[:, None] - ref) / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
                step_worst = rel.max(axis=-1).min(axis=-1)  # the nearest of the step's rows
                worst[layout] = np.maximum(worst.get(layout, step_worst), step_worst)
    return [Case(kind, steps, guidance, cfg, layout, tuple(float(v) for v in w), problem) for layout, w in worst.items()]


def pipeline_rows(bundle, prompt: str, image, seed_pair: tuple[int, int], steps: int, guidance: float) -> dict:
    """{layout: (rows, units)} from the family's capture sites while the pipeline's own
    ``__call__`` denoises one stimulus (``seed_pair``: the run's seed and the pair's index,
    which seed the generator as a run seeds the pair's noise), every forward's rows in order."""
    import torch

    from ..models.lookup import family_of
    from .hooks import capture_units
    from .passes import noise_seed

    family, pipe, size = family_of(bundle), bundle.pipeline, int(bundle.default_size)
    kwargs: dict[str, Any] = dict(prompt=prompt, height=size, width=size, num_inference_steps=steps,
                                  output_type="latent", **family.pipeline_guidance(guidance),
                                  generator=torch.Generator("cpu").manual_seed(noise_seed(*seed_pair)))
    kwargs.update(family.call_kwargs(bundle, (size, size)))
    if image is not None:
        kwargs["image"] = image
    with capture_units(pipe.transformer, family=family) as cap, torch.inference_mode():
        pipe(**kwargs)
        return cap.take()
