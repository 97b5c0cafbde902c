"""One suite, every backend (STYLE.md §7, after dex storage/conformance).

Every test taking ``store`` / ``store_factory`` runs unchanged against SQLite and Redis (the
fixtures in tests/conftest.py are parametrized). Backend-specific guarantees (SQLite crash safety,
corrupt files; Redis reachability and reconnects) are at the bottom, on their own fixtures.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import signal
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from issuer.store import (
    AlreadyExists,
    ChangeKind,
    Conflict,
    EventPage,
    KeySetState,
    NotFound,
    Store,
    StoreCorrupt,
    StoredKey,
    StoreUnavailable,
    open_store,
)
from issuer.store.redis_store import RedisStore
from issuer.store.sqlite import SQLiteStore

from . import _workers

# "spawn": each worker is a fresh interpreter opening its own store, like a second issuer process
# (and no fork of a parent that runs watcher threads).
MP = multiprocessing.get_context("spawn")


def sa(name: str, uid: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    """A ServiceAccount-shaped object."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns, "uid": uid, **extra},
    }


def rv(obj: dict[str, Any]) -> int:
    """The store-assigned resourceVersion as an int (it is a string on the wire)."""
    value = obj["metadata"]["resourceVersion"]
    assert isinstance(value, str)
    return int(value)


def full_key(kid: str) -> StoredKey:
    """A key with every optional field set, binary ciphertext and fractional times."""
    return StoredKey(
        kid=kid,
        alg="RS256",
        state="retired",
        public_jwk={"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": kid, "use": "sig"},
        private_enc=bytes(range(256)) + b"\x00\x00",
        created_at=1_700_000_000.123456,
        activate_at=1_700_000_600.5,
        retired_at=1_700_086_400.000001,
        revoked_at=1_700_090_000.75,
        remove_at=1_700_200_000.0,
        max_token_lifetime=86_400,
    )


def run_procs(procs: list[Any], timeout: float = 60) -> None:
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


def test_store_satisfies_the_protocol(store: Store, store_factory: Any) -> None:
    assert isinstance(store, Store)
    assert store.backend == store_factory.backend
    store.ping()


# --- keys -------------------------------------------------------------------------------------


def test_keys_empty_store_is_version_0(store: Store) -> None:
    assert store.load_keys() == KeySetState(version=0, keys=())


def test_cas_keys_happy_path(store: Store) -> None:
    a, b = _workers.key("a"), _workers.key("b")
    assert store.cas_keys(0, [a]) == 1
    assert store.load_keys() == KeySetState(1, (a,))
    assert store.cas_keys(1, [a, b]) == 2
    assert store.load_keys() == KeySetState(2, (a, b))
    assert store.cas_keys(2, []) == 3
    assert store.load_keys() == KeySetState(3, ())


@pytest.mark.parametrize("stale", [0, 2, -1, 99])
def test_cas_keys_wrong_version_conflicts_and_changes_nothing(store: Store, stale: int) -> None:
    store.cas_keys(0, [_workers.key("a")])
    before = store.load_keys()
    with pytest.raises(Conflict):
        store.cas_keys(stale, [_workers.key("b")])
    assert store.load_keys() == before


def test_stored_key_round_trips_every_field(store: Store) -> None:
    minimal = StoredKey(
        kid="m", alg="ES384", state="next", public_jwk={}, private_enc=b"", created_at=0.0
    )
    keys = (full_key("full"), minimal, _workers.key("ü-kid"))
    store.cas_keys(0, keys)
    loaded = store.load_keys()
    assert loaded.keys == keys
    for got, want in zip(loaded.keys, keys, strict=True):
        assert type(got.private_enc) is bytes
        assert got.private_enc == want.private_enc
        assert dict(got.public_jwk) == dict(want.public_jwk)


def test_key_set_is_visible_to_a_second_replica(store_factory: Any) -> None:
    one, two = store_factory.open(), store_factory.open()
    one.cas_keys(0, [_workers.key("a")])
    assert two.load_keys().version == 1
    with pytest.raises(Conflict):
        two.cas_keys(0, [_workers.key("b")])
    assert two.cas_keys(1, [_workers.key("b")]) == 2
    assert one.load_keys().keys == (_workers.key("b"),)


# --- objects ----------------------------------------------------------------------------------


