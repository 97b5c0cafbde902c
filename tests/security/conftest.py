"""Fixtures for the security tests (tests/security/).

- ``issuer_factory`` (from tests/issuer/conftest.py): real ``sa-issuer serve`` subprocesses.
- ``make_api`` / ``api``: the REAL app in-process (Starlette TestClient over ``create_app``) on a
  SQLite store in ``tmp_path``, with the helpers of tests/api/_api_support.py (``api.token``,
  ``api.review`` ...). ``make_api(store=URL, **config)`` for another store or settings.
- ``support``: the tests/api/_api_support module; ``jwks_server``: tests/verifier/jwks_server.py
  (a discovery + JWKS stand-in on a real loopback socket).

Helper modules of other test directories are loaded by path under private names, so no module
basename is shared with another directory (tests/ is not a package).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _serve_fixtures
import pytest
from starlette.testclient import TestClient

from issuer.app import create_app
from issuer.context import build_context

TESTS = Path(__file__).resolve().parents[1]


_serve = _serve_fixtures.load()
issuer_factory = _serve.issuer_factory
support = _serve_fixtures.load_module("_security_api_support", TESTS / "api" / "_api_support.py")
jwks_server = _serve_fixtures.load_module(
    "_security_jwks_server", TESTS / "verifier" / "jwks_server.py"
)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build in-process Apis (see module docstring); all closed after the test."""
    clients: list[TestClient] = []
    n = 0

    def make(store: str | None = None, **overrides: Any) -> Any:
        nonlocal n
        n += 1
        base = tmp_path / f"api{n}"
        url = store or f"sqlite:///{base / 'issuer.db'}"
        clock = support.Clock()
        ctx = build_context(support.config_for(base, url, **overrides), clock=clock)
        client = TestClient(create_app(ctx), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return support.Api(client, ctx, clock)

    try:
        yield make
    finally:
        for client in reversed(clients):
            client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Any]) -> Any:
    """One in-process Api on SQLite (ES256 keys)."""
    return make_api()
