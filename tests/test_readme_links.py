"""The README is self-contained: every link it gives resolves in the repository or is a public
URL, and it never sends readers to files outside the repository (a development workspace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_resolves_in_the_repository_or_is_a_public_url(document: Path) -> None:
    text = document.read_text()
    broken = [
        target
        for target in LINK.findall(text)
        if not target.startswith(("https://", "http://", "#"))
        and not (document.parent / target.split("#")[0]).exists()
    ]
    assert broken == [], f"{document.name} links to files the repository lacks: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_no_reference_outside_the_repository(document: Path) -> None:
    text = document.read_text()
    outside = re.findall(r"\.\./shared\S*|development workspace|`notes/[\w-]+\.md`", text)
    assert outside == [], f"{document.name} refers to files users do not have: {outside}"


def test_the_documents_it_names_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("docs/design.md", "docs/paper.md", "docs/official-code.md", "docs/extending.md"):
        assert name in readme
        assert (ROOT / name).is_file()