def test_create_get_round_trip(store: Store) -> None:
    obj = sa("builder", "uid-1", secrets=[{"name": "x"}])
    obj["metadata"]["resourceVersion"] = "999"  # the store owns this field
    sent = repr(obj)
    created = store.create_object("ServiceAccount", "default", "builder", obj)
    assert repr(obj) == sent, "the caller's dict must not be mutated"
    assert created["metadata"]["uid"] == "uid-1"
    assert rv(created) > 0 and created["metadata"]["resourceVersion"] != "999"
    assert store.get_object("ServiceAccount", "default", "builder") == created


def test_create_existing_raises_already_exists(store: Store) -> None:
    first = store.create_object("ServiceAccount", "default", "a", sa("a", "u1"))
    with pytest.raises(AlreadyExists):
        store.create_object("ServiceAccount", "default", "a", sa("a", "u2"))
    assert store.get_object("ServiceAccount", "default", "a") == first


def test_missing_objects_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_object("ServiceAccount", "default", "nope")
    with pytest.raises(NotFound):
        store.update_object("ServiceAccount", "default", "nope", sa("nope", "u"))
    with pytest.raises(NotFound):
        store.delete_object("ServiceAccount", "default", "nope")
    # Same name, other namespace / kind: still not found.
    store.create_object("ServiceAccount", "default", "x", sa("x", "u"))
    with pytest.raises(NotFound):
        store.get_object("ServiceAccount", "other", "x")
    with pytest.raises(NotFound):
        store.get_object("Secret", "default", "x")


def test_list_filters_by_namespace_and_kind_and_sorts(store: Store) -> None:
    for ns, name in [("b", "z"), ("a", "y"), ("a", "b"), ("a-b", "a"), ("b", "a")]:
        store.create_object("ServiceAccount", ns, name, sa(name, f"{ns}/{name}", ns))
    store.create_object("Secret", "a", "s", {"metadata": {"name": "s", "uid": "s"}})
    names = [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in store.list_objects("ServiceAccount")
    ]
    assert names == [("a", "b"), ("a", "y"), ("a-b", "a"), ("b", "a"), ("b", "z")]
    assert [o["metadata"]["name"] for o in store.list_objects("ServiceAccount", "a")] == ["b", "y"]
    assert store.list_objects("ServiceAccount", "c") == []
    assert store.list_objects("Pod") == []
    assert [o["metadata"]["uid"] for o in store.list_objects("Secret", None)] == ["s"]
    for o in store.list_objects("ServiceAccount"):
        assert o == store.get_object(
            "ServiceAccount", o["metadata"]["namespace"], o["metadata"]["name"]
        )


def test_cluster_scoped_objects_use_empty_namespace(store: Store) -> None:
    # RBAC names may contain ':' (kube: "system:auth-delegator").
    for name in ["system:auth-delegator", "admin"]:
        store.create_object("ClusterRole", "", name, {"metadata": {"name": name, "uid": name}})
    store.create_object("Node", "", "n1", {"metadata": {"name": "n1", "uid": "node-uid"}})
    roles = store.list_objects("ClusterRole", "")
    assert [o["metadata"]["name"] for o in roles] == ["admin", "system:auth-delegator"]
    assert store.list_objects("ClusterRole") == roles
    assert store.get_object("ClusterRole", "", "system:auth-delegator")["metadata"]["uid"] == (
        "system:auth-delegator"
    )
    assert store.delete_object("Node", "", "n1")[0]["metadata"]["uid"] == "node-uid"
    assert store.list_objects("Node", "") == []


def test_update_with_and_without_resource_version(store: Store) -> None:
    created = store.create_object("ServiceAccount", "ns", "a", sa("a", "u1", "ns"))
    stale = created["metadata"]["resourceVersion"]
    upd = store.update_object(
        "ServiceAccount", "ns", "a", sa("a", "u1", "ns", labels={"v": "2"}), resource_version=stale
    )
    assert rv(upd) > rv(created)
    assert upd["metadata"]["labels"] == {"v": "2"}
    assert store.get_object("ServiceAccount", "ns", "a") == upd

    for wrong in [stale, "0", "", "not-a-number", str(rv(upd) + 1)]:
        with pytest.raises(Conflict):
            store.update_object(
                "ServiceAccount", "ns", "a", sa("a", "bad", "ns"), resource_version=wrong
            )
    assert store.get_object("ServiceAccount", "ns", "a") == upd

    unconditional = store.update_object("ServiceAccount", "ns", "a", sa("a", "u1", "ns"))
    assert rv(unconditional) > rv(upd)
    assert "labels" not in unconditional["metadata"]


