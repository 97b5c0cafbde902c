"""Redis backend: many issuer replicas share one Redis (or Valkey, Sentinel, Cluster).

Every key carries one hash tag, so the whole store lives in one Cluster slot and multi-key Lua
scripts are legal there (``P`` is ``{sa-oidc}``, or ``{sa-oidc:<prefix>}`` for an isolated store)::

    P:keys                        hash  v (key-set version), d (key-set JSON)
    P:rv                          int   resourceVersion counter (INCR)
    P:obj:<kind>:<ns>:<name>      hash  rv, uid, j (object JSON without resourceVersion)
    P:idx:<kind>                  zset  "<ns>\\0<name>", score 0: lexical order = (ns, name),
                                        a namespace is one ZRANGEBYLEX range
    P:seq                         int   event sequence counter (INCR)
    P:events                      stream, entry id "<seq>-1", fields t (server time, µs), d (JSON)
    P:lease:<name>                string holder, with a PX expiry
    P:changes                     pub/sub channel: "keys" | "events" | "objects"

Every write is one Lua script: the precondition check, the counter bump, the write and the PUBLISH
happen atomically, so a Conflict changes nothing and an event exists exactly when its delete did.
Event seqs come from ``INCR P:seq`` inside the same script, so they are store-wide, strictly
increasing across replicas, never reused, and equal to the stream ID's first part.

Durability is the server's: run Redis with ``appendonly yes`` / ``appendfsync always`` (or
replicas) if a key set must survive a Redis crash. Commands are never retried by the client: a
retried CAS could report Conflict for its own successful write.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from issuer.store import _codec
from issuer.store.base import (
    JSON,
    AlreadyExists,
    ChangeKind,
    Conflict,
    Event,
    EventPage,
    KeySetState,
    NotFound,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    RedisClient = redis.Redis[bytes]
else:
    RedisClient = redis.Redis

#: Bound on connect and on each command, so an unreachable Redis is StoreUnavailable quickly.
DEFAULT_TIMEOUT = 2.0

#: Longest single XREAD BLOCK (ms); must stay well below the socket timeout.
_BLOCK_SLICE_MS = 1000

_CAS_KEYS = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
redis.call('HSET', KEYS[1], 'v', v + 1, 'd', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'keys')
return {1, v + 1}
"""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local rv = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'rv', rv, 'uid', ARGV[2], 'j', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('PUBLISH', ARGV[4], 'objects')
return {1, rv}
"""

_UPDATE = """
local cur = redis.call('HGET', KEYS[1], 'rv')
if not cur then return {0} end
if ARGV[1] == '1' and ARGV[2] ~= cur then return {2, cur} end
local rv = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'rv', rv, 'uid', ARGV[3], 'j', ARGV[4])
redis.call('PUBLISH', ARGV[5], 'objects')
return {1, rv}
"""

# Event time is the server's clock (TIME), identical for every replica: "<sec><usec, 6 digits>".
_APPEND_LUA = """
local function append(seqkey, stream, body, channel)
  local seq = redis.call('INCR', seqkey)
  local t = redis.call('TIME')
  redis.call('XADD', stream, seq .. '-1', 't', t[1] .. string.format('%06d', tonumber(t[2])),
             'd', body)
  redis.call('PUBLISH', channel, 'events')
  return seq
end
"""

_DELETE = (
    _APPEND_LUA
    + """
