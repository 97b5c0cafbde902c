"""What the Redis backend promises per topology, beyond the shared conformance suite (which runs
unchanged on "redis-cluster" and "redis-sentinel" too): URL forms, one hash slot for everything,
cluster-wide notifications, reachability, and Sentinel failover. Real servers only (fixtures in
tests/conftest.py; :mod:`_services` for the private failover deployments).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from _services import RedisClusterDeployment, RedisSentinelDeployment, free_port
from redis.cluster import RedisCluster

from issuer.store import ChangeKind, KeySetState, StoreUnavailable, open_store
from issuer.store.redis_store import RedisStore

from . import _workers

T = TypeVar("T")

#: Every kind of key the store writes, through its public API.
_WORKLOAD_KINDS = ("keys", "rv", "obj", "idx", "seq", "events", "lease")


def _workload(store: Any) -> None:
    store.cas_keys(0, [_workers.key("a")])
    store.create_object("Pod", "ns", "p", {"metadata": {"uid": "u"}})
    store.create_object("ClusterRole", "", "system:x", {"metadata": {"uid": "r"}})
    store.create_object("Pod", "ns", "gone", {"metadata": {"uid": "g"}})
    store.delete_object("Pod", "ns", "gone", event={"type": "deleted"})
    store.append_event({"type": "revoked"})
    assert store.acquire_lease("gc", "me", ttl=30)
    assert [o["metadata"]["uid"] for o in store.list_objects("Pod")] == ["u"]


def _until(what: str, call: Callable[[], T], timeout: float = 10.0) -> T:
    """``call()`` until it stops raising StoreUnavailable (a replica retrying after a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still unavailable after {timeout}s") from None
            time.sleep(0.05)


def _expect(q: queue.Queue[ChangeKind], kind: ChangeKind, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(queue.Empty):
            if q.get(timeout=left) == kind:
                return
    raise AssertionError(f"no {kind!r} callback within {timeout}s")


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000/1",  # a cluster has only database 0
        "redis+cluster://127.0.0.1:notaport",
        "redis+cluster://127.0.0.1:7000,:7001",
        "redis+cluster://127.0.0.1:7000?cluster=false",
        "redis://127.0.0.1:7000?cluster=maybe",
        "unix:///tmp/redis.sock?cluster=true",
        "redis+sentinel://127.0.0.1:26379/?cluster=true",
        "redis+sentinel://127.0.0.1:26379",  # no service name
        "redis+cluster://127.0.0.1:7000?prefix={x}",
    ],
)
def test_bad_topology_urls_are_value_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url, tmp_path)


def test_opening_never_connects_and_unreachable_is_unavailable_fast(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    for url in (f"redis+cluster://{dead}", f"redis+sentinel://{dead}/sa-oidc"):
        store = open_store(url, tmp_path)  # no server: still opens
        try:
            for call in ("ping", "load_keys", "read_events"):
                t0 = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    getattr(store, call)() if call != "read_events" else store.read_events(0)
                assert time.monotonic() - t0 < 3.0, url
            t0 = time.monotonic()
            store.watch(lambda kind: None).close()  # gives up waiting, retries in background
            assert time.monotonic() - t0 < 5.0
        finally:
            store.close()


# --- Cluster ------------------------------------------------------------------------------------


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterDeployment) -> Iterator[RedisCluster[bytes]]:
    """A raw cluster client to inspect what the store wrote."""
    node = redis_cluster.nodes[0]
    client: RedisCluster[bytes] = RedisCluster(host="127.0.0.1", port=node.port)
    yield client
    client.close()


