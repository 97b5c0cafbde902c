"""Issue 9 item 9: the SQLite store closes a thread's connection when that thread ends.

It kept one connection per thread in a thread-local *and* a list that was only emptied by
``close()``, so every retired worker thread (anyio's pool behind sync endpoints, each watch
stream's thread) leaked an fd and its page cache: fds 24 -> 950 and RSS 51 -> 123 MB over three
bursts of 150 watch streams. The issuer-level check (fds and RSS flat across bursts of watch
streams against a real process) is in tests/reliability.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

from issuer.store.sqlite import SQLiteStore


def _fds_on(path: Path) -> int:
    """Open fds of this process on the database file or its WAL/SHM companions."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            n += 1
    return n


def _burst(store: SQLiteStore, threads: int) -> None:
    def work() -> None:
        store.ping()
        store.list_objects("pods", None)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    gc.collect()


def test_fds_stay_flat_across_bursts_of_short_lived_threads(tmp_path: Path) -> None:
    path = tmp_path / "issuer.db"
    store = SQLiteStore(path)
    try:
        store.ping()
        _burst(store, 100)
        after_first = _fds_on(path)
        for _ in range(5):
            _burst(store, 100)
        # 600 threads each opened a connection (3 fds with WAL). They are closed when their
        # thread ends; SQLite's unix VFS keeps a few fds of closed connections open while
        # another connection of the process holds a POSIX lock on the file (its "unused fd"
        # list, sqlite3/src/os_unix.c), so the count settles at a small constant, never grows.
        deadline = time.monotonic() + 5
        while _fds_on(path) > after_first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _fds_on(path) <= max(after_first, 30)
        assert len(store._conns) == 1  # the main thread's
    finally:
        store.close()
    assert _fds_on(path) == 0


def test_a_live_thread_keeps_its_connection(tmp_path: Path) -> None:
    """Finalization is per thread: a thread still running keeps using its own connection."""
    store = SQLiteStore(tmp_path / "issuer.db")
    started, done = threading.Event(), threading.Event()
    seen: list[object] = []

    def worker() -> None:
        seen.append(store._conn())
        started.set()
        done.wait(10)
        seen.append(store._conn())

    t = threading.Thread(target=worker)
    t.start()
    started.wait(10)
    _burst(store, 30)
    done.set()
    t.join()
    try:
        assert seen[0] is seen[1]
    finally:
        store.close()
