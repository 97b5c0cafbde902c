"""Starlette integration: a real app through httpx's ASGITransport, real verifiers, real issuer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jwks_server import AUDIENCE, JWKSServer, rsa_key, token_for
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from verifier import AsyncOIDCVerifier, OIDCVerifier, ServiceAccountIdentity
from verifier.middleware import (
    ServiceAccountAuthBackend,
    ServiceAccountMiddleware,
    auth_error_response,
    identity_of,
    require_audience,
)


@pytest.fixture(scope="module")
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    srv.keys = [rsa_key()]
    with srv:
        yield srv


class RecordingVerifier(OIDCVerifier):
    """An OIDCVerifier that records which thread ran ``verify`` (the blocking path)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.verify_threads: list[int] = []

    def verify(self, token: str) -> ServiceAccountIdentity:
        self.verify_threads.append(threading.get_ident())
        return super().verify(token)


async def whoami(request: Request) -> JSONResponse:
    ident = identity_of(request)
    assert ident is not None
    assert request.state.sa_identity is ident is request.scope["sa_identity"]
    return JSONResponse({"user": request.user.display_name, "aud": list(ident.audiences)})


@require_audience("billing")
async def billing_only(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@require_audience("billing")
def billing_only_sync(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "thread": threading.get_ident()})


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


ROUTES = [
    Route("/whoami", whoami),
    Route("/billing/pay", whoami),
    Route("/decorated", billing_only),
    Route("/decorated-sync", billing_only_sync),
    Route("/healthz", health),
    WebSocketRoute("/ws", ws),
]


def app_with(verifier: Any, **kw: Any) -> Starlette:
    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(ServiceAccountMiddleware, verifier=verifier, **kw)],
    )


def call(app: Starlette, path: str, token: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
            return await c.get(path, headers=headers)

    return asyncio.run(go())


@pytest.fixture
def verifier(server: JWKSServer) -> Iterator[RecordingVerifier]:
    with RecordingVerifier(server.issuer, [AUDIENCE, "billing"], insecure_allow_http=True) as v:
        yield v


def test_valid_token_reaches_the_app_with_identity(
    server: JWKSServer, verifier: RecordingVerifier
) -> None:
    r = call(app_with(verifier), "/whoami", token_for(server, rsa_key(), namespace="ns1"))
    assert r.status_code == 200
    assert r.json() == {"user": "system:serviceaccount:ns1:app", "aud": [AUDIENCE]}


def test_missing_token_401_plain_bearer_challenge(verifier: RecordingVerifier) -> None:
    r = call(app_with(verifier), "/whoami")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    r = call(app_with(verifier), "/whoami", None)
    assert r.status_code == 401


@pytest.mark.parametrize("kind", ["garbage", "expired", "wrong_audience", "unknown_kid"])
def test_invalid_token_401_generic(
    server: JWKSServer, verifier: RecordingVerifier, kind: str
) -> None:
    token = {
        "garbage": "not-a-jwt",
        "expired": token_for(server, rsa_key(), ttl=-7200),
        "wrong_audience": token_for(server, rsa_key(), audiences=["elsewhere"]),
        "unknown_kid": token_for(server, rsa_key(), kid="nope"),
    }[kind]
    r = call(app_with(verifier), "/whoami", token)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token"
    for secret in ("expired", "audience_mismatch", "unknown_key", "malformed", token):
        assert secret not in r.text  # the reason and detail go to the log only


def test_per_route_audiences_by_path_prefix(
    server: JWKSServer, verifier: RecordingVerifier
) -> None:
    app = app_with(verifier, audiences={"/billing": ["billing"], "/": [AUDIENCE]})
    plain = token_for(server, rsa_key(), audiences=[AUDIENCE])
    both = token_for(server, rsa_key(), audiences=[AUDIENCE, "billing"])
    assert call(app, "/whoami", plain).status_code == 200
    r = call(app, "/billing/pay", plain)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert call(app, "/billing/pay", both).status_code == 200


def test_require_audience_decorator(server: JWKSServer, verifier: RecordingVerifier) -> None:
    app = app_with(verifier)
    plain = token_for(server, rsa_key(), audiences=[AUDIENCE])
    billing = token_for(server, rsa_key(), audiences=["billing"])
    assert call(app, "/decorated", plain).status_code == 401
    assert call(app, "/decorated", billing).status_code == 200
    assert call(app, "/decorated-sync", plain).status_code == 401
    assert call(app, "/decorated-sync", billing).json()["ok"] is True


def test_unavailable_is_503_with_retry_after() -> None:
    down = JWKSServer()  # never started
    with OIDCVerifier(down.issuer, [AUDIENCE], insecure_allow_http=True) as v:
        r = call(app_with(v, retry_after=7), "/whoami", token_for(down, rsa_key()))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert "www-authenticate" not in r.headers


def test_excluded_paths_need_no_token(verifier: RecordingVerifier) -> None:
    assert call(app_with(verifier, exclude_paths=["/healthz"]), "/healthz").text == "ok"
    assert call(app_with(verifier), "/healthz").status_code == 401


def test_known_key_verification_runs_inline_fetch_in_a_thread(
    server: JWKSServer, verifier: RecordingVerifier
) -> None:
    app = app_with(verifier)
    token = token_for(server, rsa_key())
    assert call(app, "/whoami", token).status_code == 200  # cold: verify() in the thread pool
    assert len(verifier.verify_threads) == 1
    assert verifier.verify_threads[0] != threading.get_ident()
    for _ in range(5):
        assert call(app, "/whoami", token).status_code == 200
    assert len(verifier.verify_threads) == 1  # warm: answered by verify_cached(), inline


def test_async_verifier(server: JWKSServer) -> None:
    async def go() -> list[int]:
        async with AsyncOIDCVerifier(server.issuer, [AUDIENCE], insecure_allow_http=True) as v:
            app = app_with(v)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
                good = {"Authorization": f"Bearer {token_for(server, rsa_key())}"}
                bad = {"Authorization": "Bearer x.y.z"}
                return [
                    (await c.get("/whoami", headers=good)).status_code,
                    (await c.get("/whoami", headers=bad)).status_code,
                ]

    assert asyncio.run(go()) == [200, 401]


class SyncOnlyVerifier:
    """Shaped like TokenReviewVerifier: a blocking ``verify`` and nothing else."""

    def __init__(self, inner: OIDCVerifier) -> None:
        self.inner = inner
        self.threads: list[int] = []

    def verify(self, token: str) -> ServiceAccountIdentity:
        self.threads.append(threading.get_ident())
        return self.inner.verify(token)


def test_plain_sync_verifier_runs_in_the_thread_pool(
    server: JWKSServer, verifier: RecordingVerifier
) -> None:
    other = SyncOnlyVerifier(verifier)
    assert call(app_with(other), "/whoami", token_for(server, rsa_key())).status_code == 200
    assert other.threads and other.threads[0] != threading.get_ident()


def test_websocket_without_token_is_refused(verifier: RecordingVerifier) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    asyncio.run(app_with(verifier)(scope, receive, send))
    # Closed before accept: the server answers the handshake with 403 (ASGI spec).
    assert sent == [{"type": "websocket.close", "code": 1008}]


# -- the AuthenticationBackend flavour -----------------------------------------------------------


@requires("aud:billing")
async def needs_billing_scope(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.display_name})


