"""The object change log (``read_changes`` / ``trim_changes``) on every backend and topology:
what a Kubernetes watch is served from, so every write must appear exactly once, in order."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from issuer.store import Conflict, Store
from issuer.store.sqlite import SCHEMA_VERSION, SQLiteStore


def _sa(name: str, uid: str = "u1", **extra: object) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "dev", "uid": uid}, **extra}


def test_every_write_is_logged_once_in_order(store: Store) -> None:
    start = store.read_changes(0).last_rv
    a = store.create_object("ServiceAccount", "dev", "a", _sa("a"))
    b = store.update_object("ServiceAccount", "dev", "a", _sa("a", secrets=[{"name": "s"}]))
    store.create_object("Pod", "dev", "p", _sa("p"))
    deleted, _ = store.delete_object("ServiceAccount", "dev", "a")
    page = store.read_changes(start)
    got = [(c.type, c.kind, c.name, c.rv) for c in page.changes]
    rv_a, rv_b = int(a["metadata"]["resourceVersion"]), int(b["metadata"]["resourceVersion"])
    assert got[:2] == [
        ("ADDED", "ServiceAccount", "a", rv_a),
        ("MODIFIED", "ServiceAccount", "a", rv_b),
    ]
    assert [g[:3] for g in got[2:]] == [("ADDED", "Pod", "p"), ("DELETED", "ServiceAccount", "a")]
    rvs = [g[3] for g in got]
    assert rvs == sorted(rvs) and len(set(rvs)) == 4
    # kube: a delete has a revision of its own; the DELETED object carries it, the response the
    # object's last version.
    gone = page.changes[-1]
    assert gone.object["metadata"]["resourceVersion"] == str(gone.rv)
    assert deleted["metadata"]["resourceVersion"] == str(rv_b)
    assert gone.object["secrets"] == [{"name": "s"}]
    assert page.last_rv == gone.rv == page.next_rv
    for c in page.changes:
        assert c.object["metadata"]["resourceVersion"] == str(c.rv)


def test_kind_filter_and_paging(store: Store) -> None:
    start = store.read_changes(0).last_rv
    for i in range(5):
        store.create_object("Pod", "dev", f"p{i}", _sa(f"p{i}"))
        store.create_object("Secret", "dev", f"s{i}", _sa(f"s{i}"))
    seen: list[str] = []
    since = start
    for _ in range(20):
        page = store.read_changes(since, limit=3, kind="Secret")
        seen += [c.name for c in page.changes]
        assert all(c.kind == "Secret" for c in page.changes)
        if page.next_rv == since:
            break
        since = page.next_rv
    assert seen == [f"s{i}" for i in range(5)]
    assert since == page.last_rv


def test_failed_writes_log_nothing(store: Store) -> None:
    store.create_object("Pod", "dev", "p", _sa("p"))
    before = store.read_changes(0)
    with pytest.raises(Conflict):
        store.update_object("Pod", "dev", "p", _sa("p"), resource_version="999999")
    with pytest.raises(Conflict):
        store.delete_object("Pod", "dev", "p", uid="other")
    after = store.read_changes(0)
    assert after.changes == before.changes and after.last_rv == before.last_rv


def test_trim_raises_the_floor(store: Store) -> None:
    store.create_object("Pod", "dev", "old", _sa("old"))
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    new = store.create_object("Pod", "dev", "new", _sa("new"))
    assert store.read_changes(0).floor == 0
    assert store.trim_changes(cut) == 1
    page = store.read_changes(0)
    assert [c.name for c in page.changes] == ["new"]
    assert page.floor == int(new["metadata"]["resourceVersion"]) - 1
    assert store.trim_changes(time.time() + 1) == 1
    page = store.read_changes(0)
    assert page.changes == () and page.floor == page.last_rv


def test_sqlite_schema_1_is_migrated_in_place(sqlite_path: Path) -> None:
    """A file written by the previous release (schema 1, no change log) keeps its objects and
    gets a floor at its resourceVersion counter: nothing before it can be claimed as history."""
    s = SQLiteStore(sqlite_path)
    s.create_object("Pod", "dev", "p", _sa("p"))
    s.close()
    conn = sqlite3.connect(sqlite_path)
    conn.executescript(
        "DROP TABLE changes; DELETE FROM meta WHERE k = 'changes_floor';"
        " UPDATE meta SET v = 1 WHERE k = 'schema';"
    )
    conn.close()
    s = SQLiteStore(sqlite_path)
    try:
        assert s.get_object("Pod", "dev", "p")["metadata"]["name"] == "p"
        page = s.read_changes(0)
        assert page.changes == () and page.floor == page.last_rv == 1
        s.create_object("Pod", "dev", "q", _sa("q"))
        assert [c.name for c in s.read_changes(1).changes] == ["q"]
        conn = sqlite3.connect(sqlite_path)
        assert conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()[0] == SCHEMA_VERSION
        conn.close()
    finally:
        s.close()