def test_resource_version_strictly_increases_across_kinds(store: Store) -> None:
    seen: list[int] = []
    for i in range(3):
        seen.append(
            rv(store.create_object("ServiceAccount", "ns", f"sa{i}", sa(f"sa{i}", f"u{i}")))
        )
        seen.append(
            rv(store.create_object("Secret", "ns", f"s{i}", {"metadata": {"uid": f"s{i}"}}))
        )
        seen.append(rv(store.create_object("Node", "", f"n{i}", {"metadata": {"uid": f"n{i}"}})))
        seen.append(
            rv(store.update_object("ServiceAccount", "ns", f"sa{i}", sa(f"sa{i}", f"u{i}")))
        )
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_delete_with_uid_precondition(store: Store) -> None:
    created = store.create_object("Pod", "ns", "p", {"metadata": {"name": "p", "uid": "uid-1"}})
    with pytest.raises(Conflict):
        store.delete_object("Pod", "ns", "p", uid="uid-2")
    assert store.get_object("Pod", "ns", "p") == created
    deleted, seq = store.delete_object("Pod", "ns", "p", uid="uid-1")
    assert deleted == created and seq is None
    with pytest.raises(NotFound):
        store.get_object("Pod", "ns", "p")
    assert store.list_objects("Pod") == []
    # The name is free again; a recreated object gets a new uid and a higher resourceVersion.
    again = store.create_object("Pod", "ns", "p", {"metadata": {"name": "p", "uid": "uid-3"}})
    assert rv(again) > rv(created)
    assert store.delete_object("Pod", "ns", "p")[0] == again  # no uid: unconditional


def test_delete_with_event_is_atomic(store: Store) -> None:
    store.create_object("Pod", "ns", "p", {"metadata": {"name": "p", "uid": "uid-1"}})
    event = {"type": "deleted", "kind": "Pod", "namespace": "ns", "name": "p", "uid": "uid-1"}

    with pytest.raises(Conflict):
        store.delete_object("Pod", "ns", "p", uid="other", event=event)
    with pytest.raises(NotFound):
        store.delete_object("Pod", "ns", "missing", event=event)
    assert store.read_events(0) == EventPage(events=(), oldest_seq=0, last_seq=0)

    deleted, seq = store.delete_object("Pod", "ns", "p", uid="uid-1", event=event)
    assert deleted["metadata"]["uid"] == "uid-1"
    assert seq is not None and seq >= 1
    page = store.read_events(0)
    assert [(e.seq, dict(e.data)) for e in page.events] == [(seq, event)]
    assert page.last_seq == seq
    with pytest.raises(NotFound):
        store.delete_object("Pod", "ns", "p", event=event)
    assert store.read_events(0).last_seq == seq


def test_objects_reject_unserializable_without_writing(store: Store) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.create_object("Secret", "ns", "s", {"metadata": {"uid": "u"}, "data": b"raw"})
    with pytest.raises(NotFound):
        store.get_object("Secret", "ns", "s")


@pytest.mark.parametrize(
    ("kind", "ns", "name"), [("Pod", "a:b", "p"), ("Po:d", "ns", "p"), ("Pod", "ns", "a\x00b")]
)
def test_invalid_addresses_are_rejected_alike(store: Store, kind: str, ns: str, name: str) -> None:
    with pytest.raises(ValueError):
        store.create_object(kind, ns, name, {"metadata": {"uid": "u"}})
    assert store.list_objects("Pod") == []


# --- events -----------------------------------------------------------------------------------


def test_events_empty(store: Store) -> None:
    assert store.read_events(0) == EventPage(events=(), oldest_seq=0, last_seq=0)
    assert store.wait_events(0, timeout=0) == EventPage(events=(), oldest_seq=0, last_seq=0)


