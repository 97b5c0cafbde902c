"""The vendored test vectors are byte-identical to their upstream snapshots.

``tests/vectors/SOURCES.md`` lists every Wycheproof file with its size and its upstream git blob
id (abbreviated). Recomputing the blob id (``git hash-object``: SHA-1 over ``blob <len>\\0`` and
the bytes) catches an edit, a reformat or a line-ending conversion that would silently change
what the vector tests exercise.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
_SECTION = re.compile(r"^### 1[ab]\. `(?P<dir>[^`]+)`", re.MULTILINE)
_ROW = re.compile(
    r"^\| (?P<name>[\w.]+\.json) \| (?P<size>\d+) \| [^|]+ \| (?P<blob>[0-9a-f]{7,40}) \|$",
    re.MULTILINE,
)


def _listed() -> list[tuple[str, int, str]]:
    text = (VECTORS / "SOURCES.md").read_text(encoding="utf-8")
    heads = list(_SECTION.finditer(text))
    rows: list[tuple[str, int, str]] = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        for row in _ROW.finditer(text, head.end(), end):
            rows.append((head["dir"] + row["name"], int(row["size"]), row["blob"]))
    return rows


LISTED = _listed()


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def test_sources_lists_every_wycheproof_file() -> None:
    on_disk = {str(p.relative_to(VECTORS)) for p in (VECTORS / "wycheproof").rglob("*.json")}
    listed = {path for path, _, _ in LISTED}
    assert on_disk == listed
    assert len(LISTED) == 16


@pytest.mark.parametrize(("path", "size", "blob"), LISTED, ids=[p for p, _, _ in LISTED])
def test_vector_file_matches_upstream_blob(path: str, size: int, blob: str) -> None:
    data = (VECTORS / path).read_bytes()
    assert len(data) == size, path
    assert _git_blob_id(data).startswith(blob), path


def test_licence_texts_are_present() -> None:
    assert "Apache License" in (VECTORS / "wycheproof" / "LICENSE").read_text(encoding="utf-8")
    unlicense = (VECTORS / "jose-cookbook" / "LICENSE").read_text(encoding="utf-8")
    assert "public domain" in unlicense
