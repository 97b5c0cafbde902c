"""``Store.list_objects_page`` and ``Store.object_revisions`` on every backend (SQLite, Redis,
Redis Cluster, Redis through Sentinel)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from issuer.store import AlreadyExists, Conflict, NotFound, Store
from issuer.store.sqlite import SQLiteStore


def obj(ns: str, name: str) -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{ns}-{name}"}
    if ns:
        meta["namespace"] = ns
    return {"metadata": meta}


def key(o: dict[str, Any]) -> tuple[str, str]:
    return (o["metadata"].get("namespace", ""), o["metadata"]["name"])


def all_pages(store: Store, kind: str, ns: str | None, limit: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    after = None
    while True:
        page = store.list_objects_page(kind, ns, limit, after)
        assert len(page.items) <= limit
        out += [key(o) for o in page.items]
        if page.next_after is None:
            return out
        assert page.next_after == key(page.items[-1])
        after = page.next_after


def test_pages_walk_the_collection_in_order(store: Store) -> None:
    names = ["a", "b:c", "b", "zz", "m-1", "m-10", "m-2"]
    for ns in ("dev", "de", "prod"):
        for n in names:
            store.create_object("Pod", ns, n, obj(ns, n))
    store.create_object("Secret", "dev", "a", obj("dev", "a"))
    everything = [key(o) for o in store.list_objects("Pod", None)]
    assert len(everything) == 21
    for limit in (1, 2, 7, 20, 21, 22, 500):
        assert all_pages(store, "Pod", None, limit) == everything
        assert all_pages(store, "Pod", "dev", limit) == [k for k in everything if k[0] == "dev"]
    assert all_pages(store, "Pod", "nope", 3) == []
    # A page starts strictly after `after`, which need not exist.
    page = store.list_objects_page("Pod", None, 2, ("de", "m-1"))
    assert [key(o) for o in page.items] == [("de", "m-10"), ("de", "m-2")]
    page = store.list_objects_page("Pod", None, 2, ("de", "m-15"))
    assert [key(o) for o in page.items] == [("de", "m-2"), ("de", "zz")]
    page = store.list_objects_page("Pod", "dev", 50, ("de", "zz"))
    assert len(page.items) == 7 and page.next_after is None
    assert store.list_objects_page("Pod", "dev", 50, ("dev", "zz")).items == ()
    # Objects come back whole, with their resourceVersion.
    first = store.list_objects_page("Pod", "prod", 1).items[0]
    assert first == store.get_object("Pod", "prod", "a")


def test_cluster_scoped_pages(store: Store) -> None:
    for n in ("system:auth-delegator", "view", "admin", "edit"):
        store.create_object("ClusterRole", "", n, obj("", n))
    assert [k[1] for k in all_pages(store, "ClusterRole", "", 3)] == [
        "admin",
        "edit",
        "system:auth-delegator",
        "view",
    ]


def test_pages_see_writes_between_pages(store: Store) -> None:
    for n in ("a", "c", "e"):
        store.create_object("Pod", "dev", n, obj("dev", n))
    page = store.list_objects_page("Pod", "dev", 1)
    store.create_object("Pod", "dev", "b", obj("dev", "b"))
    store.delete_object("Pod", "dev", "c")
    rest = store.list_objects_page("Pod", "dev", 10, page.next_after)
    assert [key(o)[1] for o in rest.items] == ["b", "e"]


def test_revisions_count_every_write_of_a_kind_in_a_namespace(store: Store) -> None:
    keys = [("RoleBinding", "dev"), ("RoleBinding", "prod"), ("Role", "dev"), ("ClusterRole", "")]
    assert store.object_revisions(keys) == (0, 0, 0, 0)
    assert store.object_revisions([]) == ()
    store.create_object("RoleBinding", "dev", "b", obj("dev", "b"))
    r1 = store.object_revisions(keys)
    assert r1[0] > 0 and r1[1:] == (0, 0, 0)
    stored = store.update_object("RoleBinding", "dev", "b", obj("dev", "b"))
    r2 = store.object_revisions(keys)
    assert r2[0] > r1[0] and r2[1:] == (0, 0, 0)
    # Refused writes change nothing.
    with pytest.raises(Conflict):
        store.update_object("RoleBinding", "dev", "b", obj("dev", "b"), resource_version="1")
    with pytest.raises(Conflict):
        store.delete_object("RoleBinding", "dev", "b", uid="other")
    with pytest.raises(NotFound):
        store.delete_object("RoleBinding", "dev", "missing")
    assert store.object_revisions(keys) == r2
    assert stored["metadata"]["resourceVersion"]
    store.delete_object("RoleBinding", "dev", "b")
    r3 = store.object_revisions(keys)
    assert r3[0] > r2[0] and r3[1:] == (0, 0, 0)
    store.create_object("ClusterRole", "", "c", obj("", "c"))
    assert store.object_revisions(keys)[3] > 0
    # Another handle on the same store reads the same revisions.
    assert store.object_revisions(keys[:1]) == (r3[0],)


def test_sqlite_store_from_before_revisions_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "issuer.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE revisions")
    store = SQLiteStore(path)
    try:
        store.create_object("Role", "dev", "r", obj("dev", "r"))
        assert store.object_revisions([("Role", "dev")]) == (1,)
    finally:
        store.close()


def test_bulk_create_and_append(store: Store) -> None:
    items = [("dev", f"p{i:04d}", obj("dev", f"p{i:04d}")) for i in range(1200)]
    assert store.create_objects("Pod", items) == 1200
    listed = store.list_objects("Pod", "dev")
    assert [key(o) for o in listed] == [(ns, n) for ns, n, _ in items]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in listed]
    assert len(set(rvs)) == 1200  # each its own resourceVersion, as create_object gives
    assert store.object_revisions([("Pod", "dev")])[0] >= 1
    with pytest.raises(AlreadyExists):
        store.create_objects("Pod", [("dev", "new", obj("dev", "new")), items[5]])
    assert store.get_object("Pod", "dev", "p0005")["metadata"]["uid"] == "uid-dev-p0005"
    if store.backend == "sqlite":  # one transaction: all or nothing
        with pytest.raises(NotFound):
            store.get_object("Pod", "dev", "new")
    seqs = store.append_events([{"type": "TokenRevoked", "jti": f"j{i}"} for i in range(1100)])
    assert seqs == list(range(seqs[0], seqs[0] + 1100))
    page = store.read_events(seqs[0] - 1, limit=2000)
    assert [e.data["jti"] for e in page.events] == [f"j{i}" for i in range(1100)]
    assert store.append_events([]) == []
    assert store.create_objects("Pod", []) == 0
