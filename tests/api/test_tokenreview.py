"""TokenReview over the real app and a real store (SQLite and Redis): the success shape and one
row per failure reason, with kube's texts (kube: pkg/serviceaccount/{jwt,claims,legacy}.go,
pkg/registry/authentication/tokenreview/storage.go)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _api_support import Api, ApiFactory, jwt_parts
from _services import RedisServer
from cryptography.hazmat.primitives.asymmetric import ec

from issuer import revocations
from issuer.crypto import Signer

POD = {"kind": "Pod", "apiVersion": "v1", "name": "p"}


def setup(api: Api) -> dict[str, Any]:
    api.ns("dev")
    return {
        "sa": api.sa("dev", "app"),
        "node": api.node("n1"),
        "pod": api.pod("dev", "p", sa="app", node="n1"),
        "secret": api.secret("dev", "s"),
    }


def forge(api: Api, token: str, **changes: Any) -> str:
    """Re-sign ``token``'s claims, changed, with the issuer's active key."""
    claims = jwt_parts(token)[1]
    claims.update(changes)
    return api.ctx.keys.signer().sign_jwt(claims)


def recreate(api: Api, path: str, create: Callable[[], Any]) -> None:
    api.ok(api.delete(path), 200)
    create()


# Each case: (api, objects) -> (token, requested audiences or None, expected error text).
Case = Callable[[Api, dict[str, Any]], tuple[str, list[str] | None, str]]


def _expired(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    now = int(api.clock())
    t = forge(api, api.token("dev", "app"), iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    return t, None, "service account token has expired"


def _not_yet_valid(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    now = int(api.clock())
    t = forge(api, api.token("dev", "app"), iat=now + 600, nbf=now + 600, exp=now + 4200)
    return t, None, "service account token is not valid yet"


def _wrong_audience(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", audiences=["vault", "db"])
    return (
        t,
        ["api", 'we"ird'],
        ('token audiences ["vault" "db"] is invalid for the target audiences ["api" "we\\"ird"]'),
    )


def _wrong_audience_default(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", audiences=["vault"])
    aud = api.ctx.api_audiences[0]
    return t, None, f'token audiences ["vault"] is invalid for the target audiences ["{aud}"]'


def _wrong_issuer(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    return (
        forge(api, api.token("dev", "app"), iss="https://evil.example"),
        None,
        "invalid bearer token",
    )


def _trailing_slash_issuer(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = forge(api, api.token("dev", "app"), iss=api.ctx.config.issuer + "/")
    return t, None, "invalid bearer token"


def _bad_signature(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    h, p, s = api.token("dev", "app").split(".")
    mid = len(s) // 2
    s = s[:mid] + ("A" if s[mid] != "A" else "B") + s[mid + 1 :]
    return f"{h}.{p}.{s}", None, "invalid bearer token"


def _payload_swapped(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    # A valid signature over other claims: the payload of one token with another's signature.
    h, _, s = api.token("dev", "app").split(".")
    _, p2, _ = api.token("dev", "default").split(".")
    return f"{h}.{p2}.{s}", None, "invalid bearer token"


def _unknown_key(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    stranger = Signer(ec.generate_private_key(ec.SECP256R1()))
    return stranger.sign_jwt(jwt_parts(api.token("dev", "app"))[1]), None, "invalid bearer token"


def _malformed(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    return "not-a-jwt", None, "invalid bearer token"


def _sa_deleted(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app")
    api.ok(api.delete("/api/v1/namespaces/dev/serviceaccounts/app"), 200)
    return t, None, 'serviceaccounts "app" not found'


def _sa_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app")
    api.ok(api.delete("/api/v1/namespaces/dev/serviceaccounts/app"), 200)
    new = api.sa("dev", "app")
    return (
        t,
        None,
        (f"service account UID ({api.uid(new)}) does not match claim ({api.uid(w['sa'])})"),
    )


def _pod_deleted(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef=POD)
    api.ok(api.delete("/api/v1/namespaces/dev/pods/p"), 200)
    return t, None, "service account token has been invalidated"


def _pod_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef=POD)
    api.ok(api.delete("/api/v1/namespaces/dev/pods/p"), 200)
    new = api.pod("dev", "p", sa="app")
    return (
        t,
        None,
        (
            f"pod UID ({api.uid(new)}) does not match service account pod ref claim "
            f"({api.uid(w['pod'])})"
        ),
    )


def _secret_deleted(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef={"kind": "Secret", "apiVersion": "v1", "name": "s"})
    api.ok(api.delete("/api/v1/namespaces/dev/secrets/s"), 200)
    return t, None, "service account token has been invalidated"


def _secret_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef={"kind": "Secret", "apiVersion": "v1", "name": "s"})
    api.ok(api.delete("/api/v1/namespaces/dev/secrets/s"), 200)
    new = api.secret("dev", "s")
    return (
        t,
        None,
        (
            f"secret UID ({api.uid(new)}) does not match service account secret ref claim "
            f"({api.uid(w['secret'])})"
        ),
    )


def _node_deleted(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef={"kind": "Node", "apiVersion": "v1", "name": "n1"})
    api.ok(api.delete("/api/v1/nodes/n1"), 200)
    return t, None, "service account token has been invalidated"


def _node_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app", boundObjectRef={"kind": "Node", "apiVersion": "v1", "name": "n1"})
    api.ok(api.delete("/api/v1/nodes/n1"), 200)
    new = api.node("n1")
    return (
        t,
        None,
        (
            f"node UID ({api.uid(new)}) does not match service account node ref claim "
            f"({api.uid(w['node'])})"
        ),
    )


def _key_revoked(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app")
    api.ctx.keys.revoke(jwt_parts(t)[0]["kid"])
    return t, None, "service account token has been invalidated"


def _legacy_token(api: Api, name: str = "legacy") -> str:
    secret = api.legacy_secret("dev", name, "app")
    return base64.b64decode(secret["data"]["token"]).decode()


def _legacy_secret_deleted(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = _legacy_token(api)
    api.ok(api.delete("/api/v1/namespaces/dev/secrets/legacy"), 200)
    return t, None, "Token has been invalidated"


def _legacy_token_changed(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = _legacy_token(api)
    store = api.ctx.store
    obj = store.get_object("Secret", "dev", "legacy")
    obj["data"]["token"] = base64.b64encode(b"something-else").decode()
    store.update_object("Secret", "dev", "legacy", obj)
    return t, None, "Token does not match server's copy"


def _legacy_secret_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    # Same name, new token: the old one no longer matches the server's copy.
    t = _legacy_token(api)
    api.ok(api.delete("/api/v1/namespaces/dev/secrets/legacy"), 200)
    _legacy_token(api)
    return t, None, "Token does not match server's copy"


def _legacy_sa_recreated(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = _legacy_token(api)
    api.ok(api.delete("/api/v1/namespaces/dev/serviceaccounts/app"), 200)
    new = api.sa("dev", "app")
    return (
        t,
        None,
        (f"ServiceAccount UID ({api.uid(new)}) does not match claim ({api.uid(w['sa'])})"),
    )


def _legacy_wrong_audience(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    aud = api.ctx.api_audiences[0]
    return (
        _legacy_token(api),
        ["vault"],
        (f'token audiences ["{aud}"] is invalid for the target audiences ["vault"]'),
    )


def _token_revoked(api: Api, w: dict[str, Any]) -> tuple[str, list[str] | None, str]:
    t = api.token("dev", "app")
    claims = jwt_parts(t)[1]
    revocations.revoke_token(api.ctx.store, claims["jti"], claims["exp"], api.clock())
    return t, None, "service account token has been invalidated"


FAILURES: dict[str, Case] = {
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "wrong-audience": _wrong_audience,
    "wrong-audience-default": _wrong_audience_default,
    "wrong-issuer": _wrong_issuer,
    "issuer-trailing-slash": _trailing_slash_issuer,
    "bad-signature": _bad_signature,
    "payload-swapped": _payload_swapped,
    "unknown-key": _unknown_key,
    "malformed": _malformed,
    "sa-deleted": _sa_deleted,
    "sa-recreated": _sa_recreated,
    "pod-deleted": _pod_deleted,
    "pod-recreated": _pod_recreated,
    "secret-deleted": _secret_deleted,
    "secret-recreated": _secret_recreated,
    "node-deleted": _node_deleted,
    "node-recreated": _node_recreated,
    "key-revoked": _key_revoked,
    "token-revoked": _token_revoked,
    "legacy-secret-deleted": _legacy_secret_deleted,
    "legacy-token-changed": _legacy_token_changed,
    "legacy-secret-recreated": _legacy_secret_recreated,
    "legacy-sa-recreated": _legacy_sa_recreated,
    "legacy-wrong-audience": _legacy_wrong_audience,
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_review_failures(api: Api, case: str) -> None:
    objects = setup(api)
    token, audiences, error = FAILURES[case](api, objects)
    r = api.review_response(token, audiences)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "TokenReview" and body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["status"] == {"authenticated": False, "user": {}, "error": error}
    assert body["spec"]["token"] == ""


def test_review_success_pod_bound(api: Api) -> None:
    w = setup(api)
    token = api.token("dev", "app", audiences=["vault", "db"], boundObjectRef=POD)
    jti = jwt_parts(token)[1]["jti"]
    r = api.review_response(token, ["db", "other"])
    body = api.ok(r)
    assert body["spec"] == {"token": "", "audiences": ["db", "other"]}
    assert body["status"] == {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:dev:app",
            "uid": api.uid(w["sa"]),
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated",
            ],
            "extra": {
                "authentication.kubernetes.io/pod-name": ["p"],
                "authentication.kubernetes.io/pod-uid": [api.uid(w["pod"])],
                "authentication.kubernetes.io/credential-id": [f"JTI={jti}"],
                "authentication.kubernetes.io/node-name": ["n1"],
                "authentication.kubernetes.io/node-uid": [api.uid(w["node"])],
            },
        },
        "audiences": ["db"],
    }
    assert token not in r.text


def test_review_pod_bound_survives_node_deletion(api: Api) -> None:
    # The node claim of a pod-bound token is informational (kube: claims.go).
    setup(api)
    token = api.token("dev", "app", boundObjectRef=POD)
    api.ok(api.delete("/api/v1/nodes/n1"), 200)
    assert api.review(token)["authenticated"] is True


def test_review_unbound_and_default_audiences(api: Api) -> None:
    w = setup(api)
    status = api.review(api.token("dev", "app"))
    assert status["authenticated"] is True
    assert status["audiences"] == list(api.ctx.api_audiences)
    assert set(status["user"]["extra"]) == {"authentication.kubernetes.io/credential-id"}
    assert status["user"]["uid"] == api.uid(w["sa"])


def test_review_legacy_token(api: Api) -> None:
    w = setup(api)
    r = api.post(
        "/api/v1/namespaces/dev/secrets",
        {
            "metadata": {
                "name": "legacy",
                "annotations": {"kubernetes.io/service-account.name": "app"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    secret = api.ok(r)
    assert r.headers["Warning"].startswith(
        '299 - "legacy service account tokens are not recommended'
    )
    data = secret["data"]
    assert base64.b64decode(data["namespace"]) == b"dev"
    ann = secret["metadata"]["annotations"]
    assert ann["kubernetes.io/service-account.uid"] == api.uid(w["sa"])
    token = base64.b64decode(data["token"]).decode()
    header, claims = jwt_parts(token)
    assert list(header) == ["alg", "kid"]
    assert claims == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "dev",
        "kubernetes.io/serviceaccount/secret.name": "legacy",
        "kubernetes.io/serviceaccount/service-account.name": "app",
        "kubernetes.io/serviceaccount/service-account.uid": api.uid(w["sa"]),
        "sub": "system:serviceaccount:dev:app",
    }
    status = api.review(token)
    assert status == {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:dev:app",
            "uid": api.uid(w["sa"]),
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated",
            ],
        },
        "audiences": list(api.ctx.api_audiences),
    }


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        ({}, "metadata.annotations[kubernetes.io/service-account.name]: Required value"),
        (
            {"kubernetes.io/service-account.name": "ghost"},
            'metadata.annotations[kubernetes.io/service-account.name]: Not found: "ghost"',
        ),
        (
            {
                "kubernetes.io/service-account.name": "app",
                "kubernetes.io/service-account.uid": "not-its-uid",
            },
            "does not match the uid of service account dev/app",
        ),
    ],
)
def test_legacy_secret_needs_its_service_account(
    api: Api, annotations: dict[str, str], fragment: str
) -> None:
    setup(api)
    before = api.snapshot()
    r = api.post(
        "/api/v1/namespaces/dev/secrets",
        {
            "metadata": {"name": "legacy", "annotations": annotations},
            "type": "kubernetes.io/service-account-token",
        },
    )
    assert r.status_code == 422, r.text
    assert fragment in r.json()["message"]
    assert api.snapshot() == before


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_review_exact_webhook_body(api: Api, version: str) -> None:
    # What kube-apiserver's webhook token authenticator POSTs (k8s.io/apiserver
    # plugin/pkg/authenticator/token/webhook), byte for byte apart from the token.
    setup(api)
    token = api.token("dev", "app")
    aud = api.ctx.api_audiences[0]
    body = (
        '{"kind":"TokenReview","apiVersion":"authentication.k8s.io/VERSION","metadata":'
        '{"creationTimestamp":null},"spec":{"token":"TOKEN","audiences":["AUD"]},"status":{"user":{}}}'
    )
    body = body.replace("VERSION", version).replace("TOKEN", token).replace("AUD", aud)
    r = api.post(
        f"/apis/authentication.k8s.io/{version}/tokenreviews",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    out = api.ok(r)
    assert out["status"]["authenticated"] is True
    assert out["status"]["audiences"] == [aud]


def test_review_v1beta1(api: Api) -> None:
    setup(api)
    r = api.post(
        "/apis/authentication.k8s.io/v1beta1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1beta1", "spec": {"token": api.token("dev", "app")}},
    )
    body = api.ok(r)
    assert body["apiVersion"] == "authentication.k8s.io/v1beta1"
    assert body["status"]["authenticated"] is True


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"spec": {"token": ""}}, 400, "token is required for TokenReview in authentication"),
        ({"spec": {}}, 400, "token is required for TokenReview in authentication"),
        ({"spec": {"token": 5}}, 400, "json: cannot unmarshal number"),
        (
            {"spec": {"token": "x", "extra": 1}},
            400,
            'strict decoding error: unknown field "spec.extra"',
        ),
        ({"kind": "TokenRequest", "spec": {"token": "x"}}, 400, "must be of type TokenReview"),
    ],
)
def test_review_bad_requests(api: Api, body: dict[str, Any], code: int, message: str) -> None:
    r = api.post("/apis/authentication.k8s.io/v1/tokenreviews", body)
    assert r.status_code == code, r.text
    assert r.json()["reason"] == "BadRequest"
    assert message in r.json()["message"]


def test_review_needs_an_authorized_caller(api: Api) -> None:
    """No credential, a non-bearer credential, or a token for another audience: 401. A valid
    service-account token of this issuer authenticates but, with no RBAC binding, is refused
    with kube's 403 (kube: endpoints/handlers/responsewriters/errors.go ForbiddenStatusError)."""
    setup(api)
    api_token = api.token("dev", "app")
    other_aud = api.token("dev", "app", audiences=["vault"])
    for headers in ({}, {"Authorization": f"Bearer {other_aud}"}, {"Authorization": "Basic eDp5"}):
        r = api.client.post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json={"spec": {"token": api_token}},
            headers=headers,
        )
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["reason"] == "Unauthorized"
    r = api.client.post(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        json={"spec": {"token": api_token}},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert r.json()["message"] == (
        'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:dev:app" '
        'cannot create resource "tokenreviews" in API group "authentication.k8s.io" '
        "at the cluster scope"
    )


def test_store_unreachable_fails_closed(make_api: ApiFactory, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "private-redis")
    (tmp_path / "private-redis").mkdir()
    server.start()
    try:
        api = make_api(store=server.url)
        setup(api)
        token = api.token("dev", "app", boundObjectRef=POD)
        assert api.review(token)["authenticated"] is True
    finally:
        server.stop()
    r = api.review_response(token)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
    assert "authenticated" not in r.text
    # Nothing else pretends to work either.
    assert api.token_request("dev", "app").status_code == 503
    assert api.post("/api/v1/namespaces", {"metadata": {"name": "x"}}).status_code == 503
