"""``?watch=true`` on every collection: Kubernetes watch streams served from the store's change log.

One :class:`WatchHub` per process (per event loop) follows the store's object change log
(:meth:`issuer.store.Store.read_changes`) from a single cursor, woken by the store's change
notification (:meth:`issuer.store.Store.watch`), and fans each change out to the matching
watchers' queues, encoded once. A thousand watchers cost one store read per change.

A watch stream is a chunked ``application/json`` body of newline-separated watch events
(kube: apimachinery pkg/apis/meta/v1/watch.go ``WatchEvent``)::

    {"type":"ADDED","object":{...}}
    {"type":"MODIFIED","object":{...}}
    {"type":"DELETED","object":{...}}            last state, resourceVersion of the delete
    {"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"42"}}}
    {"type":"ERROR","object":{"kind":"Status",...,"code":410,"reason":"Expired",...}}

The ``resourceVersion`` parameter says where to start (kube: "Resource versions" in the API
concepts documentation, https://kubernetes.io/docs/reference/using-api/api-concepts/):

- unset or ``"0"``: synthetic ``ADDED`` events for every object that exists now, then changes;
- ``N``: every change after ``N`` (a client resuming a list or an earlier watch). When the log no
  longer reaches back to ``N`` the stream carries one ``ERROR`` event with a 410 ``Expired``
  Status, ``too old resource version: N (F)`` where ``F`` is the oldest version one can resume from,
  and ends, as kube-apiserver's watch cache does (storage/cacher/watch_cache.go); the client
  re-lists.

``allowWatchBookmarks=true`` adds a ``BOOKMARK`` every :attr:`WatchSettings.bookmark_interval`
seconds carrying the newest resourceVersion the stream has passed; ``sendInitialEvents=true``
(with ``resourceVersionMatch=NotOlderThan``) ends the initial ADDED events with a BOOKMARK
annotated ``k8s.io/initial-events-end``. ``timeoutSeconds`` ends the stream after that long
(default :attr:`WatchSettings.default_timeout`). ``labelSelector`` / ``fieldSelector`` filter
it as they filter lists (:func:`issuer.api.listing.selector_predicate`; ``kubectl get pod x
-w`` is ``metadata.name=x``), by kube's watch-cache rule (:func:`selector_event`): an object
entering the selectors is ADDED, one staying MODIFIED, one leaving DELETED (its previous state at
the change's version), decided on each change's previous state, which the change log keeps
(:attr:`issuer.store.Change.prev`), so a stream resumed from a resourceVersion reports exactly
what a live one does. A client that asks for Tables gets one-row Tables
(:func:`issuer.api.tables.event_encoder`). With no watchers the hub stops reading the store.

The deprecated ``/api/v1/watch/...`` and ``/apis/GROUP/VERSION/watch/...`` paths (kube-apiserver
still serves them, k8s.io/apiserver pkg/endpoints/installer.go) are routed here too, by
:mod:`issuer.api` and :mod:`issuer.api.rbac`: the collection's ``?watch=true``, and for
``.../watch/.../{name}`` a watch with ``fieldSelector metadata.name={name}``
(k8s.io/apiserver pkg/endpoints/handlers/get.go ListResource); they are authorized as verb
``watch`` (requestinfo.go: the ``watch`` path prefix is the verb).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from issuer.api import tables
from issuer.api.errors import FieldError, bad_request, invalid
from issuer.http.status import StatusError, status_body
from issuer.store import JSON, Change, ChangePage, Store, StoreError, StoreUnavailable

__all__ = [
    "Lister",
    "WatchHub",
    "WatchSettings",
    "Watcher",
    "hub_for",
    "is_watch",
    "selector_event",
    "watch_response",
]

log = logging.getLogger("sa_issuer.api")

#: Largest backlog one watcher may build before it is ended (kube ends watchers whose buffer
#: fills up, the "slow watcher" of storage/cacher; the client re-watches from its last version).
MAX_QUEUE: Final = 10_000
#: Changes read per store call.
PAGE: Final = 1000


@dataclass(slots=True)
class WatchSettings:
    """Knobs of the watch streams (tests shorten them)."""

    #: Seconds between BOOKMARK events (kube sends them about once a minute).
    bookmark_interval: float = 60.0
    #: Stream length without ``timeoutSeconds`` (kube: a random 30-60 min; one value here).
    default_timeout: float = 1800.0
    #: The hub re-reads the log at least this often even without a change notification.
    poll_interval: float = 1.0
    #: Concurrent watch streams per process; more are refused with 429.
    max_watchers: int = 10_000


#: Whether an object belongs to a watch (its label and field selectors); None: every object.
Predicate = Callable[[JSON], bool]
#: One queued change and its JSON line (encoded once by the hub for every watcher).
Item = tuple[Change, bytes]


@dataclass(eq=False, slots=True)
class Watcher:
    """One watch stream's subscription: what it wants and its queue of changes."""

    kind: str
    namespace: str | None
    #: The hub's cursor when the watcher subscribed: queued changes all have rv > start.
    start: int = 0
    queue: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    #: Set (an ERROR line) when the hub ends the stream because the log was trimmed past it.
    expired: bytes = b""

    def wants(self, change: Change) -> bool:
        """Whether ``change`` is in this stream's namespace."""
        return self.namespace is None or change.namespace == self.namespace


