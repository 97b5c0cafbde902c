"""``/healthz`` (the process is alive), ``/readyz`` (store reachable and an active key exists) and
``/metrics`` (Prometheus text). Plain-text bodies like kube-apiserver's ``/healthz`` ("ok")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from issuer.http.metrics import CONTENT_TYPE
from issuer.keys import NoActiveKey
from issuer.store import StoreError

if TYPE_CHECKING:
    from issuer.context import IssuerContext

__all__ = ["health_routes"]

_NO_STORE = {"cache-control": "no-store"}


async def healthz(request: Request) -> Response:
    """200 "ok" while the process serves requests."""
    return PlainTextResponse("ok", headers=_NO_STORE)


async def readyz(request: Request) -> Response:
    """200 "ok" when the store answers a ping and an active signing key is loaded, else 503 with
    the reason (a load balancer takes the replica out of rotation)."""
    ctx: IssuerContext = request.app.state.ctx
    try:
        await run_in_threadpool(ctx.store.ping)
    except StoreError as e:
        ctx.metrics.store_errors.inc(operation="ping")
        return PlainTextResponse(f"not ready: store unavailable: {e}", 503, headers=_NO_STORE)
    try:
        ctx.keys.signer()
    except NoActiveKey:
        return PlainTextResponse("not ready: no active signing key", 503, headers=_NO_STORE)
    if not ctx.documents.ready:
        return PlainTextResponse("not ready: JWKS not rendered yet", 503, headers=_NO_STORE)
    return PlainTextResponse("ok", headers=_NO_STORE)


async def metrics(request: Request) -> Response:
    """The Prometheus text exposition of this worker's registry."""
    ctx: IssuerContext = request.app.state.ctx
    body = await run_in_threadpool(ctx.metrics.render)
    return Response(body, media_type=CONTENT_TYPE, headers=_NO_STORE)


def health_routes() -> list[BaseRoute]:
    """The health and metrics routes."""
    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
    ]
