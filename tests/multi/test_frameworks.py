"""Flask, Django (through authlib's ResourceProtector), FastAPI and Starlette apps accept and refuse
the same tokens as ``sa-verifier verify --authentication-config``, with RFC 6750 §3 answers.

Tokens come from two live ``sa-issuer serve`` processes (TokenRequest) and a foreign issuer; each
framework is driven by its own test client. Every app has the same routes:

- ``/any``: no requirement beyond the configuration — 200 exactly when the CLI exits 0;
- ``/orders``: audience ``AUDIENCE`` and namespace ``shop``;
- ``/ops``: group ``cluster-a`` (only cluster a's mapping gives it);
- ``/pinned``: service account ``shop/orders``.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from verifier.multi import AsyncMultiIssuerVerifier, MultiIssuerVerifier

from ._live import AUDIENCE, OTHER_AUDIENCE, Clusters, create_sa, foreign_token, start_clusters
from .conftest import jwks_module, serve_fixtures

pytestmark = pytest.mark.slow

ROUTES: dict[str, dict[str, list[str]]] = {
    "/any": {},
    "/orders": {"audiences": [AUDIENCE], "namespaces": ["shop"]},
    "/ops": {"groups": ["cluster-a"]},
    "/pinned": {"service_accounts": ["shop/orders"]},
}
REALM = "orders"
OK = 200
NO_TOKEN = (401, 'Bearer realm="orders"')
INVALID = (401, "invalid_token")
SCOPE = (403, "insufficient_scope")


class Env:
    """Clusters, their tokens by name, the config path and a verifier on it."""

    def __init__(self, clusters: Clusters, path: Path, verifier: MultiIssuerVerifier) -> None:
        self.clusters = clusters
        self.path = path
        self.verifier = verifier
        self.tokens: dict[str, str | None] = {
            "a": clusters.mint("a"),
            "b": clusters.mint("b"),
            "a-billing": clusters.mint("a", audiences=[OTHER_AUDIENCE]),
            "b-other-sa": clusters.mint("b", sa="reports"),
            "b-kube-system": clusters.mint("b", ns="kube-system", sa="x"),
            "foreign": foreign_token(clusters, jwks_module),
            "garbage": "not-a-jwt",
            "none": None,
        }


# token name -> expected answer per route (None in the CLI column: CLI not applicable)
EXPECTED: dict[str, dict[str, Any]] = {
    "a": {"cli": 0, "/any": OK, "/orders": OK, "/ops": OK, "/pinned": OK},
    "b": {"cli": 0, "/any": OK, "/orders": OK, "/ops": SCOPE, "/pinned": OK},
    "a-billing": {"cli": 0, "/any": OK, "/orders": INVALID, "/ops": OK, "/pinned": OK},
    "b-other-sa": {"cli": 0, "/any": OK, "/orders": OK, "/ops": SCOPE, "/pinned": SCOPE},
    "b-kube-system": {"cli": 1, "/any": INVALID, "/orders": INVALID, "/ops": INVALID},
    "foreign": {"cli": 1, "/any": INVALID, "/orders": INVALID},
    "garbage": {"cli": 1, "/any": INVALID},
    "none": {"cli": None, "/any": NO_TOKEN, "/orders": NO_TOKEN},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("frameworks")
    factory = serve_fixtures.IssuerFactory(tmp)
    tls = jwks_module.self_signed_tls(tmp)
    clusters = start_clusters(factory, jwks_module, tls)
    create_sa(clusters.b, "shop", "reports")
    path = tmp / "authn.yaml"
    path.write_text(clusters.config_text())
    verifier = MultiIssuerVerifier(path, watch=False)
    try:
        yield Env(clusters, path, verifier)
    finally:
        verifier.close()
        clusters.foreign.stop()
        factory.close()


def check(answer: tuple[int, dict[str, str], Any], expected: Any) -> None:
    status, headers, body = answer
    if expected == OK:
        assert status == 200, (status, headers, body)
        return
    want_status, marker = expected
    assert status == want_status, (status, headers, body)
    challenge = headers.get("www-authenticate", "")
    if marker.startswith("Bearer"):
        assert challenge == marker  # RFC 6750 §3.1: no error code without credentials
    else:
        assert challenge.startswith(f'Bearer realm="{REALM}", error="{marker}"'), challenge
        assert "error_description=" in challenge


def run_table(env: Env, call: Callable[[str, str | None], tuple[int, dict[str, str], Any]]) -> None:
    for name, answers in EXPECTED.items():
        for route, expected in answers.items():
            if route == "cli":
                continue
            check(call(route, env.tokens[name]), expected)


def auth_headers(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def test_cli_decides_as_the_table_says(env: Env) -> None:
    for name, answers in EXPECTED.items():
        token = env.tokens[name]
        if answers["cli"] is None or token is None:
            continue
        r = subprocess.run(
            ["sa-verifier", "verify", "-", "--authentication-config", str(env.path)],
            input=token,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == answers["cli"], (name, r.stderr)
        # the /any route of every framework answers 200 exactly for these
        assert (answers["/any"] == OK) == (r.returncode == 0)


def test_flask(env: Env) -> None:
    from flask import Flask

    from verifier.integrations.flask import ServiceAccountProtector, current_token

    app = Flask(__name__)
    require_sa = ServiceAccountProtector(env.verifier, realm=REALM)
    for route, reqs in ROUTES.items():

        def view() -> dict[str, Any]:
            return {"user": current_token.user.username}

        app.add_url_rule(route, route, require_sa(**reqs)(view))
    client = app.test_client()

    def call(route: str, token: str | None) -> tuple[int, dict[str, str], Any]:
        r = client.get(route, headers=auth_headers(token))
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.get_json()

    run_table(env, call)
    assert call("/any", env.tokens["a"])[2] == {
        "user": "cluster-a:system:serviceaccount:shop:orders"
    }


def test_django(env: Env) -> None:
    import django
    from django.conf import settings
    from django.http import HttpRequest, JsonResponse
    from django.test import Client
    from django.urls import path

    from verifier.integrations.django import ServiceAccountProtector

    require_sa = ServiceAccountProtector(env.verifier, realm=REALM)

    def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"user": request.oauth_token.user.username})  # type: ignore[attr-defined]

    urls = ModuleType("multi_django_urls")  # a urlconf object (hashable, unlike a namespace)
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path(route.lstrip("/"), require_sa(**reqs)(view)) for route, reqs in ROUTES.items()
    ]
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=urls,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    else:
        settings.ROOT_URLCONF = urls
    client = Client()

    def call(route: str, token: str | None) -> tuple[int, dict[str, str], Any]:
        extra = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        r = client.get(route, **extra)
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.json()

    run_table(env, call)
    assert call("/any", env.tokens["b"])[2] == {
        "user": "cluster-b:system:serviceaccount:shop:orders"
    }


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_fastapi_and_its_openapi(env: Env, flavour: str) -> None:
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from verifier.integrations.fastapi import ServiceAccountBearer
    from verifier.multi import Authenticated

    app = FastAPI()
    verifier = (
        env.verifier if flavour == "sync" else AsyncMultiIssuerVerifier(env.path, watch=False)
    )
    sa = ServiceAccountBearer(verifier, realm=REALM)
    for route, reqs in ROUTES.items():
        dep = sa.require(**reqs)

        async def view(auth: Authenticated = Depends(dep)) -> dict[str, Any]:  # noqa: B008
            return {"user": auth.user.username}

        app.add_api_route(route, view, methods=["GET"])
    with TestClient(app) as client:

        def call(route: str, token: str | None) -> tuple[int, dict[str, str], Any]:
            r = client.get(route, headers=auth_headers(token))
            return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.json()

        run_table(env, call)
        doc = client.get("/openapi.json").json()
        if isinstance(verifier, AsyncMultiIssuerVerifier):
            client.portal.call(verifier.aclose)  # type: ignore[union-attr]  # on the app's loop
    assert doc["components"]["securitySchemes"]["ServiceAccountToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT from an issuer of the AuthenticationConfiguration",
    }
    for route in ROUTES:
        assert doc["paths"][route]["get"]["security"] == [{"ServiceAccountToken": []}]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_starlette(env: Env, flavour: str) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from verifier.integrations.starlette import MultiIssuerMiddleware, authenticated, require

    def endpoint(reqs: dict[str, list[str]]) -> Any:
        @require(**reqs, realm=REALM)  # type: ignore[arg-type]
        async def view(request: Request) -> JSONResponse:
            result = authenticated(request)
            assert result is not None
            return JSONResponse({"user": result.user.username})

        return view

    verifier = (
        env.verifier if flavour == "sync" else AsyncMultiIssuerVerifier(env.path, watch=False)
    )
    app = Starlette(
        routes=[Route(route, endpoint(reqs)) for route, reqs in ROUTES.items()],
        middleware=[Middleware(MultiIssuerMiddleware, verifier=verifier, realm=REALM)],
    )
    with TestClient(app) as client:

        def call(route: str, token: str | None) -> tuple[int, dict[str, str], Any]:
            r = client.get(route, headers=auth_headers(token))
            return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.json()

        run_table(env, call)
        if isinstance(verifier, AsyncMultiIssuerVerifier):
            client.portal.call(verifier.aclose)  # type: ignore[union-attr]


def test_unavailable_is_503_with_retry_after(
    jwks: ModuleType, tls: tuple[Path, Path], tls_pem: str, write_config: Callable[[str], Path]
) -> None:
    # An issuer whose discovery cannot be reached: "could not check", never "invalid".
    from flask import Flask

    from verifier.integrations.flask import ServiceAccountProtector

    server = jwks.JWKSServer(tls=tls)
    server.keys = [jwks.rsa_key(0)]
    token = jwks.token_for(server, server.keys[0])
    ca = textwrap.indent(tls_pem.rstrip(), " " * 6)
    path = write_config(
        "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\n"
        f"jwt:\n- issuer:\n    url: {server.issuer}\n    certificateAuthority: |\n{ca}\n"
        f"    audiences: ['{jwks.AUDIENCE}']\n"
        "  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"
    )
    with MultiIssuerVerifier(path, watch=False, verifier_options={"timeout": 1.0}) as v:
        app = Flask(__name__)
        app.add_url_rule("/x", "x", ServiceAccountProtector(v)()(lambda: "ok"))
        r = app.test_client().get("/x", headers=auth_headers(token))
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"
    assert r.get_json()["error"] == "temporarily_unavailable"
