"""The invalidation stream and the token-revocation call (``/apis/sa-oidc.dev/v1/...``).

``GET /apis/sa-oidc.dev/v1/invalidations?after=SEQ[&limit=N][&epoch=E][&afterTime=T0]`` — one
page of events with ``seq > SEQ``::

    {"kind":"InvalidationList","apiVersion":"sa-oidc.dev/v1",
     "metadata":{"lastSeq":N,"oldestSeq":M,"epoch":E,"retentionLeeway":L},
     "items":[{"seq":..,"type":..,...}]}

``GET ...invalidations[?limit=N][&continue=TOKEN]`` — without ``after``, as kubectl and every
Kubernetes client ask: the same events as a well-formed Kubernetes list, paged by ``limit`` and an
opaque ``continue`` token (which also pins the epoch and the event it follows: 410 when the store
no longer holds them). Each item is an object of its own kind, so ``kubectl get invalidations``
``-o json|yaml|name`` works; the event's fields are kept, but the deleted object's kind (which
would collide with the item's) moves into ``object``, an ObjectReference::

    {"kind":"InvalidationList","apiVersion":"sa-oidc.dev/v1","metadata":{...as above},
     "items":[{"apiVersion":"sa-oidc.dev/v1","kind":"Invalidation",
               "metadata":{"name":"<seq>","creationTimestamp":<time>},"seq":..,"type":..,"time":..,
               "object":{"apiVersion":"v1","kind":"Pod","namespace":..,"name":..,"uid":..}}]}

Followers use ``after`` (the form above, unchanged): their items stay flat, ``kind`` included.
``GET ...invalidations/<seq>`` answers one retained event in that form (404 once trimmed).
Kubernetes lists and watches take ``labelSelector`` (items have no labels) and ``fieldSelector``
on ``metadata.name``, ``metadata.namespace`` and ``type`` (400 for others, as kube).
Items and the list carry ``metadata.resourceVersion`` (the seq; the list's ``lastSeq``), and a
watch without ``after`` that names a ``resourceVersion`` (or ``allowWatchBookmarks``, or asks for
Tables: ``kubectl get invalidations -w``) is a Kubernetes watch: ``application/json`` lines
``{"type":"ADDED","object":<Invalidation>}`` for the events after that seq (one-row Tables when
asked), ``{"type":"ERROR","object":<Status 410>}`` as below, no heartbeats and no bookmarks.

``GET ...?after=SEQ&watch=true[&epoch=E][&afterTime=T0][&heartbeatSeconds=S][&timeoutSeconds=T]``
— newline-delimited JSON, chunked, the backlog first and then live events::

    {"type":"EVENT","seq":N,"epoch":E,"event":{"type":"ObjectDeleted","kind":"Pod",...}}
    {"type":"HEARTBEAT","seq":<last seq sent>,"lastSeq":<store's last seq>,"epoch":E,
     "time":<POSIX s>,"oldestSeq":M,"retentionLeeway":L}                        every S s

``epoch`` names the store's event history (:class:`issuer.store.EventPage`): seqs compare only
within one epoch. A store that lost its events — a new SQLite file, a flushed or replaced Redis —
has a new epoch, and a watch that names
another epoch, or whose position is past the store's last seq, is answered 410 as below, in-stream
as soon as the watch loop sees it (it re-reads the store at least every second). A store restored
to an older copy of itself (a failover to a lagging Redis replica) keeps its epoch and numbers new
events with seqs the client already saw: ``afterTime``, the ``time`` of the event at ``after`` as
the client holds it, lets the issuer compare it with the store's event at that seq (410 if it is
another), and the watch repeats that check for the last event it sent before it sends newer ones
and before every heartbeat. A
follower must resync when a line's epoch differs from its own or a heartbeat's ``lastSeq`` is
below its position (issue 9, item 7).

``retentionLeeway`` (``Config.retention_leeway``) is how long past a token's exp its revocation
and deletion events are kept: a verifier with a larger leeway cannot rely on this stream alone
(issue 9, item 4).

Events: ``ObjectDeleted`` {kind, namespace, name, uid} (Pod/Secret/Node/ServiceAccount, appended by
the API atomically with the delete), ``KeyRevoked`` {kid}, ``TokenRevoked`` {jti, exp}. Each has a
``time``. ``seq`` is store-wide and strictly increasing, so a client that reconnects with
``after=<last seq it saw>`` — to any replica — misses nothing.

Resync (kube watch semantics, k8s.io/apimachinery pkg/api/errors NewResourceExpired; the apiserver
answers a watch from a compacted resourceVersion with "410 Gone", reason ``Expired``, "too old
resource version"): when ``0 < after < oldestSeq - 1`` events the client never saw were trimmed, so
it gets **410** with a ``Status`` (reason ``Expired``) and must re-list from ``after=0``. The same
answer is given for ``after`` beyond the last seq ever assigned (the client followed another store).
During a watch the same condition is sent in-stream as ``{"type":"ERROR","object":<Status>}``,
as a kube watch does, and the stream ends. ``after=0`` means "everything retained" and never 410s.

Blocking store waits (``store.wait_events`` with a short timeout) run in worker threads with their
own capacity limiter, so watchers neither block the event loop nor starve other requests' threads.
A client disconnect cancels the stream (Starlette listens for ``http.disconnect``); each watch also
ends after ``timeoutSeconds`` (default 300, like kube's ``--min-request-timeout`` spreading) and the
client reconnects from its last seq.

``POST /apis/sa-oidc.dev/v1/tokenrevocations`` with
``{"apiVersion":"sa-oidc.dev/v1","kind":"TokenRevocation","spec":{"jti":..,"expirationTimestamp"?}}``
revokes one token by jti: **201** with the stored object, **200** with the same object when the jti
was already revoked (idempotent). Without ``expirationTimestamp`` the revocation is kept for the
longest token lifetime. An ``expirationTimestamp`` must be the token's ``exp``, in the future: one
in the past is 422 Invalid with a field cause and nothing is stored (it would have been forgotten
while the token still worked, issue 9 item 6).

Both go through the API's authentication and RBAC (:func:`issuer.api.auth.authorize`): reading
the stream is get/list/watch ``invalidations`` in group ``sa-oidc.dev`` (granted to
``system:auth-delegator``, the callers allowed to review tokens); revoking is create
``tokenrevocations`` in ``sa-oidc.dev``. Admin tokens may do both.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from issuer import revocations
from issuer.api.auth import authorize
from issuer.api.errors import FieldError, invalid, not_found
from issuer.api.listing import INVALID_CONTINUE
from issuer.api.tables import app_now, event_encoder, table_response, wants_table
from issuer.http.status import StatusError, read_json_body, status_body
from issuer.selectors import SelectorError, parse_field_selector, parse_label_selector
from issuer.store import EventPage, NotFound, Store, StoreError, StoreUnavailable
from issuer.timefmt import rfc3339

__all__ = [
    "INVALIDATIONS_PATH",
    "TOKENREVOCATIONS_PATH",
    "StreamSettings",
    "routes",
]

INVALIDATIONS_PATH: Final = "/apis/sa-oidc.dev/v1/invalidations"
TOKENREVOCATIONS_PATH: Final = "/apis/sa-oidc.dev/v1/tokenrevocations"
API_VERSION: Final = "sa-oidc.dev/v1"
GROUP: Final = "sa-oidc.dev"
KIND: Final = "TokenRevocation"
NDJSON: Final = "application/x-ndjson"

#: Heartbeat interval clients may ask for (``heartbeatSeconds``, clamped), in seconds.
MIN_HEARTBEAT: Final = 0.2
MAX_HEARTBEAT: Final = 30.0
#: Longest single blocking wait in a worker thread: bounds how long a cancelled watch lingers.
MAX_WAIT: Final = 1.0
MAX_PAGE: Final = 1000


class StreamSettings:
    """Knobs for :func:`routes` (defaults suit production; tests shorten them).

    - ``heartbeat``: default heartbeat interval (s).
    - ``watch_timeout``: default and maximum watch duration (s) before the server ends it.
    - ``max_watchers``: concurrent watch streams (each may hold a worker thread up to
      :data:`MAX_WAIT`); more get 429.
    - ``revocation_ttl``: how long a revocation without an expiry is kept; None = the config's
      ``max_token_lifetime`` (or 24 h without a config).
    - ``retention_leeway``: published as ``retentionLeeway``; None = the config's
      ``retention_leeway`` (or :data:`issuer.revocations.RETENTION_LEEWAY` without a config).
    """

    def __init__(
        self,
        *,
        heartbeat: float = 1.0,
        watch_timeout: float = 300.0,
        max_watch_timeout: float = 3600.0,
        max_watchers: int = 256,
        revocation_ttl: float | None = None,
        retention_leeway: float | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self.watch_timeout = watch_timeout
        self.max_watch_timeout = max_watch_timeout
        self.max_watchers = max_watchers
        self.revocation_ttl = revocation_ttl
        self.retention_leeway = retention_leeway
        self.active = 0
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Worker threads for blocking waits, separate from the default pool (made lazily, in
        the event loop)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_watchers)
        return self._limiter


# --- request context ----------------------------------------------------------------------------
def _ctx(request: Request) -> Any:
    return request.app.state.ctx


async def _authorize(request: Request) -> str:
    """The caller's audit label; 401/403 as the rest of the API (RBAC edit: this used to accept
    admin tokens only; now :func:`issuer.api.auth.authorize` decides, see the module docstring)."""
    return (await authorize(request)).label


def _wall(ctx: Any) -> float:
    clock = getattr(ctx, "clock", None)
    if callable(clock):
        return float(clock())
    now = getattr(clock, "now", None)
    return float(now()) if callable(now) else time.time()


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise StatusError(400, "BadRequest", f"{name} must be an integer") from None
    if not lo <= v <= hi:
        raise StatusError(400, "BadRequest", f"{name} must be between {lo} and {hi}")
    return v


def _epoch_param(request: Request) -> str:
    """``epoch`` (the history the client followed, "" = unknown): short, ``[0-9A-Za-z_-]``."""
    raw = request.query_params.get("epoch", "")
    if len(raw) > 64 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in raw):
        raise StatusError(400, "BadRequest", "epoch must be at most 64 characters of A-Za-z0-9_-")
    return raw


def _float_param(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise StatusError(400, "BadRequest", f"{name} must be a number") from None
    if not lo <= v <= hi:
        raise StatusError(400, "BadRequest", f"{name} must be between {lo:g} and {hi:g}")
    return v


def _expired_message(after: int, page: EventPage) -> str:
    return (
        f"too old sequence number: after={after} but the oldest retained event is "
        f"{page.oldest_seq} and the last is {page.last_seq}; re-list from after=0 (resync)"
    )


def _epoch_message(epoch: str, page: EventPage) -> str:
    return (
        f"the store's event history changed (epoch {page.epoch}, the client followed {epoch}): "
        "events may have been lost or renumbered; re-list from after=0 (resync)"
    )


def _is_gone(after: int, page: EventPage) -> bool:
    """kube watch 410 semantics: the client's position is not served any more."""
    if after <= 0:
        return False
    if page.oldest_seq and after < page.oldest_seq - 1:
        return True  # events it never saw were trimmed
    return after > page.last_seq  # a position this store never reached (another store / reset)


