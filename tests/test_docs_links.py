"""The documentation stays inside the repository and whole.

- Every link in the repository's Markdown resolves to a file of the repository (and a heading
  of it, for ``#anchors``); none leaves it (no ``..`` out of the checkout, no absolute path); web
  links go only to a few well-known public sites.
- Every Markdown file a page names in code (``dispatcher.md``, ``docs/scaling.md``) exists, and
  every test a page names (``tests/x.py::test_y``) is a test of that file.
- No source, build or config file cites a document the repository lacks.
- The README links every page of ``docs/`` and the contributor's files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {
    ".git",
    ".venv",
    ".cache",
    ".run",
    "out",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
}
SOURCE_DIRS = ("streams", "taskd", "lab", "tests", "scripts", "deploy", "scenarios", ".ci")
SOURCE_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml")
SOURCE_SUFFIXES = {"", ".py", ".toml", ".yml", ".yaml", ".json", ".sh", ".cfg", ".xml", ".txt"}
WEB_HOSTS = {
    "keepachangelog.com",
    "semver.org",
    "www.apache.org",
    "kafka.apache.org",
    "docs.python.org",
    "peps.python.org",
    "prometheus.io",
    "grafana.com",
    "pypi.org",
}
"""Web links may point here only: well-known public sites, never a colleague's folder."""
README_MUST_LINK = ("CONTRIBUTING.md", "CHANGELOG.md", "LICENSE")

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
MD_MENTION = re.compile(r"(?<![\w./-])((?:\.{0,2}/)?(?:[\w.-]+/)*[\w.-]+\.md)\b")
DOCS_MENTION = re.compile(r"(?<![\w./-])(docs/[\w./-]*\w)")
TEST_MENTION = re.compile(r"(?<![\w./-])(tests/[\w/]+\.py)(?:::(\w+))?")
SHARED = "../" + "shared"  # spelled apart so this file does not match itself