def encode_event(event_type: str, obj: Mapping[str, Any]) -> bytes:
    """One watch event line."""
    return b'{"type":"' + event_type.encode() + b'","object":' + orjson.dumps(obj) + b"}\n"


class WatchHub:
    """Follows the store's change log from one cursor and fans changes out to watchers."""

    def __init__(self, store: Store, settings: WatchSettings) -> None:
        self.store = store
        self.settings = settings
        self.cursor = 0
        self._by_kind: dict[str, set[Watcher]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._subscription: Any = None
        self._idle = False

    @property
    def watchers(self) -> int:
        """How many watchers are subscribed."""
        return sum(len(s) for s in self._by_kind.values())

    async def start(self) -> None:
        """Start following (idempotent); returns once the cursor is known."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watch-hub")
        await self._ready.wait()

    def _notified(self, kind: str) -> None:
        # With nobody watching there is nothing to fan out: don't wake the event loop for every
        # write (the loop would only find no watchers). A watcher subscribing meanwhile is caught
        # up by wake_up(), and the next write or poll_interval wakes the hub.
        if kind == "objects" and self._by_kind:
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while not self._ready.is_set():
            try:
                self._subscription = await anyio.to_thread.run_sync(
                    functools.partial(self.store.watch, self._notified, kinds=("objects",))
                )
                page = await anyio.to_thread.run_sync(self.store.read_changes, 0, 1)
                self.cursor = page.last_rv
                self._ready.set()
            except StoreError:
                log.warning("watch hub: store unavailable, retrying")
                await asyncio.sleep(self.settings.poll_interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()
            if not self.watchers:
                self._idle = True  # nobody to tell: no store reads until someone watches
                continue
            try:
                await self._catch_up()
            except StoreError:
                log.warning("watch hub: store unavailable while reading changes")

    async def wake_up(self) -> None:
        """Before a subscription: after an idle spell (no watchers, no reads), move the cursor to
        the store's newest resourceVersion; nobody was owed the changes skipped."""
        if not self._idle:
            return
        page = await anyio.to_thread.run_sync(self.store.read_changes, self.cursor, 1)
        if not self.watchers and self._idle:  # nobody subscribed while we read
            self.cursor = max(self.cursor, page.last_rv)
            self._idle = False

    async def _catch_up(self) -> None:
        while True:
            page: ChangePage = await anyio.to_thread.run_sync(
                self.store.read_changes, self.cursor, PAGE
            )
            if page.floor > self.cursor:
                # The log was trimmed past us: every watcher has missed changes (410 for all).
                self._expire_all(self.cursor, page.floor)
                self.cursor = page.last_rv
                return
            for change in page.changes:
                self._dispatch(change)
            advanced = page.next_rv > self.cursor
            self.cursor = max(self.cursor, page.next_rv)
            if (not page.changes and not advanced) or page.next_rv >= page.last_rv:
                return

    def _dispatch(self, change: Change) -> None:
        subs = self._by_kind.get(change.kind)
        if not subs:
            return
        item = (change, encode_event(change.type, change.object))
        for w in list(subs):
            if w.wants(change):
                self._put(w, item)

    def _put(self, w: Watcher, item: Item | None) -> None:
        if w.queue.qsize() >= MAX_QUEUE:
            log.warning("watch of %s ended: more than %d changes behind", w.kind, MAX_QUEUE)
            self.unsubscribe(w)
            w.queue.put_nowait(None)
            return
        w.queue.put_nowait(item)

    def _expire_all(self, cursor: int, floor: int) -> None:
        line = _error_line(410, "Expired", _too_old(cursor, floor))
        for subs in list(self._by_kind.values()):
            for w in list(subs):
                w.expired = line
                w.queue.put_nowait(None)
                self.unsubscribe(w)

    async def close(self) -> None:
        """End every stream (clients re-watch, from their last version, elsewhere) and stop
        following the store (idempotent)."""
        for subs in list(self._by_kind.values()):
            for w in list(subs):
                w.queue.put_nowait(None)
                self.unsubscribe(w)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._subscription is not None:
            await anyio.to_thread.run_sync(self._subscription.close)
            self._subscription = None

    def subscribe(self, kind: str, namespace: str | None) -> Watcher:
        """A new watcher; it receives every change in ``namespace`` after the current cursor."""
        w = Watcher(kind, namespace, start=self.cursor)
        self._by_kind.setdefault(kind, set()).add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        """Stop delivering to ``w`` (idempotent)."""
        subs = self._by_kind.get(w.kind)
        if subs is not None:
            subs.discard(w)
            if not subs:
                del self._by_kind[w.kind]  # empty means "nobody watches" to _notified


def hub_for(request: Request, settings: WatchSettings | None = None) -> WatchHub:
    """The process's hub (made on first use, in the serving event loop)."""
    state = request.app.state
    hub: WatchHub | None = getattr(state, "watch_hub", None)
    if hub is None:
        ctx = state.ctx
        chosen: WatchSettings = (
            settings or getattr(state, "watch_settings", None) or WatchSettings()
        )
        hub = WatchHub(ctx.store, chosen)
        state.watch_hub = hub
    return hub


def is_watch(request: Request) -> bool:
    """``?watch=true`` (or ``1``), as :func:`issuer.authz.request_info` reads it."""
    return request.query_params.get("watch", "").lower() in ("true", "1")


def _bookmark(kind: str, api_version: str, rv: int, *, initial_events_end: bool = False) -> bytes:
    """A BOOKMARK event: only kind, apiVersion and the resourceVersion (kube's bookmark object)."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return encode_event("BOOKMARK", {"kind": kind, "apiVersion": api_version, "metadata": meta})


def _too_old(rv: int, floor: int) -> str:
    # kube: storage/cacher/watch_cache.go getAllEventsSinceLocked, "too old resource version:
    # %d (%d)" with oldest-1, the oldest cached event's version minus one: our floor.
    return f"too old resource version: {rv} ({floor})"


def _error_line(code: int, reason: str, message: str) -> bytes:
    status = json.loads(status_body(code, reason, message))
    return encode_event("ERROR", status)


def _params(request: Request, settings: WatchSettings) -> tuple[int | None, float, bool]:
    q = request.query_params
    raw_rv = q.get("resourceVersion", "")
    rv: int | None = None
    if raw_rv not in ("", "0"):
        try:
            rv = int(raw_rv)
            if rv < 0:
                raise ValueError
        except ValueError:
            # kube: storage errors "invalid resource version"
            raise bad_request(f"invalid resource version: {raw_rv!r}") from None
    timeout = settings.default_timeout
    raw_timeout = q.get("timeoutSeconds")
    if raw_timeout:
        try:
            timeout = float(int(raw_timeout))
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {raw_timeout!r}") from None
        if timeout <= 0:
            timeout = settings.default_timeout
    bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
    return rv, timeout, bookmarks


def _send_initial_events(request: Request, bookmarks: bool) -> bool:
    """``sendInitialEvents=true`` (kube's streaming list, KEP-3157): the current state as ADDED
    events, then a BOOKMARK annotated ``k8s.io/initial-events-end``. As kube, it needs
    ``resourceVersionMatch=NotOlderThan`` and bookmarks (apimachinery internalversion
    validation ValidateListOptions)."""
    q = request.query_params
    if q.get("sendInitialEvents", "").lower() not in ("true", "1"):
        return False
    errs = []
    if q.get("resourceVersionMatch") != "NotOlderThan":
        errs.append(
            FieldError(
                "Forbidden",
                "resourceVersionMatch",
                detail="sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        )
    if not bookmarks:
        errs.append(
            FieldError(
                "Forbidden",
                "allowWatchBookmarks",
                detail="sendInitialEvents requires setting allowWatchBookmarks to true",
            )
        )
    if errs:
        raise invalid("ListOptions", "", errs, group="meta.k8s.io")
    return True


#: Returns the current state: a ``<Kind>List`` document (``items``, ``metadata.resourceVersion``
#: the store's version read before the objects, :func:`issuer.api.listing.list_collection`).
Lister = Callable[[], Awaitable[JSON]]
Encoder = Callable[[str, JSON], bytes]


async def watch_response(
    request: Request,
    *,
    kind: str,
    api_version: str,
    namespace: str | None,
    lister: Lister,
    predicate: Predicate | None = None,
    encoder: Encoder | None = None,
) -> Response:
    """The watch stream for a collection of ``kind`` (``namespace`` None: every namespace).

    ``lister`` returns the list of the objects that exist now (for the synthetic ADDED events);
    ``predicate`` applies the request's selectors; ``encoder`` re-encodes events (Table
    output), else the hub's JSON lines are sent as they are.
    """
    state = request.app.state
    if encoder is None:
        # kubectl get -w asks for Tables (issuer.api.tables).
        encoder = tables.event_encoder(request, kind, lambda: tables.app_now(state))
    settings: WatchSettings = getattr(state, "watch_settings", None) or WatchSettings()
    rv, timeout, bookmarks = _params(request, settings)
    initial_end = _send_initial_events(request, bookmarks)
    if initial_end:
        rv = None  # "not older than rv": the current state is
    hub = hub_for(request, settings)
    if hub.watchers >= settings.max_watchers:
        raise StatusError(
            429,
            "TooManyRequests",
            "too many watch streams; try again later",
            {"retryAfterSeconds": 1},
            {"Retry-After": "1"},
        )
    try:
        await hub.start()
        await hub.wake_up()
    except StoreError as e:
        raise StatusError(503, "ServiceUnavailable", "the store is unavailable") from e
    watcher = hub.subscribe(kind, namespace)
    view = _View(predicate, encoder, after=rv or 0)
    try:
        first = await _first_events(hub, watcher, rv, lister, view)
    except BaseException:
        hub.unsubscribe(watcher)
        raise
    if initial_end:
        mark = max(watcher.start, view.after)  # the initial state's version
        first.lines.append(_bookmark(kind, api_version, mark, initial_events_end=True))
    body = _stream(hub, watcher, first, view, timeout, bookmarks, settings, kind, api_version)
    return StreamingResponse(body, media_type="application/json")


def selector_event(change: Change, predicate: Predicate) -> tuple[str, JSON] | None:
    """The event a watch with label/field selectors (``predicate``) shows for ``change``, or
    None: kube's rule (k8s.io/apiserver pkg/storage/cacher/cache_watcher.go,
    ``(*cacheWatcher).convertToWatchEvent``), decided on the object's new state and on its
    previous one (:attr:`issuer.store.Change.prev`, kube's ``PrevObject``)::

        curObjPasses := event.Type != watch.Deleted && c.filter(... event.Object)
        oldObjPasses := event.PrevObject != nil && c.filter(... event.PrevObject)
        new passes, old not   ADDED     the new state
        both pass             MODIFIED  the new state
        old passes, new not   DELETED   "the previous object content, but with the event's
                                         resource version"
        neither               nothing

    A MODIFIED entry logged before the change log kept previous states (at most the log's
    retention ago) is taken to have stayed on its side of the selector.
    """
    cur = change.type != "DELETED" and predicate(change.object)
    # Without a previous state (an old MODIFIED entry) the object is taken to have stayed.
    old = predicate(change.prev) if change.prev is not None else change.type == "MODIFIED" and cur
    if cur:
        return ("MODIFIED" if old else "ADDED"), change.object
    if not old:
        return None
    prev = change.prev if change.prev is not None else change.object
    meta = prev.get("metadata")
    stamped = {**(meta if isinstance(meta, dict) else {}), "resourceVersion": str(change.rv)}
    return "DELETED", {**prev, "metadata": stamped}


@dataclass(slots=True)
class _View:
    """What one stream shows: the changes after what its client already has, each converted by
    the selectors (:func:`selector_event`), alike for live changes and for changes replayed from
    the log on resume, since each change carries the object's previous state. Without selectors
    every change passes with its own type, as the hub encoded it."""

    predicate: Predicate | None
    encoder: Encoder | None
    #: Changes at or below this are already known to the client: its resourceVersion, or the
    #: store's version read before the initial state was listed.
    after: int = 0
    #: (ns, name) -> version of an object listed in the initial state at a version above
    #: ``after`` (written while the list was read): its changes up to there are in the list.
    listed: dict[tuple[str, str], int] = field(default_factory=dict)

    def line(self, change: Change, shared: bytes) -> bytes:
        """The bytes to send for ``change`` (b"" for nothing)."""
        if change.rv <= self.after:
            return b""
        if self.listed:
            key = (change.namespace, change.name)
            seen = self.listed.get(key)
            if seen is not None:
                if change.rv <= seen:
                    return b""  # already in the initial state
                del self.listed[key]  # later changes are all newer
        if self.predicate is None:
            if shared and self.encoder is None:
                return shared
            return self._encode(change.type, change.object)
        event = selector_event(change, self.predicate)
        return b"" if event is None else self._encode(*event)

    def initial(self, obj: JSON) -> bytes:
        """An ADDED line for an object of the initial state (b"" when the selectors say no)."""
        meta = obj.get("metadata") or {}
        try:
            rv = int(meta.get("resourceVersion", 0))
        except (TypeError, ValueError):
            rv = 0
        if rv > self.after:
            self.listed[(str(meta.get("namespace", "")), str(meta.get("name", "")))] = rv
        if self.predicate is not None and not self.predicate(obj):
            return b""
        return self._encode("ADDED", obj)

    def _encode(self, event_type: str, obj: JSON) -> bytes:
        if self.encoder is not None:
            return self.encoder(event_type, obj)
        return encode_event(event_type, obj)


@dataclass(slots=True)
class _First:
    """What a stream sends before live changes."""

    lines: list[bytes]
    expired: bool = False


async def _first_events(
    hub: WatchHub, w: Watcher, rv: int | None, lister: Lister, view: _View
) -> _First:
    if rv is None:
        # Synthetic ADDED for the current state. The list is read after subscribing, so queued
        # changes up to its version (read before the objects), and those to an object up to its
        # listed version, are already reflected: skipped.
        listed = await lister()
        try:
            view.after = int((listed.get("metadata") or {}).get("resourceVersion", 0))
        except (TypeError, ValueError):
            view.after = 0
        items: list[JSON] = listed.get("items") or []
        lines = []
        for obj in items:
            meta = obj.get("metadata") or {}
            if w.namespace is not None and str(meta.get("namespace", "")) != w.namespace:
                continue
            line = view.initial(obj)
            if line:
                lines.append(line)
        return _First(lines)
    # Resume: replay the log from rv up to where the live queue starts (rv > start: the queue
    # alone serves it, skipping what is not after rv).
    lines = []
    since = rv
    while since < w.start:
        try:
            page: ChangePage = await anyio.to_thread.run_sync(
                hub.store.read_changes, since, PAGE, w.kind
            )
        except StoreUnavailable as e:
            raise StatusError(503, "ServiceUnavailable", "the store is unavailable") from e
        if page.floor > since:
            return _First([_error_line(410, "Expired", _too_old(rv, page.floor))], True)
        for c in page.changes:
            if c.rv > w.start:
                break
            if w.wants(c):
                line = view.line(c, b"")
                if line:
                    lines.append(line)
        if page.next_rv <= since:
            break
        since = page.next_rv
    return _First(lines)


async def _stream(
    hub: WatchHub,
    w: Watcher,
    first: _First,
    view: _View,
    timeout: float,
    bookmarks: bool,
    settings: WatchSettings,
    kind: str,
    api_version: str,
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + settings.bookmark_interval
    last_rv = max(w.start, view.after)
    try:
        if first.lines:
            yield b"".join(first.lines)
        if first.expired:
            return
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            items: list[Item | None] = []
            with contextlib.suppress(TimeoutError):
                items.append(await asyncio.wait_for(w.queue.get(), wait))
                while not w.queue.empty():
                    items.append(w.queue.get_nowait())
            out = bytearray()
            for item in items:
                if item is None:  # ended by the hub (log trimmed past it, or too slow)
                    yield bytes(out) + w.expired
                    return
                change, shared = item
                last_rv = max(last_rv, change.rv)
                out += view.line(change, shared)
            if out:
                yield bytes(out)
            if bookmarks and time.monotonic() >= next_bookmark:
                # The queue is drained: every change up to the hub's cursor has been sent.
                mark = max(last_rv, hub.cursor) if w.queue.empty() else last_rv
                yield _bookmark(kind, api_version, mark)
                next_bookmark = time.monotonic() + settings.bookmark_interval
    finally:
        hub.unsubscribe(w)
