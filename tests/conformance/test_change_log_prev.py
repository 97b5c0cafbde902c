"""Each change-log entry's previous state (``Change.prev``), on every backend and topology: what
a selector watch resumed from a resourceVersion needs to tell an object leaving its selector
from one that never matched, as kube's watch cache keeps ``PrevObject`` beside each event
(k8s.io/apiserver pkg/storage/cacher/watch_cache.go processEvent)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from issuer.store import Conflict, Store
from issuer.store.sqlite import SQLiteStore


def _sa(name: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "dev", "uid": "u1", "labels": labels}}


def test_each_change_carries_the_state_it_replaced(store: Store) -> None:
    start = store.read_changes(0).last_rv
    store.create_object("ServiceAccount", "dev", "a", _sa("a", team="x"))
    store.update_object("ServiceAccount", "dev", "a", _sa("a", team="y"))
    store.update_object("ServiceAccount", "dev", "a", _sa("a", team="y", v="2"))
    store.delete_object("ServiceAccount", "dev", "a")
    changes = store.read_changes(start).changes
    assert [c.type for c in changes] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    added, first, second, deleted = changes
    assert added.prev is None
    assert first.prev is not None and first.prev["metadata"]["labels"] == {"team": "x"}
    assert second.prev is not None and second.prev["metadata"]["labels"] == {"team": "y"}
    # The replaced state is stored as it was, without the resourceVersion the store owns.
    assert "resourceVersion" not in first.prev["metadata"]
    assert first.object["metadata"]["labels"] == {"team": "y"}
    # A delete's previous state is its last state (kube: PrevObject of a Deleted event).
    assert deleted.prev == deleted.object
    assert deleted.object["metadata"]["labels"] == {"team": "y", "v": "2"}


def test_a_refused_update_logs_nothing(store: Store) -> None:
    a = store.create_object("ServiceAccount", "dev", "a", _sa("a", team="x"))
    start = store.read_changes(0).last_rv
    with pytest.raises(Conflict):
        store.update_object(
            "ServiceAccount", "dev", "a", _sa("a", team="y"), resource_version="999999"
        )
    assert store.read_changes(start).changes == ()
    store.update_object(
        "ServiceAccount",
        "dev",
        "a",
        _sa("a", team="z"),
        resource_version=a["metadata"]["resourceVersion"],
    )
    (change,) = store.read_changes(start).changes
    assert change.prev is not None and change.prev["metadata"]["labels"] == {"team": "x"}


def test_entries_logged_without_a_previous_state_still_read(sqlite_path: Path) -> None:
    """An entry written before the log kept previous states (same schema, no ``prev`` key)
    reads back with ``prev`` None; watches then treat the object as having stayed."""
    s = SQLiteStore(sqlite_path)
    try:
        s.create_object("ServiceAccount", "dev", "a", _sa("a", team="x"))
        s.update_object("ServiceAccount", "dev", "a", _sa("a", team="y"))
        conn = sqlite3.connect(sqlite_path)
        # The newest entry: the update's.
        (rv, doc) = conn.execute("SELECT rv, doc FROM changes ORDER BY rv DESC").fetchone()
        old = json.loads(doc)
        del old["prev"]
        conn.execute("UPDATE changes SET doc = ? WHERE rv = ?", (json.dumps(old).encode(), rv))
        conn.commit()
        conn.close()
        (change,) = [c for c in s.read_changes(0).changes if c.type == "MODIFIED"]
        assert change.prev is None and change.object["metadata"]["labels"] == {"team": "y"}
    finally:
        s.close()
