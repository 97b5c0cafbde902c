"""TokenRequest over the real app and a real store (SQLite and Redis): every validation error,
kube's exact claims, expiration rules, audit lines (kube: registry/core/serviceaccount/storage/
token.go, pkg/serviceaccount/claims.go)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from _api_support import Api, ApiFactory, jwt_parts

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """ns dev with SA app, pod p (runs as app on node n1), pod other (runs as default), secret s,
    node n1."""
    api.ns("dev")
    out: dict[str, Any] = {"sa": api.sa("dev", "app"), "node": api.node("n1")}
    out["pod"] = api.pod("dev", "p", sa="app", node="n1")
    out["other"] = api.pod("dev", "other")
    out["secret"] = api.secret("dev", "s", data={"k": "dg=="})
    return out


# --- errors: one row per rule --------------------------------------------------------------------

ERROR_CASES: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    # (id, service account, spec, code, reason, message)
    (
        "expiration-too-short",
        "app",
        {"expirationSeconds": 599},
        422,
        "Invalid",
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: '
        "599: may not specify a duration less than 10 minutes",
    ),
    (
        "expiration-too-long",
        "app",
        {"expirationSeconds": (1 << 32) + 1},
        422,
        "Invalid",
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: '
        "4294967297: may not specify a duration larger than 2^32 seconds",
    ),
    (
        "bound-kind-unsupported",
        "app",
        {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}},
        400,
        "BadRequest",
        "cannot bind token to object of type /v1, Kind=ConfigMap",
    ),
    (
        "bound-group-wrong",
        "app",
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "apps/v1", "name": "p"}},
        400,
        "BadRequest",
        "cannot bind token to object of type apps/v1, Kind=Pod",
    ),
    (
        "bound-pod-missing",
        "app",
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}},
        404,
        "NotFound",
        'pods "ghost" not found',
    ),
    (
        "bound-secret-missing",
        "app",
        {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "ghost"}},
        404,
        "NotFound",
        'secrets "ghost" not found',
    ),
    (
        "bound-node-missing",
        "app",
        {"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "ghost"}},
        404,
        "NotFound",
        'nodes "ghost" not found',
    ),
    (
        "pod-runs-as-other-sa",
        "app",
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other"}},
        400,
        "BadRequest",
        'cannot bind token for serviceaccount "app" to pod running with different serviceaccount '
        "name.",
    ),
    (
        "uid-conflict",
        "app",
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "stale-uid"}},
        409,
        "Conflict",
        'Operation cannot be fulfilled on Pod "p": the UID in the bound object reference '
        "(stale-uid) does not match the UID in record. The object might have been deleted and "
        "then recreated",
    ),
    ("sa-missing", "ghost", {}, 404, "NotFound", 'serviceaccounts "ghost" not found'),
    # kube looks the account up before validating the expiration: 404 wins.
    ("sa-missing-beats-validation", "ghost", {"expirationSeconds": 1}, 404, "NotFound", ""),
]


@pytest.mark.parametrize(
    ("sa", "spec", "code", "reason", "message"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_token_request_errors(
    api: Api,
    world: dict[str, Any],
    sa: str,
    spec: dict[str, Any],
    code: int,
    reason: str,
    message: str,
) -> None:
    before = api.snapshot()
    r = api.token_request("dev", sa, **spec)
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == reason and body["code"] == code
    if message:
        assert body["message"] == message
    assert api.snapshot() == before
    assert "token_issued" not in _audit_text(api)


def test_namespace_missing_is_sa_not_found(api: Api) -> None:
    r = api.token_request("nowhere", "default")
    assert r.status_code == 404
    assert r.json()["message"] == 'serviceaccounts "default" not found'


def test_invalid_details_carry_causes(api: Api, world: dict[str, Any]) -> None:
    body = api.token_request("dev", "app", expirationSeconds=10).json()
    assert body["details"] == {
        "group": "authentication.k8s.io",
        "kind": "TokenRequest",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 10: may not specify a duration less than 10 minutes",
                "field": "spec.expirationSeconds",
            }
        ],
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"spec": {"expirationSeconds": "3600"}}, "cannot unmarshal string"),
        ({"spec": {"expirationSeconds": 3600.5}}, "cannot unmarshal number"),
        ({"spec": {"audiences": "one"}}, "cannot unmarshal string"),
        ({"spec": {"bogus": 1}}, 'unknown field "spec.bogus"'),
        ({"spec": {}, "extra": 1}, 'unknown field "extra"'),
        ({"apiVersion": "authentication.k8s.io/v2", "spec": {}}, "the API version in the data"),
        ({"kind": "TokenReview", "spec": {}}, "must be of type TokenRequest"),
        (
            {"metadata": {"name": "someone-else"}, "spec": {}},
            "must match the service account name if specified",
        ),
    ],
)
def test_token_request_bad_bodies(
    api: Api, world: dict[str, Any], body: dict[str, Any], fragment: str
) -> None:
    r = api.post("/api/v1/namespaces/dev/serviceaccounts/app/token", body)
    assert r.status_code in (400, 422), r.text
    assert fragment in r.json()["message"]


def test_malformed_json_and_oversize(api: Api, world: dict[str, Any]) -> None:
    path = "/api/v1/namespaces/dev/serviceaccounts/app/token"
    r = api.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    big = json.dumps({"spec": {"audiences": ["a" * (2 << 20)]}}).encode()
    r = api.post(path, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"


# --- claims exactly as kube writes them -----------------------------------------------------------


def test_pod_bound_claims(api: Api, world: dict[str, Any]) -> None:
    t0 = int(api.clock())
    r = api.token_request(
        "dev",
        "app",
        audiences=["vault"],
        expirationSeconds=1200,
        boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p"},
    )
    out = api.ok(r)
    header, claims = jwt_parts(out["status"]["token"])
    assert list(header) == ["alg", "kid"]
    assert header["alg"] == "ES256"
    assert header["kid"] == api.ctx.keys.signer().kid
    assert list(claims) == ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]
    iat = claims["iat"]
    assert t0 <= iat <= t0 + 2 and claims["nbf"] == iat and claims["exp"] == iat + 1200
    assert claims["aud"] == ["vault"]
    assert claims["iss"] == api.ctx.config.issuer
    assert claims["sub"] == "system:serviceaccount:dev:app"
    assert uuid.UUID(claims["jti"]).version == 4
    assert claims["kubernetes.io"] == {
        "namespace": "dev",
        "node": {"name": "n1", "uid": api.uid(world["node"])},
        "pod": {"name": "p", "uid": api.uid(world["pod"])},
        "serviceaccount": {"name": "app", "uid": api.uid(world["sa"])},
    }
    # The response echoes the request and reports status.
    assert out["kind"] == "TokenRequest" and out["apiVersion"] == "authentication.k8s.io/v1"
    assert out["metadata"]["name"] == "app" and out["metadata"]["namespace"] == "dev"
    assert out["spec"]["audiences"] == ["vault"] and out["spec"]["expirationSeconds"] == 1200
    exp_ts = datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert int(exp_ts.replace(tzinfo=UTC).timestamp()) == claims["exp"]


def test_pod_without_node_object_has_node_name_only(api: Api, world: dict[str, Any]) -> None:
    # kube: token.go embeds the pod's node name even when the Node object does not exist.
    api.pod("dev", "floating", sa="app", node="no-such-node")
    token = api.token(
        "dev", "app", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "floating"}
    )
    assert jwt_parts(token)[1]["kubernetes.io"]["node"] == {"name": "no-such-node"}
    status = api.review(token)
    assert status["authenticated"] is True, status
    extra = status["user"]["extra"]
    assert extra["authentication.kubernetes.io/node-name"] == ["no-such-node"]
    assert "authentication.kubernetes.io/node-uid" not in extra


@pytest.mark.parametrize("kind", ["Secret", "Node"])
def test_secret_and_node_bound_claims(api: Api, world: dict[str, Any], kind: str) -> None:
    name = "s" if kind == "Secret" else "n1"
    obj = world["secret" if kind == "Secret" else "node"]
    token = api.token(
        "dev",
        "app",
        boundObjectRef={"kind": kind, "apiVersion": "v1", "name": name, "uid": api.uid(obj)},
    )
    kube = jwt_parts(token)[1]["kubernetes.io"]
    assert kube[kind.lower()] == {"name": name, "uid": api.uid(obj)}
    assert set(kube) == {"namespace", "serviceaccount", kind.lower()}


def test_defaults_audiences_and_expiration(api: Api, world: dict[str, Any]) -> None:
    out = api.ok(api.token_request("dev", "app", audiences=[]))
    claims = jwt_parts(out["status"]["token"])[1]
    assert claims["aud"] == list(api.ctx.api_audiences)
    assert claims["exp"] - claims["iat"] == 3600
    assert out["spec"]["audiences"] == list(api.ctx.api_audiences)
    assert "warnafter" not in claims["kubernetes.io"]
    assert "pod" not in claims["kubernetes.io"]


def test_max_expiration_shortens_with_warning(make_api: ApiFactory) -> None:
    api = make_api(token_max_expiration=7200)
    api.ns("dev")
    r = api.token_request("dev", "default", expirationSeconds=10_000)
    out = api.ok(r)
    assert r.headers["Warning"] == (
        '299 - "requested expiration of 10000 seconds shortened to 7200 seconds"'
    )
    claims = jwt_parts(out["status"]["token"])[1]
    assert claims["exp"] - claims["iat"] == 7200
    assert out["spec"]["expirationSeconds"] == 7200
    # At the maximum exactly: no warning.
    assert "Warning" not in api.token_request("dev", "default", expirationSeconds=7200).headers


@pytest.mark.parametrize(
    ("extended", "bound", "seconds", "audiences", "extends"),
    [
        (True, "pod", 3607, None, True),
        (True, "pod", 3607, ["vault"], False),  # not only API audiences
        (True, "pod", 3600, None, False),  # not the magic 3607
        (True, None, 3607, None, False),  # not pod-bound
        (False, "pod", 3607, None, False),  # option off (the default)
    ],
)
def test_extended_expiration(
    make_api: ApiFactory,
    extended: bool,
    bound: str | None,
    seconds: int,
    audiences: list[str] | None,
    extends: bool,
) -> None:
    api = make_api(extended_expiration=extended)
    api.ns("dev")
    api.pod("dev", "p")
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audiences is not None:
        spec["audiences"] = audiences
    if bound:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": "p"}
    out = api.ok(api.token_request("dev", "default", **spec))
    claims = jwt_parts(out["status"]["token"])[1]
    iat = claims["iat"]
    if extends:
        assert claims["kubernetes.io"]["warnafter"] == iat + 3607
        assert claims["exp"] == iat + 365 * 24 * 3600
    else:
        assert "warnafter" not in claims["kubernetes.io"]
        assert claims["exp"] == iat + seconds
    # kube reports the requested lifetime, not the extended one.
    exp_ts = datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert int(exp_ts.replace(tzinfo=UTC).timestamp()) == iat + seconds


# --- audit and metrics ----------------------------------------------------------------------------


def _audit_text(api: Api) -> str:
    path = api.ctx.config.audit_log
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_audit_line_per_token_without_the_token(api: Api, world: dict[str, Any]) -> None:
    tokens = [
        api.token("dev", "app", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p"}),
        api.token("dev", "app", audiences=["vault"]),
    ]
    legacy = api.legacy_secret("dev", "legacy", "app")
    for h in api.ctx.audit.handlers:
        h.flush()
    text = _audit_text(api)
    lines = [json.loads(line) for line in text.splitlines()]
    issued = [line for line in lines if line["event"] == "token_issued"]
    assert len(issued) == 2
    first = issued[0]
    assert first["caller"] == "admin-token#1"
    assert first["serviceaccount"] == {
        "namespace": "dev",
        "name": "app",
        "uid": api.uid(world["sa"]),
    }
    assert first["bound"]["pod"] == {"name": "p", "uid": api.uid(world["pod"])}
    assert first["jti"] == jwt_parts(tokens[0])[1]["jti"]
    assert first["exp"] == jwt_parts(tokens[0])[1]["exp"]
    assert issued[1]["audiences"] == ["vault"]
    assert any(line["event"] == "legacy_token_issued" for line in lines)
    # Never a token, never the admin token, not even a signature segment.
    secrets = [*tokens, api.ctx.admin_tokens[0], legacy["data"]["token"]]
    for s in secrets:
        assert s not in text
        assert s.split(".")[-1] not in text
    assert api.ctx.metrics.tokens_issued.value(kind="pod") == 1
    assert api.ctx.metrics.tokens_issued.value(kind="none") == 1
