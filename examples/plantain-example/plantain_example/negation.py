"""The ``negation`` generator: "a table with X on it" vs "a table with no X on it".

The ``[stimuli]`` table lists objects, not prompts; the generator writes the prompts::

    [stimuli]
    frame = "A photo of a wooden table with {object} on it"      # A
    negated = "A photo of a wooden table with no {object} on it"  # B (the object without its article)
    objects = ["a red apple", "a glass of water", "a closed book"]

Every problem is reported with its key path (``stimuli.objects[2]``), so ``plantain
validate`` names the line to fix.
"""

from __future__ import annotations

import re

from plantain_core import Pair, Stimulus

DEFAULT_FRAME = "A photo of a wooden table with {object} on it"
DEFAULT_NEGATED = "A photo of a wooden table with no {object} on it"


def bare(text: str) -> str:
    """The object without its article, for the negated prompt: "a red apple" -> "red apple"."""
    head, _, rest = text.strip().partition(" ")
    return rest if head.lower() in ("a", "an", "the") and rest else text.strip()


def slug(text: str) -> str:
    """A pair id from an object: "a glass of water" -> "glass-of-water"."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return "-".join(words) or "object"


class NegationGenerator:
    description = "A: a scene with an object; B: the same scene with 'no' object (pairs from a list of objects)"

    def validate(self, stimuli, spec_dir):
        problems = [(f"stimuli.{k}", "unknown key; use frame, negated, objects") for k in stimuli
                    if k not in ("frame", "negated", "objects")]
        for key in ("frame", "negated"):
            value = stimuli.get(key, DEFAULT_FRAME)
            if not isinstance(value, str) or value.count("{object}") != 1:
                problems.append((f"stimuli.{key}", "expected a string with one {object} placeholder"))
        objects = stimuli.get("objects")
        if not isinstance(objects, list) or not objects:
            return problems + [("stimuli.objects", "expected a non-empty list of objects, e.g. [\"a red apple\"]")]
        seen = {}
        for i, obj in enumerate(objects):
            if not isinstance(obj, str) or not obj.strip():
                problems.append((f"stimuli.objects[{i}]", "expected a non-empty string"))
            elif slug(obj) in seen:
                problems.append((f"stimuli.objects[{i}]", f"same id {slug(obj)!r} as objects[{seen[slug(obj)]}]"))
            else:
                seen[slug(obj)] = i
        return problems

    def pairs(self, spec):
        st = spec.stimuli
        frame, negated = st.get("frame", DEFAULT_FRAME), st.get("negated", DEFAULT_NEGATED)
        return [
            Pair(slug(obj), Stimulus(frame.replace("{object}", obj)), Stimulus(negated.replace("{object}", bare(obj))),
                 {"object": obj, "words": len(obj.split())})
            for obj in st["objects"]
        ]