def _gone_message(after: int, epoch: str, page: EventPage) -> str | None:
    """Why a client at (``after``, ``epoch``) must resync, or None. ``epoch`` "" = unknown."""
    if epoch and page.epoch and epoch != page.epoch:
        return _epoch_message(epoch, page)
    if _is_gone(after, page):
        return _expired_message(after, page)
    return None


def _event_time(data: Mapping[str, Any]) -> float | None:
    t = data.get("time")
    return float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None


def _replaced_message(after: int) -> str:
    return (
        f"the event at sequence number {after} is not the one the client holds: the store went "
        "back in time (e.g. a failover to a lagging replica) and numbered other events the "
        "same; re-list from after=0 (resync)"
    )


def _holds(store: Store, after: int, after_time: float | None) -> bool:
    """False when the store's event ``after`` exists but is not the one whose ``time`` the client
    holds: the same seq now names another event (blocking; StoreError propagates).

    Epochs catch a store that was replaced; a store restored to an older copy of itself keeps its
    epoch and its seqs go on from the copy's, so only the event itself tells (issue 9, item 7).
    A trimmed or missing event gives no verdict: the seq checks (:func:`_is_gone`) cover those.
    """
    if after <= 0 or after_time is None:
        return True
    page = store.read_events(after - 1, 1)
    if not page.events or page.events[0].seq != after:
        return True
    return _event_time(page.events[0].data) == after_time


