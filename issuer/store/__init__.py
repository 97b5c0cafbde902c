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

import urllib.parse
from pathlib import Path
from typing import Literal

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


def sqlite_url(url: str) -> tuple[str | None, Literal["full", "normal"]] | None:
    """``(file or None for DATA_DIR/issuer.db, synchronous)`` of an SQLite store URL, None for
    another scheme; ValueError for a malformed one (pure: configuration checks use it too)."""
    base, _, query = url.partition("?")
    if base != "sqlite" and not base.startswith("sqlite:"):
        return None
    file = None
    if base.startswith("sqlite:///"):
        file = base[len("sqlite:///") :]
    elif base != "sqlite":
        raise ValueError(f"sqlite store URL must be sqlite:///ABSOLUTE/PATH, got {url!r}")
    synchronous: Literal["full", "normal"] = "full"
    for name, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if name != "synchronous" or values not in (["full"], ["normal"]):
            raise ValueError(
                f"unsupported sqlite store URL parameter in {url!r}: the only one is "
                "synchronous=full|normal"
            )
        synchronous = "normal" if values == ["normal"] else "full"
    return file, synchronous


def open_store(url: str, data_dir: Path) -> Store:
    """Open the store named by ``url`` (see module docstring). Raises ValueError for a malformed
    or unsupported URL; does not connect (an unreachable server is StoreUnavailable later)."""
    sqlite = sqlite_url(url)
    if sqlite is not None:
        from issuer.store.sqlite import SQLiteStore

        file, synchronous = sqlite
        path = data_dir / "issuer.db" if file is None else Path(file)
        return SQLiteStore(path, synchronous=synchronous)
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
    "sqlite_url",
]
