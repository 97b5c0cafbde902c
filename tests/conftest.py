"""Shared fixtures. Real services only: SQLite files and a private redis-server.

- ``redis_server`` (session): a :class:`_services.RedisServer` with ``.url``, ``.port``,
  ``.restart()``. Fails (never skips) when ``redis-server`` is not installed.
- ``redis_url`` (function): the server's URL, FLUSHALLed before the test, so each test starts empty.
- ``sqlite_path`` (function): ``tmp_path / "issuer.db"`` (not created).
- ``store_factory`` (function, parametrized "sqlite" | "redis"): ``.open()`` opens another store
  instance (a second replica) on the same file/server; ``.url`` is the ``open_store`` URL, usable
  from subprocesses; everything opened is closed after the test.
- ``store`` (function, parametrized "sqlite" | "redis"): one open Store from ``store_factory``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _services import RedisServer

from issuer.store import Store, open_store

BACKENDS = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server private to this test session (one per xdist worker)."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private server's URL, emptied (FLUSHALL) for this test."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """Where a test's SQLite store lives: ``tmp_path / "issuer.db"``."""
    return tmp_path / "issuer.db"


class StoreFactory:
    """Opens store instances on one backend location; closes them all at teardown."""

    def __init__(self, backend: str, url: str, data_dir: Path) -> None:
        self.backend = backend
        self.url = url
        self.data_dir = data_dir
        self._opened: list[Store] = []

    def open(self) -> Store:
        """A new, independent store instance (think: another replica)."""
        s = open_store(self.url, self.data_dir)
        self._opened.append(s)
        return s

    def close_all(self) -> None:
        """Close every instance opened through this factory."""
        for s in self._opened:
            s.close()
        self._opened.clear()


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Parametrized over every backend; see the module docstring."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'issuer.db'}"
    else:
        url = request.getfixturevalue("redis_url")
    factory = StoreFactory(request.param, url, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """An open store of each backend (closed after the test)."""
    return store_factory.open()
