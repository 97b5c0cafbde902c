"""docs/OPERATIONS.md "What to monitor" lists exactly the metrics the issuer exports.

Every metric name the issuer registers (a ``"sa_issuer_..."`` string literal in ``issuer/``) must
have a row in the table, and every row must name a metric that exists, so an alert a user writes
from the doc matches a real series.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "OPERATIONS.md"
_NAME = re.compile(r"""["'](sa_issuer_[a-z0-9_]+)["']""")


def _exported() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "issuer").rglob("*.py"):
        names |= set(_NAME.findall(path.read_text(encoding="utf-8")))
    return names


def _documented() -> set[str]:
    section = DOC.read_text(encoding="utf-8").split("\n## What to monitor\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(sa_issuer_[a-z0-9_]+)", section, re.MULTILINE))


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    exported, documented = _exported(), _documented()
    assert len(exported) >= 5 and len(documented) >= 5
    assert not exported - documented, f"metrics missing from OPERATIONS.md: {exported - documented}"
    assert not documented - exported, f"OPERATIONS.md lists unknown ones: {documented - exported}"