def _retention_leeway(ctx: Any, settings: StreamSettings) -> float:
    if settings.retention_leeway is not None:
        return settings.retention_leeway
    value = getattr(getattr(ctx, "config", None), "retention_leeway", None)
    return float(value) if isinstance(value, int | float) else revocations.RETENTION_LEEWAY


def _store_failure(e: StoreError) -> StatusError:
    if isinstance(e, StoreUnavailable):
        return StatusError(503, "ServiceUnavailable", "the store is unavailable")
    return StatusError(500, "InternalError", "the store failed")


# --- GET invalidations --------------------------------------------------------------------------
def _item(seq: int, data: Mapping[str, Any]) -> dict[str, Any]:
    item = {"seq": seq}
    item.update({k: v for k, v in data.items() if k != "seq"})
    return item


#: The kinds an ObjectDeleted event names, all core v1.
_OBJECT_FIELDS: Final = ("kind", "namespace", "name", "uid")


def _kube_item(seq: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """One event as a Kubernetes object (module docstring): the event's fields but ``kind``,
    with ``apiVersion``/``kind``/``metadata``; an ObjectDeleted's object as ``object``."""
    meta: dict[str, Any] = {"name": str(seq), "resourceVersion": str(seq)}
    at = _event_time(data)
    if at is not None:
        meta["creationTimestamp"] = rfc3339(at)
    item: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Invalidation", "metadata": meta}
    item["seq"] = seq
    item.update({k: v for k, v in data.items() if k not in ("seq", *_OBJECT_FIELDS)})
    if data.get("type") == "ObjectDeleted" or any(k in data for k in _OBJECT_FIELDS):
        ref = {k: data[k] for k in _OBJECT_FIELDS if k in data}
        item["object"] = {"apiVersion": "v1", **ref}
    return item


def _encode_continue(seq: int, epoch: str, at: float | None) -> str:
    raw = orjson.dumps({"seq": seq, "epoch": epoch, "time": at})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str, float | None]:
    """(seq, epoch, time) of a continue token made by :func:`_encode_continue` (400 otherwise,
    with kube's text: apiserver pkg/storage/continue.go)."""
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise StatusError(400, "BadRequest", INVALID_CONTINUE) from None
    seq, epoch, at = (
        (doc.get(k) for k in ("seq", "epoch", "time"))
        if isinstance(doc, dict)
        else (None, None, None)
    )
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or not 0 <= seq < 2**63
        or not isinstance(epoch, str)
        or len(epoch) > 64
        or not all(c.isascii() and (c.isalnum() or c in "_-") for c in epoch)
        or not (at is None or (isinstance(at, int | float) and not isinstance(at, bool)))
    ):
        raise StatusError(400, "BadRequest", INVALID_CONTINUE)
    return seq, epoch, None if at is None else float(at)


