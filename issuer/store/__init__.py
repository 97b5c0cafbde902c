"""Storage: the contract in :mod:`issuer.store.base`, backends in ``sqlite`` and ``redis_store``.

``open_store(url, data_dir)`` picks a backend from a URL: ``sqlite`` / ``sqlite:///path/file.db``
(default: ``DATA_DIR/issuer.db``), or Redis (details in :mod:`issuer.store.redis_store`)::

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
    if url == "sqlite" or url.startswith("sqlite:"):
        from issuer.store.sqlite import SQLiteStore

        path = data_dir / "issuer.db"
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
        elif url.startswith("sqlite://") and len(url) > len("sqlite://"):
            raise ValueError(f"sqlite store URL must be sqlite:///ABSOLUTE/PATH, got {url!r}")
        return SQLiteStore(path)
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
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreOutcomeUnknown",
    "StoreUnavailable",
    "StoredKey",
    "Subscription",
    "open_store",
]
