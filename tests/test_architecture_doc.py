"""docs/ARCHITECTURE.md's module map names every module of ``issuer/`` and ``verifier/``.

A module is named by its path inside its package (``api/objects.py``, ``core.py``), or by its
file name on an indented line of the map under its folder's heading (``integrations/`` then
``  rules.py``). Package ``__init__``/``__main__`` files are exempt. A new module without a line
in the map fails here: add one saying what it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def _modules() -> list[Path]:
    return sorted(
        p
        for pkg in ("issuer", "verifier")
        for p in (ROOT / pkg).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )


def _named(module: Path) -> bool:
    package_root = module.relative_to(ROOT).parts[0]
    rel = module.relative_to(ROOT / package_root).as_posix()
    if rel in DOC:
        return True
    if "/" not in rel:
        return False
    folder = rel.rsplit("/", 1)[0].split("/")[-1] + "/"
    listed = re.search(rf"^\s+{re.escape(module.name)}\s", DOC, re.MULTILINE)
    return folder in DOC and listed is not None


def test_every_module_is_in_the_module_map() -> None:
    missing = [m.relative_to(ROOT).as_posix() for m in _modules() if not _named(m)]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"