def test_event_epoch_names_the_history(store_factory: Any, tmp_path: Path) -> None:
    """EventPage.epoch (issue 9, item 7): none before the first seq; then one id, the same on
    every instance and after reopening, that another store does not share."""
    a, b = store_factory.open(), store_factory.open()
    assert a.read_events(0).epoch == ""
    a.append_event({"type": "x"})
    epoch = a.read_events(0).epoch
    assert epoch and b.read_events(0).epoch == epoch == b.wait_events(0, timeout=0).epoch
    a.close()
    assert store_factory.open().read_events(0).epoch == epoch
    if store_factory.backend == "sqlite":
        other = open_store(f"sqlite:///{tmp_path / 'other.db'}", tmp_path)
    else:  # another store on the same servers (a flushed one: tests/stream/test_stream_history)
        other = RedisStore.from_url(store_factory.url, prefix="epoch-other")
    try:
        other.append_event({"type": "x"})
        assert other.read_events(0).epoch not in ("", epoch)
    finally:
        other.close()


def test_append_and_read_with_after_and_limit(store: Store) -> None:
    datas = [{"type": "revoked", "jti": f"j{i}", "nested": {"ü": [1, 2.5, None]}} for i in range(7)]
    seqs = [store.append_event(d) for d in datas]
    assert seqs == sorted(seqs) and len(set(seqs)) == 7 and seqs[0] >= 1

    page = store.read_events(0)
    assert [e.seq for e in page.events] == seqs
    assert [dict(e.data) for e in page.events] == datas
    assert (page.oldest_seq, page.last_seq) == (seqs[0], seqs[-1])

    assert [e.seq for e in store.read_events(seqs[2], limit=2).events] == seqs[3:5]
    assert [e.seq for e in store.read_events(seqs[-2]).events] == seqs[-1:]
    assert store.read_events(seqs[-1]).events == ()
    assert store.read_events(seqs[-1] + 100).last_seq == seqs[-1]


def test_wait_events_times_out_without_appends(store: Store) -> None:
    last = store.append_event({"n": 1})
    t0 = time.monotonic()
    page = store.wait_events(last, timeout=0.3)
    elapsed = time.monotonic() - t0
    assert page.events == () and page.last_seq == last
    assert 0.28 <= elapsed < 1.5


def test_wait_events_returns_at_once_when_events_exist(store: Store) -> None:
    store.append_event({"n": 1})
    t0 = time.monotonic()
    assert len(store.wait_events(0, timeout=10).events) == 1
    assert time.monotonic() - t0 < 0.5


def test_wait_events_wakes_on_append_from_another_thread(store_factory: Any) -> None:
    waiter, writer = store_factory.open(), store_factory.open()
    # Connect first: what is timed below is the wake-up, not a client's first connection (a
    # cluster client discovers the topology on first use).
    waiter.ping()
    writer.ping()
    appended = threading.Event()
    at: list[float] = []

    def append() -> None:
        time.sleep(0.3)
        at.append(time.monotonic())
        writer.append_event({"from": "thread"})
        appended.set()

    t = threading.Thread(target=append)
    t.start()
    page = waiter.wait_events(0, timeout=10)
    woke = time.monotonic()
    t.join()
    assert [dict(e.data) for e in page.events] == [{"from": "thread"}]
    # Same process: a notification (SQLite: shared condition; Redis: XREAD), not a poll.
    assert woke - at[0] < 0.08


def test_wait_events_wakes_on_append_from_same_instance(store: Store) -> None:
    store.ping()  # connected before timing (see the test above)
    at: list[float] = []

    def append() -> None:
        time.sleep(0.3)
        at.append(time.monotonic())
        store.append_event({"from": "same"})

    t = threading.Thread(target=append)
    t.start()
    page = store.wait_events(0, timeout=10)
    woke = time.monotonic()
    t.join()
    assert len(page.events) == 1
    assert woke - at[0] < 0.08


def test_wait_events_wakes_on_append_from_another_process(store_factory: Any) -> None:
    store = store_factory.open()
    proc = MP.Process(
        target=_workers.append_later, args=(store_factory.url, str(store_factory.data_dir), 1.0)
    )
    proc.start()
    try:
        page = store.wait_events(0, timeout=30)
        woke = time.time()
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    assert len(page.events) == 1
    latency = woke - page.events[0].data["t"]
    assert latency < 0.35, f"woke {latency:.3f}s after the other process appended"


