"""The values a generator produces: stimuli and the pairs that contrast them.

These are plain frozen attrs classes, so a generator's output can be compared, hashed,
and written to a manifest without a model.
"""

from __future__ import annotations

from typing import Any

import attrs

#: Image generation settings the seed cards use for reference and image-pair images.
IMAGE_STEPS = 14
IMAGE_GUIDANCE = 4.0
#: The bound of every seed (``--seed``, an image's seed): noise seeds are seed * 1,000,003
#: + pair index and must fit torch's 64-bit generator seed.
MAX_SEED = 2**32 - 1


@attrs.frozen
class ImageSource:
    """Where a conditioning image comes from: a file, or a prompt generated once and cached.

    Exactly one of ``path`` and ``prompt`` is set. ``path`` is absolute (specs resolve
    image paths relative to the spec file).
    """

    path: str | None = None
    prompt: str | None = None
    seed: int = 0
    steps: int = IMAGE_STEPS
    guidance: float = IMAGE_GUIDANCE

    def __attrs_post_init__(self):
        if (self.path is None) == (self.prompt is None):
            raise ValueError("ImageSource needs exactly one of path or prompt")

    def describe(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": self.path}
        return {"prompt": self.prompt, "seed": self.seed, "steps": self.steps, "guidance": self.guidance}


@attrs.frozen
class Stimulus:
    """One probe pass: a prompt, optionally conditioned on one image."""

    prompt: str
    image: ImageSource | None = None


@attrs.frozen
class Pair:
    """Condition A and condition B of one matched pair; ``meta`` is free-form pair data
    (a creature's rank, a scale in metres) that interpreters read."""

    id: str
    a: Stimulus
    b: Stimulus
    meta: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)

    def stimuli(self) -> tuple[Stimulus, Stimulus]:
        return (self.a, self.b)


def check_plugin_pairs(pairs: Any, who: str) -> list[Pair]:
    """A generator's return value, checked: a sequence of :class:`Pair` whose ids are
    printable, non-empty strings and whose prompts are strings (unique ids are checked
    with the spec's key paths by ``spec.check_pairs``). ``who`` names the generator and
    its plugin in the error."""
    from ..errors import PluginError

    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
        raise PluginError(f"{who} returned {type(pairs).__name__}, not a list of Pair")
    pairs = list(pairs)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, Pair):
            raise PluginError(f"{who}: item {i} is {type(pair).__name__}, not a plantain_core.Pair")
        if not isinstance(pair.id, str) or not pair.id.strip() or not pair.id.isprintable():
            raise PluginError(f"{who}: pair {i} has id {pair.id!r}; ids must be non-empty printable strings")
        for side, stim in zip("ab", (pair.a, pair.b)):
            if not isinstance(stim, Stimulus) or not isinstance(stim.prompt, str):
                raise PluginError(f"{who}: pair {pair.id!r} side {side} is not a Stimulus with a string prompt")
            seed = stim.image.seed if isinstance(stim.image, ImageSource) and stim.image.prompt is not None else 0
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise PluginError(f"{who}: pair {pair.id!r} side {side}: the image seed {seed!r} is not an integer "
                                  f"in [0, {MAX_SEED}] (a spec's reference_seed is bounded like --seed)")
        _check_meta(pair, who)
    return pairs


def _check_meta(pair: Pair, who: str) -> None:
    """Pair meta is written to JSON (manifest, summary): checked as a spec's meta is."""
    from ..errors import PluginError
    from .pairtable import meta_problems

    meta = pair.meta
    if not isinstance(meta, dict) or any(not isinstance(k, str) for k in meta):
        raise PluginError(f"{who}: pair {pair.id!r} meta is a {type(meta).__name__}, not a table with string keys")
    for key, why in meta_problems(meta):
        raise PluginError(f"{who}: pair {pair.id!r} meta.{key}: {why}")
