"""Fixtures for the stream tests: ``stream_server`` — a real uvicorn server (in-process, real
socket) serving only :func:`issuer.stream.routes` over the parametrized ``store``. End-to-end tests
against the full issuer live in ``test_stream_e2e.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import _serve_fixtures
import pytest
from starlette.applications import Starlette

from issuer.store import Store
from issuer.stream import StreamSettings, routes

from ._helpers import ServerThread

ADMIN = "test-admin-token-0123456789"


@dataclass
class _Ctx:
    store: Store
    admin_tokens: frozenset[str] = frozenset({ADMIN})
    clock: Any = time.time
    config: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_app(store: Store, heartbeat: float = 0.2) -> Starlette:
    """A Starlette app with just the stream routes and a minimal context."""
    app = Starlette(
        routes=routes(StreamSettings(heartbeat=heartbeat, watch_timeout=60, revocation_ttl=3600))
    )
    app.state.ctx = _Ctx(store)
    return app


@pytest.fixture
def stream_server(store: Store) -> Iterator[ServerThread]:
    """A running server for the stream routes on the test's store (sqlite and redis)."""
    srv = ServerThread(make_app(store)).start()
    yield srv
    srv.stop()


_issuer_fixtures = _serve_fixtures.load()
issuer_factory = _issuer_fixtures.issuer_factory
IssuerFactory = _issuer_fixtures.IssuerFactory
IssuerProcess = _issuer_fixtures.IssuerProcess