def test_watch_sees_another_process_while_this_one_writes_nonstop(store_factory: Any) -> None:
    # Own commits are reported from memory; the file must still be polled for other processes'
    # commits however busy this process keeps the watcher.
    store = store_factory.open()
    q: queue.Queue[ChangeKind] = queue.Queue()
    sub = store.watch(q.put)  # objects too: woken by every one of this process's writes
    stop = threading.Event()

    def write_objects() -> None:
        i = 0
        while not stop.is_set():
            store.create_object("Pod", "busy", f"p{i}", {"metadata": {"uid": f"u{i}"}})
            i += 1
            time.sleep(0.005)

    writer = threading.Thread(target=write_objects)
    writer.start()
    proc = MP.Process(
        target=_workers.cas_keys_later, args=(store_factory.url, str(store_factory.data_dir), 0.5)
    )
    proc.start()
    try:
        proc.join(30)
        assert proc.exitcode == 0
        done = time.monotonic()
        _expect(q, "keys", timeout=2.0)
        assert time.monotonic() - done < 1.0
    finally:
        stop.set()
        writer.join(10)
        sub.close()


def test_trim_keeps_numbering_and_newest(store: Store) -> None:
    s1 = store.append_event({"n": 1})
    s2 = store.append_event({"n": 2})
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    s3 = store.append_event({"n": 3})

    assert store.trim_events(cut) == 2
    page = store.read_events(0)
    assert [e.seq for e in page.events] == [s3]
    assert (page.oldest_seq, page.last_seq) == (s3, s3)
    # A reader at s1 has missed a trimmed event: after < oldest_seq - 1.
    assert s1 < page.oldest_seq - 1
    assert store.trim_events(cut) == 0

    # Trimming "everything" still keeps the newest event, and seqs are never reused.
    assert store.trim_events(time.time() + 3600) == 0
    s4 = store.append_event({"n": 4})
    assert s4 > s3 > s2 > s1
    assert store.trim_events(time.time() + 3600) == 1
    page = store.read_events(0)
    assert [e.seq for e in page.events] == [s4]
    s5 = store.append_event({"n": 5})
    assert s5 > s4
    assert store.read_events(s4).events[0].seq == s5


def test_trim_on_empty_log(store: Store) -> None:
    assert store.trim_events(time.time() + 10) == 0


# --- leases -----------------------------------------------------------------------------------


def test_lease_acquire_renew_refuse_release(store_factory: Any) -> None:
    a, b = store_factory.open(), store_factory.open()
    assert a.acquire_lease("rotation", "replica-a", ttl=30)
    assert a.acquire_lease("rotation", "replica-a", ttl=30)  # renew
    assert not b.acquire_lease("rotation", "replica-b", ttl=30)
    assert b.acquire_lease("other-chore", "replica-b", ttl=30)  # leases are independent
    b.release_lease("rotation", "replica-b")  # not the holder: no effect
    assert not b.acquire_lease("rotation", "replica-b", ttl=30)
    a.release_lease("rotation", "replica-a")
    assert b.acquire_lease("rotation", "replica-b", ttl=30)
    assert not a.acquire_lease("rotation", "replica-a", ttl=30)
    a.release_lease("never-taken", "replica-a")  # no error


def test_lease_expires(store: Store) -> None:
    assert store.acquire_lease("gc", "a", ttl=0.3)
    assert not store.acquire_lease("gc", "b", ttl=0.3)
    time.sleep(0.2)
    assert store.acquire_lease("gc", "a", ttl=0.3)  # renewal extends it
    time.sleep(0.2)
    assert not store.acquire_lease("gc", "b", ttl=0.3)
    time.sleep(0.25)
    assert store.acquire_lease("gc", "b", ttl=0.3)


# --- watch ------------------------------------------------------------------------------------


