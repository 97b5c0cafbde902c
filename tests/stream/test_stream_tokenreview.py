"""TokenReviewVerifier: answer mapping (kube's error texts -> reason codes), failures that must be
"could not check", the success cache, and the request it sends. Canned answers come from an
httpx MockTransport; transport failures from respx. The real issuer is exercised in
test_stream_e2e.py."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest
import respx

from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.tokenreview import (
    TOKENREVIEW_PATH,
    AsyncTokenReviewVerifier,
    TokenReviewVerifier,
    error_reason,
)

URL = "https://issuer.example"
# Shaped like a compact JWS (so the verifier's local "not a JWT" explanation does not apply) but
# signed by nobody: only the canned answers decide.
TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0"  # {"alg":"RS256","kid":"k1"}
    ".eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bnMxOmFwcCJ9"
    ".bm90LWEtcmVhbC1zaWduYXR1cmU"
)
OK_STATUS: dict[str, Any] = {
    "authenticated": True,
    "user": {
        "username": "system:serviceaccount:ns1:app",
        "uid": "sa-uid",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/pod-name": ["web-1"],
            "authentication.kubernetes.io/pod-uid": ["pod-uid"],
            "authentication.kubernetes.io/node-name": ["node-a"],
            "authentication.kubernetes.io/node-uid": ["node-uid"],
            "authentication.kubernetes.io/credential-id": ["JTI=jti-1"],
        },
    },
    "audiences": ["aud-1"],
}


def _review(status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}


class Recorder:
    """A MockTransport answering with a fixed response and keeping the requests."""

    def __init__(self, body: Any = None, status: int = 201) -> None:
        self.body = _review(OK_STATUS) if body is None else body
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.body, bytes):
            return httpx.Response(self.status, content=self.body)
        return httpx.Response(self.status, json=self.body)


def _verifier(rec: Recorder, **kw: Any) -> TokenReviewVerifier:
    client = httpx.Client(transport=httpx.MockTransport(rec))
    return TokenReviewVerifier(URL, "admin-secret", ["aud-1"], client=client, **kw)


def test_success_maps_identity_and_sends_a_tokenreview() -> None:
    rec = Recorder()
    v = _verifier(rec)
    ident = v.verify(TOKEN)
    assert (ident.namespace, ident.service_account_name, ident.service_account_uid) == (
        "ns1",
        "app",
        "sa-uid",
    )
    assert (ident.pod_name, ident.pod_uid, ident.node_name, ident.node_uid) == (
        "web-1",
        "pod-uid",
        "node-a",
        "node-uid",
    )
    assert ident.token_id == "jti-1" and ident.audiences == ("aud-1",)
    assert ident.username == "system:serviceaccount:ns1:app"
    (req,) = rec.requests
    assert req.method == "POST" and str(req.url) == URL + TOKENREVIEW_PATH
    assert req.headers["authorization"] == "Bearer admin-secret"
    body = json.loads(req.content)
    assert body == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": TOKEN, "audiences": ["aud-1"]},
    }
    assert v.calls == 1


# The texts issuer/review.py (after kube pkg/serviceaccount) answers with, and their codes.
ERRORS = [
    ("service account token has expired", "expired"),
    ("service account token is not valid yet", "not_yet_valid"),
    ('token audiences ["a"] is invalid for the target audiences ["b"]', "audience_mismatch"),
    ('target audiences [""] are invalid', "audience_mismatch"),
    ("service account token has been invalidated", "revoked"),
    ('serviceaccounts "app" not found', "revoked"),
    ("service account UID (x) does not match claim (y)", "revoked"),
    ("pod UID (x) does not match service account pod ref claim (y)", "revoked"),
    ("Token has been invalidated", "revoked"),
    ("Token does not match server's copy", "revoked"),
    ("invalid bearer token", "bad_signature"),
    ("", "bad_signature"),
]


@pytest.mark.parametrize(("text", "reason"), ERRORS)
def test_unauthenticated_maps_error_text(text: str, reason: str) -> None:
    assert error_reason(text) == reason
    v = _verifier(Recorder(_review({"authenticated": False, "user": {}, "error": text})))
    with pytest.raises(InvalidToken) as ei:
        v.verify(TOKEN)
    assert ei.value.reason == reason
    assert TOKEN not in str(ei.value)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({**OK_STATUS, "audiences": []}, "audience_mismatch"),
        ({**OK_STATUS, "audiences": ["other"]}, "audience_mismatch"),
        ({**OK_STATUS, "user": {"username": "alice"}}, "invalid_claim"),
        ({**OK_STATUS, "user": {"username": "system:serviceaccount:onlyns"}}, "invalid_claim"),
    ],
)
def test_authenticated_but_unacceptable(status: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidToken) as ei:
        _verifier(Recorder(_review(status))).verify(TOKEN)
    assert ei.value.reason == reason


@pytest.mark.parametrize("code", [401, 403, 404, 429, 500, 503])
def test_error_statuses_are_unavailable(code: int) -> None:
    body = {"kind": "Status", "code": code}
    with pytest.raises(VerifierUnavailable):
        _verifier(Recorder(body, status=code)).verify(TOKEN)


def test_400_is_malformed() -> None:
    with pytest.raises(InvalidToken) as ei:
        _verifier(Recorder({"kind": "Status", "code": 400}, status=400)).verify(TOKEN)
    assert ei.value.reason == "malformed"


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b"[]", {"kind": "Status"}, {"kind": "TokenReview"}]
)
def test_answers_that_are_not_tokenreviews_are_unavailable(body: Any) -> None:
    with pytest.raises(VerifierUnavailable):
        _verifier(Recorder(body, status=200)).verify(TOKEN)


@respx.mock
@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    respx.post(URL + TOKENREVIEW_PATH).mock(side_effect=exc)
    v = TokenReviewVerifier(URL, "admin-secret", ["aud-1"], timeout=0.5)
    with pytest.raises(VerifierUnavailable) as ei:
        v.verify(TOKEN)
    assert TOKEN not in str(ei.value)


def test_empty_token_is_refused_locally() -> None:
    rec = Recorder()
    with pytest.raises(InvalidToken) as ei:
        _verifier(rec).verify("  ")
    assert ei.value.reason == "malformed" and rec.requests == []


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="https"):
        TokenReviewVerifier("http://issuer.example", "t", ["a"])
    TokenReviewVerifier("http://127.0.0.1:1", "t", ["a"], insecure_allow_http=True).close()
    with pytest.raises(ValueError):
        TokenReviewVerifier(URL, "", ["a"])
    with pytest.raises(ValueError):
        TokenReviewVerifier(URL, "t", [])


def test_success_cache_hits_ttl_and_bound() -> None:
    rec = Recorder()
    v = _verifier(rec, cache_ttl=0.2, cache_size=2)
    for _ in range(5):
        v.verify(TOKEN)
    assert v.calls == 1 and v.cache_hits == 4
    time.sleep(0.25)
    v.verify(TOKEN)
    assert v.calls == 2  # expired entry: asked again
    v.verify(TOKEN + "2")
    v.verify(TOKEN + "3")  # bound of 2: TOKEN is evicted (least recently used)
    v.verify(TOKEN)
    assert v.calls == 5
    v.clear_cache()
    v.verify(TOKEN)
    assert v.calls == 6


def test_failures_are_not_cached() -> None:
    rec = Recorder(_review({"authenticated": False, "error": "service account token has expired"}))
    v = _verifier(rec, cache_ttl=10)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            v.verify(TOKEN)
    assert v.calls == 3 and v.cache_hits == 0


def test_cache_never_holds_the_token() -> None:
    v = _verifier(Recorder(), cache_ttl=10)
    v.verify(TOKEN)
    cache = v._cache
    assert cache is not None
    keys = list(cache._entries)
    assert len(keys) == 1 and TOKEN.encode() not in keys[0] and len(keys[0]) == 32


def test_async_variant() -> None:
    async def main() -> None:
        ok = Recorder()
        v = AsyncTokenReviewVerifier(
            URL,
            "admin-secret",
            ["aud-1"],
            client=httpx.AsyncClient(transport=httpx.MockTransport(ok)),
            cache_ttl=10,
        )
        assert (await v.verify(TOKEN)).pod_uid == "pod-uid"
        await v.verify(TOKEN)
        assert v.calls == 1 and v.cache_hits == 1
        bad = Recorder(_review({"authenticated": False, "error": "has been invalidated"}))
        w = AsyncTokenReviewVerifier(
            URL,
            "admin-secret",
            ["aud-1"],
            client=httpx.AsyncClient(transport=httpx.MockTransport(bad)),
        )
        with pytest.raises(InvalidToken) as ei:
            await w.verify(TOKEN)
        assert ei.value.reason == "revoked"
        down = AsyncTokenReviewVerifier(
            URL,
            "admin-secret",
            ["aud-1"],
            client=httpx.AsyncClient(transport=httpx.MockTransport(Recorder(status=503))),
        )
        with pytest.raises(VerifierUnavailable):
            await down.verify(TOKEN)

    anyio.run(main)
