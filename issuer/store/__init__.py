"""Storage: the contract in :mod:`issuer.store.base`, backends in ``sqlite`` and ``redis_store``.

``open_store(url, data_dir)`` picks a backend from a URL: ``sqlite`` / ``sqlite:///path/file.db``
(default: ``DATA_DIR/issuer.db``), each with an optional ``?synchronous=full|normal`` (default
``full``; ``normal`` acknowledges object creates and updates before the device flush, see
:mod:`issuer.store.sqlite`), or Redis (details in :mod:`issuer.store.redis_store`)::

    redis://[[user]:pw@]host:port[/db]                      one server; rediss:// for TLS
    unix:///path/redis.sock[?db=N]                          one server, Unix socket
    redis+sentinel://[:pw@]host:port[,host:port...]/service[/db]
                                                            the master of a Sentinel service
    redis+cluster://[[user]:pw@]host:port[,host:port...]    a Redis Cluster (rediss+cluster: TLS);
    redis://host:port[,host:port...]?cluster=true           the listed nodes are seeds

Every Redis form takes ``?prefix=NAME`` to isolate stores sharing one server. A Cluster is chosen
by the URL, never detected; ``redis://...?cluster=true`` is the spelling that configuration
validators accepting only ``redis``/``rediss`` schemes let through.
"""

from __future__ import annotations

from pathlib import Path

from issuer.store.base import (
    JSON,
    AlreadyExists,
    Change,
    ChangeKind,
    ChangePage,
    ChangeType,
    Conflict,
    Event,
    EventPage,
    InvalidAddress,
    KeySetState,
    KeyState,
    NotFound,
    ObjectPage,
    Store,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
    Subscription,
)
from issuer.store.sqlite import SQLiteStore, SqliteURL, sqlite_url

_REDIS_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)


def open_store(url: str, data_dir: Path) -> Store:
    """Open the store named by ``url`` (see module docstring). Raises ValueError for a malformed
    or unsupported URL; does not connect (an unreachable server is StoreUnavailable later)."""
    sqlite = sqlite_url(url, data_dir)
    if sqlite is not None:
        return SQLiteStore(sqlite.path, synchronous=sqlite.synchronous)
    if url.startswith(_REDIS_SCHEMES):
        from issuer.store.redis_store import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(
        f"unsupported store URL {url!r}: use 'sqlite', 'sqlite:///PATH', 'redis://HOST:PORT/DB',"
        " 'redis+sentinel://HOST:PORT/SERVICE' or 'redis+cluster://HOST:PORT[,HOST:PORT...]'"
    )


__all__ = [
    "JSON",
    "AlreadyExists",
    "Change",
    "ChangeKind",
    "ChangePage",
    "ChangeType",
    "Conflict",
    "Event",
    "EventPage",
    "InvalidAddress",
    "KeySetState",
    "KeyState",
    "NotFound",
    "ObjectPage",
    "SqliteURL",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreOutcomeUnknown",
    "StoreUnavailable",
    "StoredKey",
    "Subscription",
    "open_store",
    "sqlite_url",
]