def _expect(q: queue.Queue[ChangeKind], kind: ChangeKind, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            if q.get(timeout=left) == kind:
                return
        except queue.Empty:
            break
    raise AssertionError(f"no {kind!r} callback within {timeout}s")


def test_watch_sees_changes_from_a_second_replica(store_factory: Any) -> None:
    watcher, other = store_factory.open(), store_factory.open()
    q: queue.Queue[ChangeKind] = queue.Queue()
    sub = watcher.watch(q.put)
    try:
        t0 = time.monotonic()
        other.cas_keys(0, [_workers.key("a")])
        _expect(q, "keys")
        assert time.monotonic() - t0 < 1.0
        other.append_event({"type": "revoked"})
        _expect(q, "events")
        other.create_object("Pod", "ns", "p", {"metadata": {"uid": "u"}})
        other.delete_object("Pod", "ns", "p", event={"type": "deleted"})
        _expect(q, "events")
    finally:
        sub.close()
    sub.close()  # idempotent
    time.sleep(0.3)
    while not q.empty():
        q.get_nowait()
    other.cas_keys(1, [])
    time.sleep(0.6)
    assert q.empty(), "no callbacks after close()"


def test_watch_sees_own_writes(store: Store) -> None:
    q: queue.Queue[ChangeKind] = queue.Queue()
    sub = store.watch(q.put)
    try:
        store.cas_keys(0, [_workers.key("a")])
        _expect(q, "keys")
    finally:
        sub.close()


@pytest.mark.parametrize("same_replica", [True, False], ids=["own-writes", "other-replica"])
def test_watch_limited_to_kinds_reports_only_those(store_factory: Any, same_replica: bool) -> None:
    # The key manager subscribes to "keys" and the watch hub to "objects": neither is called (or,
    # on SQLite, woken) for the other kinds' writes.
    watcher = store_factory.open()
    writer = watcher if same_replica else store_factory.open()
    keys_q: queue.Queue[ChangeKind] = queue.Queue()
    objects_q: queue.Queue[ChangeKind] = queue.Queue()
    subs = [
        watcher.watch(keys_q.put, kinds=("keys",)),
        watcher.watch(objects_q.put, kinds=["objects"]),
    ]
    try:
        writer.create_object("Pod", "ns", "p", {"metadata": {"uid": "u"}})
        writer.append_event({"type": "revoked"})
        _expect(objects_q, "objects")
        writer.cas_keys(0, [_workers.key("a")])
        _expect(keys_q, "keys")
        writer.delete_object("Pod", "ns", "p", event={"type": "deleted"})
        _expect(objects_q, "objects")
        time.sleep(0.3)  # past a poll: anything else would have arrived by now
    finally:
        for sub in subs:
            sub.close()
    assert set(_drain(keys_q)) <= {"keys"}
    assert set(_drain(objects_q)) <= {"objects"}


def _drain(q: queue.Queue[ChangeKind]) -> list[ChangeKind]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_wait_events_wakes_at_once_on_an_append_not_on_object_writes(store: Store) -> None:
    # Same-process appends wake a waiter at once (the stream's long poll); object writes do not
    # end its wait with an empty page.
    after = store.read_events(0).last_seq
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait_events(after, 5.0)))
    waiter.start()
    time.sleep(0.2)
    store.create_object("Pod", "ns", "w", {"metadata": {"uid": "w"}})
    time.sleep(0.2)
    assert not result, "an object write ended the wait for events"
    t0 = time.monotonic()
    seq = store.append_event({"type": "revoked"})
    waiter.join(5)
    assert time.monotonic() - t0 < 0.5
    assert [e.seq for e in result[0].events] == [seq]


def test_watch_survives_a_raising_callback(store: Store) -> None:
    q: queue.Queue[ChangeKind] = queue.Queue()

    def callback(kind: ChangeKind) -> None:
        q.put(kind)
        raise RuntimeError("callback bug")

    sub = store.watch(callback)
    try:
        store.cas_keys(0, [])
        _expect(q, "keys")
        store.cas_keys(1, [])
        _expect(q, "keys")
    finally:
        sub.close()


# --- concurrency ------------------------------------------------------------------------------


def test_threads_race_cas_keys_exactly_one_wins(store_factory: Any) -> None:
    n = 8
    stores = [store_factory.open() for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].cas_keys(0, [_workers.key(f"t{i}")])
            outcome = "won"
        except Conflict:
            outcome = "conflict"
        with lock:
            results.append((i, outcome))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, o in results if o == "won"]
    assert len(results) == n and len(winners) == 1
    assert stores[0].load_keys() == KeySetState(1, (_workers.key(f"t{winners[0]}"),))


def test_threads_share_one_instance(store: Store) -> None:
    n, m = 8, 25
    barrier = threading.Barrier(n)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        barrier.wait()
        for j in range(m):
            s = store.append_event({"i": i, "j": j})
            with lock:
                seqs.append(s)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seqs) == list(range(1, n * m + 1))


def test_processes_race_cas_keys_exactly_one_wins(store_factory: Any) -> None:
    n = 4
    barrier, results = MP.Barrier(n), MP.Queue()
    procs = [
        MP.Process(
            target=_workers.race_cas_keys,
            args=(store_factory.url, str(store_factory.data_dir), i, barrier, results),
        )
        for i in range(n)
    ]
    run_procs(procs)
    outcomes = [results.get(timeout=5) for _ in range(n)]
    winners = [w for w, o, _ in outcomes if o == "won"]
    assert len(winners) == 1, outcomes
    assert [v for _, o, v in outcomes if o == "won"] == [1]
    assert store_factory.open().load_keys() == KeySetState(1, (_workers.key(f"proc{winners[0]}"),))


