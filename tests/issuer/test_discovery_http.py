"""Discovery, JWKS, health and error shapes, in-process over the real app (Starlette TestClient).

The key manager, store (SQLite in tmp) and KEK are real; only the clock is steered, to pin the
Cache-Control arithmetic.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from _services import RedisServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from issuer.app import create_app
from issuer.config import load_config
from issuer.context import IssuerContext, build_context, key_policy
from issuer.http.discovery import render_discovery
from issuer.http.status import StatusError, read_json_body, status_response
from issuer.keys import KeyManager
from issuer.store import open_store

UPSTREAM_DISCOVERY = (
    b'{"issuer":"https://issuer.example.com","jwks_uri":"https://issuer.example.com/openid/v1/jwks",'
    b'"response_types_supported":["id_token"],"subject_types_supported":["public"],'
    b'"id_token_signing_alg_values_supported":["ES256","RS256"]}'
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_ctx(tmp_path: Path, clock: Clock | None = None, **settings: object) -> IssuerContext:
    flags = {"data_dir": str(tmp_path / "data"), "issuer": "https://issuer.example.com"}
    env = {f"SA_ISSUER_{k.upper()}": str(v) for k, v in settings.items()}
    return build_context(load_config(flags, env), clock=clock or Clock())


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[IssuerContext]:
    c = make_ctx(tmp_path)
    yield c
    c.close()


@pytest.fixture
def client(ctx: IssuerContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as cl:
        yield cl


# --- discovery -----------------------------------------------------------------------------


def test_render_discovery_matches_upstream_bytes() -> None:
    # kube: pkg/serviceaccount/openidmetadata_test.go pins this document byte for byte.
    got = render_discovery(
        "https://issuer.example.com",
        "https://issuer.example.com/openid/v1/jwks",
        ["RS256", "ES256", "RS256"],
    )
    assert got == UPSTREAM_DISCOVERY


def test_discovery_bytes_with_two_algorithms(tmp_path: Path, ctx: IssuerContext) -> None:
    with TestClient(create_app(ctx)) as cl:
        # A second manager on the same store (another replica, configured for ES256) rotates.
        store = open_store("sqlite", ctx.config.data_dir)
        try:
            policy = key_policy(ctx.config)
            es = KeyManager(
                store,
                _kek(ctx),
                type(policy)(
                    alg="ES256",
                    rotation_period=policy.rotation_period,
                    jwks_max_age=policy.jwks_max_age,
                    publish_margin=policy.publish_margin,
                    max_token_lifetime=policy.max_token_lifetime,
                ),
            )
            es.rotate()
        finally:
            store.close()
        ctx.keys.refresh()
        r = cl.get("/.well-known/openid-configuration")
        assert r.status_code == 200
        assert r.content == UPSTREAM_DISCOVERY
        assert r.headers["content-type"] == "application/json"


def _kek(ctx: IssuerContext):  # type: ignore[no-untyped-def]
    from issuer.context import load_or_create_kek

    store = open_store("sqlite", ctx.config.data_dir)
    try:
        return load_or_create_kek(ctx.config, store, create=False)
    finally:
        store.close()


def test_discovery_single_key(client: TestClient) -> None:
    r = client.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    assert r.content == (
        b'{"issuer":"https://issuer.example.com","jwks_uri":"https://issuer.example.com/openid/v1/jwks",'
        b'"response_types_supported":["id_token"],"subject_types_supported":["public"],'
        b'"id_token_signing_alg_values_supported":["RS256"]}'
    )
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "public, max-age=3600"
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')
    assert not r.headers["etag"].startswith("W/")
    assert r.headers["content-length"] == str(len(r.content))


def test_discovery_under_issuer_path(tmp_path: Path) -> None:
    c = build_context(
        load_config({"data_dir": str(tmp_path / "d"), "issuer": "https://h.example/tenant-a"}, {}),
        clock=Clock(),
    )
    with TestClient(create_app(c)) as cl:
        expected = (
            b'{"issuer":"https://h.example/tenant-a","jwks_uri":"https://h.example/tenant-a/openid/v1/jwks",'
            b'"response_types_supported":["id_token"],"subject_types_supported":["public"],'
            b'"id_token_signing_alg_values_supported":["RS256"]}'
        )
        for path in (
            "/tenant-a/.well-known/openid-configuration",
            "/.well-known/openid-configuration",
        ):
            r = cl.get(path)
            assert (r.status_code, r.content) == (200, expected), path
        # jwks_uri must resolve: served under the issuer path too, same bytes as the root one.
        a = cl.get("/tenant-a/openid/v1/jwks")
        b = cl.get("/openid/v1/jwks")
        assert a.status_code == b.status_code == 200
        assert a.content == b.content
        assert cl.get("/tenant-b/openid/v1/jwks").status_code == 404


# --- JWKS ----------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(s: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")


def test_jwks_fields_and_kid(client: TestClient, ctx: IssuerContext) -> None:
    r = client.get("/openid/v1/jwks")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    doc = orjson.loads(r.content)
    assert list(doc) == ["keys"]
    assert len(doc["keys"]) == 1
    jwk = doc["keys"][0]
    assert list(jwk) == ["use", "kty", "kid", "alg", "n", "e"]  # kube's member order
    assert (jwk["use"], jwk["kty"], jwk["alg"], jwk["e"]) == ("sig", "RSA", "RS256", "AQAB")
    for private in ("d", "p", "q", "dp", "dq", "qi", "oth", "k"):
        assert private not in jwk
    # kid = base64url(SHA-256(DER SubjectPublicKeyInfo)) (kube: jwt.go keyIDFromPublicKey)
    pub = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert jwk["kid"] == _b64u(hashlib.sha256(der).digest())
    assert jwk["kid"] == ctx.keys.signer().kid
    assert b" " not in r.content  # compact, like Go's json.Marshal


def test_etag_and_conditional_requests(client: TestClient) -> None:
    for path in ("/openid/v1/jwks", "/.well-known/openid-configuration"):
        r = client.get(path)
        etag = r.headers["etag"]
        cases = {
            etag: 304,
            "W/" + etag: 304,  # If-None-Match uses the weak comparison (RFC 9110 §13.1.2)
            f'"nope", {etag}': 304,
            f'"a",W/"b" ,  {etag} ': 304,
            "*": 304,
            '"nope"': 200,
            'W/"nope", "other"': 200,
            etag[:-2] + '"': 200,
        }
        for value, want in cases.items():
            c = client.get(path, headers={"If-None-Match": value})
            assert c.status_code == want, (path, value)
            assert c.headers["etag"] == etag
            assert c.headers["cache-control"] == r.headers["cache-control"]
            if want == 304:
                assert c.content == b""
                assert "content-type" not in c.headers
            else:
                assert c.content == r.content


def test_head(client: TestClient) -> None:
    for path in ("/openid/v1/jwks", "/.well-known/openid-configuration"):
        g = client.get(path)
        h = client.head(path)
        assert h.status_code == 200
        assert h.content == b""
        for name in ("content-type", "content-length", "etag", "cache-control"):
            assert h.headers[name] == g.headers[name]


def test_other_methods_are_405(client: TestClient) -> None:
    for path in ("/openid/v1/jwks", "/.well-known/openid-configuration", "/healthz"):
        r = client.post(path, content=b"{}")
        assert r.status_code == 405
        body = r.json()
        assert body["kind"] == "Status" and body["reason"] == "MethodNotAllowed"
        assert body["code"] == 405
        assert "GET" in r.headers["allow"]


def test_cache_control_follows_next_change(tmp_path: Path) -> None:
    clock = Clock()
    # lead = jwks_max_age + publish_margin = 15 s; a successor is created at T0 + 100 - 15.
    c = make_ctx(tmp_path, clock, rotation_period=100, jwks_max_age=10, publish_margin=5)
    try:
        c.keys.start(rotate=False)
        with TestClient(create_app(c, manage_lifecycle=False)) as cl:

            def max_age() -> tuple[str, str]:
                j = cl.get("/openid/v1/jwks").headers["cache-control"]
                d = cl.get("/.well-known/openid-configuration").headers["cache-control"]
                assert j == d
                return j, cl.get("/openid/v1/jwks").headers["etag"]

            next_change = c.keys.published().next_change
            assert next_change == pytest.approx(T0 + 85, abs=0.01)
            assert max_age()[0] == "public, max-age=10"
            first_etag = max_age()[1]
            clock.t = T0 + 80
            assert max_age()[0] == "public, max-age=5"
            clock.t = T0 + 84.5
            assert max_age()[0] == "public, max-age=0"
            clock.t = T0 + 90  # overdue: never a negative max-age
            assert max_age()[0] == "public, max-age=0"
            assert c.keys.rotate_if_due()  # the successor is published: the JWKS changes
            cc, etag = max_age()
            assert etag != first_etag
            assert len(cl.get("/openid/v1/jwks").json()["keys"]) == 2
            # Promotion (at T0 + 105) leaves the JWKS bytes alone; the next content change is the
            # creation of the following successor: 105 + 100 - 15 = T0 + 190.
            assert c.keys.published().next_change == pytest.approx(T0 + 190, abs=0.01)
            assert cc == "public, max-age=10"
            clock.t = T0 + 187.2
            assert max_age()[0] == "public, max-age=2"
    finally:
        c.close()


def test_not_ready_before_keys(tmp_path: Path) -> None:
    c = make_ctx(tmp_path)
    try:
        with TestClient(create_app(c, manage_lifecycle=False)) as cl:
            r = cl.get("/openid/v1/jwks")
            assert r.status_code == 503
            assert r.json()["reason"] == "ServiceUnavailable"
            r = cl.get("/readyz")
            assert r.status_code == 503
            assert "no active signing key" in r.text
            assert cl.get("/healthz").status_code == 200
    finally:
        c.close()


# --- health, metrics, errors ---------------------------------------------------------------


def test_health_and_ready(client: TestClient) -> None:
    assert (client.get("/healthz").status_code, client.get("/healthz").text) == (200, "ok")
    assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ok")


def test_readyz_reports_store_down(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    c = build_context(
        load_config(
            {"data_dir": str(tmp_path / "d"), "store": redis_url, "issuer": "https://i.example"},
            {},
        ),
        clock=Clock(),
    )
    try:
        with TestClient(create_app(c)) as cl:
            assert cl.get("/readyz").status_code == 200
            redis_server.stop()
            try:
                r = cl.get("/readyz")
                assert r.status_code == 503
                assert r.text.startswith("not ready: store unavailable")
                # the published documents keep being served from memory
                assert cl.get("/openid/v1/jwks").status_code == 200
                assert "sa_issuer_store_errors_total" in cl.get("/metrics").text
            finally:
                redis_server.start()
            assert cl.get("/readyz").status_code == 200
    finally:
        c.close()


def test_metrics(client: TestClient, ctx: IssuerContext) -> None:
    client.get("/openid/v1/jwks")
    etag = client.get("/openid/v1/jwks").headers["etag"]
    client.get("/openid/v1/jwks", headers={"if-none-match": etag})
    client.get("/nope")
    ctx.metrics.tokens_issued.inc(kind="pod")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'sa_issuer_http_requests_total{route="/openid/v1/jwks",code="200"} 2' in text
    assert 'sa_issuer_http_requests_total{route="/openid/v1/jwks",code="304"} 1' in text
    assert 'sa_issuer_http_requests_total{route="unmatched",code="404"} 1' in text
    assert 'sa_issuer_tokens_issued_total{kind="pod"} 1' in text
    assert f"sa_issuer_keyset_version {ctx.keys.published().version}" in text
    assert "sa_issuer_active_key_age_seconds " in text
    assert "sa_issuer_keys_next_change_seconds " in text
    assert "# TYPE sa_issuer_store_errors_total counter" in text


def test_unknown_path_is_status_404(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "code": 404,
    }


def test_app_state_ctx(ctx: IssuerContext) -> None:
    app = create_app(ctx)
    assert app.state.ctx is ctx
    assert ctx.admin_tokens and len(ctx.admin_tokens[0]) >= 40
    assert ctx.api_audiences == ("https://issuer.example.com",)


def test_audit_log_json_lines(ctx: IssuerContext) -> None:
    ctx.audit_event("token.issued", namespace="ns", name="sa", jti="j1")
    for h in ctx.audit.handlers:
        h.flush()
    lines = Path(ctx.config.audit_log).read_text().splitlines()
    rec = orjson.loads(lines[-1])
    assert rec["event"] == "token.issued" and rec["jti"] == "j1" and "time" in rec
    assert Path(ctx.config.audit_log).stat().st_mode & 0o777 == 0o600


# --- status helpers ------------------------------------------------------------------------


def _body_app(max_bytes: int) -> Starlette:
    async def echo(request: Request) -> Response:
        try:
            return JSONResponse(await read_json_body(request, max_bytes=max_bytes))
        except StatusError as e:
            return e.response()

    return Starlette(routes=[Route("/", echo, methods=["POST"])])


def test_read_json_body() -> None:
    cl = TestClient(_body_app(1024))
    assert cl.post("/", json={"a": 1}).json() == {"a": 1}

    def chunks() -> Iterator[bytes]:
        yield b'{"a":"'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    r = cl.post("/", content=chunks(), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["reason"]) == (413, "RequestEntityTooLarge")
    r = cl.post("/", content=b"{}" + b" " * 2000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = cl.post("/", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["reason"]) == (415, "UnsupportedMediaType")
    for bad in (b"", b"{", b"[1]", b'"s"', b"\xff"):
        r = cl.post("/", content=bad, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["reason"]) == (400, "BadRequest"), bad
    r = cl.post("/", content=b"{}", headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200


def test_status_response_shape() -> None:
    r = status_response(409, "AlreadyExists", 'x "y" already exists', {"name": "y", "kind": "x"})
    assert r.status_code == 409
    assert orjson.loads(r.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'x "y" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "y", "kind": "x"},
        "code": 409,
    }
