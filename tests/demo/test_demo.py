"""`sa-issuer demo`: the --json shape and its findings (on SQLite and Redis), and the HTML report
rendered in headless Chromium (screenshot not blank; green and red marks visible)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from issuer.demo_report import COLORS

from ._png import read_png

DURATION = "5"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


_RUNS: dict[str, tuple[str, dict[str, Any], Path, str]] = {}


def _demo(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any], Path, str]:
    """Run the real CLI once per backend (cached for the module): --json on stdout, --html file."""
    if backend in _RUNS:
        return _RUNS[backend]
    out = tmp_path_factory.mktemp(f"demo-{backend}")
    html = out / "report.html"
    args = [sys.executable, "-m", "issuer", "demo", "--json", "--html", str(html)]
    args += ["--duration", DURATION]
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        args += ["--store", server.url.rsplit("/", 1)[0] + "/3"]  # a db of its own
    proc = subprocess.run(args, capture_output=True, text=True, timeout=90, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    _RUNS[backend] = (backend, json.loads(proc.stdout), html, proc.stderr)
    return _RUNS[backend]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_demo_json_shape_and_findings(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _b, doc, _html, stderr = _demo(backend, request, tmp_path_factory)
    assert set(doc["modes"]) == {"oidc", "tokenreview", "hybrid"}
    for mode, m in doc["modes"].items():
        for key in ("revoked_after_s", "check_p50_ms", "check_p99_ms", "issuer_calls_per_check"):
            assert key in m, (mode, key)
        assert m["revoked_after_s"] is None or isinstance(m["revoked_after_s"], int | float)
        assert isinstance(m["check_p50_ms"], int | float) and m["check_p50_ms"] > 0
        assert m["check_p99_ms"] >= m["check_p50_ms"]
        assert m["checks"] > 50
    oidc, review, hybrid = (doc["modes"][m] for m in ("oidc", "tokenreview", "hybrid"))
    # Offline OIDC cannot see the deletion or the revocation; the other two reject quickly.
    assert oidc["revoked_after_s"] is None and oidc["key_revoked_after_s"] is None
    assert review["revoked_after_s"] is not None and review["revoked_after_s"] <= 0.5
    assert hybrid["revoked_after_s"] is not None and hybrid["revoked_after_s"] <= 1.0
    assert review["key_revoked_after_s"] is not None and hybrid["key_revoked_after_s"] is not None
    assert review["issuer_calls_per_check"] == 1.0
    assert hybrid["issuer_calls_per_check"] < 0.05 and oidc["issuer_calls_per_check"] < 0.05
    assert set(doc["markers"]) == {"pod deleted", "key rotated", "key revoked"}
    assert doc["embedded"] is True and backend in doc["store"]
    # Progress went to stderr; no token-looking string anywhere in the output.
    assert "pod demo/" in stderr and "deleted" in stderr
    assert "eyJ" not in stderr and "eyJ" not in json.dumps(doc)


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _near(px: tuple[int, int, int], ref: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, ref, strict=True))


def test_html_report_renders_in_chromium(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    _b, _doc, html, _stderr = _demo("sqlite", request, tmp_path_factory)
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    # Self-contained: nothing fetched from anywhere.
    for needle in ("http://", "https://", "src=", "@import", "url("):
        stripped = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        stripped = stripped.replace(_doc_issuer(text), "")
        assert needle not in stripped, needle
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed (apt-get install -y chromium)"
    png = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1200,900",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    width, height, rows = read_png(png.read_bytes())
    assert (width, height) == (1200, 900)
    counts: Counter[tuple[int, int, int]] = Counter()
    for row in rows[::2]:
        for x in range(0, len(row), 6):
            counts[(row[x], row[x + 1], row[x + 2])] += 1
    assert len(counts) > 50, "screenshot looks blank"
    green, red = _hex(COLORS["accepted"]), _hex(COLORS["rejected"])
    n_green = sum(n for c, n in counts.items() if _near(c, green))
    n_red = sum(n for c, n in counts.items() if _near(c, red))
    assert n_green > 500 and n_red > 300, (n_green, n_red)


def _doc_issuer(text: str) -> str:
    """The issuer URL shown in the report (loopback, not a resource)."""
    start = text.index("Issuer ") + len("Issuer ")
    return text[start : text.index(" ", start)]


def test_demo_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from issuer.demo import main

    assert main(["--issuer", "http://127.0.0.1:9"]) == 2
    assert "--admin-token-file" in capsys.readouterr().err
    assert main(["--duration", "1", "--quiet"]) == 1
    assert "at least 4 seconds" in capsys.readouterr().err
