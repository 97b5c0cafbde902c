"""A label index for list selectors: per kind, for each label pair ``key=value``, the
(namespace, name) of the objects that carry it, in order — in memory, kept current from the
store's object change log (:meth:`issuer.store.Store.read_changes`).

::

    label_index_for(store, "Pod").keys_after(("app", "web"), namespace, after)
        1. catch up: read the change log since the index's position (one read when nothing
           changed); the log no longer reaching back that far (trimmed) means a rebuild
        2. bisect into the pair's sorted keys -> the keys after ``after``

:func:`issuer.api.listing.list_collection` uses it when a label selector requires one exact
value (``key=value``, ``key==value``, ``key in (value)``) that few objects carry
(:meth:`LabelIndex.selective`): the page then reads only objects that carry the pair, so a
selector matching 1 object in 100,000 costs what it costs on 100.

Built on first use per (process, store, kind): one pass over the collection (pages of
:data:`_BUILD_PAGE`), then only the change log. Freshness: every query first catches up with
the log, so an object written through any replica is found by the next query anywhere; the
objects themselves are then read from the store (an object deleted in between is skipped).
Memory: about 230 bytes per object with two labels (label pairs and namespaces are shared), in
each worker process that listed that kind with a selector requiring a value.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["LabelIndex", "label_index_for"]

#: Objects read per store call while building.
_BUILD_PAGE: Final = 1000
#: Change-log entries read per store call while catching up.
_CHANGE_PAGE: Final = 1000
#: Behind by more log entries than this: rebuild rather than replay.
_REBUILD_BEHIND: Final = 50_000

Key = tuple[str, str]
Pair = tuple[str, str]


def _labels(obj: Mapping[str, Any]) -> list[Pair]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping):
        return []
    return sorted((str(k), str(v)) for k, v in labels.items())


class LabelIndex:
    """The index of one kind in one store (see the module docstring). Thread-safe."""

    def __init__(self, store: Any, kind: str) -> None:
        self._store = store
        self.kind = kind
        self._lock = threading.Lock()
        self._rv: int | None = None  # change-log position; None: not built
        self._labels: dict[Key, tuple[Pair, ...]] = {}
        self._by_pair: dict[Pair, list[Key]] = {}
        self._total = 0  # objects of the kind (labelled or not), as of the last catch-up
        # One shared object per distinct pair and namespace: most objects repeat a few of them.
        self._shared: dict[Any, Any] = {}
        #: Full builds done (tests and the benchmark read it).
        self.builds = 0

    def __len__(self) -> int:
        return len(self._labels)

    def selective(self, pair: Pair, ratio: int) -> bool:
        """Whether fewer than one object in ``ratio`` carries ``pair`` — current as of this
        call (builds the index on first use). StoreError propagates."""
        with self._lock:
            self._catch_up()
            return len(self._by_pair.get(pair, ())) * ratio < self._total

    def keys_after(
        self, pair: Pair, namespace: str | None, after: Key | None, limit: int
    ) -> list[Key]:
        """At most ``limit`` keys of objects carrying ``pair`` (in ``namespace`` when given),
        after ``after``, in order — current as of this call. StoreError propagates."""
        with self._lock:
            self._catch_up()
            keys = self._by_pair.get(pair, [])
            lo = (namespace, "") if namespace is not None else ("", "")
            if after is not None and after >= lo:
                start = bisect.bisect_right(keys, after)
            else:
                start = bisect.bisect_left(keys, lo)
            out: list[Key] = []
            for key in keys[start:]:
                if namespace is not None and key[0] != namespace:
                    break
                out.append(key)
                if len(out) >= limit:
                    break
            return out

    def sync(self) -> None:
        """Catch up with the store now (build on first use)."""
        with self._lock:
            self._catch_up()

    # --- maintenance (under the lock) ------------------------------------------------------------
    def _catch_up(self) -> None:
        if self._rv is None:
            self._build()
        while True:
            assert self._rv is not None
            page = self._store.read_changes(self._rv, limit=_CHANGE_PAGE, kind=self.kind)
            if page.floor > self._rv or page.last_rv - self._rv > _REBUILD_BEHIND:
                self._build()  # the log no longer reaches back to us, or replay would be long
                continue
            for change in page.changes:
                key = self._key(change.namespace, change.name)
                if change.type == "ADDED":
                    self._total += 1
                if change.type == "DELETED":
                    self._total -= 1
                    self._set(key, [])
                else:
                    self._set(key, _labels(change.object))
            self._rv = max(self._rv, page.next_rv)
            if self._rv >= page.last_rv:
                return

    def _build(self) -> None:
        # The log position first: whatever is written while the collection is read is replayed
        # after it (replay is idempotent: each change sets an object's labels to its state then).
        start = self._store.read_changes(0, limit=1).last_rv
        self._labels = {}
        self._by_pair = {}
        self._shared = {}
        self._total = 0
        after: Key | None = None
        while True:
            page = self._store.list_objects_page(self.kind, None, _BUILD_PAGE, after)
            self._total += len(page.items)
            for obj in page.items:
                meta = obj.get("metadata") or {}
                key = self._key(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                self._set(key, _labels(obj))
            if page.next_after is None:
                break
            after = page.next_after
        self._rv = start
        self.builds += 1

    def _set(self, key: Key, pairs: list[Pair]) -> None:
        shared = self._shared
        labels = tuple(shared.setdefault(p, p) for p in pairs)
        old = self._labels.get(key, ())
        if old == labels:
            return
        for pair in old:
            keys = self._by_pair.get(pair)
            if keys is not None:
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    del keys[i]
                if not keys:
                    del self._by_pair[pair]
        for pair in labels:
            bisect.insort(self._by_pair.setdefault(pair, []), key)
        if labels:
            self._labels[key] = labels
        else:
            self._labels.pop(key, None)

    def _key(self, namespace: str, name: str) -> Key:
        ns = self._shared.setdefault(("ns", namespace), namespace)
        return (ns, name)


_indexes: weakref.WeakKeyDictionary[Any, dict[str, LabelIndex]] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def label_index_for(store: Any, kind: str) -> LabelIndex:
    """The process's label index of ``kind`` in ``store`` (created empty, built on first use)."""
    with _indexes_lock:
        per_store = _indexes.setdefault(store, {})
        index = per_store.get(kind)
        if index is None:
            index = per_store[kind] = LabelIndex(store, kind)
        return index
