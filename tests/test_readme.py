"""The README stays a product README a newcomer reads in five minutes, and the
documentation points only inside the repository: every relative link and image in
README.md and docs/*.md names a file that exists, and an anchor a heading that exists.

Pure file reading: no model, no server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS: list[Path] = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Where a path outside the repository would be written by mistake (docs, code comments,
# the responses' comments).
NO_OUTSIDE_PATHS = [
    "README.md",
    "docs",
    "support_desk",
    "domain",
    "actions",
    "channels",
]
MAX_README_LINES = 250

# [text](target) and ![alt](target); a target ends at the first space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines outside fenced code blocks, numbered from 1."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, … as on GitHub)."""
    seen: set[str] = set()
    for _, line in _prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(1))
        candidate, n = slug, 0
        while candidate in seen:
            n += 1
            candidate = f"{slug}-{n}"
        seen.add(candidate)
    return seen


def _relative_links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link or image that is not a web or mail address."""
    for number, line in _prose_lines(path):
        # A link written inside `code` is shown as typed, not followed.
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            yield number, target


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines, at most {MAX_README_LINES}"


def test_nothing_names_the_shared_folder_outside_the_repository() -> None:
    found = []
    for name in NO_OUTSIDE_PATHS:
        base = ROOT / name
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        for path in files:
            if path.suffix in {".png", ".jpg", ".pyc", ".sqlite", ".db"}:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if "../shared" in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    broken = []
    for number, target in _relative_links(doc):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        where = f"{doc.relative_to(ROOT)}:{number}: {target}"
        if ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{where} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_checks_see_the_links() -> None:
    """The link pattern finds the README's screenshots and docs (a pattern that matched
    nothing would pass every file)."""
    targets = {target for _, target in _relative_links(ROOT / "README.md")}
    assert "docs/screenshots/widget-phone.png" in targets
    assert "docs/performance.md" in targets
    assert _slug("Why the scale-out ratio sits at 1.7 on two cores") == "why-the-scale-out-ratio-sits-at-17-on-two-cores"
    assert _slug("Production layout (`deploy/`)") == "production-layout-deploy"
