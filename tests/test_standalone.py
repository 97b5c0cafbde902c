"""The repository stands alone: a fresh clone, with nothing beside it, collects every test.

``git clone`` of HEAD into an empty temporary directory (so only committed files, and no sibling
directory such as the project briefs' folder), then ``python3 -m pytest --collect-only -q`` inside
it. Every test file the clone holds must contribute tests and collection must report no error: a
test that reads data from outside the repository fails here at collection, the way it would on a
user's fresh checkout. Uncommitted changes are not seen (commit first).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"git {' '.join(args)} failed: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("this test needs git and a git checkout of the repository")
    parent = tmp_path_factory.mktemp("fresh")
    target = parent / "sa-oidc"
    _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target), cwd=parent)
    assert [p.name for p in parent.iterdir()] == ["sa-oidc"]  # nothing beside the checkout
    return target


def _python(clone: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python3 ARGS`` in the clone, importing the clone's packages (not this checkout's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(clone)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_clone_imports_its_own_packages(clone: Path) -> None:
    code = "import issuer, verifier; print(issuer.__file__, verifier.__file__)"
    out = _python(clone, "-c", code, timeout=60)
    assert out.returncode == 0, out.stderr
    for path in out.stdout.split():
        assert Path(path).resolve().is_relative_to(clone.resolve()), path


def test_fresh_clone_collects_every_test_without_error(clone: Path) -> None:
    run = _python(
        clone, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", timeout=300
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-4000:]
    assert not re.search(r"\berrors?\b", report.splitlines()[-1]), report[-4000:]
    assert re.search(r"^\d+ tests collected", report.splitlines()[-1]), report[-2000:]
    collected = {line.split("::", 1)[0] for line in run.stdout.splitlines() if "::" in line}
    committed = {
        p
        for p in _git("ls-files", "tests", cwd=clone).splitlines()
        if re.fullmatch(r"tests/(.+/)?test_[^/]*\.py", p)
    }
    assert committed, "no test files in the clone"
    assert committed == collected, (
        f"committed test files that collected nothing: {sorted(committed - collected)}; "
        f"collected from elsewhere: {sorted(collected - committed)}"
    )


def test_every_data_file_of_the_packages_is_shipped() -> None:
    # A wheel holds only .py files and what [tool.setuptools.package-data] names: a data file the
    # code reads but pyproject.toml does not declare works from a checkout and fails when installed.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]
    files = _git("ls-files", "issuer", "verifier", cwd=ROOT).splitlines()
    missing = []
    for name in files:
        if name.endswith(".py"):
            continue
        package, _, rel = name.partition("/")
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in declared.get(package, [])):
            missing.append(name)
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
