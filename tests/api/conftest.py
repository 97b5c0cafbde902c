"""Fixtures for the identity API tests: the REAL app in-process over a real store.

- ``api`` (parametrized sqlite | redis): an :class:`Api` — a Starlette TestClient on
  ``create_app(build_context(config))`` with the admin token, helpers to create objects, mint
  tokens and review them, the context (``api.ctx``) and a steerable clock (``api.clock``).
- ``make_api``: build another Api with config overrides (``make_api(extended_expiration=True)``).
- ``issuer_factory`` (re-exported from tests/issuer/conftest.py): real ``sa-issuer serve``
  subprocesses for the end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _serve_fixtures
import pytest
from _api_support import Api, ApiFactory, Clock, config_for
from starlette.testclient import TestClient

from issuer.app import create_app
from issuer.context import build_context

_serve = _serve_fixtures.load()
issuer_factory = _serve.issuer_factory
IssuerFactory = _serve.IssuerFactory


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'issuer.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def make_api(tmp_path: Path, store_url: str) -> Iterator[ApiFactory]:
    """Build Apis on this test's store; each has its own data dir and clock."""
    stack: list[TestClient] = []
    n = 0

    def make(**overrides: Any) -> Api:
        nonlocal n
        n += 1
        clock = Clock()
        config = config_for(tmp_path / f"api{n}", store_url, **overrides)
        ctx = build_context(config, clock=clock)
        client = TestClient(create_app(ctx))
        client.__enter__()
        stack.append(client)
        return Api(client, ctx, clock)

    try:
        yield make
    finally:
        for client in reversed(stack):
            client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    """The default Api (see module docstring)."""
    return make_api()