#: Field selectors a Kubernetes list or watch of invalidations takes: kube's for every kind
#: (metadata.name, metadata.namespace) and, as a custom resource's selectable field, ``type``.
_SELECTABLE: Final = frozenset({"metadata.name", "metadata.namespace", "type"})

_Match = Callable[[Mapping[str, Any]], bool]


def _selector(request: Request) -> _Match | None:
    """``labelSelector``/``fieldSelector`` of a Kubernetes list or watch as a predicate on its
    items (None: both empty); 400 as kube for a bad or unsupported one (items have no labels)."""
    q = request.query_params
    try:
        labels = parse_label_selector(q.get("labelSelector") or "")
        fields = parse_field_selector(q.get("fieldSelector") or "")
    except SelectorError as e:
        raise StatusError(400, "BadRequest", str(e)) from None
    unsupported = fields.unsupported(_SELECTABLE)
    if unsupported is not None:
        raise StatusError(400, "BadRequest", f"field label not supported: {unsupported}")
    if not labels.requirements and not fields.requirements:
        return None

    def match(item: Mapping[str, Any]) -> bool:
        values = {
            "metadata.name": str(item["metadata"]["name"]),
            "metadata.namespace": "",
            "type": str(item.get("type") or ""),
        }
        return labels.matches({}) and fields.matches(values)

    return match


