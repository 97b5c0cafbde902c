"""Following the issuer's invalidation stream (``/apis/sa-oidc.dev/v1/invalidations``).

Three layers, each testable on its own:

- :class:`LineParser` — sans-I/O: bytes in, parsed watch messages out (:class:`StreamEvent`,
  :class:`Heartbeat`, :class:`StreamExpired`). Lines are newline-delimited JSON; a line longer than
  :data:`MAX_LINE_BYTES` or one that is not a known message raises :class:`StreamProtocolError`.
- :class:`InvalidationState` — pure: the set of things that make issued tokens invalid (deleted
  object uids by kind, revoked kids, revoked jtis), built by :meth:`InvalidationState.apply` and
  queried by :meth:`InvalidationState.why_invalid`. Pruned by the server's retention (entries whose
  event the server has trimmed — it keeps events at least as long as the longest token lifetime
  plus its ``retentionLeeway``) and, for jtis, by the token's own expiry plus the follower's
  ``leeway`` (the longest leeway of the verifiers using the state: a revoked token must stay
  revoked for as long as any of them could still accept it, issue 9 item 4).
- :class:`StreamFollower` — the I/O: a daemon thread that lists everything retained (``after=0``),
  then watches from the last seq, reconnects with backoff from the last seq after a drop, and on
  "410 Gone" (kube watch: "too old resource version", reason ``Expired``) rebuilds its state from a
  fresh list. It also rebuilds when a line names another ``epoch`` than its list did, or a
  heartbeat's ``lastSeq`` is below its position: the store was replaced or went back in time, and
  seqs it holds may now name other events (issue 9, item 7). It records when it last received a
  line from the issuer (a connection alone proves nothing) so callers can refuse stale state.

The wire format (issuer/stream.py is the server side)::

    GET ...?after=SEQ            -> {"kind":"InvalidationList","metadata":{"lastSeq","oldestSeq",
                                     "epoch","retentionLeeway"},"items":[{"seq":N, "type":...}]}
    GET ...?after=SEQ&watch=true&epoch=E&afterTime=T0
                                 -> {"type":"EVENT","seq":N,"epoch":E,"event":{...}}\\n
                                    {"type":"HEARTBEAT","seq":SENT,"lastSeq":LAST,"epoch":E,
                                     "time":T,"oldestSeq":O,"retentionLeeway":L}\\n
                                    {"type":"ERROR","object":<Status 410 Expired>}\\n
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from .credentials import BearerToken, as_bearer_token
from .identity import ServiceAccountIdentity

__all__ = [
    "INVALIDATIONS_PATH",
    "MAX_LINE_BYTES",
    "Heartbeat",
    "InvalidationState",
    "LineParser",
    "StreamEvent",
    "StreamExpired",
    "StreamFollower",
    "StreamProtocolError",
]

log = logging.getLogger("verifier.stream")

INVALIDATIONS_PATH: Final = "/apis/sa-oidc.dev/v1/invalidations"
#: Longest watch line accepted; events are a few hundred bytes.
MAX_LINE_BYTES: Final = 64 * 1024
#: Largest list page accepted (a page holds at most 1000 events of a few hundred bytes each).
MAX_LIST_BYTES: Final = 4 * 1024 * 1024
#: Kinds whose deletion invalidates bound tokens, and the identity field holding their uid.
_BOUND_KINDS: Final = ("Pod", "Secret", "Node", "ServiceAccount")
#: The longest leeway a verifier may use (``Policy.leeway`` is 0..600 s): a follower keeps a
#: revoked jti this long past its exp unless told a shorter ``leeway``.
MAX_LEEWAY: Final = 600.0
#: The retention leeway of an issuer that does not publish one (it pruned at exp + 60 s).
UNPUBLISHED_RETENTION_LEEWAY: Final = 60.0


class StreamProtocolError(Exception):
    """The issuer sent something that is not an invalidation stream."""


class StreamGone(Exception):
    """The issuer no longer has the events after our seq: rebuild state from a fresh list."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One invalidation event: ``seq`` and its data (``type`` ObjectDeleted/KeyRevoked/...), and
    the store epoch the seq belongs to (None from an issuer that sends none)."""

    seq: int
    event: Mapping[str, Any]
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The issuer is alive; ``seq`` is the last seq sent on this watch, ``last_seq`` the store's
    last assigned seq, ``oldest_seq`` its oldest kept, ``epoch`` its event history and
    ``retention_leeway`` how long past exp it keeps revocations (None when not sent)."""

    seq: int
    time: float
    oldest_seq: int | None = None
    last_seq: int | None = None
    epoch: str | None = None
    retention_leeway: float | None = None