def _walk(top: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in files:
            yield Path(root) / name


def _markdown() -> list[Path]:
    return sorted(path for path in _walk(REPO) if path.suffix == ".md")


def _sources() -> list[Path]:
    found = [REPO / name for name in SOURCE_FILES if (REPO / name).is_file()]
    for top in SOURCE_DIRS:
        if (REPO / top).is_dir():
            found += [p for p in _walk(REPO / top) if p.suffix in SOURCE_SUFFIXES]
    return sorted(p for p in found if p.resolve() != Path(__file__).resolve())


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _prose(text: str) -> str:
    """Markdown without its code: fenced blocks and code spans hold no links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return [
        *INLINE_LINK.findall(prose),
        *REFERENCE_LINK.findall(prose),
        *AUTOLINK.findall(prose),
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", _text(path))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO)


def _link_problem(page: Path, target: str) -> str | None:
    """Why ``target``, a link on ``page``, is not allowed; None when it is fine."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        if parts.hostname not in WEB_HOSTS:
            return f"a web link to {parts.hostname} (allowed: {sorted(WEB_HOSTS)})"
        return None
    if parts.scheme or parts.netloc:
        return "a link that is no file of the repository"
    if parts.path.startswith("/"):
        return "an absolute path"
    file = (page.parent / parts.path).resolve() if parts.path else page.resolve()
    if not _inside(file):
        return "a path outside the repository"
    if not file.exists():
        return "a missing file"
    if parts.fragment and file.suffix == ".md" and parts.fragment not in _anchors(file):
        return f"no heading #{parts.fragment} in {file.relative_to(REPO)}"
    return None


def _names(path: Path) -> str:
    return str(path.relative_to(REPO))


MARKDOWN = _markdown()


def test_there_is_markdown_to_check() -> None:
    names = {_names(path) for path in MARKDOWN}
    assert {"README.md", "docs/architecture.md", "docs/guarantees.md"} <= names


@pytest.mark.parametrize("page", MARKDOWN, ids=_names)
def test_every_link_stays_in_the_repository_and_resolves(page: Path) -> None:
    problems = [
        f"{target}: {problem}"
        for target in _links(_text(page))
        if (problem := _link_problem(page, target)) is not None
    ]
    assert problems == [], f"{_names(page)} links badly"


def _named_file(page: Path, mention: str) -> bool:
    """A page's mention of a file: from the page's folder or the repository's top, inside it."""
    return any(p.exists() and _inside(p) for p in (page.parent / mention, REPO / mention))


def _defines(path: Path, name: str) -> bool:
    """Whether the module ``path`` defines ``name`` (a test function, class or alias)."""
    pattern = rf"^(?:async def|def|class) {name}\b|^{name} ="
    return path.is_file() and re.search(pattern, _text(path), re.MULTILINE) is not None


@pytest.mark.parametrize("page", MARKDOWN, ids=_names)
def test_every_page_and_test_a_page_names_exists(page: Path) -> None:
    text = _text(page)
    missing = [m for m in MD_MENTION.findall(text) if not _named_file(page, m)]
    missing += [
        f"{file}::{name}" if name else file
        for file, name in TEST_MENTION.findall(text)
        if not (REPO / file).is_file() or (name and not _defines(REPO / file, name))
    ]
    assert missing == [], f"{_names(page)} names what the repository lacks"


@pytest.mark.parametrize("page", MARKDOWN, ids=_names)
def test_no_page_points_at_a_folder_beside_the_repository(page: Path) -> None:
    assert SHARED not in _text(page)


def test_no_source_file_cites_a_document_the_repository_lacks() -> None:
    markdown_names = {path.name for path in MARKDOWN}
    missing = []
    for source in _sources():
        text = _text(source)
        if SHARED in text:
            missing.append(f"{_names(source)}: {SHARED}")
        for mention in MD_MENTION.findall(text):
            known = mention in markdown_names if "/" not in mention else (REPO / mention).exists()
            if not known or not _inside(REPO / mention):
                missing.append(f"{_names(source)}: {mention}")
        missing += [
            f"{_names(source)}: {mention}"
            for mention in DOCS_MENTION.findall(text)
            if not (REPO / mention).exists()
        ]
    assert missing == []


def test_the_readme_links_every_page_of_docs_and_the_contributors_files() -> None:
    readme = REPO / "README.md"
    linked = {
        (readme.parent / urlsplit(target).path).resolve()
        for target in _links(_text(readme))
        if not urlsplit(target).scheme
    }
    wanted = sorted((REPO / "docs").glob("*.md")) + [REPO / name for name in README_MUST_LINK]
    assert [_names(path) for path in wanted if path.resolve() not in linked] == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("docs/architecture.md", None),
        ("docs/operations.md#logs", None),
        ("docs/operations.md#no-such-heading", "no heading"),
        ("docs/nothing.md", "a missing file"),
        (f"{SHARED}/design/ARCHITECTURE.md", "outside the repository"),
        ("/etc/passwd", "an absolute path"),
        ("https://example.com/x", "a web link"),
        ("https://keepachangelog.com/en/1.1.0/", None),
        ("file:///etc/passwd", "no file of the repository"),
    ],
)
def test_the_check_catches_what_it_should(target: str, problem: str | None) -> None:
    found = _link_problem(REPO / "README.md", target)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_named_test_must_be_defined_in_its_file() -> None:
    this = Path(__file__)
    assert _defines(this, "test_a_named_test_must_be_defined_in_its_file")
    assert not _defines(this, "test_that_is_not_here")
    assert _defines(REPO / "tests/core/test_distributor.py", "TestDistributor")


def test_headings_give_githubs_anchors() -> None:
    assert _slug("What `make demo` does") == "what-make-demo-does"
    assert _slug("Scale: shards, instances, agents") == "scale-shards-instances-agents"
    assert _slug("Known gaps") == "known-gaps"
