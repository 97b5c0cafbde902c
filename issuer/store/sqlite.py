"""SQLite backend: the embedded default, one file, durable, safe across threads and processes.

Layout (schema version :data:`SCHEMA_VERSION`, recorded in ``meta``)::

    meta    (k TEXT PRIMARY KEY, v INTEGER)      schema, rv (resourceVersion counter), epoch
                                                 (random, made with the store: EventPage.epoch)
    keyset  (id = 1, version, doc)               the whole key set as one JSON document
    objects (kind, namespace, name, uid, rv, doc)
    changes (rv INTEGER PRIMARY KEY, kind, namespace, name, time, doc)   the object change log
                                                 (doc: type, object, and for MODIFIED prev, the
                                                 replaced object document: Change.prev)
    revisions (kind, namespace, rev)             bumped by each object write (object_revisions)
    events  (seq INTEGER PRIMARY KEY AUTOINCREMENT, time, doc)
    leases  (name, holder, expires)

Why these choices:

- WAL + ``synchronous=FULL``: readers never block the writer, and a commit is on disk before
  :meth:`SQLiteStore.cas_keys` returns (the issuer never signs with a key not durably stored).
  ``synchronous="normal"`` (the URL's ``?synchronous=normal``) is an operator's explicit choice,
  like PostgreSQL's ``synchronous_commit = off``: object creates and updates are acknowledged
  once written to the WAL, without waiting for the device flush. They survive the process being
  killed (the OS has the data), not a power loss or kernel crash, which may roll the newest of
  them back, never corrupt the file (https://sqlite.org/pragma.html#pragma_synchronous). Key-set
  changes, deletions, events (revocations), leases and updates the caller marks ``durable`` (RBAC:
  they may take access away) still commit with FULL, and since the WAL is sequential each such
  commit also makes every earlier write durable.
- Every write is ``BEGIN IMMEDIATE``: it takes the file's write lock before reading the
  precondition, so compare-and-swap is atomic across threads *and* processes sharing the file.
- ``AUTOINCREMENT`` on ``events.seq``: SQLite then never reuses a seq, even after the newest rows
  are deleted by a trim (plain rowids would be).
- One connection per thread (sqlite3 connections must not be shared concurrently).
- The change log (schema 2) is written in the same transaction as the object it records, so a
  watcher resuming from a resourceVersion misses nothing; ``meta.changes_floor`` is the highest
  resourceVersion no longer in the log (a trim raises it; migrating a schema-1 file in place sets
  it to the resourceVersion counter, since older writes were never logged).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from issuer.store import _codec
from issuer.store._watch import ALL_KINDS, WatchThread
from issuer.store.base import (
    JSON,
    AlreadyExists,
    ChangeKind,
    ChangePage,
    Conflict,
    EventPage,
    KeySetState,
    NotFound,
    ObjectPage,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreUnavailable,
)

SCHEMA_VERSION = 2

#: How long a writer waits for another writer's lock before StoreUnavailable (ms).
BUSY_TIMEOUT_MS = 10_000

Synchronous = Literal["full", "normal"]
#: The durability choices (module docstring).
SYNCHRONOUS: tuple[Synchronous, ...] = ("full", "normal")

#: The store's file in the data dir when the URL names none.
DEFAULT_FILE: Final = "issuer.db"


class SqliteURL(NamedTuple):
    """An SQLite store URL, read (:func:`sqlite_url`)."""

    path: Path
    synchronous: Synchronous
    #: The file is the data dir's own (``sqlite``), not one the URL names (``sqlite:///PATH``).
    in_data_dir: bool


def sqlite_url(url: str, data_dir: Path) -> SqliteURL | None:
    """``sqlite[?synchronous=full|normal]`` (the file :data:`DEFAULT_FILE` in ``data_dir``) or
    ``sqlite:///ABSOLUTE/PATH[?...]``, read; None for another scheme; ValueError for a
    malformed one (pure: configuration checks use it too)."""
    base, _, query = url.partition("?")
    if base != "sqlite" and not base.startswith("sqlite:"):
        return None
    if base.startswith("sqlite:///"):
        path, in_data_dir = Path(base[len("sqlite:///") :]), False
    elif base == "sqlite":
        path, in_data_dir = data_dir / DEFAULT_FILE, True
    else:
        raise ValueError(f"sqlite store URL must be sqlite:///ABSOLUTE/PATH, got {url!r}")
    synchronous: Synchronous = "full"
    for name, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if name != "synchronous" or len(values) != 1 or values[0] not in SYNCHRONOUS:
            raise ValueError(
                f"unsupported sqlite store URL parameter in {url!r}: the only one is "
                f"synchronous={'|'.join(SYNCHRONOUS)}"
            )
        synchronous = "normal" if values[0] == "normal" else "full"
    return SqliteURL(path, synchronous, in_data_dir)


#: Poll period of watchers and cross-process waiters (seconds). Same-process writes wake at once.
POLL_INTERVAL = 0.1

#: Added after schema 1 shipped, so stores created before get it when opened: an additive change
#: (the table starts empty, which reads as "revision 0" everywhere).
_REVISIONS_DDL = """CREATE TABLE IF NOT EXISTS revisions (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    rev INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace)
) WITHOUT ROWID"""

_SCHEMA = (
    _REVISIONS_DDL
    + """;
CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE keyset (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    rv INTEGER NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX events_time ON events (time);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (k, v) VALUES ('schema', 1), ('rv', 0);
INSERT INTO keyset (id, version, doc) VALUES (1, 0, X'');
"""
)

#: The store's event-history id (EventPage.epoch): a random 63-bit integer, shown as hex.
_NEW_EPOCH = "INSERT OR IGNORE INTO meta (k, v) VALUES ('epoch', ?)"


def _epoch_value() -> int:
    return secrets.randbits(63)


#: Schema 1 -> 2: the object change log. Run inside the caller's BEGIN IMMEDIATE transaction.
_MIGRATE_2 = """
CREATE TABLE changes (
    rv INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    time REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX changes_time ON changes (time);
INSERT INTO meta (k, v) VALUES ('changes_floor', (SELECT v FROM meta WHERE k = 'rv'));
UPDATE meta SET v = 2 WHERE k = 'schema'
"""

_OUR_TABLES = {
    "meta",
    "keyset",
    "objects",
    "events",
    "leases",
    "revisions",
    "changes",
    "sqlite_sequence",
}


def _is_busy(e: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED ("database is locked", "database table is locked")."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(e) or "busy" in str(e)


def _map_error(e: sqlite3.Error, path: Path) -> StoreError:
    """Map sqlite3 errors: locks and I/O trouble are 'unavailable', bad bytes 'corrupt'."""
    if isinstance(e, sqlite3.OperationalError):
        return StoreUnavailable(f"sqlite store {path}: {e}")
    if isinstance(e, sqlite3.DatabaseError):
        # "file is not a database", "database disk image is malformed"
        return StoreCorrupt(f"sqlite store {path} is unreadable: {e}")
    return StoreUnavailable(f"sqlite store {path}: {e}")


_OBJECTS_EVENTS: tuple[ChangeKind, ...] = ("objects", "events")


class _Waiter:
    """One waiter on a :class:`_Signal`: an event to wait on and the kinds committed since it
    last looked."""

    __slots__ = ("event", "kinds", "pending")

    def __init__(self, kinds: Iterable[ChangeKind]) -> None:
        self.event = threading.Event()
        self.kinds = frozenset(kinds)
        self.pending: set[ChangeKind] = set()


class _Signal:
    """What this process committed to one file, per change kind, shared by the instances on it.

    A waiter is woken only by commits of the kinds it cares about, and told which: an object
    write does not wake the key manager's watch thread or the invalidation stream's waiters, and
    a woken watch thread knows what changed without reading the file (on two cores every needless
    wake-up and read took the GIL from the request being answered). Other processes' commits are
    seen by polling.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()

    def subscribe(self, kinds: Iterable[ChangeKind]) -> _Waiter:
        """A waiter woken after every commit of one of ``kinds`` (until :meth:`unsubscribe`)."""
        waiter = _Waiter(kinds)
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: _Waiter) -> None:
        """Stop waking ``waiter``."""
        with self._lock:
            self._waiters.discard(waiter)

    def take(self, waiter: _Waiter) -> set[ChangeKind]:
        """The kinds committed since the last take (and forget them)."""
        with self._lock:
            pending, waiter.pending = waiter.pending, set()
        return pending

    def notify(self, kinds: tuple[ChangeKind, ...]) -> None:
        """A commit changed ``kinds``: wake their waiters."""
        woken = []
        with self._lock:
            for waiter in self._waiters:
                hit = waiter.kinds.intersection(kinds)
                if hit:
                    waiter.pending |= hit
                    woken.append(waiter)
        for waiter in woken:
            waiter.event.set()


_signals: dict[str, _Signal] = {}
_signals_lock = threading.Lock()


def _signal_for(path: Path) -> _Signal:
    key = os.path.realpath(path)
    with _signals_lock:
        sig = _signals.get(key)
        if sig is None:
            sig = _signals[key] = _Signal()
        return sig


class _Watch(WatchThread):
    """One polling thread per subscription (see :meth:`SQLiteStore.watch`)."""

    def __init__(
        self,
        store: SQLiteStore,
        callback: Callable[[ChangeKind], None],
        kinds: Iterable[ChangeKind] | None,
    ) -> None:
        self._store = store
        self._waiter: _Waiter | None = None
        # Ready once the baseline counters are read.
        super().__init__(callback, name="sqlite-store-watch", ready_timeout=5, kinds=kinds)

    def _run(self) -> None:
        # A private connection: PRAGMA data_version changes whenever *another* connection (in this
        # process or any other) commits, which makes the idle poll a single cheap statement.
        try:
            conn = self._store._connect()
        except StoreError:
            self._ready.set()
            return
        sig = self._store._signal
        waiter = self._waiter = sig.subscribe(self._kinds)
        try:
            last_dv: int | None = None
            last: tuple[int, int, int] | None = None
            with contextlib.suppress(sqlite3.Error):
                last_dv = conn.execute("PRAGMA data_version").fetchone()[0]
                last = self._store._counters(conn)
            self._ready.set()
            next_poll = time.monotonic() + POLL_INTERVAL
            while not self._stop.is_set():
                # Cleared before looking, so a commit landing meanwhile wakes the next wait.
                waiter.event.wait(max(0.0, next_poll - time.monotonic()))
                waiter.event.clear()
                if self._stop.is_set():
                    break
                own = sig.take(waiter)
                for kind in ALL_KINDS:
                    if kind in own:
                        # This process committed: the signal says what, no need to read the
                        # file. (The next poll sees data_version moved and may report it again:
                        # a callback means "re-read", duplicates are allowed.)
                        self._notify(kind)
                if time.monotonic() < next_poll:
                    continue
                # Other processes' commits: read the file every POLL_INTERVAL, however busy
                # this process's own writes keep us.
                next_poll = time.monotonic() + POLL_INTERVAL
                try:
                    dv = conn.execute("PRAGMA data_version").fetchone()[0]
                    if dv == last_dv and last is not None:
                        continue
                    last_dv = dv
                    cur = self._store._counters(conn)
                except sqlite3.Error:
                    continue  # transient (locked, I/O): poll again
                if last is not None:
                    self._deliver(last, cur)
                last = cur
        finally:
            sig.unsubscribe(waiter)
            conn.close()

    def _deliver(self, old: tuple[int, int, int], new: tuple[int, int, int]) -> None:
        for kind, a, b in zip(ALL_KINDS, old, new, strict=True):
            if a != b:
                self._notify(kind)

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.event.set()


class _ThreadConn:
    """The value a thread keeps in the store's thread-local: its connection (weakly finalized)."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _release(
    conns: set[sqlite3.Connection], lock: threading.Lock, conn: sqlite3.Connection
) -> None:
    """Close a dead thread's connection and forget it (runs from ``weakref.finalize``)."""
    with lock:
        conns.discard(conn)
    with contextlib.suppress(sqlite3.Error):
        conn.close()


class SQLiteStore:
    """The :class:`~issuer.store.base.Store` contract on one SQLite file.

    ``SQLiteStore(path)`` creates the parent directory (mode 0700) and the file (mode 0600) if
    missing. Raises StoreCorrupt if ``path`` is not an sa-oidc SQLite store or has a newer schema;
    the file is then left untouched.
    """

    backend = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: Synchronous = "full") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}"
            )
        self.path = Path(path)
        #: "full" (default): every commit is flushed to the device before it returns; "normal":
        #: object creates and updates are not (see the module docstring).
        self.synchronous: Synchronous = synchronous
        self._local = threading.local()
        self._conns: set[sqlite3.Connection] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._watches: list[_Watch] = []
        self._create_file()
        # Shared by every instance on this file in this process: a commit by any of them wakes
        # waiters and watchers at once (other processes are seen by polling).
        self._signal = _signal_for(self.path)
        self._init_schema()

    # --- connections ------------------------------------------------------------------------
    def _create_file(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # O_EXCL: never truncate a file another process created in the meantime. An empty
            # file is a valid, empty SQLite database; WAL/SHM files inherit its 0600 mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # close() may run on another thread
            )
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.002
        while True:
            try:
                # Read first: on a file that is not SQLite this fails without writing anything.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
                return conn
            except sqlite3.OperationalError as e:
                # Several processes opening a new file at once (two replicas, --workers N): the
                # switch to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
                # without its busy handler, when waiting could deadlock (sqlite.org/c3ref/
                # busy_handler.html). Retry within the same budget as any other busy wait.
                if not _is_busy(e) or time.monotonic() >= deadline:
                    conn.close()
                    raise _map_error(e, self.path) from e
                time.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
                delay = min(delay * 2, 0.1)
            except sqlite3.Error as e:
                conn.close()
                raise _map_error(e, self.path) from e

    def _conn(self) -> sqlite3.Connection:
        holder: _ThreadConn | None = getattr(self._local, "holder", None)
        if holder is None:
            if self._closed:
                raise StoreUnavailable("store is closed")
            conn = self._connect()
            holder = _ThreadConn(conn)
            with self._lock:
                self._conns.add(conn)
            # One connection per thread (sqlite3 objects are not shared between concurrent
            # threads), closed when its thread ends: the thread-local value dies with the thread,
            # and the finalizer closes the connection. Without it every retired worker thread
            # (anyio's pool, watch streams) leaked an fd and its page cache (issue 9, item 9).
            weakref.finalize(holder, _release, self._conns, self._lock, conn)
            self._local.holder = holder
        return holder.conn

    def _init_schema(self) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables = {
                    r[0]
                    for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
                if not tables:
                    for stmt in _SCHEMA.strip().split(";\n"):
                        conn.execute(stmt)
                    self._migrate(conn, 1)
                    conn.execute(_NEW_EPOCH, (_epoch_value(),))
                    conn.execute("COMMIT")
                    return
                conn.execute("ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if not {"meta", "keyset", "objects", "events", "leases"} <= tables:
                raise StoreCorrupt(
                    f"{self.path} is an SQLite database but not an sa-oidc store "
                    f"(tables: {sorted(tables - _OUR_TABLES) or sorted(tables)})"
                )
            row = conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            schema = row[0] if row else None
            if not isinstance(schema, int) or schema < 1:
                raise StoreCorrupt(f"{self.path}: missing or invalid schema version {schema!r}")
            if schema > SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"{self.path} has schema version {schema}, newer than this sa-issuer "
                    f"supports ({SCHEMA_VERSION}); upgrade sa-issuer"
                )
            if "revisions" not in tables:
                with self._write() as wconn:
                    wconn.execute(_REVISIONS_DDL)
            if schema < SCHEMA_VERSION:
                self._upgrade()
            if conn.execute("SELECT 1 FROM meta WHERE k = 'epoch'").fetchone() is None:
                # A store made before epochs existed: give its event history one now.
                with self._write() as w:
                    w.execute(_NEW_EPOCH, (_epoch_value(),))
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as e:
            self.close()
            raise _map_error(e, self.path) from e

    @staticmethod
    def _migrate(conn: sqlite3.Connection, schema: int) -> None:
        """Bring a schema-``schema`` file to :data:`SCHEMA_VERSION` inside the caller's
        transaction (all or nothing: a failure rolls the whole upgrade back)."""
        if schema < 2:
            for stmt in _MIGRATE_2.strip().split(";\n"):
                conn.execute(stmt)

    def _upgrade(self) -> None:
        """Migrate an older file in place, once, even with several processes opening it."""
        with self._write() as conn:
            (schema,) = conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            self._migrate(conn, int(schema))

    @contextlib.contextmanager
    def _write(
        self, changes: tuple[ChangeKind, ...] = ALL_KINDS, *, relaxed: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction; rolls back on any exception; on commit, wakes this
        process's waiters for ``changes`` (the kinds the transaction may change; () for none).

        ``relaxed``: an object create or update, which ``synchronous="normal"`` acknowledges
        without the device flush; every other write is flushed whatever the setting."""
        conn = self._conn()
        flush = self.synchronous == "normal" and not relaxed
        try:
            if flush:
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._relax(conn, flush)
            raise _map_error(e, self.path) from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._relax(conn, flush)
            if isinstance(e, sqlite3.Error):
                raise _map_error(e, self.path) from e
            raise
        self._relax(conn, flush)
        if changes:
            self._signal.notify(changes)

    @staticmethod
    def _relax(conn: sqlite3.Connection, flushed: bool) -> None:
        """Back to synchronous=NORMAL after a flushed write (outside any transaction)."""
        if flushed:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A deferred read transaction: one consistent snapshot for multi-statement reads."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e

    @staticmethod
    def _counters(conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(key-set version, last event seq, resourceVersion counter): what watchers compare."""
        row = conn.execute(
            "SELECT (SELECT version FROM keyset WHERE id = 1),"
            " (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'),"
            " (SELECT v FROM meta WHERE k = 'rv')"
        ).fetchone()
        return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    # --- health -------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise StoreUnavailable unless the file can be read."""
        try:
            self._conn().execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e

    def close(self) -> None:
        """Stop watchers and close every thread's connection (idempotent)."""
        self._closed = True
        for w in list(self._watches):
            w.close()
        self._watches.clear()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        self._local = threading.local()

    # --- signing keys -------------------------------------------------------------------------
    def load_keys(self) -> KeySetState:
        """The current key set (version 0 and no keys on a new store)."""
        try:
            row = self._conn().execute("SELECT version, doc FROM keyset WHERE id = 1").fetchone()
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        if row is None:
            raise StoreCorrupt(f"{self.path}: key set row is missing")
        version, doc = row
        if version == 0:
            return KeySetState(version=0)
        return KeySetState(version=int(version), keys=_codec.decode_keys(doc))

    def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
        """Replace the key set iff its version is ``expected_version``; durable on return."""
        doc = _codec.encode_keys(keys)
        with self._write(("keys",)) as conn:
            (version,) = conn.execute("SELECT version FROM keyset WHERE id = 1").fetchone()
            if version != expected_version:
                raise Conflict(f"key set is at version {version}, not {expected_version}")
            conn.execute("UPDATE keyset SET version = ?, doc = ? WHERE id = 1", (version + 1, doc))
        return int(version) + 1

    # --- objects ------------------------------------------------------------------------------
    @staticmethod
    def _next_rv(conn: sqlite3.Connection) -> int:
        (rv,) = conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'rv' RETURNING v").fetchone()
        return int(rv)

    @staticmethod
    def _bump(conn: sqlite3.Connection, kind: str, namespace: str) -> None:
        conn.execute(
            "INSERT INTO revisions (kind, namespace, rev) VALUES (?, ?, 1)"
            " ON CONFLICT (kind, namespace) DO UPDATE SET rev = rev + 1",
            (kind, namespace),
        )

    def create_object(self, kind: str, namespace: str, name: str, obj: JSON) -> JSON:
        """Store a new object; returns it with ``metadata.resourceVersion`` set."""
        _codec.check_address(kind, namespace, name)
        body = _codec.strip_rv(obj)
        doc = _codec.dump_json(body)
        with self._write(("objects",), relaxed=True) as conn:
            rv = self._insert(conn, kind, namespace, name, body, doc)
        return _codec.with_rv(body, rv)

    def _insert(
        self, conn: sqlite3.Connection, kind: str, namespace: str, name: str, body: JSON, doc: bytes
    ) -> int:
        """Insert one new object (``doc`` is ``body`` encoded) in the open write transaction, with
        its revision bump and change-log entry; return its resourceVersion."""
        if conn.execute(
            "SELECT 1 FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        ).fetchone():
            raise AlreadyExists(f"{kind} {namespace}/{name} already exists")
        rv = self._next_rv(conn)
        conn.execute(
            "INSERT INTO objects (kind, namespace, name, uid, rv, doc) VALUES (?,?,?,?,?,?)",
            (kind, namespace, name, _codec.object_uid(body), rv, doc),
        )
        self._bump(conn, kind, namespace)
        self._log_change(conn, rv, kind, namespace, name, "ADDED", body)
        return rv

    def create_objects(self, kind: str, items: Sequence[tuple[str, str, JSON]]) -> int:
        """Create many objects in one transaction: all of them, or none (AlreadyExists)."""
        rows = []
        for namespace, name, obj in items:
            _codec.check_address(kind, namespace, name)
            body = _codec.strip_rv(obj)
            rows.append((namespace, name, body, _codec.dump_json(body)))
        with self._write(("objects",), relaxed=True) as conn:
            for namespace, name, body, doc in rows:
                self._insert(conn, kind, namespace, name, body, doc)
        return len(rows)

    def get_object(self, kind: str, namespace: str, name: str) -> JSON:
        """Return the object. Raises NotFound."""
        _codec.check_address(kind, namespace, name)
        try:
            row = (
                self._conn()
                .execute(
                    "SELECT rv, doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                    (kind, namespace, name),
                )
                .fetchone()
            )
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        if row is None:
            raise NotFound(f"{kind} {namespace}/{name} not found")
        return _codec.with_rv(_codec.load_json(row[1], f"{kind} {namespace}/{name}"), row[0])

    def list_objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """All objects of ``kind``, ordered by (namespace, name)."""
        _codec.check_address(kind, namespace or "", "-")
        sql = "SELECT namespace, name, rv, doc FROM objects WHERE kind = ?"
        args: tuple[str, ...] = (kind,)
        if namespace is not None:
            sql += " AND namespace = ?"
            args = (kind, namespace)
        try:
            rows = self._conn().execute(sql + " ORDER BY namespace, name", args).fetchall()
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        return [
            _codec.with_rv(_codec.load_json(doc, f"{kind} {ns}/{n}"), rv) for ns, n, rv, doc in rows
        ]

    def list_objects_page(
        self,
        kind: str,
        namespace: str | None,
        limit: int,
        after: tuple[str, str] | None = None,
    ) -> ObjectPage:
        """At most ``limit`` objects after ``after``: one range scan of the primary key."""
        _codec.check_address(kind, namespace or "", "-")
        limit = max(1, limit)
        sql = "SELECT namespace, name, rv, doc FROM objects WHERE kind = ?"
        args: list[Any] = [kind]
        if namespace is not None:
            sql += " AND namespace = ?"
            args.append(namespace)
        if after is not None:
            # A row value: SQLite compares it lexicographically and seeks the primary key.
            sql += " AND (namespace, name) > (?, ?)"
            args += [after[0], after[1]]
        sql += " ORDER BY namespace, name LIMIT ?"
        args.append(limit + 1)
        try:
            rows = self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        more = len(rows) > limit
        rows = rows[:limit]
        items = tuple(
            _codec.with_rv(_codec.load_json(doc, f"{kind} {ns}/{n}"), rv) for ns, n, rv, doc in rows
        )
        return ObjectPage(items, (rows[-1][0], rows[-1][1]) if more else None)

    def object_revisions(self, keys: Sequence[tuple[str, str]]) -> tuple[int, ...]:
        """Each (kind, namespace)'s revision (0 if never written), read in one statement."""
        if not keys:
            return ()
        sql = " UNION ALL ".join(
            ["SELECT ?, (SELECT rev FROM revisions WHERE kind = ? AND namespace = ?)"] * len(keys)
        )
        args: list[Any] = []
        for i, (kind, namespace) in enumerate(keys):
            args += [i, kind, namespace]
        try:
            rows = self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _map_error(e, self.path) from e
        out = [0] * len(keys)
        for i, rev in rows:
            out[int(i)] = int(rev or 0)
        return tuple(out)

    def update_object(
        self,
        kind: str,
        namespace: str,
        name: str,
        obj: JSON,
        *,
        resource_version: str | None = None,
        durable: bool = False,
    ) -> JSON:
        """Replace an object; when ``resource_version`` is given it must match (else Conflict).
        With ``synchronous="normal"`` it is acknowledged before the device flush unless
        ``durable``."""
        _codec.check_address(kind, namespace, name)
        body = _codec.strip_rv(obj)
        doc = _codec.dump_json(body)
        with self._write(("objects",), relaxed=not durable) as conn:
            row = conn.execute(
                "SELECT rv, doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"{kind} {namespace}/{name} not found")
            if resource_version is not None and str(row[0]) != resource_version:
                raise Conflict(
                    f"{kind} {namespace}/{name} is at resourceVersion {row[0]},"
                    f" not {resource_version}"
                )
            rv = self._next_rv(conn)
            conn.execute(
                "UPDATE objects SET uid = ?, rv = ?, doc = ?"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                (_codec.object_uid(body), rv, doc, kind, namespace, name),
            )
            self._bump(conn, kind, namespace)
            # The replaced state rides along (Change.prev): a selector watch resumed from the
            # log tells an object leaving the selector from one that never matched.
            prev = row[1].encode() if isinstance(row[1], str) else bytes(row[1])
            self._log_change(conn, rv, kind, namespace, name, "MODIFIED", body, prev)
        return _codec.with_rv(body, rv)

    def delete_object(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        event: Mapping[str, Any] | None = None,
        resource_version: str | None = None,
    ) -> tuple[JSON, int | None]:
        """Delete an object (uid/version-conditioned), appending ``event`` in the same
        transaction."""
        _codec.check_address(kind, namespace, name)
        event_doc = _codec.dump_json(event) if event is not None else None
        with self._write(_OBJECTS_EVENTS if event_doc is not None else ("objects",)) as conn:
            row = conn.execute(
                "SELECT uid, rv, doc FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"{kind} {namespace}/{name} not found")
            if uid is not None and row[0] != uid:
                raise Conflict(f"{kind} {namespace}/{name} has uid {row[0]!r}, not {uid!r}")
            if resource_version is not None and str(row[1]) != resource_version:
                raise Conflict(
                    f"{kind} {namespace}/{name} is at resourceVersion {row[1]},"
                    f" not {resource_version}"
                )
            deleted = _codec.with_rv(_codec.load_json(row[2], f"{kind} {namespace}/{name}"), row[1])
            conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            )
            self._bump(conn, kind, namespace)
            # A delete takes a resourceVersion of its own, as in etcd: the DELETED change
            # carries the last state stamped with it (the returned object keeps its own).
            gone = _codec.load_json(row[2], f"{kind} {namespace}/{name}")
            self._log_change(conn, self._next_rv(conn), kind, namespace, name, "DELETED", gone)
            seq = self._insert_event(conn, event_doc) if event_doc is not None else None
        return deleted, seq

    # --- object change log ----------------------------------------------------------------------
    @staticmethod
    def _log_change(
        conn: sqlite3.Connection,
        rv: int,
        kind: str,
        namespace: str,
        name: str,
        change: str,
        body: JSON,
        prev: bytes | None = None,
    ) -> None:
        doc = _codec.dump_change(change, body, rv, prev)
        conn.execute(
            "INSERT INTO changes (rv, kind, namespace, name, time, doc) VALUES (?,?,?,?,?,?)",
            (rv, kind, namespace, name, time.time(), doc),
        )

    def read_changes(self, since: int, limit: int = 1000, kind: str | None = None) -> ChangePage:
        """Object changes with resourceVersion > ``since`` (of ``kind``, or all), oldest first."""
        n = max(1, limit)
        with self._read() as conn:
            floor, last = conn.execute(
                "SELECT (SELECT v FROM meta WHERE k = 'changes_floor'),"
                " (SELECT v FROM meta WHERE k = 'rv')"
            ).fetchone()
            rows = conn.execute(
                "SELECT rv, kind, namespace, name, doc FROM changes WHERE rv > ?"
                " ORDER BY rv LIMIT ?",
                (since, n),
            ).fetchall()
        return _codec.change_page(rows, since, n, kind, int(floor or 0), int(last or 0))

    def trim_changes(self, before_time: float) -> int:
        """Drop changes logged before ``before_time`` (POSIX s); raise the floor past them."""
        with self._write(()) as conn:
            row = conn.execute("SELECT max(rv) FROM changes WHERE time < ?", (before_time,))
            (top,) = row.fetchone()
            if top is None:
                return 0
            n = conn.execute("DELETE FROM changes WHERE rv <= ?", (top,)).rowcount
            conn.execute("UPDATE meta SET v = max(v, ?) WHERE k = 'changes_floor'", (int(top),))
        return max(0, n)

    # --- invalidation events ------------------------------------------------------------------
    @staticmethod
    def _insert_event(conn: sqlite3.Connection, doc: bytes) -> int:
        (seq,) = conn.execute(
            "INSERT INTO events (time, doc) VALUES (?, ?) RETURNING seq", (time.time(), doc)
        ).fetchone()
        return int(seq)

    def append_event(self, data: Mapping[str, Any]) -> int:
        """Append an event; return its seq (store-wide, strictly increasing)."""
        doc = _codec.dump_json(data)
        with self._write(("events",)) as conn:
            seq = self._insert_event(conn, doc)
        return seq

    def append_events(self, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append many events in one transaction; return their seqs."""
        docs = [_codec.dump_json(data) for data in items]
        with self._write(("events",)) as conn:
            seqs = [self._insert_event(conn, doc) for doc in docs]
        return seqs

    def read_events(self, after: int, limit: int = 1000) -> EventPage:
        """Events with seq > ``after``, oldest first, at most ``limit``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, doc FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, max(0, limit)),
            ).fetchall()
            oldest, last, epoch = conn.execute(
                "SELECT (SELECT coalesce(min(seq), 0) FROM events),"
                " (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'),"
                " (SELECT v FROM meta WHERE k = 'epoch')"
            ).fetchone()
        return EventPage(
            events=tuple(_codec.make_event(s, d) for s, d in rows),
            oldest_seq=int(oldest),
            last_seq=int(last),
            epoch=f"{epoch:016x}" if isinstance(epoch, int) and last else "",
        )

    def wait_events(self, after: int, timeout: float) -> EventPage:
        """Like read_events, but block up to ``timeout`` s until at least one event exists.

        Same-process appends wake the waiter at once; other processes' within POLL_INTERVAL.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        # Subscribed before the first read: an append landing after it wakes the wait.
        waiter = self._signal.subscribe(("events",))
        try:
            while True:
                page = self.read_events(after)
                remaining = deadline - time.monotonic()
                if page.events or remaining <= 0:
                    return page
                waiter.event.wait(min(POLL_INTERVAL, remaining))
                waiter.event.clear()
        finally:
            self._signal.unsubscribe(waiter)

    def trim_events(self, before_time: float) -> int:
        """Drop events appended before ``before_time``, always keeping the newest one."""
        with self._write(()) as conn:
            cur = conn.execute(
                "DELETE FROM events WHERE time < ? AND seq < (SELECT max(seq) FROM events)",
                (before_time,),
            )
            n = cur.rowcount
        return max(0, n)

    # --- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``holder``; False while another holder's lease is live."""
        with self._write(()) as conn:
            now = time.time()
            row = conn.execute("SELECT holder, expires FROM leases WHERE name = ?", (name,))
            cur = row.fetchone()
            if cur is not None and cur[0] != holder and cur[1] > now:
                return False
            conn.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires = excluded.expires",
                (name, holder, now + ttl),
            )
        return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""
        with self._write(()) as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    # --- change notification ------------------------------------------------------------------
    def watch(
        self,
        callback: Callable[[ChangeKind], None],
        kinds: Iterable[ChangeKind] | None = None,
    ) -> _Watch:
        """Call ``callback("keys" | "events" | "objects")`` from a daemon thread after a change
        of one of ``kinds`` (default: all three).

        Changes committed by this process are seen at once; by other processes within
        POLL_INTERVAL (PRAGMA data_version + the counters in the file).
        """
        if self._closed:
            raise StoreUnavailable("store is closed")
        w = _Watch(self, callback, kinds)
        self._watches.append(w)
        return w