def test_threads_race_create_exactly_one(store_factory: Any) -> None:
    n = 8
    stores = [store_factory.open() for _ in range(n)]
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].create_object("ServiceAccount", "ns", "same", sa("same", f"uid-{i}", "ns"))
            outcome = f"uid-{i}"
        except AlreadyExists:
            outcome = "exists"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [o for o in outcomes if o != "exists"]
    assert len(outcomes) == n and len(won) == 1
    assert stores[0].get_object("ServiceAccount", "ns", "same")["metadata"]["uid"] == won[0]
    assert len(stores[0].list_objects("ServiceAccount")) == 1


def test_processes_append_distinct_contiguous_seqs(store_factory: Any) -> None:
    n, m = 4, 40
    barrier, results = MP.Barrier(n), MP.Queue()
    procs = [
        MP.Process(
            target=_workers.append_many,
            args=(store_factory.url, str(store_factory.data_dir), i, m, barrier, results),
        )
        for i in range(n)
    ]
    run_procs(procs)
    per_worker = dict(results.get(timeout=5) for _ in range(n))
    everything = [s for seqs in per_worker.values() for s in seqs]
    for seqs in per_worker.values():
        assert seqs == sorted(seqs)
    assert sorted(everything) == list(range(1, n * m + 1))
    page = store_factory.open().read_events(0, limit=1000)
    assert [e.seq for e in page.events] == list(range(1, n * m + 1))
    for e in page.events:  # each seq carries the data of the append that got it
        assert e.seq in per_worker[e.data["worker"]]


# --- SQLite specifics -------------------------------------------------------------------------


