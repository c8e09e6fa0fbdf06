"""Every relative link of the project's Markdown reaches a file, and its anchor a heading.

A reader who follows `[...](BUILD_NOTES.md#speed-and-quality-issue-11)` from
the README should land on that section, not at the top of an 800-line file:
headings get renamed and text moves between files, and nothing else would
notice. Anchors are GitHub's: the heading in lower case, punctuation dropped,
spaces as hyphens, `-1`, `-2`, ... on repeats. Web links are not followed
(no network in the tests).
"""

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

DOCUMENTS = sorted(
    [
        *REPO_ROOT.glob("*.md"),
        *(REPO_ROOT / "docs").glob("*.md"),
        *(REPO_ROOT / "saved_models").glob("*.md"),
        *(REPO_ROOT / "saved_models").glob("*/README.md"),
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(path: Path) -> list[str]:
    """The lines of `path` outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of the Markdown file `path`."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def relative_links(path: Path) -> list[str]:
    """The targets of `path`'s links that point inside the repository."""
    prose = "\n".join(_prose_lines(path))  # a link's text may wrap onto the next line
    return [
        target
        for target in LINK.findall(prose)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def broken_links(path: Path) -> list[str]:
    """`path`'s relative links that reach no file, or no heading of the linked file."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    return broken


def test_the_slugs_are_githubs():
    assert _slug("Speed and quality (issue 11)") == "speed-and-quality-issue-11"
    assert _slug("DALL-E dVAE (`zoo/models/dalle_dvae.py`)") == "dall-e-dvae-zoomodelsdalle_dvaepy"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path):
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(REPO_ROOT)}: " + "; ".join(broken)


def test_the_check_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## Part (one)\n\n```\n# not a heading\n```\n")
    doc = tmp_path / "a.md"
    doc.write_text(
        "[ok](b.md) [ok](b.md#part-one) [wrapped\ntext](b.md#title) [web](https://x.org/y)\n"
        "[gone](c.md) [no](b.md#not-a-heading) [self](#nowhere)\n"
        "```\n[inside code](d.md)\n```\n"
    )
    assert broken_links(doc) == [
        "c.md: no such file",
        "b.md#not-a-heading: no heading with that anchor in b.md",
        "#nowhere: no heading with that anchor in a.md",
    ]


def test_the_documents_are_found():
    names = {str(p.relative_to(REPO_ROOT)) for p in DOCUMENTS}
    assert {"README.md", "BUILD_NOTES.md", "docs/MEASUREMENTS.md"} <= names
