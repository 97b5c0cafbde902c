"""docs/CONTRACTS.md names only what the code has.

The reason-code table and ``verifier.errors.REASONS`` are the same set (both ways); every name the
doc's import lines take from ``verifier`` is exported by it; every ``sa-issuer`` subcommand the
doc's CLI synopsis shows exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import verifier
from verifier.errors import REASONS

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md"
TEXT = DOC.read_text(encoding="utf-8")


def _section(title: str) -> str:
    return TEXT.split(f"\n### {title}\n", 1)[1].split("\n#", 1)[0]


def test_reason_table_is_exactly_the_reason_codes() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \|", _section("Reason codes"), re.MULTILINE)
    assert len(rows) == len(set(rows))
    assert set(rows) == set(REASONS)


def test_documented_verifier_imports_exist() -> None:
    names: set[str] = set()
    for line in re.findall(r"^from verifier import (.+)$", TEXT, re.MULTILINE):
        names |= {n.strip() for n in line.split(",")}
    assert {"KeySet", "Policy", "verify", "InvalidToken", "VerifierUnavailable"} <= names
    missing = sorted(n for n in names if n not in verifier.__all__)
    assert not missing, f"CONTRACTS.md imports names verifier does not export: {missing}"


def test_documented_issuer_subcommands_exist() -> None:
    shown = set(re.findall(r"^sa-issuer ([a-z-]+)", TEXT, re.MULTILINE))
    assert {"serve", "keys", "export", "demo"} <= shown
    out = subprocess.run(
        [sys.executable, "-m", "issuer", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    listed = set(re.findall(r"^    ([a-z][a-z-]*)\s", out, re.MULTILINE))
    assert shown <= listed, f"not sa-issuer subcommands: {sorted(shown - listed)}"
