"""The state this process last wrote, per object: where the next update of it starts.

kube-apiserver does the same: its cacher hands ``GuaranteedUpdate`` the watch cache's copy of the
object (``cachedExistingObject``), and the etcd3 store computes the update from it without a read.
The write is a compare-and-swap on the resourceVersion, so a stale start can never be written:
the swap fails and the update is computed again from a fresh read. An error computed from a
possibly stale start is not trusted either: the caller retries it once on fresh state (kube:
staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go, ``if !origStateIsCurrent { ... continue``).

On Redis this saves a round trip per PATCH/PUT/apply; on SQLite, a read. Entries are kept as
encoded JSON (callers get their own copy) and bounded (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final, cast

import orjson

__all__ = ["LastWritten"]

#: Objects remembered per process (each a few KB at most).
CAPACITY: Final = 1024

Key = tuple[str, str, str]


class LastWritten:
    """A bounded, thread-safe map (kind, namespace, name) -> the object as last stored here."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[Key, bytes] = OrderedDict()

    def get(self, key: Key) -> dict[str, Any] | None:
        """A private copy of the last stored state, or None."""
        with self._lock:
            raw = self._items.get(key)
            if raw is None:
                return None
            self._items.move_to_end(key)
        return cast(dict[str, Any], orjson.loads(raw))

    def put(self, key: Key, obj: dict[str, Any]) -> None:
        """Remember ``obj`` (as stored, with its resourceVersion) for ``key``."""
        raw = orjson.dumps(obj)
        with self._lock:
            self._items[key] = raw
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def forget(self, key: Key) -> None:
        """Drop ``key`` (its start proved stale, or the object is gone)."""
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
