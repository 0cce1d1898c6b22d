"""The three built-in stimulus generators: text-pair, fixed-image-text-pair, image-pair."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from plantain_core import ImageSource, Pair, Stimulus
from plantain_core.errors import suggest
from plantain_core.spec.pairfile import read_pairs
from plantain_core.spec.pairtable import PAIR_KEYS, check_text

DESCRIBE_PROMPT = "Describe what is depicted in this image."
Problem = tuple[str, str]


def _unknown_keys(stimuli: dict[str, Any], allowed: tuple[str, ...]) -> list[Problem]:
    return [(f"stimuli.{k}", "unknown key" + suggest(k, allowed)) for k in stimuli if k not in allowed]


def _check_int(stimuli: dict[str, Any], key: str) -> list[Problem]:
    value = stimuli.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [(f"stimuli.{key}", "expected a non-negative integer")]
    return []


def resolve_image(value: Any, spec_dir: pathlib.Path) -> pathlib.Path:
    """Image paths in a spec are relative to the spec file."""
    path = pathlib.Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else (spec_dir / path)


def check_image_file(key: str, value: Any, spec_dir: pathlib.Path) -> list[Problem]:
    if not isinstance(value, str) or not value.strip():
        return [(key, "expected a path to an image file")]
    path = resolve_image(value, spec_dir)
    if not path.is_file():
        return [(key, f"image file not found: {path}")]
    try:
        from PIL import Image, UnidentifiedImageError

        with Image.open(path) as im:
            im.verify()
    except PermissionError:
        return [(key, f"image file is not readable: {path}")]
    except Image.DecompressionBombError:  # a small file that would decode to gigabytes
        return [(key, f"image is too large to decode safely: {path}")]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return [(key, f"not an image file: {path} ({type(exc).__name__})")]
    return []


class TextPair:
    """A and B differ in the prompt; no conditioning image."""

    description = "A and B differ in the prompt (text-to-image pass); seed and size held fixed"
    keys = PAIR_KEYS

    def validate(self, stimuli: dict[str, Any], spec_dir: pathlib.Path) -> list[Problem]:
        problems = _unknown_keys(stimuli, self.keys + self.extra_keys())
        problems += self.validate_extra(stimuli, spec_dir)
        rows, row_problems = read_pairs(stimuli, ("a", "b"), spec_dir=spec_dir)
        problems += row_problems
        for row in rows:
            for field in ("a", "b"):
                if field not in row.fields:
                    problems.append((row.at(field), "required key is missing"))
                else:
                    problems += check_text(row.at(field), row.fields[field])
        return problems

    def extra_keys(self) -> tuple[str, ...]:
        return ()

    def validate_extra(self, stimuli, spec_dir) -> list[Problem]:
        return []

    def image(self, spec) -> ImageSource | None:
        return None

    def pairs(self, spec) -> list[Pair]:
        rows, _ = read_pairs(spec.stimuli, ("a", "b"), spec_dir=spec.spec_dir)
        image = self.image(spec)
        return [
            Pair(row.id, Stimulus(row.fields["a"], image), Stimulus(row.fields["b"], image), row.meta)
            for row in rows
        ]


class FixedImageTextPair(TextPair):
    """A and B differ in the prompt; both condition on one reference image."""

    description = "A and B differ in the prompt; both condition on one fixed reference image"

    def extra_keys(self) -> tuple[str, ...]:
        return ("reference_prompt", "reference_image", "reference_seed")

    def validate_extra(self, stimuli, spec_dir) -> list[Problem]:
        has_prompt, has_image = "reference_prompt" in stimuli, "reference_image" in stimuli
        if has_prompt == has_image:
            return [("stimuli.reference_prompt", "give exactly one of reference_prompt or reference_image")]
        problems = _check_int(stimuli, "reference_seed")
        if has_prompt:
            problems += check_text("stimuli.reference_prompt", stimuli["reference_prompt"])
        else:
            problems += check_image_file("stimuli.reference_image", stimuli["reference_image"], spec_dir)
        return problems

    def image(self, spec) -> ImageSource:
        st = spec.stimuli
        if "reference_image" in st:
            return ImageSource(path=str(resolve_image(st["reference_image"], spec.spec_dir)))
        return ImageSource(prompt=st["reference_prompt"], seed=st.get("reference_seed", 0))


class ImagePair:
    """A and B differ in the conditioning image; one fixed prompt."""

    description = "A and B differ in the conditioning image (file or generated once); one fixed prompt"
    keys = ("prompt", "image_seed") + PAIR_KEYS
    fields = ("a", "b", "a_image", "b_image")

    def validate(self, stimuli: dict[str, Any], spec_dir: pathlib.Path) -> list[Problem]:
        problems = _unknown_keys(stimuli, self.keys) + _check_int(stimuli, "image_seed")
        if "prompt" in stimuli:
            problems += check_text("stimuli.prompt", stimuli["prompt"])
        rows, row_problems = read_pairs(stimuli, self.fields, spec_dir=spec_dir)
        problems += row_problems
        for row in rows:
            for side in ("a", "b"):
                has_prompt, has_file = side in row.fields, f"{side}_image" in row.fields
                if has_prompt == has_file:
                    problems.append((row.at(side), f"give exactly one of {side} (an image prompt) or {side}_image (a file)"))
                elif has_prompt:
                    problems += check_text(row.at(side), row.fields[side])
                else:
                    problems += check_image_file(row.at(f"{side}_image"), row.fields[f"{side}_image"], spec_dir)
        return problems

    def pairs(self, spec) -> list[Pair]:
        st = spec.stimuli
        prompt = st.get("prompt", DESCRIBE_PROMPT)
        seed = st.get("image_seed", 0)
        rows, _ = read_pairs(st, self.fields, spec_dir=spec.spec_dir)

        def source(row, side) -> ImageSource:
            if side in row.fields:
                return ImageSource(prompt=row.fields[side], seed=seed)
            return ImageSource(path=str(resolve_image(row.fields[f"{side}_image"], spec.spec_dir)))

        return [
            Pair(row.id, Stimulus(prompt, source(row, "a")), Stimulus(prompt, source(row, "b")), row.meta)
            for row in rows
        ]
