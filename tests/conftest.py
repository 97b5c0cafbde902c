"""Shared fixtures. Real services only: SQLite files and private Redis deployments.

- ``redis_server`` (session): a :class:`_services.RedisServer` with ``.url``, ``.port``,
  ``.restart()``. Fails (never skips) when ``redis-server`` is not installed.
- ``redis_url`` (function): the server's URL, FLUSHALLed before the test, so each test starts empty.
- ``redis_cluster`` (session): a :class:`_services.RedisClusterDeployment` (3 masters);
  ``redis_cluster_url`` (function): its ``redis+cluster://`` URL, every master FLUSHALLed.
- ``redis_sentinel`` (session): a :class:`_services.RedisSentinelDeployment` (master, replica,
  Sentinel); ``redis_sentinel_url`` (function): its ``redis+sentinel://`` URL, master FLUSHALLed.
  Both fail (never skip) when ``redis-server`` / ``redis-cli`` are missing.
- ``sqlite_path`` (function): ``tmp_path / "issuer.db"`` (not created).
- ``store_factory`` (function, parametrized over :data:`BACKENDS`: "sqlite" | "redis"): ``.open()``
  opens another store instance (a second replica) on the same file/server; ``.url`` is the
  ``open_store`` URL, usable from subprocesses; ``.name`` the parameter, ``.backend`` the store's
  ``backend`` ("redis" for every Redis topology); everything opened is closed after the test.
- ``store`` (function): one open Store from ``store_factory``.
- ``any_store_factory`` (function, parametrized over :data:`ALL_BACKENDS`, adding "redis-cluster"
  and "redis-sentinel"): the same, for the conformance suite, whose conftest makes it its
  ``store_factory``. Other suites stay on the two fast backends.

A new backend is wired in here: a URL fixture, a :data:`_URL_FIXTURES` entry, an ALL_BACKENDS name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _services import RedisClusterDeployment, RedisSentinelDeployment, RedisServer

from issuer.store import Store, open_store

#: What ``store`` / ``store_factory`` run against in every suite.
BACKENDS = ["sqlite", "redis"]
#: What the conformance suite runs against (``any_store_factory``).
ALL_BACKENDS = [*BACKENDS, "redis-cluster", "redis-sentinel"]


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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterDeployment]:
    """A 3-master Redis Cluster private to this test session."""
    try:
        cluster = RedisClusterDeployment(tmp_path_factory.mktemp("redis-cluster"))
        cluster.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterDeployment) -> str:
    """The cluster's ``redis+cluster://`` URL, every master emptied for this test."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelDeployment]:
    """A master, a replica and a Sentinel private to this test session."""
    try:
        deployment = RedisSentinelDeployment(tmp_path_factory.mktemp("redis-sentinel"))
        deployment.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield deployment
    deployment.stop()


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinelDeployment) -> str:
    """The deployment's ``redis+sentinel://`` URL, its master emptied for this test."""
    redis_sentinel.flushall()
    return redis_sentinel.url


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """Where a test's SQLite store lives: ``tmp_path / "issuer.db"``."""
    return tmp_path / "issuer.db"


class StoreFactory:
    """Opens store instances on one backend location; closes them all at teardown."""

    def __init__(self, name: str, url: str, data_dir: Path) -> None:
        self.name = name
        self.backend = name.split("-", 1)[0]
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


#: Backend name -> the fixture giving its (emptied) URL; sqlite uses a file in tmp_path.
_URL_FIXTURES = {
    "redis": "redis_url",
    "redis-cluster": "redis_cluster_url",
    "redis-sentinel": "redis_sentinel_url",
}


def _store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    name: str = request.param
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'issuer.db'}"
    else:
        url = request.getfixturevalue(_URL_FIXTURES[name])
    factory = StoreFactory(name, url, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Parametrized over :data:`BACKENDS`; see the module docstring."""
    yield from _store_factory(request, tmp_path)


@pytest.fixture(params=ALL_BACKENDS)
def any_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Parametrized over :data:`ALL_BACKENDS` (every Redis topology); see the module docstring."""
    yield from _store_factory(request, tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """An open store of each backend (closed after the test)."""
    return store_factory.open()