@pytest.mark.parametrize("prefix", ["", "tenant-a"])
def test_cluster_every_key_and_the_channel_are_in_one_slot(
    redis_cluster_url: str, cluster_client: RedisCluster[bytes], prefix: str
) -> None:
    store = RedisStore.from_url(redis_cluster_url, prefix=prefix or None)
    try:
        assert store.topology == "cluster"
        _workload(store)
        tag = "{sa-oidc:" + prefix + "}" if prefix else "{sa-oidc}"
        slot = cluster_client.keyslot(tag)
        keys = [k.decode() for k in cluster_client.scan_iter(target_nodes=RedisCluster.PRIMARIES)]
        assert {k.split(":")[-1] if ":" in k else k for k in keys}  # something was written
        assert all(k.startswith(tag + ":") for k in keys), keys
        for kind in _WORKLOAD_KINDS:
            assert any(k.startswith(f"{tag}:{kind}") for k in keys), (kind, keys)
        assert {cluster_client.keyslot(k) for k in keys} == {slot}
        assert cluster_client.keyslot(store._channel) == slot  # ready for SPUBLISH, too
        # ...and they all live on the one primary that owns the slot.
        owner = cluster_client.get_node_from_key(tag)
        for node in cluster_client.get_primaries():
            held = cluster_client.dbsize(target_nodes=node)
            assert held == (len(keys) if node.name == owner.name else 0)
    finally:
        store.close()


def test_cluster_seed_that_does_not_own_the_slot_and_the_redis_scheme_spelling(
    redis_cluster: RedisClusterDeployment,
    redis_cluster_url: str,
    cluster_client: RedisCluster[bytes],
) -> None:
    owner = cluster_client.get_node_from_key("{sa-oidc}")
    other = next(n for n in redis_cluster.nodes if n.port != owner.port)
    one = open_store(f"redis+cluster://127.0.0.1:{other.port}", Path("."))
    two = open_store(f"redis://127.0.0.1:{other.port}/0?cluster=true", Path("."))
    try:
        assert isinstance(two, RedisStore) and two.topology == "cluster"
        one.ping()
        assert one.cas_keys(0, [_workers.key("a")]) == 1
        assert two.load_keys() == KeySetState(1, (_workers.key("a"),))
        assert two.append_event({"n": 1}) == 1
        assert [e.seq for e in one.wait_events(0, timeout=1).events] == [1]
    finally:
        one.close()
        two.close()


def test_cluster_publish_reaches_subscribers_on_every_node(
    redis_cluster: RedisClusterDeployment, redis_cluster_url: str
) -> None:
    # Classic pub/sub: "clients can subscribe to every node ... published messages are forwarded
    # as needed" (cluster spec): a replica whose watcher landed on any node hears every write.
    subscribers = []
    for node in redis_cluster.nodes:
        ps = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5).pubsub()
        ps.subscribe("{sa-oidc}:changes")
        assert ps.get_message(timeout=2)["type"] == "subscribe"
        subscribers.append(ps)
    store = open_store(redis_cluster_url, Path("."))
    try:
        store.cas_keys(0, [])
        for ps in subscribers:
            # The cluster bus forwards PUBLISH asynchronously, so an earlier test's "events" can
            # still arrive after our SUBSCRIBE: wait for this write's "keys" among what comes.
            heard = []
            deadline = time.monotonic() + 5
            while b"keys" not in heard and time.monotonic() < deadline:
                msg = ps.get_message(timeout=1)
                if msg is not None and msg["type"] == "message":
                    heard.append(msg["data"])
            assert b"keys" in heard, heard
    finally:
        store.close()
        for ps in subscribers:
            ps.close()


# --- Sentinel -----------------------------------------------------------------------------------


@pytest.fixture
def private_sentinel(tmp_path: Path) -> Iterator[RedisSentinelDeployment]:
    """A Sentinel deployment of this test's own, since the test breaks it."""
    deployment = RedisSentinelDeployment(tmp_path / "sentinel")
    try:
        deployment.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield deployment
    deployment.stop()


def _replicated(deployment: RedisSentinelDeployment) -> None:
    """WAIT until the replica has every write so far: a failover then loses nothing."""
    with contextlib.closing(deployment.server(deployment.master_port()).client()) as c:
        assert c.execute_command("WAIT", 1, 5000) >= 1


