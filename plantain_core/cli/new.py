"""``plantain new NAME --kind KIND``: write a commented spec skeleton that validates."""

from __future__ import annotations

import pathlib
import re
import shutil

import click

from ..errors import PlantainError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")

HEAD = '''# A plantain probe spec ({kind}). Check it with: plantain validate {file}
# Every key is documented in plantain's docs/specs.md.
schema = 1
name = "{name}"                     # must equal the file name stem
title = "{name}-plantain"
description = "What this probe asks, in one sentence"
generator = "{kind}"
interpreter = "default"             # or an interpreter a plugin registers
direction = ["condition A", "condition B"]  # t = mean(A - B): names of A and B
tags = []

# [model]                           # defaults; plantain run --model etc. override them
# id = "black-forest-labs/FLUX.2-klein-base-4B"
# height = 1024
# width = 1024

[stimuli]
'''

BODIES = {
    "text-pair": '''# A and B differ in the prompt only. Give pairs inline, as template + items, or
# pairs_file = "pairs.csv" (columns id, a, b; other columns become pair meta).
# Keep A and B the same length in tokens: a length difference is a confound (the card checks it).
pairs = [
  { id = "pair-1", a = "A photo of a red cube on a table", b = "A photo of a tan cube on a table" },
  { id = "pair-2", a = "A photo of a red ball on a table", b = "A photo of a tan ball on a table" },
  { id = "pair-3", a = "A photo of a red cup on a table", b = "A photo of a tan cup on a table" },
]
''',
    "fixed-image-text-pair": '''# Every pass conditions on one reference image: generated once from reference_prompt
# (14 steps, guidance 4.0, reference_seed) and cached, or reference_image = "file.png".
reference_prompt = "A neutral matte grey object on a neutral grey background"
reference_seed = 0
template = { a = "Show this object as {a_word}", b = "Show this object as {b_word}" }
items = [
  { id = "pair-1", a_word = "very large", b_word = "very small" },
  { id = "pair-2", a_word = "very heavy", b_word = "very light" },
  { id = "pair-3", a_word = "very old", b_word = "very new" },
]
''',
    "image-pair": '''# A and B differ in the conditioning image; every pass uses one prompt. Each image is
# a prompt generated once (image_seed, 14 steps, guidance 4.0) or a file: a_image / b_image.
prompt = "Describe what is depicted in this image."
image_seed = 0
pairs = [
  { id = "pair-1", a = "A glass of water on a table", b = "A spilled glass of water on a table" },
  { id = "pair-2", a = "A whole apple on a plate", b = "A half-eaten apple on a plate" },
  { id = "pair-3", a = "A candle, unlit", b = "A candle, burnt down" },
]
''',
}


@click.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(BODIES)), default="text-pair", show_default=True,
              help="The stimulus kind (built-in generator) of the probe.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=pathlib.Path), default=".",
              show_default=True, help="Folder to write NAME.toml into (created if missing).")
def cli(name, kind, directory):
    """Write NAME.toml: a commented spec skeleton of stimulus kind KIND that validates."""
    from ..rundir.fsutil import atomic_write_text
    from ..plugins import get_registry
    from ..spec.probe_spec import load_spec

    if not NAME_RE.fullmatch(name):
        raise PlantainError(f"NAME {name!r}: use up to 100 letters, digits, '-' and '_' (it becomes the file name "
                            "NAME.toml)")
    path = directory / f"{name}.toml"
    if path.exists():
        raise PlantainError(f"{path} exists; choose another NAME or --dir")
    made = not directory.exists()
    try:
        atomic_write_text(path, HEAD.format(kind=kind, name=name, file=path) + BODIES[kind])
    except OSError as exc:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise PlantainError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        load_spec(path, get_registry())  # the skeleton must validate as written
    except PlantainError:
        path.unlink()
        raise
    click.echo(f"wrote {path}; edit the pairs, then: plantain validate {path} && plantain run {path} --model tiny")
