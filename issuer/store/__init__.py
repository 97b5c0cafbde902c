"""Storage: the contract in :mod:`issuer.store.base`, backends in ``sqlite`` and ``redis_store``.

``open_store(url, data_dir)`` picks a backend from a URL: ``sqlite`` / ``sqlite:///path/file.db``
(default: ``DATA_DIR/issuer.db``), ``redis://host:port/db``, ``rediss://...``,
``redis+sentinel://...``.
"""

from __future__ import annotations

from pathlib import Path

from issuer.store.base import (
    JSON,
    AlreadyExists,
    ChangeKind,
    Conflict,
    Event,
    EventPage,
    KeySetState,
    KeyState,
    NotFound,
    Store,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreUnavailable,
    Subscription,
)


def open_store(url: str, data_dir: Path) -> Store:
    """Open the store named by ``url`` (see module docstring)."""
    if url == "sqlite" or url.startswith("sqlite:"):
        from issuer.store.sqlite import SQLiteStore

        path = data_dir / "issuer.db"
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
        elif url.startswith("sqlite://") and len(url) > len("sqlite://"):
            raise ValueError(f"sqlite store URL must be sqlite:///ABSOLUTE/PATH, got {url!r}")
        return SQLiteStore(path)
    if url.startswith(("redis://", "rediss://", "redis+sentinel://", "unix://")):
        from issuer.store.redis_store import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(
        f"unsupported store URL {url!r}: use 'sqlite', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"
    )


__all__ = [
    "JSON",
    "AlreadyExists",
    "ChangeKind",
    "Conflict",
    "Event",
    "EventPage",
    "KeySetState",
    "KeyState",
    "NotFound",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "StoredKey",
    "Subscription",
    "open_store",
]
