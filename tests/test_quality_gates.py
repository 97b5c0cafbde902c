"""The project's gates, run as tests so CI enforces them: ruff lint, ruff format, mypy --strict
on issuer/ and verifier/ (configured in pyproject.toml), and py.typed shipped with both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean() -> None:
    r = _run("ruff", "check", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean() -> None:
    r = _run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    r = _run("mypy")  # strict, packages issuer and verifier: see [tool.mypy] in pyproject.toml
    assert r.returncode == 0, r.stdout + r.stderr


def test_packages_ship_py_typed() -> None:
    assert (ROOT / "issuer" / "py.typed").is_file()
    assert (ROOT / "verifier" / "py.typed").is_file()