@dataclass(slots=True)
class _Position:
    """Where a watch stands: the last seq sent (``seq``), the ``time`` of that event (None if
    unknown) and the store ``epoch`` it belongs to ("" until the store has one)."""

    seq: int
    time: float | None
    epoch: str


async def _list(
    request: Request,
    store: Store,
    pos: _Position,
    retention_leeway: float,
    kube: bool = False,
    match: _Match | None = None,
) -> Response:
    """One page: the followers' form, or with ``kube`` the Kubernetes list (module docstring)."""
    limit = _int_param(request, "limit", 500, 1, MAX_PAGE)
    after = pos.seq
    try:
        page = await anyio.to_thread.run_sync(store.read_events, after, limit)
        held = await anyio.to_thread.run_sync(_holds, store, after, pos.time)
    except StoreError as e:
        raise _store_failure(e) from None
    gone = _gone_message(after, pos.epoch, page)
    if gone is not None:
        raise StatusError(410, "Expired", gone)
    if not held:  # the next page of a list that began in another history
        raise StatusError(410, "Expired", _replaced_message(after))
    meta: dict[str, Any] = {
        "lastSeq": page.last_seq,
        "oldestSeq": page.oldest_seq,
        "epoch": page.epoch,
        "retentionLeeway": retention_leeway,
    }
    if kube:
        # Where a watch (resourceVersion=...) picks up after this list.
        meta["resourceVersion"] = str(page.last_seq)
    more = bool(page.events) and len(page.events) >= limit and page.events[-1].seq < page.last_seq
    if more and kube:
        last = page.events[-1]
        meta["continue"] = _encode_continue(last.seq, page.epoch, _event_time(last.data))
    elif more:
        meta["continue"] = str(page.events[-1].seq)  # ask again with after=<continue>
    item = _kube_item if kube else _item
    items = [item(ev.seq, ev.data) for ev in page.events]
    if match is not None:
        items = [i for i in items if match(i)]  # a page may shrink; continue goes on
    body = {
        "kind": "InvalidationList",
        "apiVersion": API_VERSION,
        "metadata": meta,
        "items": items,
    }
    return Response(orjson.dumps(body), media_type="application/json")