def test_sentinel_master_crash_store_follows_the_promoted_replica(
    private_sentinel: RedisSentinelDeployment, tmp_path: Path
) -> None:
    store, writer = (
        open_store(private_sentinel.url, tmp_path),
        open_store(private_sentinel.url, tmp_path),
    )
    q: queue.Queue[ChangeKind] = queue.Queue()
    sub = store.watch(q.put)
    try:
        assert isinstance(store, RedisStore) and store.topology == "sentinel"
        store.cas_keys(0, [_workers.key("a")])
        created = store.create_object("Pod", "ns", "p", {"metadata": {"uid": "u"}})
        seq = store.append_event({"type": "revoked"})
        _replicated(private_sentinel)
        old = private_sentinel.master_port()

        new = private_sentinel.kill_master()

        assert new != old
        # The first call may fail (its connection went down with the master); then it recovers.
        assert _until("load_keys", store.load_keys) == KeySetState(1, (_workers.key("a"),))
        assert store.get_object("Pod", "ns", "p") == created
        assert store.read_events(0).last_seq == seq
        _expect(q, "keys")  # the watcher lost its connection: "re-read everything"
        while not q.empty():
            q.get_nowait()
        assert _until("cas_keys", lambda: writer.cas_keys(1, [])) == 2
        _expect(q, "keys")  # ...and hears the new master's writes
        with contextlib.closing(private_sentinel.server(new).client()) as c:
            assert c.hget("{sa-oidc}:keys", "v") == b"2"
    finally:
        sub.close()
        store.close()
        writer.close()


def test_sentinel_manual_failover_writes_reach_the_new_master(
    private_sentinel: RedisSentinelDeployment, tmp_path: Path
) -> None:
    # SENTINEL FAILOVER leaves the old master up, accepting writes on open connections until
    # Sentinel demotes it ~10 s later (and discards them). The store asks Sentinel before every
    # write, so once Sentinel has switched, writes go to the new master.
    store = open_store(private_sentinel.url, tmp_path)
    try:
        store.cas_keys(0, [])
        store.load_keys()  # a pooled connection to the old master exists
        _replicated(private_sentinel)
        old = private_sentinel.master_port()
        with contextlib.closing(private_sentinel.sentinel_client()) as s:
            assert s.execute_command("SENTINEL", "FAILOVER", "sa-oidc") == b"OK"
        deadline = time.monotonic() + 15
        while private_sentinel.master_port() == old:
            assert time.monotonic() < deadline, "Sentinel did not fail over"
            time.sleep(0.05)
        new = private_sentinel.master_port()

        assert _until("cas_keys", lambda: store.cas_keys(1, [_workers.key("b")])) == 2

        with contextlib.closing(private_sentinel.server(new).client()) as c:
            assert c.info("replication")["role"] == "master"
            assert c.hget("{sa-oidc}:keys", "v") == b"2"
        assert store.load_keys().version == 2
    finally:
        store.close()


# --- the issuer on each topology ----------------------------------------------------------------


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_issuer_app_serves_jwks_from_the_topology(
    request: pytest.FixtureRequest, tmp_path: Path, topology: str
) -> None:
    # As `sa-issuer serve --store URL` builds it: load_config -> build_context -> create_app.
    # The cluster is spelled redis://...?cluster=true, the form the config validator accepts.
    from starlette.testclient import TestClient

    from issuer.app import create_app
    from issuer.config import load_config
    from issuer.context import build_context

    if topology == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        url = url.replace("redis+cluster://", "redis://") + "/0?cluster=true"
    else:
        url = request.getfixturevalue("redis_sentinel_url")
    jwks = []
    for replica in ("a", "b"):  # two replicas: the second one finds the first one's key
        flags = {
            "data_dir": str(tmp_path / "data"),  # shared: same KEK
            "store": url,
            "key_alg": "ES256",
            "audit_log": str(tmp_path / f"audit-{replica}.log"),
        }
        ctx = build_context(load_config(flags, {}))
        assert isinstance(ctx.store, RedisStore) and ctx.store.topology == topology
        with TestClient(create_app(ctx)) as client:
            resp = client.get("/openid/v1/jwks")
            assert resp.status_code == 200
            jwks.append(resp.json())
            assert client.get("/readyz").status_code == 200
            assert ctx.keys.signer().kid == jwks[-1]["keys"][0]["kid"]
    assert len(jwks[0]["keys"]) == 1 and jwks[0] == jwks[1]
