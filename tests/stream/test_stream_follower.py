"""The stream follower and HybridVerifier against a real stream server, on SQLite and Redis:
sync, live events, dropped connections, server restarts, 410 resync, staleness, two replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from issuer.store import Store, open_store
from verifier._stream import StreamFollower
from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.hybrid import HybridVerifier
from verifier.identity import ServiceAccountIdentity

from ._helpers import ServerThread, TCPProxy, wait_until
from .conftest import ADMIN, make_app


def _deleted(kind: str, uid: str) -> dict[str, Any]:
    return {
        "type": "ObjectDeleted",
        "kind": kind,
        "namespace": "ns",
        "name": uid,
        "uid": uid,
        "time": time.time(),
    }


def _pod(uid: str) -> ServiceAccountIdentity:
    return ServiceAccountIdentity(
        namespace="ns",
        service_account_name="sa",
        service_account_uid="sa-uid",
        pod_name=uid,
        pod_uid=uid,
    )


@pytest.fixture
def proxy(stream_server: ServerThread) -> Iterator[TCPProxy]:
    p = TCPProxy(stream_server.port)
    yield p
    p.close()


def _follower(url: str, heartbeat: float = 0.2) -> StreamFollower:
    f = StreamFollower(url, ADMIN, heartbeat=heartbeat, backoff_initial=0.02, backoff_max=0.2)
    f.start()
    return f


def test_follower_syncs_then_follows_live(store: Store, stream_server: ServerThread) -> None:
    store.append_event(_deleted("Pod", "before-start"))
    f = _follower(stream_server.url)
    try:
        assert f.wait_synced(5)
        assert f.why_invalid(_pod("before-start")) == "bound pod deleted"
        t0 = time.monotonic()
        seq = store.append_event(_deleted("Pod", "live"))
        assert wait_until(lambda: f.why_invalid(_pod("live")) is not None, 2)
        assert time.monotonic() - t0 < 1.0
        assert f.status().last_seq == seq and f.status().connected
        # Heartbeats keep it fresh while nothing happens.
        time.sleep(0.6)
        age = f.age()
        assert age is not None and age < 0.5
    finally:
        f.close()


def test_follower_survives_dropped_connection(
    store: Store, stream_server: ServerThread, proxy: TCPProxy
) -> None:
    f = _follower(proxy.url)
    try:
        assert f.wait_synced(5)
        for round_ in range(3):
            assert wait_until(lambda: f.status().connected, 5)
            proxy.drop()
            # Events while the follower is (probably) disconnected: none may be lost.
            uids = [f"drop{round_}-{i}" for i in range(5)]
            for u in uids:
                store.append_event(_deleted("Pod", u))
            assert wait_until(lambda uids=uids: all(f.why_invalid(_pod(u)) for u in uids), 5)
        st = f.status()
        assert st.reconnects >= 3 and st.resyncs == 0
        assert st.last_seq == store.read_events(0).last_seq
    finally:
        f.close()


def test_follower_survives_server_restart(store: Store, stream_server: ServerThread) -> None:
    f = _follower(stream_server.url)
    try:
        assert f.wait_synced(5)
        stream_server.stop()
        store.append_event(_deleted("Secret", "while-down"))
        stream_server.start()
        ident = ServiceAccountIdentity(
            namespace="ns", service_account_name="sa", secret_name="s", secret_uid="while-down"
        )
        assert wait_until(lambda: f.why_invalid(ident) is not None, 5)
        assert f.status().resyncs == 0
    finally:
        f.close()


def test_follower_resyncs_after_410(store: Store, stream_server: ServerThread) -> None:
    store.append_event(_deleted("Pod", "old"))
    f = _follower(stream_server.url)
    try:
        assert f.wait_synced(5)
        stream_server.stop()
        store.append_event(_deleted("Pod", "trimmed-away"))
        store.append_event(_deleted("Pod", "trimmed-too"))
        time.sleep(0.01)
        store.append_event(_deleted("Pod", "newest"))
        store.trim_events(time.time() + 1)  # keeps only "newest": the follower fell behind
        stream_server.start()
        assert wait_until(lambda: f.status().resyncs == 1 and f.status().synced, 5)
        assert f.why_invalid(_pod("newest")) is not None
        # Rebuilt from scratch: what the server no longer retains is gone from the state too.
        assert f.why_invalid(_pod("old")) is None
    finally:
        f.close()


def test_follower_goes_stale_when_stream_is_silent(
    store: Store, stream_server: ServerThread, proxy: TCPProxy
) -> None:
    f = _follower(proxy.url)
    try:
        assert f.wait_synced(5)
        assert wait_until(lambda: (f.age() or 9) < 0.3, 2)
        proxy.freeze()
        time.sleep(0.8)
        age = f.age()
        assert age is not None and age > 0.6
        proxy.thaw()
        assert wait_until(lambda: (f.age() or 9) < 0.3, 5)
    finally:
        f.close()


class _FakeOffline:
    """Offline check stand-in: a "token" is a pod uid (the real OIDCVerifier is exercised in the
    end-to-end tests)."""

    def verify(self, token: str) -> ServiceAccountIdentity:
        if token == "bad":
            raise InvalidToken("bad_signature")
        return _pod(token)


class _FakeReview:
    def __init__(self) -> None:
        self.calls = 0

    def verify(self, token: str) -> ServiceAccountIdentity:
        self.calls += 1
        return _pod(token)


def _hybrid(url: str, on_stale: str, staleness: float = 0.5) -> tuple[HybridVerifier, _FakeReview]:
    review = _FakeReview()
    h = HybridVerifier(
        url,
        ["aud"],
        bearer_token=ADMIN,
        staleness=staleness,
        on_stale=on_stale,  # type: ignore[arg-type]
        heartbeat=0.1,
        offline=_FakeOffline(),
        review=review,
        insecure_allow_http=True,
    )
    return h, review


def test_hybrid_rejects_invalidated_and_falls_back_when_stale(
    store: Store, stream_server: ServerThread, proxy: TCPProxy
) -> None:
    h, review = _hybrid(proxy.url, "tokenreview")
    try:
        assert h.wait_synced(5)
        assert h.verify("p1").pod_uid == "p1" and review.calls == 0
        with pytest.raises(InvalidToken) as ei:
            h.verify("bad")
        assert ei.value.reason == "bad_signature"
        store.append_event(_deleted("Pod", "p1"))
        assert wait_until(lambda: h.follower.why_invalid(_pod("p1")) is not None, 1)
        with pytest.raises(InvalidToken) as ei:
            h.verify("p1")
        assert ei.value.reason == "revoked"
        proxy.freeze()
        assert wait_until(lambda: not h.is_fresh(), 3)
        assert h.verify("p2").pod_uid == "p2"  # answered by TokenReview
        assert review.calls == 1 and h.calls == 1
        with pytest.raises(InvalidToken):  # known-revoked stays revoked even when stale
            h.verify("p1")
        proxy.thaw()
        assert wait_until(h.is_fresh, 5)
        h.verify("p3")
        assert review.calls == 1
    finally:
        h.close()


def test_hybrid_fail_closed_when_stale(
    store: Store, stream_server: ServerThread, proxy: TCPProxy
) -> None:
    h, review = _hybrid(proxy.url, "fail_closed")
    try:
        assert h.wait_synced(5)
        h.verify("p1")
        proxy.freeze()
        assert wait_until(lambda: not h.is_fresh(), 3)
        with pytest.raises(VerifierUnavailable):
            h.verify("p1")
        assert review.calls == 0 and h.stale_refusals == 1
    finally:
        h.close()


def test_hybrid_not_fresh_before_first_sync(store: Store) -> None:
    # Nothing listens on this port: never synced -> every check takes the on_stale path.
    h, review = _hybrid("http://127.0.0.1:9", "tokenreview")
    try:
        assert not h.is_fresh()
        h.verify("p1")
        assert review.calls == 1
    finally:
        h.close()


def test_two_replicas_on_one_redis(redis_url: str, tmp_path: Any) -> None:
    a, b = open_store(redis_url, tmp_path), open_store(redis_url, tmp_path)
    srv_a = ServerThread(make_app(a)).start()
    srv_b = ServerThread(make_app(b)).start()
    f = _follower(srv_b.url)
    try:
        assert f.wait_synced(5)
        t0 = time.monotonic()
        a.append_event(_deleted("Pod", "on-a"))
        assert wait_until(lambda: f.why_invalid(_pod("on-a")) is not None, 2)
        assert time.monotonic() - t0 < 1.0
        # The follower switches replica (B goes away) and resumes on A from its last seq.
        f2 = _follower(srv_a.url)
        assert f2.wait_synced(5)
        assert f2.status().last_seq == f.status().last_seq
        f2.close()
    finally:
        f.close()
        srv_a.stop()
        srv_b.stop()
        a.close()
        b.close()