def _line(obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


class _WatchSlot:
    """One of ``max_watchers`` places, taken by the handler before the response is built (check
    and take with no ``await`` between them: atomic on the event loop, so a burst cannot pass the
    bound) and released once — when the stream ends, or from the response's background task if
    the stream never started (client gone before the first byte)."""

    __slots__ = ("_held", "_settings")

    def __init__(self, settings: StreamSettings) -> None:
        self._settings = settings
        self._held = True
        settings.active += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._settings.active -= 1


def _error_line(code: int, reason: str, message: str) -> bytes:
    return _line({"type": "ERROR", "object": json.loads(status_body(code, reason, message))})


async def _watch_lines(
    store: Store,
    pos: _Position,
    heartbeat: float,
    timeout: float,
    settings: StreamSettings,
    wall: Callable[[], float],
    slot: _WatchSlot,
    retention_leeway: float,
) -> AsyncGenerator[bytes, None]:
    """The watch body; ends on timeout, store failure or resync (an ERROR line).

    Every page read is checked against the epoch the watch began in and against the position,
    and before newer events or a heartbeat go out, that the store still holds the last event
    sent at its seq (:func:`_holds`): a store that was replaced or went back in time ends the
    watch with 410 instead of serving seqs from another history (issue 9, item 7).
    """
    epoch = pos.epoch
    cursor = pos.seq
    start = time.monotonic()
    next_beat = start  # first heartbeat at once: tells the client it is connected and where
    try:
        while True:
            now = time.monotonic()
            if now - start >= timeout:
                return
            wait = min(MAX_WAIT, max(0.0, next_beat - now), max(0.0, start + timeout - now))
            page: EventPage = await anyio.to_thread.run_sync(
                store.wait_events, cursor, wait, limiter=settings.limiter
            )
            if not epoch:
                epoch = page.epoch  # the first seq of an empty store: its history begins here
            # Trimmed while we were behind, another history (epoch), or a store gone back
            # below what we sent: same answer as the HTTP 410, in-stream.
            gone = _gone_message(cursor, epoch, page)
            if gone is not None:
                yield _error_line(410, "Expired", gone)
                return
            beat = time.monotonic() >= next_beat
            if (page.events or beat) and not await anyio.to_thread.run_sync(
                _holds, store, cursor, pos.time, limiter=settings.limiter
            ):
                # Before going past the last event sent, and before telling the client all is
                # well: is that event still the store's event at its seq?
                yield _error_line(410, "Expired", _replaced_message(cursor))
                return
            if page.events:
                out = bytearray()
                for ev in page.events:
                    if ev.seq <= cursor:
                        continue
                    out += _line(
                        {"type": "EVENT", "seq": ev.seq, "epoch": epoch, "event": dict(ev.data)}
                    )
                    cursor = ev.seq
                    pos.time = _event_time(ev.data)
                if out:
                    yield bytes(out)
            if beat:
                yield _line(
                    {
                        "type": "HEARTBEAT",
                        "seq": cursor,
                        "lastSeq": page.last_seq,
                        "epoch": epoch,
                        "time": round(wall(), 3),
                        "oldestSeq": page.oldest_seq,
                        "retentionLeeway": retention_leeway,
                    }
                )
                next_beat = time.monotonic() + heartbeat
    except StoreError as e:
        err = _store_failure(e)
        yield _error_line(err.code, err.reason, err.message)
    finally:
        slot.release()


def _kube_event(event_type: str, obj: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"type": event_type, "object": obj}) + b"\n"


async def _kube_watch_lines(
    lines: AsyncGenerator[bytes, None],
    encode: Callable[[str, Mapping[str, Any]], bytes],
    match: _Match | None = None,
) -> AsyncIterator[bytes]:
    """The followers' watch lines as a Kubernetes watch: each EVENT an ``ADDED`` of its
    Invalidation, an ERROR as is (kube's ``{"type":"ERROR","object":<Status>}``), heartbeats
    dropped (no bookmarks)."""
    try:
        async for chunk in lines:
            out = bytearray()
            for raw in chunk.splitlines():
                msg = orjson.loads(raw)
                if msg.get("type") == "EVENT":
                    item = _kube_item(int(msg["seq"]), msg["event"])
                    if match is None or match(item):
                        out += encode("ADDED", item)
                elif msg.get("type") == "ERROR":
                    out += encode("ERROR", msg["object"])
            if out:
                yield bytes(out)
    finally:
        await lines.aclose()


def _is_kube_watch(request: Request) -> bool:
    """A Kubernetes client's watch (kubectl get -w, informers): no ``after``, and a
    ``resourceVersion`` or ``allowWatchBookmarks`` or an Accept asking for Tables."""
    q = request.query_params
    if "after" in q:
        return False
    return (
        "resourceVersion" in q
        or "allowWatchBookmarks" in q
        or wants_table(request.headers.get("accept", "")) is not None
    )


