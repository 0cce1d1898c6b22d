"""The docs stay true: every hook has its section, every command its mention."""

import pathlib
import re

from plantain_core import hookspecs
from plantain_core.cli import COMMANDS

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def hook_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("plantain_") and callable(getattr(hookspecs, n)))


def test_every_hook_has_a_section_and_a_docstring():
    text = (DOCS / "hooks.md").read_text()
    sections = re.findall(r"^## (\S+)$", text, flags=re.M)
    assert sections == hook_names()
    for name in hook_names():
        doc = getattr(hookspecs, name).__doc__ or ""
        assert ":param" in doc or ":return" in doc, name


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README.read_text()


def test_every_available_command_is_documented():
    from click.testing import CliRunner

    from plantain_core.cli import main

    text = (DOCS / "cli.md").read_text()
    available = main.list_commands(None)
    assert set(available) <= set(COMMANDS)
    for name in available:
        assert f"## plantain {name}" in text, name