def test_sqlite_file_and_directory_modes(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "issuer.db"
    s = SQLiteStore(path)
    try:
        s.cas_keys(0, [])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        wal = path.with_name("issuer.db-wal")
        assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        s.close()


def test_sqlite_is_wal_with_full_sync(sqlite_path: Path) -> None:
    s = SQLiteStore(sqlite_path)
    try:
        s.cas_keys(0, [])
        conn = s._conn()  # white-box: the durability settings are the contract here
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        s.close()


def test_sqlite_reopen_keeps_everything(sqlite_path: Path) -> None:
    s = SQLiteStore(sqlite_path)
    s.cas_keys(0, [full_key("k")])
    obj = s.create_object("Node", "", "n", {"metadata": {"uid": "u"}})
    seq = s.append_event({"x": 1})
    s.close()
    s.close()  # idempotent
    s = SQLiteStore(sqlite_path)
    try:
        assert s.load_keys() == KeySetState(1, (full_key("k"),))
        assert s.get_object("Node", "", "n") == obj
        assert s.read_events(0).last_seq == seq
    finally:
        s.close()


def test_sqlite_random_bytes_are_corrupt_and_left_alone(sqlite_path: Path) -> None:
    data = os.urandom(8192)
    sqlite_path.write_bytes(data)
    with pytest.raises(StoreCorrupt):
        SQLiteStore(sqlite_path)
    assert hashlib.sha256(sqlite_path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in sqlite_path.parent.iterdir()) == ["issuer.db"]


def test_sqlite_foreign_database_is_corrupt(sqlite_path: Path) -> None:
    conn = sqlite3.connect(sqlite_path)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="not an sa-oidc store"):
        SQLiteStore(sqlite_path)
    conn = sqlite3.connect(sqlite_path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["photos"]
    conn.close()


def test_sqlite_newer_schema_is_refused(sqlite_path: Path) -> None:
    SQLiteStore(sqlite_path).close()
    conn = sqlite3.connect(sqlite_path)
    conn.execute("UPDATE meta SET v = 99 WHERE k = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="schema version 99"):
        SQLiteStore(sqlite_path)


def test_sqlite_garbled_key_set_is_corrupt(sqlite_path: Path) -> None:
    s = SQLiteStore(sqlite_path)
    s.cas_keys(0, [_workers.key("a")])
    conn = sqlite3.connect(sqlite_path)
    conn.execute("UPDATE keyset SET doc = ? WHERE id = 1", (b"{not json",))
    conn.commit()
    conn.close()
    try:
        with pytest.raises(StoreCorrupt):
            s.load_keys()
    finally:
        s.close()


def test_sqlite_sigkill_mid_write_leaves_a_whole_key_set(sqlite_path: Path) -> None:
    url = f"sqlite:///{sqlite_path}"
    payload_size = 64 * 1024
    SQLiteStore(sqlite_path).close()
    proc = MP.Process(
        target=_workers.cas_forever, args=(url, str(sqlite_path.parent), payload_size)
    )
    proc.start()
    observer = SQLiteStore(sqlite_path)
    try:
        deadline = time.monotonic() + 30
        while observer.load_keys().version < 20:
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.01)
    finally:
        observer.close()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL

    s = SQLiteStore(sqlite_path)
    try:
        state = s.load_keys()
        v = state.version
        assert v >= 20
        payload = bytes([v % 256]) * payload_size
        assert state.keys == (
            _workers.key(f"v{v}", payload),
            _workers.key(f"v{v}-next", payload),
        )
        assert s.cas_keys(v, []) == v + 1
    finally:
        s.close()


def test_sqlite_new_file_opened_by_many_processes_at_once(tmp_path: Path) -> None:
    """Replicas (or --workers N) starting together on a fresh data dir: the switch to WAL may
    answer SQLITE_BUSY without waiting; every opener must still succeed."""
    n = 8
    for round_ in range(4):
        path = tmp_path / f"fresh-{round_}.db"
        barrier, results = MP.Barrier(n), MP.Queue()
        procs = [
            MP.Process(target=_workers.open_fresh, args=(str(path), barrier, results))
            for _ in range(n)
        ]
        run_procs(procs)
        outcomes = [results.get(timeout=5) for _ in range(n)]
        assert outcomes == ["ok"] * n, outcomes


def test_sqlite_two_instances_in_one_thread(sqlite_path: Path) -> None:
    a, b = SQLiteStore(sqlite_path), SQLiteStore(sqlite_path)
    try:
        a.cas_keys(0, [])
        assert b.cas_keys(1, []) == 2
        assert a.load_keys().version == 2
    finally:
        a.close()
        b.close()


def test_open_store_urls(tmp_path: Path, redis_url: str) -> None:
    s = open_store("sqlite", tmp_path)
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "issuer.db"
    s.close()
    r = open_store(redis_url, tmp_path)
    assert isinstance(r, RedisStore)
    r.ping()
    r.close()


# --- Redis specifics --------------------------------------------------------------------------


def test_redis_unreachable_is_store_unavailable_fast() -> None:
    from _services import free_port

    s = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        for call in (
            s.ping,
            s.load_keys,
            lambda: s.cas_keys(0, []),
            lambda: s.get_object("Pod", "ns", "p"),
            lambda: s.append_event({}),
            lambda: s.wait_events(0, 1.0),
        ):
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable):
                call()
            assert time.monotonic() - t0 < 3.0
    finally:
        s.close()


def test_redis_prefixes_isolate_stores(redis_url: str) -> None:
    a = RedisStore.from_url(redis_url, prefix="a")
    b = RedisStore.from_url(redis_url + "?prefix=b")
    plain = RedisStore.from_url(redis_url)
    try:
        a.cas_keys(0, [_workers.key("a")])
        a.create_object("Pod", "ns", "p", {"metadata": {"uid": "u"}})
        a.append_event({})
        for other in (b, plain):
            assert other.load_keys().version == 0
            assert other.list_objects("Pod") == []
            assert other.read_events(0).last_seq == 0
        import redis

        keys = redis.Redis.from_url(redis_url).keys("*")
        assert keys and all(k.startswith(b"{sa-oidc:a}:") for k in keys)
    finally:
        for s in (a, b, plain):
            s.close()


def test_redis_watch_survives_server_restart(redis_server: Any, redis_url: str) -> None:
    watcher, writer = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    q: queue.Queue[ChangeKind] = queue.Queue()
    sub = watcher.watch(q.put)
    try:
        writer.cas_keys(0, [])
        _expect(q, "keys")
        redis_server.restart()
        # Notifications may have been missed while down: the watcher says "re-read".
        _expect(q, "keys", timeout=10)
        while not q.empty():
            q.get_nowait()
        writer.cas_keys(0, [])  # the restarted server is empty (no persistence)
        _expect(q, "keys")
    finally:
        sub.close()
        watcher.close()
        writer.close()