async def _invalidations(request: Request, settings: StreamSettings) -> Response:
    try:
        await _authorize(request)
        ctx = _ctx(request)
        store: Store = ctx.store
        after = _int_param(request, "after", 0, 0, 2**63 - 1)
        after_time = _float_param(request, "afterTime", -1.0, 0.0, 1e12)
        held_time = after_time if after_time >= 0 else None
        epoch = _epoch_param(request)
        retention_leeway = _retention_leeway(ctx, settings)
        watch = request.query_params.get("watch", "").lower() in ("true", "1")
        kube_watch = watch and _is_kube_watch(request)
        watch_match = None
        if kube_watch:
            # resourceVersion is the seq a Kubernetes list or event of this stream names.
            after = _int_param(request, "resourceVersion", 0, 0, 2**63 - 1)
            watch_match = _selector(request)
        if not watch:
            # Without after: a Kubernetes client (kubectl), paging with continue.
            kube = "after" not in request.query_params
            token = request.query_params.get("continue", "") if kube else ""
            if token:
                after, epoch, held_time = _decode_continue(token)
            match = _selector(request) if kube else None
            listed = await _list(
                request, store, _Position(after, held_time, epoch), retention_leeway, kube, match
            )
            # kubectl get invalidations asks for a Table (issuer.api.tables).
            return table_response(request, listed, app_now(request.app.state))
        # Clamped rather than refused: a client asking for faster beats than we allow still works.
        heartbeat = _float_param(request, "heartbeatSeconds", settings.heartbeat, 0.0, 1e9)
        heartbeat = min(MAX_HEARTBEAT, max(MIN_HEARTBEAT, heartbeat))
        timeout = _float_param(
            request, "timeoutSeconds", settings.watch_timeout, 1.0, settings.max_watch_timeout
        )
        # Answer a position that cannot be served with a plain 410 before streaming starts.
        try:
            page = await anyio.to_thread.run_sync(store.read_events, after, 1)
        except StoreError as e:
            raise _store_failure(e) from None
        gone = _gone_message(after, epoch, page)
        if gone is not None:
            raise StatusError(410, "Expired", gone)
        try:
            held = await anyio.to_thread.run_sync(_holds, store, after, held_time)
        except StoreError as e:
            raise _store_failure(e) from None
        if not held:
            raise StatusError(410, "Expired", _replaced_message(after))
        if settings.active >= settings.max_watchers:
            raise StatusError(
                429,
                "TooManyRequests",
                "too many invalidation watches; retry later",
                headers={"Retry-After": "1"},
            )
        slot = _WatchSlot(settings)  # no await since the check above: see _WatchSlot
    except StatusError as e:
        return e.response()
    lines = _watch_lines(
        store,
        _Position(after, held_time, page.epoch),
        heartbeat,
        timeout,
        settings,
        lambda: _wall(ctx),
        slot,
        retention_leeway,
    )
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if kube_watch:
        # kubectl get invalidations -w: one-row Tables when it asks for them (issuer.api.tables).
        now = lambda: app_now(request.app.state)  # noqa: E731
        encode = event_encoder(request, "Invalidation", now) or _kube_event
        return StreamingResponse(
            _kube_watch_lines(lines, encode, watch_match),
            media_type="application/json",
            headers=headers,
            background=BackgroundTask(slot.release),
        )
    return StreamingResponse(
        lines,
        media_type=NDJSON,
        headers=headers,
        background=BackgroundTask(slot.release),
    )


# --- POST tokenrevocations ----------------------------------------------------------------------
def _invalid(
    jti: str, field: str, value: Any, detail: str = "", typ: str = "Invalid"
) -> StatusError:
    """422 Invalid with kube's field-error Status (errors.NewInvalid), named after the jti."""
    return invalid(KIND, jti, [FieldError(typ, field, value, detail)], group=GROUP)


