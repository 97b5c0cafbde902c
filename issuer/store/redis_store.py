"""Redis backend: many issuer replicas share one Redis (or Valkey), standalone, Sentinel or Cluster.

Store URLs (:meth:`RedisStore.from_url`; every form also takes ``?prefix=NAME``)::

    redis://[[user]:pw@]host:port[/db]                 one server (rediss:// for TLS, unix:///path)
    redis+sentinel://[:pw@]host:port[,host:port...]/service[/db]
                                                       the master of ``service``, found via Sentinel
    redis+cluster://[[user]:pw@]host:port[,host:port...][/0]
    rediss+cluster://...                               a Redis Cluster (TLS); the hosts are seeds
    redis://host:port[,host:port...][/0]?cluster=true  the same cluster, in the ``redis://`` scheme
                                                       that ``sa-issuer --store`` validates today

Cluster mode is chosen by the URL, never detected: detection would cost a round trip at open time
and make the client type depend on which node answered first.

Every key carries one hash tag, so the whole store lives in one Cluster slot and multi-key Lua
scripts are legal there (``P`` is ``{sa-oidc}``, or ``{sa-oidc:<prefix>}`` for an isolated store;
"only the substring between the first { and the first following } is hashed", Redis Cluster spec,
https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags)::

    P:keys                        hash  v (key-set version), d (key-set JSON)
    P:rv                          int   resourceVersion counter (INCR)
    P:obj:<kind>:<ns>:<name>      hash  rv, uid, j (object JSON without resourceVersion)
    P:idx:<kind>                  zset  "<ns>\\0<name>", score 0: lexical order = (ns, name),
                                        a namespace is one ZRANGEBYLEX range
    P:rev                         hash  "<kind>:<ns>" -> revision (HINCRBY by every object write)
    P:chg                         stream, entry id "<rv>-1": the object change log, fields
                                        t (server time, µs), y (ADDED|MODIFIED|DELETED), k, n, m
                                        (kind, namespace, name), d (object JSON without rv),
                                        p (MODIFIED: the replaced object JSON, Change.prev)
    P:chgfloor                    int   highest rv no longer in P:chg (set by the first logged
                                        write, SETNX, so an upgraded store never claims history
                                        it did not log; raised by trims)
    P:seq                         int   event sequence counter (INCR)
    P:epoch                       str   random id of the event history (EventPage.epoch), made
                                        by the first read that finds a seq but no epoch (a new or
                                        flushed Redis)
    P:events                      stream, entry id "<seq>-1", fields t (server time, µs), d (JSON)
    P:lease:<name>                string holder, with a PX expiry
    P:changes                     pub/sub channel: "keys" | "events" | "objects"

Every write is one Lua script: the precondition check, the counter bump, the write and the PUBLISH
happen atomically, so a Conflict changes nothing and an event exists exactly when its delete did.
Event seqs come from ``INCR P:seq`` inside the same script, so they are store-wide, strictly
increasing across replicas, never reused, and equal to the stream ID's first part. Reads that must
be one snapshot (:meth:`RedisStore.read_events`, :meth:`RedisStore.list_objects`) are scripts too,
not MULTI pipelines, so one code path serves every topology.

Cluster notes:

- Scripts declare their keys (``KEYS``), all in the tag's slot, so a cluster client routes each
  call to the slot's primary ("all keys a script accesses must be in the same hash slot",
  https://redis.io/docs/latest/develop/interact/programmability/eval-intro/). The list script also
  reads object hashes it finds in the index; their names carry the same tag, hence the same slot,
  which Redis checks at run time ("Script attempted to access keys that do not hash to the same
  slot" otherwise). While the slot itself is being migrated (resharding), such calls may fail
  with StoreUnavailable; a retry after the migration succeeds.
- Scripts run as EVALSHA with an EVAL fallback on NOSCRIPT, not redis-py's ``register_script``:
  its fallback sends SCRIPT LOAD to every primary, so one unreachable primary would fail calls
  for our (healthy) slot.
- XREAD BLOCK names ``P:events`` and so goes to the slot's primary, where XADD happens.
- Change notification uses classic PUBLISH/SUBSCRIBE, not sharded pub/sub: "clients can subscribe
  to every node, and can also publish to every other node. The cluster will make sure that
  published messages are forwarded as needed" (cluster spec, #pubsub). Sharded pub/sub
  (SPUBLISH/SSUBSCRIBE, Redis 7.0+,
  https://redis.io/docs/latest/develop/interact/pubsub/#sharded-pubsub) would save the
  cluster-bus broadcast, but needs Redis 7 and, on a slot move, the server just unsubscribes the
  client, which a listener may not notice as a gap. Our write rate is low (rotations, object
  changes), and a broken subscriber connection is a visible error after which the watcher tells
  its caller to re-read. The channel name carries the tag anyway, so moving to SPUBLISH is local.
- A failed command makes the cluster client re-read the topology (CLUSTER SLOTS), so after a
  failover the next call reaches the new primary; the call that met the failure raises
  StoreUnavailable. MOVED/ASK redirections are followed (the server did not run the command).

Sentinel (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/): redis-py
asks the sentinels where the master is whenever it opens a connection, and the store also asks
before every write (:meth:`RedisStore._writer`). When the master dies, calls fail with
StoreUnavailable until Sentinel has promoted a replica, then reach it. After a manual
``SENTINEL FAILOVER`` the old master stays up and would accept writes on open connections until
Sentinel demotes it (~10 s later) and discards them; asking first closes that window except for
the moment between the promotion and Sentinel's switch. Writes the old master acknowledged but
had not yet replicated are lost either way (replication is asynchronous; ``WAIT`` or the server's
``min-replicas-to-write`` narrow it).

Durability is the server's: run Redis with ``appendonly yes`` / ``appendfsync always`` (or
replicas) if a key set must survive a Redis crash. Commands are never retried by the client: a
retried CAS could report Conflict for its own successful write.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from issuer.store import _codec
from issuer.store._watch import ALL_KINDS, WatchThread
from issuer.store.base import (
    JSON,
    AlreadyExists,
    ChangeKind,
    ChangePage,
    Conflict,
    Event,
    EventPage,
    KeySetState,
    NotFound,
    ObjectPage,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

    RedisClient = redis.Redis[bytes]
    ClusterClient = RedisCluster[bytes]
else:
    RedisClient = redis.Redis
    ClusterClient = Any

#: Any client the store can drive: a plain (or Sentinel-managed) client, or a cluster client.
AnyClient = RedisClient | ClusterClient

#: Bound on connect and on each command, so an unreachable Redis is StoreUnavailable quickly.
DEFAULT_TIMEOUT = 2.0

#: A Sentinel check (see :meth:`RedisStore._writer`) slower than this means the sentinels are
#: not answering: skip the check for :data:`_SENTINEL_QUIET` s rather than stall every write.
_SENTINEL_SLOW = 0.5
_SENTINEL_QUIET = 5.0

#: Script calls per pipelined round trip in the bulk writes (create_objects, append_events).
_BATCH = 500

#: Longest single XREAD BLOCK (ms); must stay well below the socket timeout.
_BLOCK_SLICE_MS = 1000

_CAS_KEYS = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return {0, v} end
redis.call('HSET', KEYS[1], 'v', v + 1, 'd', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'keys')
return {1, v + 1}
"""

