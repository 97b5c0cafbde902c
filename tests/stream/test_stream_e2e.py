"""End to end against real `sa-issuer serve` subprocesses, on SQLite and on Redis.

After a pod is deleted, TokenReview rejects its token at once, hybrid within a second, plain OIDC
keeps accepting it; the stream survives an issuer crash/restart and a trim (410 resync) without
losing events; two replicas on one Redis share one stream; a silent stream makes hybrid fall back
to TokenReview or fail closed; a token revoked by jti is refused online and by hybrid.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from issuer.store import Store, open_store
from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.hybrid import HybridVerifier
from verifier.identity import ServiceAccountIdentity
from verifier.remote import OIDCVerifier
from verifier.tokenreview import TokenReviewVerifier

from ._helpers import TCPProxy, wait_until
from .conftest import IssuerFactory, IssuerProcess

AUD = "e2e-audience"
NS = "e2e"
SA = "app"


class Cluster:
    """The few API calls the tests make against one issuer process."""

    def __init__(self, p: IssuerProcess) -> None:
        self.p = p
        self.c = httpx.Client(
            base_url=p.url, headers={"Authorization": f"Bearer {p.admin_token}"}, timeout=10
        )

    def setup(self) -> None:
        for path, body in (
            ("/api/v1/namespaces", {"metadata": {"name": NS}}),
            (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": SA}}),
        ):
            r = self.c.post(path, json=body)
            assert r.status_code in (201, 409), r.text

    def pod(self, name: str) -> dict[str, Any]:
        body = {
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": SA,
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "example.invalid/c:1"}],
            },
        }
        r = self.c.post(f"/api/v1/namespaces/{NS}/pods", json=body)
        assert r.status_code == 201, r.text
        obj: dict[str, Any] = r.json()
        return obj

    def token(self, pod: dict[str, Any]) -> str:
        ref = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"]}
        ref["uid"] = pod["metadata"]["uid"]
        body = {"spec": {"audiences": [AUD], "expirationSeconds": 600, "boundObjectRef": ref}}
        r = self.c.post(f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token", json=body)
        assert r.status_code == 201, r.text
        tok: str = r.json()["status"]["token"]
        return tok

    def delete_pod(self, name: str) -> None:
        r = self.c.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
        assert r.status_code == 200, r.text

    def close(self) -> None:
        self.c.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> str | None:
    """None for the default embedded SQLite store, or a Redis URL."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return None


@pytest.fixture
def served(issuer_factory: IssuerFactory, backend: str | None) -> Iterator[IssuerProcess]:
    yield issuer_factory.start(store=backend)


def _store_of(p: IssuerProcess, backend: str | None) -> Store:
    """A second handle on the issuer's store (think: another replica writing)."""
    return open_store(backend or f"sqlite:///{p.data_dir / 'issuer.db'}", p.data_dir)


def _hybrid(p: IssuerProcess, **kw: Any) -> HybridVerifier:
    kw.setdefault("staleness", 5.0)
    h = HybridVerifier(p.issuer, [AUD], bearer_token=p.admin_token, insecure_allow_http=True, **kw)
    assert h.wait_synced(10)
    return h


def _rejects(v: Any, token: str) -> str | None:
    try:
        v.verify(token)
    except InvalidToken as e:
        return e.reason
    return None


def test_pod_deletion_three_modes(served: IssuerProcess) -> None:
    cl = Cluster(served)
    cl.setup()
    pod = cl.pod("web")
    token = cl.token(pod)
    oidc = OIDCVerifier(served.issuer, [AUD], insecure_allow_http=True)
    review = TokenReviewVerifier(served.url, served.admin_token, [AUD], insecure_allow_http=True)
    hybrid = _hybrid(served)
    try:
        ident = review.verify(token)
        assert isinstance(ident, ServiceAccountIdentity)
        assert (ident.namespace, ident.service_account_name) == (NS, SA)
        assert ident.pod_name == "web" and ident.pod_uid == pod["metadata"]["uid"]
        assert ident.token_id and ident.service_account_uid and ident.audiences == (AUD,)
        assert oidc.verify(token).pod_uid == hybrid.verify(token).pod_uid == ident.pod_uid
        assert review.calls == 1 and hybrid.calls == 0
        other = TokenReviewVerifier(
            served.url, served.admin_token, ["another-audience"], insecure_allow_http=True
        )
        assert _rejects(other, token) == "audience_mismatch"
        other.close()

        t0 = time.monotonic()
        cl.delete_pod("web")
        assert _rejects(review, token) == "revoked"  # at once
        assert wait_until(lambda: _rejects(hybrid, token) == "revoked", 2.0, 0.005)
        hybrid_after = time.monotonic() - t0
        assert hybrid_after <= 1.0, hybrid_after
        assert hybrid.calls == 0  # decided locally, no issuer call per check
        assert oidc.verify(token).pod_uid == ident.pod_uid  # offline: accepted until exp
        time.sleep(1.0)
        assert oidc.verify(token).pod_uid == ident.pod_uid
    finally:
        hybrid.close()
        review.close()
        oidc.close()
        cl.close()