@dataclass(frozen=True, slots=True)
class StreamExpired:
    """An in-stream ERROR with a 410 Status: our position was trimmed away; resync."""

    message: str = ""


Message = StreamEvent | Heartbeat | StreamExpired


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise StreamProtocolError(f"{what} must be a non-negative integer")
    return v


def _epoch(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > 64:
        raise StreamProtocolError("epoch must be a short string")
    return v


def _seconds(v: Any, what: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e9:
        raise StreamProtocolError(f"{what} must be a non-negative number of seconds")
    return float(v)


def parse_message(line: bytes) -> Message:
    """Parse one watch line (without its newline)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise StreamProtocolError("watch line is not JSON") from e
    if not isinstance(obj, dict):
        raise StreamProtocolError("watch line is not a JSON object")
    kind = obj.get("type")
    if kind == "EVENT":
        ev = obj.get("event")
        if not isinstance(ev, dict):
            raise StreamProtocolError("EVENT without an event object")
        return StreamEvent(_int(obj.get("seq"), "seq"), ev, _epoch(obj.get("epoch")))
    if kind == "HEARTBEAT":
        t = obj.get("time")
        oldest = obj.get("oldestSeq")
        last = obj.get("lastSeq")
        return Heartbeat(
            _int(obj.get("seq"), "seq"),
            float(t) if isinstance(t, int | float) and not isinstance(t, bool) else 0.0,
            _int(oldest, "oldestSeq") if oldest is not None else None,
            _int(last, "lastSeq") if last is not None else None,
            _epoch(obj.get("epoch")),
            _seconds(obj.get("retentionLeeway"), "retentionLeeway"),
        )
    if kind == "ERROR":
        status = obj.get("object")
        if isinstance(status, dict) and status.get("code") == 410:
            msg = status.get("message")
            return StreamExpired(msg if isinstance(msg, str) else "")
        raise StreamProtocolError("watch ERROR from the issuer")
    raise StreamProtocolError("unknown watch message type")


class LineParser:
    """Sans-I/O NDJSON splitter: ``feed(chunk)`` returns the complete messages it completes."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line

    def feed(self, chunk: bytes) -> list[Message]:
        """Add bytes; return the messages of every line completed by them (blank lines skipped)."""
        self._buf += chunk
        out: list[Message] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                break
            if i > self._max:
                # A long line can arrive complete in one chunk: check it, not only the remainder.
                raise StreamProtocolError("watch line too long")
            line = bytes(self._buf[:i]).strip()
            del self._buf[: i + 1]
            if line:
                out.append(parse_message(line))
        if len(self._buf) > self._max:
            raise StreamProtocolError("watch line too long")
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held."""
        return len(self._buf)


@dataclass(slots=True)
class InvalidationState:
    """What has been invalidated, as learnt from the stream. Not thread-safe by itself.

    ``uids[kind][uid] = seq``; ``kids[kid] = seq``; ``jtis[jti] = (seq, exp or None)``;
    ``epoch`` is the store history the seqs belong to ("" if the issuer names none),
    ``retention_leeway`` what the issuer last published (None: not published).
    """

    last_seq: int = 0
    last_time: float | None = None  # the ``time`` of the event at last_seq (the issuer checks it)
    epoch: str = ""
    retention_leeway: float | None = None
    uids: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in _BOUND_KINDS})
    kids: dict[str, int] = field(default_factory=dict)
    jtis: dict[str, tuple[int, float | None]] = field(default_factory=dict)

    def apply(self, seq: int, event: Mapping[str, Any]) -> None:
        """Record one event (idempotent; unknown types only advance ``last_seq``)."""
        typ = event.get("type")
        if typ == "ObjectDeleted":
            kind, uid = event.get("kind"), event.get("uid")
            if isinstance(kind, str) and kind in self.uids and isinstance(uid, str) and uid:
                self.uids[kind][uid] = seq
        elif typ == "KeyRevoked":
            kid = event.get("kid")
            if isinstance(kid, str) and kid:
                self.kids[kid] = seq
        elif typ == "TokenRevoked":
            jti, exp = event.get("jti"), event.get("exp")
            if isinstance(jti, str) and jti:
                e = (
                    float(exp)
                    if isinstance(exp, int | float) and not isinstance(exp, bool)
                    else None
                )
                self.jtis[jti] = (seq, e)
        if seq >= self.last_seq:
            self.last_seq = seq
            t = event.get("time")
            self.last_time = (
                float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None
            )

    def prune(self, oldest_seq: int | None, now: float, leeway: float = MAX_LEEWAY) -> int:
        """Drop entries the server has trimmed (seq < ``oldest_seq``) and jtis past exp+leeway.

        The server keeps events at least as long as the longest token lifetime plus its retention
        leeway, so a token bound to an object whose deletion event it trimmed has expired, even
        for a verifier whose leeway is at most that retention leeway. ``leeway`` must be at least
        the leeway of every verifier using this state. Revoked kids are kept (few, and a kid is
        never reused). Returns how many entries were dropped.
        """
        dropped = 0
        if oldest_seq:
            for table in self.uids.values():
                old = [u for u, s in table.items() if s < oldest_seq]
                for u in old:
                    del table[u]
                dropped += len(old)
        gone = [
            j
            for j, (s, exp) in self.jtis.items()
            if (exp is not None and exp + leeway < now) or (oldest_seq and s < oldest_seq)
        ]
        for j in gone:
            del self.jtis[j]
        return dropped + len(gone)

    def why_invalid(self, ident: ServiceAccountIdentity) -> str | None:
        """A short reason if ``ident``'s token was invalidated, else None."""
        if ident.service_account_uid and ident.service_account_uid in self.uids["ServiceAccount"]:
            return "service account deleted"
        if ident.pod_uid and ident.pod_uid in self.uids["Pod"]:
            return "bound pod deleted"
        if ident.secret_uid and ident.secret_uid in self.uids["Secret"]:
            return "bound secret deleted"
        # Only node-bound tokens depend on their node; pod-bound tokens merely carry node info
        # (kube: pkg/serviceaccount/claims.go Validate, ServiceAccountTokenPodNodeInfo).
        if ident.node_uid and ident.pod_uid is None and ident.node_uid in self.uids["Node"]:
            return "bound node deleted"
        if ident.key_id and ident.key_id in self.kids:
            return "signing key revoked"
        if ident.token_id and ident.token_id in self.jtis:
            return "token revoked"
        return None

    def __len__(self) -> int:
        return sum(len(t) for t in self.uids.values()) + len(self.kids) + len(self.jtis)


def _check_identity(resp: httpx.Response) -> None:
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise StreamProtocolError(f"compressed invalidation stream ({encoding}) refused")


@dataclass(frozen=True, slots=True)
class FollowerStatus:
    """A follower snapshot: synced (and not resyncing), last seq, last contact, counters."""

    synced: bool
    last_seq: int
    last_contact: float | None  # monotonic time of the last event or heartbeat, None if never
    connected: bool
    resyncs: int
    reconnects: int
    entries: int
    epoch: str = ""
    retention_leeway: float | None = None  # as published by the issuer; None if it sends none


class StreamFollower:
    """Follow the invalidation stream in a daemon thread, keeping an :class:`InvalidationState`.

    ``base_url`` is the issuer's API base URL; ``bearer_token`` a credential allowed to read the
    stream. ``heartbeat`` asks the issuer for a heartbeat every that many seconds. ``client``
    (optional) is an ``httpx.Client`` whose transport to use — it is shared with the caller and
    not closed here. ``on_change`` is called (from the follower thread) after every batch applied.
    ``leeway``: revoked jtis are kept until their token's exp + this (the longest leeway of the
    verifiers that consult this follower; default :data:`MAX_LEEWAY`).
    """

    def __init__(
        self,
        base_url: str,
        bearer_token: str | BearerToken,
        *,
        heartbeat: float = 1.0,
        client: httpx.Client | None = None,
        verify: Any = True,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        leeway: float = MAX_LEEWAY,
    ) -> None:
        self.endpoint = base_url.rstrip("/") + INVALIDATIONS_PATH
        self.leeway = float(leeway)
        self._bearer = as_bearer_token(bearer_token)
        self.heartbeat = max(0.2, heartbeat)  # the issuer's minimum
        self._owns_client = client is None
        # The read timeout notices a dead connection (no heartbeat) within a few heartbeats.
        self._read_timeout = max(3.0 * heartbeat, 1.0)
        self._client = client or httpx.Client(verify=verify)
        self._timeout = httpx.Timeout(connect_timeout, read=self._read_timeout)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._wall = wall_clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = InvalidationState()
        self._synced = False
        self._synced_event = threading.Event()
        self._last_contact: float | None = None
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resp: httpx.Response | None = None
        self.resyncs = 0
        self.reconnects = 0
        #: HTTP requests this follower sent (list pages + watch connections).
        self.requests = 0

    # --- what callers use ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the follower thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="invalidation-follower", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close what this follower opened."""
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # best effort to unblock the reader
                resp.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._owns_client:
            self._client.close()

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first full list has been applied (or ``timeout``); True if synced."""
        return self._synced_event.wait(timeout)

    def status(self) -> FollowerStatus:
        """A consistent snapshot of the follower's health."""
        with self._lock:
            return FollowerStatus(
                synced=self._synced,
                last_seq=self._state.last_seq,
                last_contact=self._last_contact,
                connected=self._connected,
                resyncs=self.resyncs,
                reconnects=self.reconnects,
                entries=len(self._state),
                epoch=self._state.epoch,
                retention_leeway=self._state.retention_leeway,
            )

    def age(self) -> float | None:
        """Seconds since the issuer was last heard from (None if never or not synced)."""
        with self._lock:
            if not self._synced or self._last_contact is None:
                return None
            return self._clock() - self._last_contact

    @property
    def retention_leeway(self) -> float | None:
        """The issuer's published ``retentionLeeway`` (None until it sends one). Read on every
        hybrid check, so without the lock: one attribute read of an immutable value."""
        return self._state.retention_leeway

    def why_invalid(self, ident: ServiceAccountIdentity) -> str | None:
        """Ask the current state (whatever its freshness) whether ``ident`` was invalidated."""
        with self._lock:
            return self._state.why_invalid(ident)

    # --- the loop ------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        # identity: the size caps below apply to what is buffered, not to a compressed form.
        return {
            "Authorization": f"Bearer {self._bearer.value()}",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        }

    def _touch(self) -> None:
        self._last_contact = self._clock()

    def _run(self) -> None:
        backoff = self._backoff_initial
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._resync()
                    need_list = False
                    backoff = self._backoff_initial
                self._watch()
                # The server ended the stream cleanly (restart, timeout): reconnect at once.
                backoff = self._backoff_initial
            except StreamGone as e:
                log.warning("invalidation stream: %s; resyncing", e or "position not served")
                with self._lock:
                    self._synced = False  # fail closed / fall back while rebuilding
                    self.resyncs += 1
                need_list = True
                continue
            except (httpx.HTTPError, StreamProtocolError, OSError, ValueError) as e:
                if self._stop.is_set():
                    break
                log.info("invalidation stream dropped (%s); reconnecting", type(e).__name__)
            except Exception:
                # Never let the follower die: a dead follower would leave callers stale forever.
                if self._stop.is_set():
                    break
                log.warning("invalidation stream follower error; reconnecting", exc_info=True)
            finally:
                with self._lock:
                    self._connected = False
                self._resp = None
            if self._stop.is_set():
                break
            with self._lock:
                self.reconnects += 1
            # Full jitter (AWS architecture blog "Exponential Backoff And Jitter").
            self._stop.wait(random.uniform(0.5 * backoff, backoff))  # noqa: S311 - not crypto
            backoff = min(self._backoff_max, backoff * 2)

    def _get_json(self, params: dict[str, str]) -> dict[str, Any]:
        self.requests += 1
        with self._client.stream(
            "GET", self.endpoint, params=params, headers=self._headers(), timeout=self._timeout
        ) as resp:
            if resp.status_code == 410:
                raise StreamGone("the issuer no longer serves our position (410)")
            if resp.status_code == 401:
                self._bearer.invalidate()  # a rotated credential file: re-read on reconnect
            if resp.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"invalidations list: HTTP {resp.status_code}",
                    request=resp.request,
                    response=resp,
                )
            _check_identity(resp)
            raw = bytearray()
            for chunk in resp.iter_bytes():  # identity only (checked above)
                raw += chunk
                if len(raw) > MAX_LIST_BYTES:
                    raise StreamProtocolError("InvalidationList page too large")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise StreamProtocolError("InvalidationList is not JSON") from e
        if not isinstance(body, dict) or body.get("kind") != "InvalidationList":
            raise StreamProtocolError("not an InvalidationList")
        return body

    def _resync(self) -> None:
        """List everything retained (after=0) into a fresh state, then swap it in."""
        fresh = InvalidationState()
        cursor = 0
        oldest: int | None = None
        target: int | None = None
        while True:
            params = {"after": str(cursor), "limit": "1000"}
            if target is not None and fresh.epoch:
                params["epoch"] = fresh.epoch  # every page from the same history, or 410
            if cursor and fresh.last_time is not None:
                params["afterTime"] = repr(fresh.last_time)  # ... and after the same event
            body = self._get_json(params)
            meta = body.get("metadata") or {}
            items = body.get("items")
            if not isinstance(items, list) or not isinstance(meta, dict):
                raise StreamProtocolError("malformed InvalidationList")
            if target is None:
                target = _int(meta.get("lastSeq", 0), "lastSeq")
                oldest = _int(meta.get("oldestSeq", 0), "oldestSeq")
                fresh.epoch = _epoch(meta.get("epoch")) or ""
                fresh.retention_leeway = _seconds(meta.get("retentionLeeway"), "retentionLeeway")
            elif (_epoch(meta.get("epoch")) or "") != fresh.epoch:
                raise StreamGone("the store's event history changed during the list")
            for item in items:
                if not isinstance(item, dict):
                    raise StreamProtocolError("malformed InvalidationList item")
                seq = _int(item.get("seq"), "seq")
                if seq <= cursor:
                    raise StreamProtocolError("InvalidationList not in seq order")
                fresh.apply(seq, item)
                cursor = seq
            if not items or cursor >= target:
                break
        fresh.prune(oldest, self._wall(), self.leeway)
        with self._lock:
            self._state = fresh
            self._synced = True
            self._touch()
        self._synced_event.set()
        if self._on_change is not None:
            self._on_change()

    def _watch(self) -> None:
        with self._lock:
            after = self._state.last_seq
            after_time = self._state.last_time
            epoch = self._state.epoch
        params = {"after": str(after), "watch": "true", "heartbeatSeconds": repr(self.heartbeat)}
        if epoch:
            params["epoch"] = epoch  # the issuer answers 410 if its store has another history
        if after and after_time is not None:
            params["afterTime"] = repr(after_time)  # ... or another event at our seq
        self.requests += 1
        req = self._client.build_request(
            "GET", self.endpoint, params=params, headers=self._headers(), timeout=self._timeout
        )
        resp = self._client.send(req, stream=True)
        self._resp = resp
        try:
            if resp.status_code == 410:
                raise StreamGone("the issuer no longer serves our position (410)")
            if resp.status_code == 401:
                self._bearer.invalidate()  # a rotated credential file: re-read on reconnect
            if resp.status_code != 200:
                raise httpx.HTTPStatusError(
                    f"invalidations watch: HTTP {resp.status_code}", request=req, response=resp
                )
            _check_identity(resp)
            with self._lock:
                # Connected, not yet fresh: only a line (the issuer sends a heartbeat at once)
                # proves the issuer is serving this position (issue 9, item 7).
                self._connected = True
            parser = LineParser()
            for chunk in self._chunks(resp):
                if self._stop.is_set():
                    return
                msgs = parser.feed(chunk)
                if msgs:
                    self._apply(msgs)
        finally:
            resp.close()

    @staticmethod
    def _chunks(resp: httpx.Response) -> Iterator[bytes]:
        yield from resp.iter_raw()

    def _apply(self, msgs: list[Message]) -> None:
        changed = False
        with self._lock:
            state = self._state
            for m in msgs:
                if isinstance(m, StreamEvent):
                    _same_history(state, m.epoch)
                    if m.seq > state.last_seq:
                        state.apply(m.seq, m.event)
                        changed = True
                elif isinstance(m, Heartbeat):
                    _same_history(state, m.epoch)
                    if m.last_seq is not None and m.last_seq < state.last_seq:
                        raise StreamGone(
                            f"the store went back in time (last seq {m.last_seq}, "
                            f"we saw {state.last_seq})"
                        )
                    if m.retention_leeway is not None:
                        state.retention_leeway = m.retention_leeway
                    if m.oldest_seq:
                        state.prune(m.oldest_seq, self._wall(), self.leeway)
                else:
                    raise StreamGone("the issuer ended the watch with 410 Expired")
            self._touch()
        if changed and self._on_change is not None:
            self._on_change()


def _same_history(state: InvalidationState, epoch: str | None) -> None:
    """StreamGone unless a line's ``epoch`` is the one the state was listed from. A state listed
    from an empty store (no epoch yet) takes the epoch of its first line."""
    if not epoch:
        return
    if not state.epoch:
        if state.last_seq:
            raise StreamGone("the issuer now names an event history our list had none of")
        state.epoch = epoch
    elif epoch != state.epoch:
        raise StreamGone(f"the store's event history changed (epoch {epoch}, ours {state.epoch})")
