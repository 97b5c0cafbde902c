"""issuer.revocations on every store backend: idempotent, crash-safe token revocation, key
revocation events, and upkeep (trim/prune/repair) under the event-trim lease."""

from __future__ import annotations

import time

import pytest

from issuer import revocations
from issuer.store import Store


def test_revoke_token_is_idempotent(store: Store) -> None:
    now = time.time()
    seq = revocations.revoke_token(store, "jti-a", now + 600, now)
    assert revocations.is_token_revoked(store, "jti-a")
    assert not revocations.is_token_revoked(store, "jti-b")
    assert revocations.revoke_token(store, "jti-a", now + 600, now + 1) == seq
    page = store.read_events(0)
    assert [(e.seq, e.data["type"], e.data["jti"]) for e in page.events] == [
        (seq, "TokenRevoked", "jti-a")
    ]
    obj = store.get_object(revocations.KIND, "", "jti-a")
    assert obj["status"]["seq"] == seq and obj["spec"]["exp"] == int(now + 600)


def test_revoke_rejects_unusable_jti(store: Store) -> None:
    with pytest.raises(ValueError):
        revocations.revoke_token(store, "a/b", 0, 0)
    assert not revocations.is_token_revoked(store, "a/b")


def _half_done(store: Store, jti: str, now: float) -> None:
    """What a crash between "create object" and "append event" leaves behind."""
    store.create_object(
        revocations.KIND,
        "",
        jti,
        {
            "apiVersion": "sa-oidc.dev/v1",
            "kind": revocations.KIND,
            "metadata": {"name": jti, "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"jti": jti, "exp": int(now + 600)},
            "status": {},
        },
    )


def test_crash_between_writes_is_completed_by_retry(store: Store) -> None:
    now = time.time()
    _half_done(store, "jti-c", now)
    assert revocations.is_token_revoked(store, "jti-c")  # TokenReview refuses it already
    assert store.read_events(0).events == ()
    seq = revocations.revoke_token(store, "jti-c", now + 600, now)
    assert [e.seq for e in store.read_events(0).events] == [seq]


def test_crash_between_writes_is_repaired_by_upkeep(store: Store) -> None:
    now = time.time()
    _half_done(store, "jti-d", now)
    result = revocations.upkeep(store, retention=3600, holder="replica-1", now=now)
    assert result is not None and result["repaired"] == 1
    (ev,) = store.read_events(0).events
    assert ev.data["jti"] == "jti-d" and ev.data["exp"] == int(now + 600)
    assert store.get_object(revocations.KIND, "", "jti-d")["status"]["seq"] == ev.seq
    # Nothing left to repair.
    again = revocations.upkeep(store, retention=3600, holder="replica-1", now=now)
    assert again is not None and again["repaired"] == 0


def test_record_key_revoked(store: Store) -> None:
    seq = revocations.record_key_revoked(store, "kid-1", 123.0)
    (ev,) = store.read_events(0).events
    assert ev.seq == seq and dict(ev.data) == {"type": "KeyRevoked", "kid": "kid-1", "time": 123.0}


def test_upkeep_runs_on_one_replica_at_a_time(store: Store) -> None:
    assert revocations.upkeep(store, retention=3600, holder="a") is not None
    assert revocations.upkeep(store, retention=3600, holder="b") is None
    assert revocations.upkeep(store, retention=3600, holder="a") is not None


def test_upkeep_trims_old_events_and_prunes_expired_revocations(store: Store) -> None:
    now = time.time()
    revocations.revoke_token(store, "expired", now - 1000, now - 2000)
    revocations.revoke_token(store, "live", now + 1000, now)
    store.append_event({"type": "KeyRevoked", "kid": "k", "time": now})
    # Retention 0: every event older than the leeway goes (the newest always stays).
    later = now + revocations.RETENTION_LEEWAY + 10
    result = revocations.upkeep(store, retention=0, holder="a", now=later)
    assert result is not None
    assert result["pruned"] == 1 and result["trimmed"] == 2
    assert not revocations.is_token_revoked(store, "expired")
    assert revocations.is_token_revoked(store, "live")
    assert [e.data["type"] for e in store.read_events(0).events] == ["KeyRevoked"]


def test_upkeep_thread_trims_in_background(store: Store) -> None:
    store.append_event({"type": "KeyRevoked", "kid": "old", "time": 0})
    store.append_event({"type": "KeyRevoked", "kid": "new", "time": 0})
    # A clock far in the future: everything but the newest event is past retention.
    t = revocations.UpkeepThread(
        store, retention=10, interval=0.05, clock=lambda: time.time() + 1e6
    )
    t.start()
    try:
        deadline = time.monotonic() + 5
        while len(store.read_events(0).events) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        t.stop()
    assert [e.data["kid"] for e in store.read_events(0).events] == ["new"]
    # The lease was released: another holder gets it at once.
    assert store.acquire_lease(revocations.LEASE_NAME, "someone-else", 10)