def test_token_revoked_by_jti(served: IssuerProcess) -> None:
    cl = Cluster(served)
    cl.setup()
    token = cl.token(cl.pod("job"))
    review = TokenReviewVerifier(served.url, served.admin_token, [AUD], insecure_allow_http=True)
    hybrid = _hybrid(served)
    try:
        jti = hybrid.verify(token).token_id
        body = {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": {"jti": jti}}
        r = cl.c.post("/apis/sa-oidc.dev/v1/tokenrevocations", json=body)
        assert r.status_code == 201, r.text
        assert cl.c.post("/apis/sa-oidc.dev/v1/tokenrevocations", json=body).status_code == 200
        assert _rejects(review, token) == "revoked"
        assert wait_until(lambda: _rejects(hybrid, token) == "revoked", 1.0, 0.005)
    finally:
        hybrid.close()
        review.close()
        cl.close()


def test_stream_survives_issuer_crash_and_restart(
    served: IssuerProcess, backend: str | None
) -> None:
    cl = Cluster(served)
    cl.setup()
    pods = {n: cl.pod(n) for n in ("a", "b", "c")}
    hybrid = _hybrid(served)
    other = _store_of(served, backend)
    try:
        cl.delete_pod("a")
        served.kill()  # kill -9: the watch connection drops mid-stream
        # While the issuer is down another replica keeps deleting things.
        uid_b = pods["b"]["metadata"]["uid"]
        other.append_event(
            {"type": "ObjectDeleted", "kind": "Pod", "namespace": NS, "name": "b", "uid": uid_b}
        )
        served.launch()
        served.wait_ready()
        cl.delete_pod("c")
        want = {p["metadata"]["uid"] for p in pods.values()}
        assert wait_until(lambda: want <= set(hybrid.follower._state.uids["Pod"]), 5)
        st = hybrid.status()
        assert st.reconnects >= 1 and st.resyncs == 0
        assert st.last_seq == other.read_events(0).last_seq
    finally:
        hybrid.close()
        other.close()
        cl.close()


def test_resync_after_trim(served: IssuerProcess, backend: str | None) -> None:
    cl = Cluster(served)
    cl.setup()
    pod = cl.pod("x")
    token = cl.token(pod)
    hybrid = _hybrid(served)
    other = _store_of(served, backend)
    try:
        seen = other.append_event({"type": "KeyRevoked", "kid": "seen-before-the-crash"})
        assert wait_until(lambda: hybrid.status().last_seq == seen, 2)
        served.kill()
        for i in range(3):
            other.append_event({"type": "KeyRevoked", "kid": f"old-{i}"})
            time.sleep(0.01)
        other.append_event(
            {
                "type": "ObjectDeleted",
                "kind": "Pod",
                "namespace": NS,
                "name": "x",
                "uid": pod["metadata"]["uid"],
            }
        )
        other.trim_events(time.time() + 1)  # only the newest survives: the follower fell behind
        served.launch()
        served.wait_ready()
        r = httpx.get(
            served.url + "/apis/sa-oidc.dev/v1/invalidations",
            params={"after": "1", "watch": "true"},
            headers={"Authorization": f"Bearer {served.admin_token}"},
        )
        assert r.status_code == 410 and r.json()["reason"] == "Expired"
        assert wait_until(lambda: hybrid.status().resyncs == 1 and hybrid.is_fresh(), 5)
        assert _rejects(hybrid, token) == "revoked"
    finally:
        hybrid.close()
        other.close()
        cl.close()


def test_heartbeats_on_a_real_server(served: IssuerProcess) -> None:
    lines: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=5) as c,
        c.stream(
            "GET",
            served.url + "/apis/sa-oidc.dev/v1/invalidations",
            params={"watch": "true", "timeoutSeconds": "3"},
            headers={"Authorization": f"Bearer {served.admin_token}"},
        ) as resp,
    ):
        t0 = time.monotonic()
        for line in resp.iter_lines():
            if line:
                lines.append(json.loads(line))
            if len(lines) >= 2:
                break
    assert [x["type"] for x in lines] == ["HEARTBEAT", "HEARTBEAT"]
    assert time.monotonic() - t0 < 2.5  # the default beat is every second