def _parse_time(jti: str, value: Any) -> float:
    field = "spec.expirationTimestamp"
    if not isinstance(value, str):
        raise _invalid(jti, field, value, "must be an RFC 3339 time string")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(jti, field, value, "must be an RFC 3339 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _revocation_ttl(ctx: Any, settings: StreamSettings) -> float:
    if settings.revocation_ttl is not None:
        return settings.revocation_ttl
    lifetime = getattr(getattr(ctx, "config", None), "max_token_lifetime", None)
    return float(lifetime) if isinstance(lifetime, int | float) else 86400.0


async def _revoke(request: Request, settings: StreamSettings) -> Response:
    try:
        caller = await _authorize(request)
        ctx = _ctx(request)
        body = await read_json_body(request, max_bytes=16 * 1024)
        if body.get("apiVersion") != API_VERSION or body.get("kind") != "TokenRevocation":
            raise StatusError(
                400,
                "BadRequest",
                f'expected apiVersion "{API_VERSION}" and kind "TokenRevocation"',
            )
        spec = body.get("spec")
        if not isinstance(spec, Mapping):
            raise _invalid("", "spec", None, typ="Required")
        jti = spec.get("jti")
        if not revocations.valid_jti(jti):
            raise _invalid("", "spec.jti", jti, "must be 1-256 characters of A-Za-z0-9._:-")
        assert isinstance(jti, str)
        now = _wall(ctx)
        stated = spec.get("expirationTimestamp")
        if stated is not None:
            exp = _parse_time(jti, stated)
            if exp <= now:
                # Issue 9, item 6: a revocation is kept until its token's expiry (+ leeway), so
                # one stated to expire in the past was forgotten while the token (whose real
                # exp the caller got wrong) still worked. Refuse it; nothing is stored.
                raise _invalid(
                    jti,
                    "spec.expirationTimestamp",
                    stated,
                    "must be in the future (the token's exp); omit it to keep the revocation "
                    "for the longest token lifetime",
                )
        else:
            exp = now + _revocation_ttl(ctx, settings)
        store: Store = ctx.store

        def work() -> tuple[bool, int, dict[str, Any]]:
            existed = revocations.is_token_revoked(store, jti)
            seq = revocations.revoke_token(store, jti, exp, now)
            try:
                obj = store.get_object(revocations.KIND, "", jti)
            except NotFound:  # pragma: no cover - pruned in between; answer what we wrote
                obj = {"metadata": {"name": jti}, "spec": {"jti": jti}, "status": {"seq": seq}}
            return existed, seq, obj

        try:
            existed, _seq, obj = await anyio.to_thread.run_sync(work)
        except StoreError as e:
            raise _store_failure(e) from None
    except StatusError as e:
        return e.response()
    audit = getattr(ctx, "audit_event", None)
    if callable(audit) and not existed:
        audit("token.revoked", caller=caller, jti=jti, seq=_seq)
    obj = dict(obj)
    obj["apiVersion"] = API_VERSION
    obj["kind"] = "TokenRevocation"
    return Response(
        orjson.dumps(obj), status_code=200 if existed else 201, media_type="application/json"
    )


async def _invalidation(request: Request) -> Response:
    """``GET .../invalidations/<seq>``: one retained event as its Kubernetes item (kubectl
    describe, ``kubectl get invalidation <seq>``); 404 once trimmed or never assigned."""
    try:
        await _authorize(request)
        store: Store = _ctx(request).store
        name = request.path_params["name"]
        seq = int(name) if name.isascii() and name.isdigit() and len(name) <= 18 else 0
        page = None
        if seq > 0:
            try:
                page = await anyio.to_thread.run_sync(store.read_events, seq - 1, 1)
            except StoreError as e:
                raise _store_failure(e) from None
        if page is None or not page.events or page.events[0].seq != seq:
            raise not_found("invalidations", name, GROUP)
        body = _kube_item(seq, page.events[0].data)
    except StatusError as e:
        return e.response()
    found = Response(orjson.dumps(body), media_type="application/json")
    return table_response(request, found, app_now(request.app.state))


def routes(settings: StreamSettings | None = None) -> list[BaseRoute]:
    """Routes for the invalidation stream and token revocation (mount with the API routes)."""
    s = settings or StreamSettings()

    async def invalidations(request: Request) -> Response:
        return await _invalidations(request, s)

    async def tokenrevocations(request: Request) -> Response:
        return await _revoke(request, s)

    return [
        Route(INVALIDATIONS_PATH, invalidations, methods=["GET"], name="invalidations"),
        Route(INVALIDATIONS_PATH + "/{name}", _invalidation, methods=["GET"], name="invalidation"),
        Route(TOKENREVOCATIONS_PATH, tokenrevocations, methods=["POST"], name="tokenrevocations"),
    ]
