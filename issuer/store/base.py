"""The storage contract: one narrow protocol, several backends (STYLE.md §7, after dex storage.go).

Everything the issuer persists goes through :class:`Store`:

- **signing keys** — the whole key set is one versioned document, replaced by compare-and-swap
  (:meth:`Store.load_keys` / :meth:`Store.cas_keys`). With many replicas exactly one rotation wins;
  the losers get :class:`Conflict` and re-read (docs/CONTRACTS.md "Keys", invariant 3).
- **objects** — Kubernetes-shaped JSON documents addressed by (kind, namespace, name). The store
  owns ``metadata.resourceVersion`` (a store-wide, strictly increasing integer rendered as a
  string; a value the caller puts there is ignored and replaced); the caller owns
  ``metadata.uid`` (read from the object; "" when absent) and everything else. Updates and
  deletes may be conditioned on a resourceVersion or a uid. Objects are copied in and out: the
  caller's dict is never mutated. ``kind`` and ``namespace`` may not contain ':' and no part may
  contain NUL (:class:`InvalidAddress`, a ValueError, on every backend); names may contain ':'
  (``system:auth-delegator``).
- **object changes** — every create, update and delete also appends ``ADDED``/``MODIFIED``/
  ``DELETED`` with the object to a change log, in the same atomic write, keyed by the
  resourceVersion it took (a delete takes one too). :meth:`Store.read_changes` serves Kubernetes
  watches and their resumption; :meth:`Store.trim_changes` drops old entries and raises the
  floor below which a resume is "too old" (410 Gone).
- **invalidation events** — an append-only log with store-wide, strictly increasing sequence numbers
  (``seq`` >= 1), appended on its own or atomically with an object delete.
- **leases** — named, expiring locks for "only one replica does this" chores.
- **revisions** — per (kind, namespace), a counter every create, update and delete of such an
  object bumps in the same atomic write (:meth:`Store.object_revisions`): one cheap read tells a
  cache whether anything of a kind changed (the RBAC index, :mod:`issuer.rbac_index`).
- **change notification** — :meth:`Store.watch` calls back when the key set changes or an event is
  appended, on every replica (Redis pub/sub; SQLite polls its version counter).

Every method is synchronous and thread-safe; the Starlette app calls them from its thread pool.
Failures are typed: :class:`NotFound`, :class:`AlreadyExists`, :class:`Conflict` for expected
outcomes, :class:`StoreUnavailable` when the backend cannot be reached (TokenReview then fails
closed), :class:`StoreCorrupt` when stored bytes cannot be read back. A failed write changes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

KeyState = Literal["next", "active", "retired", "revoked"]

JSON = dict[str, Any]


class StoreError(Exception):
    """Base class of store errors."""


class NotFound(StoreError):
    """The addressed object (or lease, or event range) does not exist."""


class AlreadyExists(StoreError):
    """Create of an object whose (kind, namespace, name) is taken."""


class Conflict(StoreError):
    """A compare-and-swap precondition (version, resourceVersion or uid) did not hold."""


class StoreUnavailable(StoreError):
    """The backend could not be reached or did not answer in time."""


class StoreOutcomeUnknown(StoreUnavailable):
    """A write was sent but its answer never came (timeout, connection lost after sending).

    It may or may not have been applied: callers must not say "nothing was changed". The HTTP
    layer answers 504 Timeout, as kube-apiserver does when storage does not answer in time.
    """


class InvalidAddress(StoreError, ValueError):
    """A (kind, namespace, name) no backend can store: a ':' in a kind or namespace, NUL anywhere,
    an empty kind or name. Nothing can exist there; the HTTP layer answers 400 (issue 9 item 10:
    such URLs gave 500)."""


class StoreCorrupt(StoreError):
    """Stored data could not be decoded: refuse to guess, never overwrite it."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One signing key as persisted. ``private_enc`` is AES-256-GCM ciphertext (AAD = kid).

    Times are POSIX seconds. ``activate_at`` is when a ``next`` key may start signing (or when an
    ``active`` one did); ``retired_at``/``revoked_at`` when it stopped; ``remove_at`` when it may
    leave the store (and the JWKS): after the last token it signed has expired, plus leeway.
    ``max_token_lifetime`` is the longest token lifetime in force while it signed.
    """

    kid: str
    alg: str
    state: KeyState
    public_jwk: Mapping[str, Any]
    private_enc: bytes
    created_at: float
    activate_at: float | None = None
    retired_at: float | None = None
    revoked_at: float | None = None
    remove_at: float | None = None
    max_token_lifetime: int = 0


@dataclass(frozen=True, slots=True)
class KeySetState:
    """The persisted key set and its version (0 = nothing stored yet)."""

    version: int
    keys: tuple[StoredKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One invalidation event. ``data`` is a small JSON object (type, kind, namespace, name, uid,
    kid, jti, time ...) defined by the API layer; the store only orders and keeps it."""

    seq: int
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events after a sequence number. ``oldest_seq`` is the first seq still kept (0 if none);
    a reader whose ``after`` < ``oldest_seq - 1`` has missed trimmed events and must resync.
    ``last_seq`` is the newest seq ever assigned (0 if none).

    ``epoch`` names the event history the seqs belong to: a random id made with the store (SQLite:
    a ``meta`` row; Redis: the ``epoch`` key, made again when it is missing, as after a flush).
    Seqs compare only within one epoch: a new file, or a flushed or replaced Redis, has a new
    epoch, and a reader of the old one must resync (issue 9, item 7). A store restored to an
    older copy of itself (a failover to a lagging replica) keeps its epoch: the stream detects
    that by the event at the reader's seq, which is another event or none. "" while no seq was
    ever assigned (nothing to compare yet), or from a store that has no epochs."""

    events: tuple[Event, ...]
    oldest_seq: int
    last_seq: int
    epoch: str = ""


ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class Change:
    """One object change: ``object`` is its state at ``rv`` (for DELETED: the last state, with
    ``metadata.resourceVersion`` = the delete's own rv, as a Kubernetes watch shows it).

    ``prev`` is the object's state just before the change, as kube's watch cache keeps
    ``PrevObject`` beside each event (k8s.io/apiserver pkg/storage/cacher/watch_cache.go
    processEvent), so that a selector watch, live or resumed, can tell an object entering the
    selector from one leaving it: None for ADDED; for MODIFIED the replaced state (without
    ``metadata.resourceVersion``), None only for entries logged before the log kept it; for
    DELETED the last state (``object`` itself).
    """

    rv: int
    type: ChangeType
    kind: str
    namespace: str
    name: str
    object: JSON
    prev: JSON | None = None


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes after a resourceVersion, oldest first.

    ``floor``: changes with rv <= floor are no longer kept, so a reader at ``since < floor`` has
    missed some (Kubernetes: "too old resource version"). ``last_rv``: the resourceVersion counter
    when read. ``next_rv``: pass it as ``since`` to read on (past entries of other kinds too).
    """

    changes: tuple[Change, ...]
    floor: int
    last_rv: int
    next_rv: int


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """One page of :meth:`Store.list_objects_page`: objects in (namespace, name) order, and the
    (namespace, name) to pass as ``after`` for the next page (None: this was the last page)."""

    items: tuple[JSON, ...]
    next_after: tuple[str, str] | None = None


class Subscription(Protocol):
    """Handle returned by :meth:`Store.watch`."""

    def close(self) -> None:
        """Stop delivering callbacks (idempotent)."""


ChangeKind = Literal["keys", "events", "objects"]


@runtime_checkable
class Store(Protocol):
    """The storage contract. See the module docstring for semantics."""

    #: "sqlite" | "redis"
    backend: str

    # --- health -------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""

    def close(self) -> None:
        """Release connections and stop watcher threads (idempotent)."""

    # --- signing keys -------------------------------------------------------------------------
    def load_keys(self) -> KeySetState:
        """The current key set (version 0 and no keys on a new store)."""

    def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
        """Replace the key set iff its version is ``expected_version``; return the new version.

        Raises Conflict otherwise. Durable before it returns (the issuer never signs with a key that
        is not durably stored; on Redis that is as durable as the server's persistence settings).
        Notifies watchers with ``"keys"``.
        """

    # --- objects ------------------------------------------------------------------------------
    def create_object(self, kind: str, namespace: str, name: str, obj: JSON) -> JSON:
        """Store a new object; returns it with ``metadata.resourceVersion`` set.

        ``namespace`` is "" for cluster-scoped kinds. Raises AlreadyExists.
        """

    def create_objects(self, kind: str, items: Sequence[tuple[str, str, JSON]]) -> int:
        """Create many objects of ``kind`` — ``(namespace, name, obj)`` each — as
        :meth:`create_object` would, in few round trips (imports, benchmark seeding); return how
        many. Raises AlreadyExists if one is taken: SQLite then stores none of them; Redis stores
        the others (each object's write is atomic there, the batch is not)."""

    def get_object(self, kind: str, namespace: str, name: str) -> JSON:
        """Return the object. Raises NotFound."""

    def list_objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """All objects of ``kind`` (in ``namespace``, or in every namespace when None), ordered by
        (namespace, name)."""

    def list_objects_page(
        self,
        kind: str,
        namespace: str | None,
        limit: int,
        after: tuple[str, str] | None = None,
    ) -> ObjectPage:
        """At most ``limit`` (>= 1) objects of ``kind`` (in ``namespace``; every namespace when
        None) whose (namespace, name) sorts after ``after``, in that order. The cost depends on
        ``limit``, not on how many objects exist (an index range read). Pages are not one
        snapshot: objects written between two pages are seen if they sort after ``after``."""

    def object_revisions(self, keys: Sequence[tuple[str, str]]) -> tuple[int, ...]:
        """For each (kind, namespace) in ``keys`` its revision: a counter bumped by every create,
        update and delete of an object of that kind in that namespace, in the same atomic write
        (0 if none ever happened). One round trip; equal values mean nothing of that kind and
        namespace changed in between."""

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

        The match is exact string equality with the stored value ("" or "007" never match).

        Returns the stored object with its new resourceVersion. Raises NotFound.

        ``durable``: never acknowledge this update before it is on the device, even where the
        backend was told it may (SQLite ``?synchronous=normal``): for updates that take access
        away (an RBAC rule removed), which a power loss must not undo.
        """

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
        """Delete an object; if ``uid`` / ``resource_version`` are given they must match (else
        Conflict; the version by exact string equality, as for updates).

        When ``event`` is given it is appended to the invalidation log in the same atomic write.
        Returns (the deleted object, the event's seq or None). Raises NotFound.
        """

    def read_changes(self, since: int, limit: int = 1000, kind: str | None = None) -> ChangePage:
        """Object changes with rv > ``since``, oldest first: ``limit`` log entries are examined
        and those of ``kind`` (every kind when None) returned; continue from ``next_rv``."""

    def trim_changes(self, before_time: float) -> int:
        """Drop change-log entries written before ``before_time`` (POSIX s, the backend's clock)
        and raise ``floor`` to the newest dropped rv. Returns how many were dropped."""

    # --- invalidation events ------------------------------------------------------------------
    def append_event(self, data: Mapping[str, Any]) -> int:
        """Append an event; return its seq (store-wide, strictly increasing). Notifies watchers."""

    def append_events(self, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append many events, in order, in few round trips; return their seqs. Notifies
        watchers."""

    def read_events(self, after: int, limit: int = 1000) -> EventPage:
        """Events with seq > ``after``, oldest first, at most ``limit``."""

    def wait_events(self, after: int, timeout: float) -> EventPage:
        """Like read_events (default limit), but block up to ``timeout`` seconds until at least
        one event after ``after`` exists; on timeout returns the (empty) page."""

    def trim_events(self, before_time: float) -> int:
        """Drop events appended before ``before_time`` (POSIX s), keeping the newest one always.

        The append time is taken from the backend's clock (Redis: the server's ``TIME``, the same
        for every replica). Seqs are never reused after a trim.

        Returns how many were dropped."""

    # --- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl`` seconds; False if another
        holder has it and it has not expired."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""

    # --- change notification ------------------------------------------------------------------
    def watch(
        self,
        callback: Callable[[ChangeKind], None],
        kinds: Iterable[ChangeKind] | None = None,
    ) -> Subscription:
        """Call ``callback(kind)`` (from a background thread) after keys change or events are
        appended (and ``"objects"`` after object writes), whichever replica wrote them; after a lost
        connection comes back, once with every kind. Best effort and coalescing: a callback means
        "re-read", not "exactly this changed". ``kinds`` limits the callbacks (and the work done
        for this subscriber) to those kinds; default all three."""