def test_silent_stream_falls_back_or_fails_closed(served: IssuerProcess) -> None:
    cl = Cluster(served)
    cl.setup()
    token = cl.token(cl.pod("p"))
    proxy = TCPProxy(served.port)  # the stream goes through it; TokenReview goes direct
    direct = TokenReviewVerifier(served.url, served.admin_token, [AUD], insecure_allow_http=True)
    fallback = _hybrid(served, review_url=proxy.url, review=direct, staleness=1.0)
    closed = _hybrid(served, review_url=proxy.url, staleness=1.0, on_stale="fail_closed")
    try:
        fallback.verify(token)
        closed.verify(token)
        assert direct.calls == 0
        proxy.freeze()  # connections stay open, nothing arrives: like a dead peer
        assert wait_until(lambda: not fallback.is_fresh() and not closed.is_fresh(), 4)
        fallback.verify(token)
        assert direct.calls == 1 and fallback.calls == 1
        with pytest.raises(VerifierUnavailable):
            closed.verify(token)
        cl.delete_pod("p")  # while stale, the fallback still sees it
        assert _rejects(fallback, token) == "revoked"
        proxy.thaw()
        assert wait_until(lambda: fallback.is_fresh() and closed.is_fresh(), 5)
        assert _rejects(closed, token) == "revoked"
    finally:
        fallback.close()
        closed.close()
        direct.close()
        proxy.close()
        cl.close()


def test_two_replicas_share_one_stream(issuer_factory: IssuerFactory, redis_url: str) -> None:
    kek = issuer_factory.make_kek()
    a = issuer_factory.start(store=redis_url, kek=kek)
    b = issuer_factory.start(store=redis_url, kek=kek, issuer=a.issuer)
    cl = Cluster(a)
    cl.setup()
    token = cl.token(cl.pod("shared"))
    # Follower and TokenReview on replica B; the deletion goes through replica A.
    hybrid = HybridVerifier(
        a.issuer, [AUD], bearer_token=b.admin_token, review_url=b.url, insecure_allow_http=True
    )
    try:
        assert hybrid.wait_synced(10)
        hybrid.verify(token)
        t0 = time.monotonic()
        cl.delete_pod("shared")
        assert wait_until(lambda: _rejects(hybrid, token) == "revoked", 2.0, 0.005)
        assert time.monotonic() - t0 <= 1.0
    finally:
        hybrid.close()
        cl.close()


def _revoke_key_with_cli(
    issuer_factory: IssuerFactory, p: IssuerProcess, backend: str | None, kid: str
) -> None:
    args = ["keys", "revoke", kid, "--data-dir", str(p.data_dir)]
    if backend:
        args += ["--store", backend]
    done = issuer_factory.cli(*args)
    assert done.returncode == 0, done.stderr


def test_key_revocation_tokenreview(
    issuer_factory: IssuerFactory, served: IssuerProcess, backend: str | None
) -> None:
    cl = Cluster(served)
    cl.setup()
    token = cl.token(cl.pod("k"))
    review = TokenReviewVerifier(served.url, served.admin_token, [AUD], insecure_allow_http=True)
    oidc = OIDCVerifier(served.issuer, [AUD], insecure_allow_http=True)
    try:
        kid = oidc.verify(token).key_id
        assert kid
        _revoke_key_with_cli(issuer_factory, served, backend, kid)
        assert wait_until(lambda: _rejects(review, token) == "revoked", 2.0)
        assert oidc.verify(token).key_id == kid  # cached JWKS: offline keeps accepting
    finally:
        review.close()
        oidc.close()
        cl.close()


def test_key_revocation_reaches_hybrid(
    issuer_factory: IssuerFactory, served: IssuerProcess, backend: str | None
) -> None:
    cl = Cluster(served)
    cl.setup()
    token = cl.token(cl.pod("k"))
    hybrid = _hybrid(served)
    try:
        kid = hybrid.verify(token).key_id
        assert kid
        t0 = time.monotonic()
        _revoke_key_with_cli(issuer_factory, served, backend, kid)
        assert wait_until(lambda: _rejects(hybrid, token) == "revoked", 2.0, 0.005)
        assert time.monotonic() - t0 <= 2.0  # includes the CLI process start
    finally:
        hybrid.close()
        cl.close()


def test_offline_unavailable_takes_the_on_stale_path(served: IssuerProcess) -> None:
    """Discovery/JWKS unreachable (e.g. a bucket-hosted issuer document that is down) while the
    issuer's API is up: hybrid answers through TokenReview, or stays unavailable when told to
    fail closed — it never guesses."""
    cl = Cluster(served)
    cl.setup()
    pod = cl.pod("unreachable-jwks")
    token = cl.token(pod)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for mode in ("tokenreview", "fail_closed"):
        offline = OIDCVerifier(dead, [AUD], insecure_allow_http=True, timeout=1.0)
        h = _hybrid(served, offline=offline, on_stale=mode)
        try:
            if mode == "tokenreview":
                assert h.verify(token).pod_name == "unreachable-jwks"
                assert h.calls == 1
                cl.delete_pod("unreachable-jwks")
                assert _rejects(h, token) == "revoked"  # TokenReview's exact answer
            else:
                with pytest.raises(VerifierUnavailable):
                    h.verify(token)
                assert h.calls == 0
        finally:
            h.close()
            offline.close()
    cl.close()
