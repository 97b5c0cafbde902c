"""Fixtures for the reliability suite: the real ``sa-issuer serve`` (re-exported from
tests/issuer/conftest.py). ``_load.py`` drives load from threads, ``_kube.py`` holds the API calls.

Every module here sets ``pytestmark = pytest.mark.reliability`` (pyproject.toml); the suite
runs in CI like any other test.
"""

from __future__ import annotations

import _serve_fixtures

_serve = _serve_fixtures.load()
issuer_factory = _serve.issuer_factory
IssuerFactory = _serve.IssuerFactory
IssuerProcess = _serve.IssuerProcess