local h = redis.call('HMGET', KEYS[1], 'rv', 'uid', 'j')
if not h[1] then return {0} end
if ARGV[2] == '1' and ARGV[3] ~= h[2] then return {2, h[2]} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local seq = 0
if ARGV[4] == '1' then seq = append(KEYS[3], KEYS[4], ARGV[5], ARGV[6]) end
redis.call('PUBLISH', ARGV[6], 'objects')
return {1, h[1], h[3], seq}
"""
)

_APPEND = _APPEND_LUA + "return append(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"

# Object keys are built here from index members; they share the hash tag, hence the same slot.
_LIST = """
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])
local out = {}
for _, m in ipairs(members) do
  local sep = string.find(m, '\\0', 1, true)
  local key = ARGV[1] .. string.sub(m, 1, sep - 1) .. ':' .. string.sub(m, sep + 1)
  local h = redis.call('HMGET', key, 'rv', 'j')
  if h[1] then
    out[#out + 1] = m
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
  end
end
return out
"""

_ACQUIRE = """
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Map redis-py exceptions onto the store's error tree."""
    try:
        yield
    except StoreError:
        raise
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
        raise StoreUnavailable(f"redis unreachable: {e}") from e
    except rexc.ResponseError as e:
        if str(e).startswith("WRONGTYPE"):
            raise StoreCorrupt(f"redis holds an unexpected value type: {e}") from e
        raise StoreUnavailable(f"redis error: {e}") from e
    except rexc.RedisError as e:
        raise StoreUnavailable(f"redis error: {e}") from e


_KINDS: dict[bytes, ChangeKind] = {b"keys": "keys", b"events": "events", b"objects": "objects"}


def _event_time(raw: bytes) -> float:
    return int(raw) / 1_000_000


def _stream_seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class _RedisWatch:
    """A pub/sub listener thread that survives reconnects (see :meth:`RedisStore.watch`)."""

    def __init__(self, store: RedisStore, callback: Callable[[ChangeKind], None]) -> None:
        self._store = store
        self._callback = callback
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-store-watch", daemon=True)
        self._thread.start()
        # Once subscribed, every later write is seen; don't return before that (bounded wait).
        self._ready.wait(timeout=DEFAULT_TIMEOUT + 1)

    def _deliver(self, kind: ChangeKind) -> None:
        if self._stop.is_set():
            return
        # A failing callback must not kill the listener.
        with contextlib.suppress(Exception):
            self._callback(kind)

    def _run(self) -> None:
        missed = False  # True after a failure: messages may have been lost, tell the caller
        backoff = 0.1
        while not self._stop.is_set():
            ps = self._store._client.pubsub(ignore_subscribe_messages=True)
            try:
                ps.subscribe(self._store._channel)
                self._ready.set()
                if missed:
                    for kind in _KINDS.values():
                        self._deliver(kind)
                    missed = False
                backoff = 0.1
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=0.2)
                    if msg and msg.get("type") == "message":
                        known = _KINDS.get(msg["data"])
                        if known is not None:
                            self._deliver(known)
            except (rexc.RedisError, OSError, ValueError):
                missed = True
                self._ready.set()  # don't keep watch() waiting while Redis is down
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    ps.close()

    def close(self) -> None:
        """Stop the listener thread (idempotent)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)


class RedisStore:
    """The :class:`~issuer.store.base.Store` contract on Redis.

    ``RedisStore(client, prefix="")`` takes a redis-py client created with
    ``decode_responses=False``; ``prefix`` isolates stores sharing one server (keys become
    ``{sa-oidc:<prefix>}:...``). Use :meth:`from_url` for bounded timeouts and no retries.
    The constructor does not connect: an unreachable server surfaces as StoreUnavailable on the
    first call (:meth:`ping` checks).
    """

    backend = "redis"

    def __init__(self, client: RedisClient, prefix: str = "") -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix may not contain '{' or '}' (it is part of the hash tag)")
        self._client = client
        tag = "{sa-oidc:" + prefix + "}" if prefix else "{sa-oidc}"
        self._p = tag
        self._k_keys = f"{tag}:keys"
        self._k_rv = f"{tag}:rv"
        self._k_seq = f"{tag}:seq"
        self._k_events = f"{tag}:events"
        self._channel = f"{tag}:changes"
        self._cas_keys = client.register_script(_CAS_KEYS)
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._delete = client.register_script(_DELETE)
        self._append = client.register_script(_APPEND)
        self._list = client.register_script(_LIST)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._watches: list[_RedisWatch] = []
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> RedisStore:
        """Open ``redis://``, ``rediss://``, ``unix://`` or
        ``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``.

        A ``prefix`` query parameter (``redis://h:6379/0?prefix=test1``) or argument isolates
        the store. Connect and command timeouts are ``timeout`` seconds.
        """
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        url_prefix = query.pop("prefix", "")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        opts: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 30,
            "decode_responses": False,
        }
        client: RedisClient
        if parts.scheme == "redis+sentinel":
            client = _sentinel_client(parts, opts)
        else:
            client = redis.Redis.from_url(url, **opts)
        return cls(client, prefix=prefix if prefix is not None else url_prefix)

    # --- key names ---------------------------------------------------------------------------
    def _obj_key(self, kind: str, namespace: str, name: str) -> str:
        _codec.check_address(kind, namespace, name)
        return f"{self._p}:obj:{kind}:{namespace}:{name}"

    def _idx_key(self, kind: str) -> str:
        return f"{self._p}:idx:{kind}"

    # --- health -------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers PING."""
        with _errors():
            self._client.ping()

    def close(self) -> None:
        """Stop watchers and disconnect the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for w in self._watches:
            w.close()
        self._watches.clear()
        with contextlib.suppress(Exception):
            self._client.close()

    # --- signing keys -------------------------------------------------------------------------
    def load_keys(self) -> KeySetState:
        """The current key set (version 0 and no keys on a new store)."""
        with _errors():
            v, d = self._client.hmget(self._k_keys, ["v", "d"])
        if v is None:
            return KeySetState(version=0)
        if d is None:
            raise StoreCorrupt("redis key set has a version but no document")
        return KeySetState(version=int(v), keys=_codec.decode_keys(d))

    def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
        """Replace the key set iff its version is ``expected_version``; return the new version."""
        doc = _codec.encode_keys(keys)
        with _errors():
            ok, v = self._cas_keys(
                keys=[self._k_keys], args=[int(expected_version), doc, self._channel]
            )
        if not ok:
            raise Conflict(f"key set is at version {v}, not {expected_version}")
        return int(v)

    # --- objects ------------------------------------------------------------------------------
    def create_object(self, kind: str, namespace: str, name: str, obj: JSON) -> JSON:
        """Store a new object; returns it with ``metadata.resourceVersion`` set."""
        key = self._obj_key(kind, namespace, name)
        body = _codec.strip_rv(obj)
        with _errors():
            res = self._create(
                keys=[key, self._idx_key(kind), self._k_rv],
                args=[
                    f"{namespace}\x00{name}",
                    _codec.object_uid(body),
                    _codec.dump_json(body),
                    self._channel,
                ],
            )
        if res[0] == 0:
            raise AlreadyExists(f"{kind} {namespace}/{name} already exists")
        return _codec.with_rv(body, int(res[1]))

    def get_object(self, kind: str, namespace: str, name: str) -> JSON:
        """Return the object. Raises NotFound."""
        key = self._obj_key(kind, namespace, name)
        with _errors():
            rv, j = self._client.hmget(key, ["rv", "j"])
        if rv is None or j is None:
            raise NotFound(f"{kind} {namespace}/{name} not found")
        return _codec.with_rv(_codec.load_json(j, f"{kind} {namespace}/{name}"), int(rv))

    def list_objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """All objects of ``kind``, ordered by (namespace, name)."""
        _codec.check_address(kind, namespace or "", "-")
        if namespace is None:
            lo, hi = "-", "+"
        else:
            lo, hi = f"[{namespace}\x00", f"({namespace}\x01"
        with _errors():
            flat = self._list(keys=[self._idx_key(kind)], args=[f"{self._p}:obj:{kind}:", lo, hi])
        out: list[JSON] = []
        for i in range(0, len(flat), 3):
            what = f"{kind} {flat[i].decode(errors='replace')}"
            out.append(_codec.with_rv(_codec.load_json(flat[i + 2], what), int(flat[i + 1])))
        return out

    def update_object(
        self,
        kind: str,
        namespace: str,
        name: str,
        obj: JSON,
        *,
        resource_version: str | None = None,
    ) -> JSON:
        """Replace an object; when ``resource_version`` is given it must match (else Conflict)."""
        key = self._obj_key(kind, namespace, name)
        body = _codec.strip_rv(obj)
        with _errors():
            res = self._update(
                keys=[key, self._k_rv],
                args=[
                    "0" if resource_version is None else "1",
                    resource_version or "",
                    _codec.object_uid(body),
                    _codec.dump_json(body),
                    self._channel,
                ],
            )
        if res[0] == 0:
            raise NotFound(f"{kind} {namespace}/{name} not found")
        if res[0] == 2:
            raise Conflict(
                f"{kind} {namespace}/{name} is at resourceVersion {res[1].decode()},"
                f" not {resource_version}"
            )
        return _codec.with_rv(body, int(res[1]))

    def delete_object(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> tuple[JSON, int | None]:
        """Delete an object (uid-conditioned), appending ``event`` in the same script."""
        key = self._obj_key(kind, namespace, name)
        event_doc = _codec.dump_json(event) if event is not None else b""
        with _errors():
            res = self._delete(
                keys=[key, self._idx_key(kind), self._k_seq, self._k_events],
                args=[
                    f"{namespace}\x00{name}",
                    "0" if uid is None else "1",
                    uid or "",
                    "0" if event is None else "1",
                    event_doc,
                    self._channel,
                ],
            )
        if res[0] == 0:
            raise NotFound(f"{kind} {namespace}/{name} not found")
        if res[0] == 2:
            raise Conflict(f"{kind} {namespace}/{name} has uid {res[1].decode()!r}, not {uid!r}")
        deleted = _codec.with_rv(
            _codec.load_json(res[2], f"{kind} {namespace}/{name}"), int(res[1])
        )
        return deleted, (int(res[3]) if event is not None else None)

    # --- invalidation events ------------------------------------------------------------------
    def append_event(self, data: Mapping[str, Any]) -> int:
        """Append an event; return its seq (store-wide, strictly increasing)."""
        doc = _codec.dump_json(data)
        with _errors():
            seq = self._append(keys=[self._k_seq, self._k_events], args=[doc, self._channel])
        return int(seq)

    def read_events(self, after: int, limit: int = 1000) -> EventPage:
        """Events with seq > ``after``, oldest first, at most ``limit``."""
        with _errors():
            # MULTI/EXEC: the page, the oldest entry and the counter form one snapshot.
            pipe = self._client.pipeline(transaction=True)
            pipe.xrange(self._k_events, min=f"{max(0, after) + 1}-0", max="+", count=max(1, limit))
            pipe.xrange(self._k_events, min="-", max="+", count=1)
            pipe.get(self._k_seq)
            entries, first, last = pipe.execute()
        if limit <= 0:
            entries = []
        events = tuple(
            Event(seq=_stream_seq(eid), data=_codec.load_json(f[b"d"], f"event {eid!r}"))
            for eid, f in entries
        )
        return EventPage(
            events=events,
            oldest_seq=_stream_seq(first[0][0]) if first else 0,
            last_seq=int(last) if last is not None else 0,
        )

    def wait_events(self, after: int, timeout: float) -> EventPage:
        """Like read_events, but block up to ``timeout`` s (XREAD BLOCK) until an event exists."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            page = self.read_events(after)
            remaining = deadline - time.monotonic()
            if page.events or remaining <= 0:
                return page
            # BLOCK 0 would mean "forever": always at least 1 ms. Slices keep each call well
            # under the socket timeout; XREAD returns at once if an entry past `after` exists.
            block = max(1, min(_BLOCK_SLICE_MS, int(remaining * 1000)))
            with _errors():
                self._client.xread({self._k_events: f"{max(0, after)}-1"}, count=1, block=block)

    def trim_events(self, before_time: float) -> int:
        """Drop events appended (server clock) before ``before_time``, keeping the newest."""
        with _errors():
            newest = self._client.xrevrange(self._k_events, max="+", min="-", count=1)
            if not newest:
                return 0
            cut: str = newest[0][0].decode()
            start = "-"
            # Event times follow seq order, so the cut is the first entry not older than the bound.
            while True:
                batch = self._client.xrange(self._k_events, min=start, max=cut, count=500)
                hit = next((eid for eid, f in batch if _event_time(f[b"t"]) >= before_time), None)
                if hit is not None:
                    cut = hit.decode()
                    break
                if len(batch) < 500:
                    break
                start = "(" + batch[-1][0].decode()
            return int(self._client.xtrim(self._k_events, minid=cut, approximate=False))

    # --- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``holder``; False while another holder's lease is live."""
        with _errors():
            ok = self._acquire(
                keys=[f"{self._p}:lease:{name}"], args=[holder, max(1, int(ttl * 1000))]
            )
        return bool(ok)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""
        with _errors():
            self._release(keys=[f"{self._p}:lease:{name}"], args=[holder])

    # --- change notification ------------------------------------------------------------------
    def watch(self, callback: Callable[[ChangeKind], None]) -> _RedisWatch:
        """Call ``callback("keys" | "events" | "objects")`` from a listener thread on every
        replica's write (pub/sub). After a lost connection is re-established, calls back once
        with each kind, since notifications may have been missed meanwhile."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        w = _RedisWatch(self, callback)
        self._watches.append(w)
        return w


def _sentinel_client(parts: Any, opts: dict[str, Any]) -> RedisClient:
    """Master client for ``redis+sentinel://[:pw@]h:p[,h:p]/service[/db]``."""
    from redis.sentinel import Sentinel

    hosts: list[tuple[str, int]] = []
    for hp in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = hp.rpartition(":")
        hosts.append((host or hp, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel URL needs a service name: redis+sentinel://h:p/mymaster")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else 0
    password = parts.password
    sentinel = Sentinel(
        hosts,
        socket_timeout=opts["socket_timeout"],
        sentinel_kwargs={"socket_timeout": opts["socket_timeout"]},
    )
    client: RedisClient = sentinel.master_for(service, db=db, password=password, **opts)
    return client
