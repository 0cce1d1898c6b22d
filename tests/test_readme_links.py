"""Every doc page is linked from the README, and every link points at a file."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_links_every_doc_and_only_existing_files():
    text = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\((docs/[^)]+\.md)\)", text))
    assert links == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
