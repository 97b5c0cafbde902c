"""Subprocess entry points for the conformance suite (multiprocessing, "spawn" start method).

Each worker opens its own store from a URL with ``open_store``, as a separate issuer process would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from issuer.store import Conflict, StoredKey, open_store


def key(kid: str, payload: bytes = b"\x00secret\xff") -> StoredKey:
    """A small but complete StoredKey."""
    return StoredKey(
        kid=kid,
        alg="ES256",
        state="active",
        public_jwk={"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ", "kid": kid},
        private_enc=payload,
        created_at=1_700_000_000.25,
        activate_at=1_700_000_100.5,
        max_token_lifetime=3600,
    )


def race_cas_keys(url: str, data_dir: str, worker: int, barrier: Any, results: Any) -> None:
    """Wait for the others, then cas_keys(0, ...) once; report ("won", v) or ("conflict", None)."""
    store = open_store(url, Path(data_dir))
    try:
        store.ping()
        barrier.wait(timeout=30)
        try:
            v = store.cas_keys(0, [key(f"proc{worker}")])
            results.put((worker, "won", v))
        except Conflict:
            results.put((worker, "conflict", None))
    finally:
        store.close()


def append_many(url: str, data_dir: str, worker: int, n: int, barrier: Any, results: Any) -> None:
    """Append ``n`` events after the barrier; report the seqs received."""
    store = open_store(url, Path(data_dir))
    try:
        store.ping()
        barrier.wait(timeout=30)
        seqs = [store.append_event({"worker": worker, "i": i}) for i in range(n)]
        results.put((worker, seqs))
    finally:
        store.close()


def append_later(url: str, data_dir: str, delay: float) -> None:
    """Sleep, then append one event stamped with the wall-clock time of the append."""
    store = open_store(url, Path(data_dir))
    try:
        store.ping()
        time.sleep(delay)
        store.append_event({"type": "from-process", "t": time.time()})
    finally:
        store.close()


def cas_keys_later(url: str, data_dir: str, delay: float) -> None:
    """Sleep, then write the key set (version 0 -> 1) and record when."""
    store = open_store(url, Path(data_dir))
    try:
        store.ping()
        time.sleep(delay)
        store.cas_keys(store.load_keys().version, [key("other")])
    finally:
        store.close()


def cas_forever(url: str, data_dir: str, payload_size: int) -> None:
    """Rewrite the key set in a loop until killed; version N holds kid "vN" and N's payload."""
    store = open_store(url, Path(data_dir))
    while True:
        state = store.load_keys()
        v = state.version + 1
        payload = bytes([v % 256]) * payload_size
        store.cas_keys(state.version, [key(f"v{v}", payload), key(f"v{v}-next", payload)])


def open_fresh(path: str, barrier: Any, results: Any) -> None:
    """Open a (new) SQLite store right after the others; report "ok" or the error."""
    from issuer.store.sqlite import SQLiteStore

    barrier.wait(timeout=30)
    try:
        store = SQLiteStore(Path(path))
        store.ping()
        store.close()
        results.put("ok")
    except Exception as e:  # reported, not raised: the test shows every outcome
        results.put(f"{type(e).__name__}: {e}")
