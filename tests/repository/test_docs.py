"""The README and docs/ point only at files a clone of the project has."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_of_the_docs_exists():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_nothing_points_outside_the_repository():
    # the team's notes (../shared/PAPER.md) are not part of a clone: docs/paper.md is
    files = [*DOCS, *(ROOT / "lpe").glob("*.py"), *(ROOT / "workflow").rglob("*.smk")]
    files += [*(ROOT / "workflow/schemas").glob("*.yaml"), *(ROOT / "config").glob("*.yaml")]
    for path in files:
        text = path.read_text()
        assert "../shared" not in text and "PAPER.md" not in text, path
    assert "docs/paper.md" in (ROOT / "README.md").read_text()