# The change log entry is written by the same script as the object: none is ever lost.
_CHANGE_LUA = """
local function log_change(stream, floorkey, rv, change, kind, ns, name, body, prev)
  redis.call('SETNX', floorkey, rv - 1)
  local t = redis.call('TIME')
  local entry = {'XADD', stream, rv .. '-1', 't', t[1] .. string.format('%06d', tonumber(t[2])),
                 'y', change, 'k', kind, 'n', ns, 'm', name, 'd', body}
  if prev then
    entry[#entry + 1] = 'p'
    entry[#entry + 1] = prev
  end
  redis.call(unpack(entry))
end
"""

_CREATE = (
    _CHANGE_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local rv = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'rv', rv, 'uid', ARGV[2], 'j', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
log_change(KEYS[5], KEYS[6], rv, 'ADDED', ARGV[6], ARGV[7], ARGV[8], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'objects')
return {1, rv}
"""
)

_UPDATE = (
    _CHANGE_LUA
    + """
local h = redis.call('HMGET', KEYS[1], 'rv', 'j')
local cur = h[1]
if not cur then return {0} end
if ARGV[1] == '1' and ARGV[2] ~= cur then return {2, cur} end
local rv = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'rv', rv, 'uid', ARGV[3], 'j', ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
-- The replaced state rides along (field p, Change.prev) for selector watches resumed from the log.
log_change(KEYS[4], KEYS[5], rv, 'MODIFIED', ARGV[7], ARGV[8], ARGV[9], ARGV[4], h[2])
redis.call('PUBLISH', ARGV[5], 'objects')
return {1, rv}
"""
)

# {last rv, floor or '', id1, y1, k1, n1, m1, d1, p1, ...}: one snapshot of the log after ARGV[1]
# (p: the replaced state of a MODIFIED entry, '' when none was logged).
_READ_CHANGES = """
local out = {redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[2]) or ''}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])) do
  local f, v = e[2], {}
  for i = 1, #f, 2 do v[f[i]] = f[i + 1] end
  out[#out + 1] = e[1]
  out[#out + 1] = v['y'] or ''
  out[#out + 1] = v['k'] or ''
  out[#out + 1] = v['n'] or ''
  out[#out + 1] = v['m'] or ''
  out[#out + 1] = v['d'] or ''
  out[#out + 1] = v['p'] or ''
end
return out
"""

_TRIM_CHANGES = """
local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
local f = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) - 1 > f then redis.call('SET', KEYS[2], tonumber(ARGV[1]) - 1) end
return n
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
    + _CHANGE_LUA
    + """
local h = redis.call('HMGET', KEYS[1], 'rv', 'uid', 'j')
if not h[1] then return {0} end
if ARGV[2] == '1' and ARGV[3] ~= h[2] then return {2, h[2]} end
if ARGV[11] == '1' and ARGV[12] ~= h[1] then return {3, h[1]} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
local drv = redis.call('INCR', KEYS[6])
log_change(KEYS[7], KEYS[8], drv, 'DELETED', ARGV[8], ARGV[9], ARGV[10], h[3])
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

# One page: at most ARGV[4] members of the index range, each with its object (as _LIST).
_LIST_PAGE = """
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
local out = {}
for _, m in ipairs(members) do
  local sep = string.find(m, '\\0', 1, true)
  local key = ARGV[1] .. string.sub(m, 1, sep - 1) .. ':' .. string.sub(m, sep + 1)
  local h = redis.call('HMGET', key, 'rv', 'j')
  out[#out + 1] = m
  out[#out + 1] = h[1] or ''
  out[#out + 1] = h[2] or ''
end
return out
"""

# The page, the oldest entry, the counter and the epoch as one snapshot (a script rather than
# MULTI, which a cluster client pipelines differently). The epoch is made (ARGV[3]) when missing
# once a seq exists: a new or flushed Redis that has events again; none ('') before any.
# Returns {last_seq, oldest_id or '', epoch or '', id1, d1, id2, d2...}.
_READ_EVENTS = """
local last = redis.call('GET', KEYS[2]) or '0'
local epoch = redis.call('GET', KEYS[3])
if not epoch and last ~= '0' then
  epoch = ARGV[3]
  redis.call('SET', KEYS[3], epoch)
end
local out = {last, '', epoch or ''}
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then out[2] = first[1][1] end
local n = tonumber(ARGV[2])
if n > 0 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', n)) do
    local d, f = '', e[2]
    for i = 1, #f, 2 do
      if f[i] == 'd' then d = f[i + 1] end
    end
    out[#out + 1] = e[1]
    out[#out + 1] = d
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


class _Script:
    """A Lua script run as EVALSHA, falling back to EVAL on NOSCRIPT (which also caches it).

    Both go to the node owning the KEYS' slot. redis-py's ``register_script`` falls back to
    SCRIPT LOAD instead, which a cluster client broadcasts to every primary.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: AnyClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:  # not run: safe to send again
            return client.execute_command("EVAL", self.source, len(keys), *keys, *args)


@contextlib.contextmanager
def _errors(*, write: bool = False) -> Iterator[None]:
    """Map redis-py exceptions onto the store's error tree.

    ``write``: the block sends a write. If the connection was up but no answer came (a timeout
    or a drop after sending), Redis may have applied it: that is StoreOutcomeUnknown, never
    StoreUnavailable's "nothing was changed" (issue 9, item 11). A failure to connect at all is
    still StoreUnavailable: the command was never sent.
    """
    try:
        yield
    except StoreError:
        raise
    except rexc.RedisClusterException as e:  # no slot owner / no node reachable (not a RedisError)
        raise StoreUnavailable(f"redis cluster unavailable: {e}") from e
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
        if write and not _never_sent(e):
            raise StoreOutcomeUnknown(f"redis did not answer a write: {e}") from e
        raise StoreUnavailable(f"redis unreachable: {e}") from e
    except rexc.ResponseError as e:
        if str(e).startswith("WRONGTYPE"):
            raise StoreCorrupt(f"redis holds an unexpected value type: {e}") from e
        raise StoreUnavailable(f"redis error: {e}") from e
    except rexc.RedisError as e:
        raise StoreUnavailable(f"redis error: {e}") from e


def _never_sent(e: BaseException) -> bool:
    """True when redis-py failed while connecting, before any command could be sent.

    redis-py words connect failures "Error ... connecting to ..." / "Timeout connecting to
    server" (redis/connection.py ``AbstractConnection.connect``); every other timeout or
    connection error happened on a connection that was up.
    """
    return "connecting to" in str(e)


_KINDS: dict[bytes, ChangeKind] = {k.encode(): k for k in ALL_KINDS}


def _event_time(raw: bytes) -> float:
    return int(raw) / 1_000_000


def _stream_seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class _RedisWatch(WatchThread):
    """A pub/sub listener thread that survives reconnects (see :meth:`RedisStore.watch`)."""

    def __init__(
        self,
        store: RedisStore,
        callback: Callable[[ChangeKind], None],
        kinds: Iterable[ChangeKind] | None,
    ) -> None:
        self._store = store
        # Ready once subscribed: every later write is seen.
        super().__init__(
            callback, name="redis-store-watch", ready_timeout=DEFAULT_TIMEOUT + 1, kinds=kinds
        )

    def _run(self) -> None:
        missed = False  # True after a failure: messages may have been lost, tell the caller
        backoff = 0.1
        while not self._stop.is_set():
            ps: Any = None
            try:
                # Cluster: SUBSCRIBE goes to the node owning the channel's slot; PUBLISH on any
                # node reaches it (see the module docstring).
                ps = self._store._client.pubsub(ignore_subscribe_messages=True)
                ps.subscribe(self._store._channel)
                self._ready.set()
                if missed:
                    for kind in _KINDS.values():
                        self._notify(kind)
                    missed = False
                backoff = 0.1
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=0.2)
                    if msg and msg.get("type") == "message":
                        known = _KINDS.get(msg["data"])
                        if known is not None:
                            self._notify(known)
            except (rexc.RedisError, rexc.RedisClusterException, StoreError, OSError, ValueError):
                missed = True
                self._ready.set()  # don't keep watch() waiting while Redis is down
                # A failing command makes a cluster client re-read the topology, so the next
                # SUBSCRIBE finds a promoted primary; the pub/sub connection alone would not.
                with contextlib.suppress(StoreError):
                    self._store.ping()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if ps is not None:
                    with contextlib.suppress(Exception):
                        ps.close()


class RedisStore:
    """The :class:`~issuer.store.base.Store` contract on Redis.

    ``RedisStore(client, prefix="")`` takes a redis-py client (``redis.Redis``, a Sentinel
    ``master_for`` client or ``redis.cluster.RedisCluster``) created with
    ``decode_responses=False``; ``prefix`` isolates stores sharing one server (keys become
    ``{sa-oidc:<prefix>}:...``). ``RedisStore(connect=factory)`` builds the client on first use
    instead (a cluster client connects in its constructor). Use :meth:`from_url` for bounded
    timeouts and no retries. Opening does not connect: an unreachable server surfaces as
    StoreUnavailable on the first call (:meth:`ping` checks).
    """

    backend = "redis"

    def __init__(
        self,
        client: AnyClient | None = None,
        prefix: str = "",
        *,
        connect: Callable[[], AnyClient] | None = None,
        topology: str = "standalone",
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix may not contain '{' or '}' (it is part of the hash tag)")
        if (client is None) == (connect is None):
            raise TypeError("pass exactly one of client and connect")
        self._conn: AnyClient | None = client
        self._connect = connect
        self._conn_lock = threading.Lock()
        #: "standalone", "sentinel" or "cluster" (informational).
        self.topology = topology
        # One hash tag on every key and on the channel: one slot (see the module docstring).
        tag = "{sa-oidc:" + prefix + "}" if prefix else "{sa-oidc}"
        self._p = tag
        self._k_keys = f"{tag}:keys"
        self._k_rv = f"{tag}:rv"
        self._k_seq = f"{tag}:seq"
        self._k_events = f"{tag}:events"
        self._k_epoch = f"{tag}:epoch"
        self._k_chg = f"{tag}:chg"
        self._k_chgfloor = f"{tag}:chgfloor"
        self._channel = f"{tag}:changes"
        self._cas_keys = _Script(_CAS_KEYS)
        self._create = _Script(_CREATE)
        self._update = _Script(_UPDATE)
        self._delete = _Script(_DELETE)
        self._append = _Script(_APPEND)
        self._list = _Script(_LIST)
        self._list_page = _Script(_LIST_PAGE)
        self._k_rev = f"{tag}:rev"
        self._read_events = _Script(_READ_EVENTS)
        self._read_changes = _Script(_READ_CHANGES)
        self._trim_changes = _Script(_TRIM_CHANGES)
        self._acquire = _Script(_ACQUIRE)
        self._release = _Script(_RELEASE)
        pool = getattr(client, "connection_pool", None)
        self._sentinel_pool = pool if isinstance(pool, SentinelConnectionPool) else None
        self._sentinel_quiet_until = 0.0
        self._watches: list[_RedisWatch] = []
        self._closed = False

    def _writer(self) -> AnyClient:
        """The client for a write. Through Sentinel, first ask where the master is now.

        redis-py asks only when it opens a connection, and after a manual ``SENTINEL FAILOVER``
        the old master stays up and keeps accepting writes on open connections until Sentinel
        demotes it (about 10 s later), when they are silently discarded. A changed address makes
        redis-py drop the connections to the old master (idle ones now, busy ones on release), so
        a write sent after Sentinel switched reaches the new master. Writes are rare (rotations,
        object changes), one Sentinel round trip each is cheap.
        """
        pool = self._sentinel_pool
        if pool is not None and time.monotonic() >= self._sentinel_quiet_until:
            t0 = time.monotonic()
            # On failure the write itself tells whether the master we know still works.
            with contextlib.suppress(rexc.RedisError, OSError):
                pool.get_master_address()
            if time.monotonic() - t0 > _SENTINEL_SLOW:
                self._sentinel_quiet_until = time.monotonic() + _SENTINEL_QUIET
        return self._client

    @property
    def _client(self) -> AnyClient:
        """The client, built on first use when opened with ``connect`` (StoreUnavailable if that
        fails; the next call tries again)."""
        client = self._conn
        if client is not None:
            return client
        with self._conn_lock:
            if self._conn is None:
                if self._closed or self._connect is None:
                    raise StoreUnavailable("store is closed")
                with _errors():
                    self._conn = self._connect()
            return self._conn

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> RedisStore:
        """Open any URL of the module docstring: ``redis://``, ``rediss://``, ``unix://``,
        ``redis+sentinel://``, ``redis+cluster://``, ``rediss+cluster://`` or ``redis://...``
        with ``?cluster=true``.

        A ``prefix`` query parameter (``redis://h:6379/0?prefix=test1``) or argument isolates
        the store. Connect and command timeouts are ``timeout`` seconds. Raises ValueError for a
        malformed URL; never connects.
        """
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        url_prefix = query.pop("prefix", "")
        cluster = _cluster_flag(query.pop("cluster", None), parts.scheme)
        prefix = prefix if prefix is not None else url_prefix
        opts: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "health_check_interval": 30,
            "decode_responses": False,
        }
        no_retry = Retry(NoBackoff(), 0)
        if cluster:
            connect = _cluster_connect(parts, query, opts, no_retry)
            return cls(connect=connect, prefix=prefix, topology="cluster")
        opts["retry"] = no_retry
        if parts.scheme == "redis+sentinel":
            return cls(_sentinel_client(parts, opts), prefix=prefix, topology="sentinel")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return cls(redis.Redis.from_url(url, **opts), prefix=prefix)

    # --- key names ---------------------------------------------------------------------------
    def _obj_key(self, kind: str, namespace: str, name: str) -> str:
        _codec.check_address(kind, namespace, name)
        return f"{self._p}:obj:{kind}:{namespace}:{name}"

    def _idx_key(self, kind: str) -> str:
        return f"{self._p}:idx:{kind}"

    # --- health -------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers PING (on a cluster: the primary that owns
        the store's slot, not every node)."""
        with _errors():
            client = self._client
            if isinstance(client, redis.Redis):
                client.ping()
            else:
                client.ping(target_nodes=client.get_node_from_key(self._k_keys))

    def close(self) -> None:
        """Stop watchers and disconnect the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for w in self._watches:
            w.close()
        self._watches.clear()
        client = self._conn  # kept: a caller's client reconnects if used again, as before
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

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
        with _errors(write=True):
            ok, v = self._cas_keys(
                self._writer(),
                keys=[self._k_keys],
                args=[int(expected_version), doc, self._channel],
            )
        if not ok:
            raise Conflict(f"key set is at version {v}, not {expected_version}")
        return int(v)

    # --- objects ------------------------------------------------------------------------------
    def create_object(self, kind: str, namespace: str, name: str, obj: JSON) -> JSON:
        """Store a new object; returns it with ``metadata.resourceVersion`` set."""
        body = _codec.strip_rv(obj)
        keys, args = self._create_call(kind, namespace, name, body)
        with _errors(write=True):
            res = self._create(self._writer(), keys=keys, args=args)
        if res[0] == 0:
            raise AlreadyExists(f"{kind} {namespace}/{name} already exists")
        return _codec.with_rv(body, int(res[1]))

    def create_objects(self, kind: str, items: Sequence[tuple[str, str, JSON]]) -> int:
        """Create many objects: the create script once per object, pipelined (one round trip
        per :data:`_BATCH`). Not atomic as a whole: on AlreadyExists the others are stored."""
        calls = [self._create_call(kind, ns, name, _codec.strip_rv(obj)) for ns, name, obj in items]
        results = self._pipelined(self._create, calls)
        for (namespace, name, _), res in zip(items, results, strict=True):
            if res[0] == 0:
                raise AlreadyExists(f"{kind} {namespace}/{name} already exists")
        return len(calls)

    def _create_call(
        self, kind: str, namespace: str, name: str, body: JSON
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the create script for one object."""
        keys = [
            self._obj_key(kind, namespace, name),
            self._idx_key(kind),
            self._k_rv,
            self._k_rev,
            self._k_chg,
            self._k_chgfloor,
        ]
        args = [
            f"{namespace}\x00{name}",
            _codec.object_uid(body),
            _codec.dump_json(body),
            self._channel,
            f"{kind}:{namespace}",
            kind,
            namespace,
            name,
        ]
        return keys, args

    def _pipelined(
        self, script: _Script, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, args), :data:`_BATCH` calls per round trip, in order."""
        out: list[Any] = []
        for start in range(0, len(calls), _BATCH):
            batch = calls[start : start + _BATCH]
            with _errors(write=True):
                if not out:
                    # The first call loads the script (EVAL on NOSCRIPT) for the EVALSHAs after it.
                    out.append(script(self._writer(), keys=batch[0][0], args=batch[0][1]))
                    batch = batch[1:]
                pipe = self._writer().pipeline(transaction=False)
                for keys, args in batch:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                out.extend(pipe.execute())
        return out

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
            flat = self._list(
                self._client, keys=[self._idx_key(kind)], args=[f"{self._p}:obj:{kind}:", lo, hi]
            )
        out: list[JSON] = []
        for i in range(0, len(flat), 3):
            what = f"{kind} {flat[i].decode(errors='replace')}"
            out.append(_codec.with_rv(_codec.load_json(flat[i + 2], what), int(flat[i + 1])))
        return out

    def list_objects_page(
        self,
        kind: str,
        namespace: str | None,
        limit: int,
        after: tuple[str, str] | None = None,
    ) -> ObjectPage:
        """At most ``limit`` objects after ``after``: ZRANGEBYLEX ... LIMIT on the kind's index
        (O(log N + limit)) and the objects' hashes, in one script."""
        _codec.check_address(kind, namespace or "", "-")
        limit = max(1, limit)
        if namespace is None:
            lo, hi = "-", "+"
        else:
            lo, hi = f"[{namespace}\x00", f"({namespace}\x01"
        if after is not None:
            _codec.check_address(kind, after[0], after[1] or "-")
            start = f"({after[0]}\x00{after[1]}"
            lo = start if namespace is None or after[0] >= namespace else lo
        with _errors():
            flat = self._list_page(
                self._client,
                keys=[self._idx_key(kind)],
                args=[f"{self._p}:obj:{kind}:", lo, hi, limit + 1],
            )
        members = [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]
        more = len(members) > limit
        members = members[:limit]
        items: list[JSON] = []
        for member, rv, doc in members:
            if not rv:
                continue  # an index member without its object is skipped, as list_objects does
            what = f"{kind} {member.decode(errors='replace')}"
            items.append(_codec.with_rv(_codec.load_json(doc, what), int(rv)))
        next_after: tuple[str, str] | None = None
        if more and members:
            ns, _, name = members[-1][0].decode().partition("\x00")
            next_after = (ns, name)
        return ObjectPage(tuple(items), next_after)

    def object_revisions(self, keys: Sequence[tuple[str, str]]) -> tuple[int, ...]:
        """Each (kind, namespace)'s revision (0 if never written): one HMGET."""
        if not keys:
            return ()
        fields = []
        for kind, namespace in keys:
            _codec.check_address(kind, namespace, "-")
            fields.append(f"{kind}:{namespace}")
        with _errors():
            values = self._client.hmget(self._k_rev, fields)
        return tuple(int(v) if v is not None else 0 for v in values)

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
        ``durable`` changes nothing here: durability is the Redis server's (``appendfsync``)."""
        key = self._obj_key(kind, namespace, name)
        body = _codec.strip_rv(obj)
        with _errors(write=True):
            res = self._update(
                self._writer(),
                keys=[key, self._k_rv, self._k_rev, self._k_chg, self._k_chgfloor],
                args=[
                    "0" if resource_version is None else "1",
                    resource_version or "",
                    _codec.object_uid(body),
                    _codec.dump_json(body),
                    self._channel,
                    f"{kind}:{namespace}",
                    kind,
                    namespace,
                    name,
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
        resource_version: str | None = None,
    ) -> tuple[JSON, int | None]:
        """Delete an object (uid/version-conditioned), appending ``event`` in the same script."""
        key = self._obj_key(kind, namespace, name)
        event_doc = _codec.dump_json(event) if event is not None else b""
        with _errors(write=True):
            res = self._delete(
                self._writer(),
                keys=[
                    key,
                    self._idx_key(kind),
                    self._k_seq,
                    self._k_events,
                    self._k_rev,
                    self._k_rv,
                    self._k_chg,
                    self._k_chgfloor,
                ],
                args=[
                    f"{namespace}\x00{name}",
                    "0" if uid is None else "1",
                    uid or "",
                    "0" if event is None else "1",
                    event_doc,
                    self._channel,
                    f"{kind}:{namespace}",
                    kind,
                    namespace,
                    name,
                    "0" if resource_version is None else "1",
                    resource_version or "",
                ],
            )
        if res[0] == 0:
            raise NotFound(f"{kind} {namespace}/{name} not found")
        if res[0] == 2:
            raise Conflict(f"{kind} {namespace}/{name} has uid {res[1].decode()!r}, not {uid!r}")
        if res[0] == 3:
            raise Conflict(
                f"{kind} {namespace}/{name} is at resourceVersion {res[1].decode()},"
                f" not {resource_version}"
            )
        deleted = _codec.with_rv(
            _codec.load_json(res[2], f"{kind} {namespace}/{name}"), int(res[1])
        )
        return deleted, (int(res[3]) if event is not None else None)

    # --- object change log ----------------------------------------------------------------------
    def read_changes(self, since: int, limit: int = 1000, kind: str | None = None) -> ChangePage:
        """Object changes with resourceVersion > ``since`` (of ``kind``, or all), oldest first."""
        n = max(1, limit)
        with _errors():
            flat = self._read_changes(
                self._client,
                keys=[self._k_chg, self._k_chgfloor, self._k_rv],
                args=[f"{max(0, since) + 1}-0", n],
            )
        last = int(flat[0])
        # No floor yet: nothing was ever logged, so history ends at the counter (an upgraded
        # store's older writes were not logged; a new store's counter is 0).
        floor = int(flat[1]) if flat[1] else last
        rows = []
        for i in range(2, len(flat), 7):
            eid, y, k, ns, m, d, p = flat[i : i + 7]
            body = _codec.load_json(d, f"change {eid!r}")
            doc = _codec.dump_change(y.decode(), body, _stream_seq(eid), p or None)
            rows.append((_stream_seq(eid), k.decode(), ns.decode(), m.decode(), doc))
        return _codec.change_page(rows, since, n, kind, floor, last)

    def trim_changes(self, before_time: float) -> int:
        """Drop changes logged (server clock) before ``before_time``; raise the floor past them."""
        with _errors(write=True):
            newest = self._client.xrevrange(self._k_chg, max="+", min="-", count=1)
            if not newest:
                return 0
            cut = _stream_seq(newest[0][0]) + 1  # everything, unless a newer entry is found
            start = "-"
            while True:
                batch = self._client.xrange(self._k_chg, min=start, max="+", count=500)
                hit = next((eid for eid, f in batch if _event_time(f[b"t"]) >= before_time), None)
                if hit is not None:
                    cut = _stream_seq(hit)
                    break
                if len(batch) < 500:
                    break
                start = "(" + batch[-1][0].decode()
            n = self._trim_changes(self._writer(), keys=[self._k_chg, self._k_chgfloor], args=[cut])
        return int(n)

    # --- invalidation events ------------------------------------------------------------------
    def append_event(self, data: Mapping[str, Any]) -> int:
        """Append an event; return its seq (store-wide, strictly increasing)."""
        doc = _codec.dump_json(data)
        with _errors(write=True):
            seq = self._append(
                self._writer(), keys=[self._k_seq, self._k_events], args=[doc, self._channel]
            )
        return int(seq)

    def append_events(self, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append many events, pipelined (the append script once per event, in order)."""
        calls = [
            ([self._k_seq, self._k_events], [_codec.dump_json(data), self._channel])
            for data in items
        ]
        return [int(seq) for seq in self._pipelined(self._append, calls)]

    def read_events(self, after: int, limit: int = 1000) -> EventPage:
        """Events with seq > ``after``, oldest first, at most ``limit``."""
        with _errors():
            # One script: the page, the oldest entry, the counter and the epoch: one snapshot.
            flat = self._read_events(
                self._client,
                keys=[self._k_events, self._k_seq, self._k_epoch],
                args=[f"{max(0, after) + 1}-0", max(0, limit), secrets.token_hex(8)],
            )
        events = tuple(
            Event(seq=_stream_seq(eid), data=_codec.load_json(d, f"event {eid!r}"))
            for eid, d in zip(flat[3::2], flat[4::2], strict=True)
        )
        return EventPage(
            events=events,
            oldest_seq=_stream_seq(flat[1]) if flat[1] else 0,
            last_seq=int(flat[0]),
            epoch=flat[2].decode() if isinstance(flat[2], bytes) else str(flat[2]),
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
        with _errors(write=True):
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
            return int(self._writer().xtrim(self._k_events, minid=cut, approximate=False))

    # --- leases -------------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``holder``; False while another holder's lease is live."""
        with _errors(write=True):
            ok = self._acquire(
                self._writer(),
                keys=[f"{self._p}:lease:{name}"],
                args=[holder, max(1, int(ttl * 1000))],
            )
        return bool(ok)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""
        with _errors(write=True):
            self._release(self._writer(), keys=[f"{self._p}:lease:{name}"], args=[holder])

    # --- change notification ------------------------------------------------------------------
    def watch(
        self,
        callback: Callable[[ChangeKind], None],
        kinds: Iterable[ChangeKind] | None = None,
    ) -> _RedisWatch:
        """Call ``callback("keys" | "events" | "objects")`` from a listener thread on every
        replica's write of one of ``kinds`` (default: all; pub/sub). After a lost connection is
        re-established, calls back once with each kind, since notifications may have been missed
        meanwhile."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        w = _RedisWatch(self, callback, kinds)
        self._watches.append(w)
        return w


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _cluster_flag(value: str | None, scheme: str) -> bool:
    """Whether the URL names a Redis Cluster (``redis[s]+cluster://`` or ``?cluster=true``)."""
    explicit = scheme in ("redis+cluster", "rediss+cluster")
    if value is None:
        return explicit
    if value.lower() in _TRUE:
        if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
            raise ValueError(f"cluster=true needs a redis:// or rediss:// URL, not {scheme}://")
        return True
    if value.lower() in _FALSE and not explicit:
        return False
    raise ValueError(f"cluster={value!r} in a {scheme}:// URL: use cluster=true or omit it")


def _host_ports(netloc: str, default_port: int, what: str) -> list[tuple[str, int]]:
    """``[userinfo@]h:p[,h:p...]`` -> [(h, p)...]; ``[v6]:p`` works, a missing port defaults."""
    out: list[tuple[str, int]] = []
    for hp in netloc.rsplit("@", 1)[-1].split(","):
        host, sep, port = hp.rpartition(":")
        if not sep or host.endswith(":") or "]" in port:  # no port (or a bare IPv6 address)
            host, port = hp, ""
        host = host.strip("[]")
        if not host:
            raise ValueError(f"{what} URL has an empty host in {netloc!r}")
        try:
            out.append((host, int(port) if port else default_port))
        except ValueError:
            raise ValueError(f"{what} URL has a bad port in {hp!r}") from None
    return out


def _cluster_connect(
    parts: Any, query: dict[str, str], opts: dict[str, Any], retry: Retry
) -> Callable[[], ClusterClient]:
    """Validate a cluster URL now; return the factory of its client (which connects at once).

    ``[[user]:pw@]h:p[,h:p...]``: the hosts are seed nodes, the rest of the topology is read from
    the cluster (CLUSTER SLOTS). The path may only be empty or ``/0``: a cluster has one database.
    Other query parameters are redis-py connection options, as for ``redis://``.
    """
    from redis.cluster import ClusterNode, RedisCluster

    seeds = _host_ports(parts.netloc, 6379, "redis cluster")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.strip('/')!r}")
    scheme = "rediss" if parts.scheme in ("rediss", "rediss+cluster") else "redis"
    userinfo = parts.netloc.rpartition("@")[0]
    host, port = seeds[0]
    host = f"[{host}]" if ":" in host else host
    # redis-py parses credentials, TLS and query options from the URL of the first seed.
    first = urlunsplit(
        (
            scheme,
            f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}",
            "/0",
            urlencode(query),
            "",
        )
    )

    def connect() -> ClusterClient:
        # retry=0: a connection error or timeout is not retried (a retried CAS could see its own
        # write as a Conflict); MOVED/ASK redirections still are, the command did not run.
        # require_full_coverage=False: the store needs its one slot, not every slot served.
        client: ClusterClient = RedisCluster(
            url=first,
            startup_nodes=[ClusterNode(h, p) for h, p in seeds[1:]],
            retry=retry,
            require_full_coverage=False,
            **opts,
        )
        return client

    return connect


def _sentinel_client(parts: Any, opts: dict[str, Any]) -> RedisClient:
    """Master client for ``redis+sentinel://[:pw@]h:p[,h:p]/service[/db]``."""
    from redis.sentinel import Sentinel

    hosts = _host_ports(parts.netloc, 26379, "redis+sentinel")
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel URL needs a service name: redis+sentinel://h:p/mymaster")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else 0
    password = parts.password
    # Sentinel connections: bounded, and not retried with backoff (redis-py's default), so an
    # unreachable Sentinel is StoreUnavailable within the timeout.
    sentinel_opts = {k: opts[k] for k in ("socket_timeout", "socket_connect_timeout", "retry")}
    # Every new master connection asks the sentinels where the master is now (failover).
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_opts)
    client: RedisClient = sentinel.master_for(service, db=db, password=password, **opts)
    return client
