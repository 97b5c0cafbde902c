"""Every relative link in README.md, docs/ and deploy/ resolves inside the repository.

Markdown links and images (``[text](target)``, ``![alt](src)``, ``[id]: target``) outside code
spans and fenced blocks are checked: the target file or directory must exist, must lie inside the
repository, and a ``#fragment`` must name a heading of the target (GitHub's anchor rules). URLs
with a scheme (``https:``, ``mailto:``) are not fetched.

And nothing in the repository points at material that is not in it: no committed file mentions
the project briefs the docs were once written from, or a sibling directory of the checkout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _docs() -> list[Path]:
    found = [ROOT / "README.md"]
    for folder in ("docs", "deploy"):
        found += sorted((ROOT / folder).rglob("*.md"))
    return found


DOCS = _docs()

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text with fenced code blocks and code spans blanked out."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return [m.group(1) for m in _INLINE.finditer(prose)] + [
        m.group(1) for m in _REFDEF.finditer(prose)
    ]


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for ``path``'s headings (repeats get ``-1``, ``-2`` ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in _HEADING.finditer(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _problems(doc: Path) -> list[str]:
    problems = []
    for target in _links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue  # https:, mailto: ... not checked here
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        where = f"{doc.relative_to(ROOT)}: ({target})"
        if not dest.is_relative_to(ROOT):
            problems.append(f"{where} points outside the repository")
        elif not dest.exists():
            problems.append(f"{where} does not exist")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{fragment} in {dest.name}")
    return problems


def test_the_docs_are_found_and_link() -> None:
    names = {d.relative_to(ROOT).as_posix() for d in DOCS}
    assert {"README.md", "docs/CONFIG.md", "deploy/README.md"} <= names
    assert sum(len(_links(d.read_text(encoding="utf-8"))) for d in DOCS) > 10


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = _problems(doc)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_bad_links(tmp_path: Path) -> None:
    assert slug("1. Module map and the `dependency` rule") == "1-module-map-and-the-dependency-rule"
    assert slug("Key backup and the KEK") == "key-backup-and-the-kek"
    text = (
        "[ok](docs/CONFIG.md) `[in code](nowhere.md)` [gone](nowhere.md) "
        "![img](docs/missing.png) [web](https://example.com) [anchor](#settings)\n"
        "```\n[fenced](also-nowhere.md)\n```\n[ref]: ../outside.md\n"
    )
    assert _links(text) == [
        "docs/CONFIG.md",
        "nowhere.md",
        "docs/missing.png",
        "https://example.com",
        "#settings",
        "../outside.md",
    ]


def _committed_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"git ls-files failed: {out.stderr.decode(errors='replace')}")
    files = []
    for name in out.stdout.decode().split("\0"):
        path = ROOT / name
        if name and not name.startswith("tests/vectors/") and path.is_file():
            files.append(path)
    return files


def test_nothing_points_outside_the_repository() -> None:
    # Built from parts so that this file does not match itself.
    needles = ["DESIGN" + ".md", "REFERENCE" + ".md", "../" + "shared", "/work/" + "shared"]
    hits = []
    for path in _committed_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for needle in needles:
                if needle in line:
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {needle}")
    assert not hits, "references to material outside the repository:\n" + "\n".join(hits)