@requires("authenticated")
async def needs_auth(request: Request) -> JSONResponse:
    return JSONResponse({"ns": request.user.sa_identity.namespace})


def backend_app(verifier: Any, **kw: Any) -> Starlette:
    return Starlette(
        routes=[Route("/me", needs_auth), Route("/billing", needs_billing_scope)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=ServiceAccountAuthBackend(verifier, **kw),
                on_error=auth_error_response,
            )
        ],
    )


def test_auth_backend(server: JWKSServer, verifier: RecordingVerifier) -> None:
    app = backend_app(verifier)
    plain = token_for(server, rsa_key(), namespace="team-a")
    billing = token_for(server, rsa_key(), audiences=[AUDIENCE, "billing"])
    assert call(app, "/me", plain).json() == {"ns": "team-a"}
    assert call(app, "/me").status_code == 403  # anonymous: Starlette's @requires answers
    assert call(app, "/billing", plain).status_code == 403  # no aud:billing scope
    assert call(app, "/billing", billing).status_code == 200
    r = call(app, "/me", "x.y.z")
    assert (r.status_code, r.headers["www-authenticate"]) == (401, 'Bearer error="invalid_token"')
    restricted = backend_app(verifier, audiences=["billing"])
    assert call(restricted, "/me", plain).status_code == 401
    assert call(restricted, "/me", billing).status_code == 200


def test_auth_backend_unavailable_is_503() -> None:
    down = JWKSServer()
    with OIDCVerifier(down.issuer, [AUDIENCE], insecure_allow_http=True) as v:
        r = call(backend_app(v), "/me", token_for(down, rsa_key()))
    assert r.status_code == 503
    assert "retry-after" in r.headers


def test_import_verifier_does_not_import_starlette() -> None:
    code = (
        "import sys, verifier; verifier.OIDCVerifier; verifier.AsyncOIDCVerifier; "
        "import verifier.cli; "
        "assert 'starlette' not in sys.modules, 'starlette imported'; "
        "assert 'verifier.middleware' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
