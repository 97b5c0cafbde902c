"""The Starlette application: discovery + JWKS, health, metrics and the Kubernetes API.

``create_app(ctx)`` returns an :class:`IssuerApp` (a Starlette subclass). Its ``__call__`` serves
the discovery and JWKS paths *before* Starlette's middleware stack and router: those two documents
are anonymous, pre-rendered and hot (every verifier polls them), so they skip routing, request
objects and exception middleware entirely. Every other request goes through Starlette as usual,
with errors rendered as Kubernetes ``Status`` objects (404/405/500 included) so that the official
``kubernetes`` client raises its usual ``ApiException``.

For ``uvicorn --workers N`` (which imports the app in each worker process) use the factory
:func:`app_from_env`, which rebuilds the context from ``SA_ISSUER_*`` env vars.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from issuer import api
from issuer.config import load_config
from issuer.context import IssuerContext, build_context
from issuer.http.discovery import DocumentEndpoint, discovery_paths, jwks_paths
from issuer.http.health import health_routes
from issuer.http.limits import HttpLimits
from issuer.http.metrics import WORKER_METRICS_ENV
from issuer.http.paths import path_problem
from issuer.http.status import StatusError, status_response
from issuer.logsetup import setup_logging
from issuer.revocations import UpkeepThread

__all__ = ["IssuerApp", "app_from_env", "create_app"]

log = logging.getLogger("sa_issuer.app")

#: kube-apiserver's texts for an unknown path and a wrong method (apimachinery errors.go).
NOT_FOUND_MESSAGE = "the server could not find the requested resource"
METHOD_NOT_ALLOWED_MESSAGE = "the server does not allow this method on the requested resource"

_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


class IssuerApp(Starlette):
    """Starlette plus an exact-path fast lane for the discovery and JWKS documents, and a
    request counter (``sa_issuer_http_requests_total{route,code}``) for everything else."""

    ctx: IssuerContext

    def __init__(self, ctx: IssuerContext, fast_paths: Mapping[str, DocumentEndpoint], **kw: Any):
        super().__init__(**kw)
        self.ctx = ctx
        self.state.ctx = ctx
        self._fast: dict[str, DocumentEndpoint] = dict(fast_paths)
        #: Raw request targets for the uvicorn protocol fast lane (issuer.http.fastlane).
        self.fast_lane: dict[bytes, DocumentEndpoint] = {
            p.encode("utf-8"): e for p, e in fast_paths.items() if p.isascii()
        }
        self._requests = ctx.metrics.requests
        #: Request and connection bounds for the uvicorn protocol (issuer.http.limits).
        self.http_limits = HttpLimits.from_config(ctx.config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch: fast lane for the documents, counted Starlette for the rest."""
        if scope["type"] == "http":
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
            await self._counted(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        problem = path_problem(scope["path"])
        if problem is not None:
            # Nothing can exist at such a path: 400 before routing and authorization.
            await status_response(400, "BadRequest", problem)(scope, receive, send)
            self._requests.inc_key(("unmatched", "400"))
            return

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self._requests.inc_key((label, str(status)))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = exc.status_code
    headers = dict(exc.headers) if exc.headers else None
    if code == 404:
        return status_response(404, "NotFound", NOT_FOUND_MESSAGE, {}, headers)
    if code == 405:
        return status_response(405, "MethodNotAllowed", METHOD_NOT_ALLOWED_MESSAGE, {}, headers)
    reason = _HTTP_REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")
    return status_response(code, reason, str(exc.detail), None, headers)


async def _status_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StatusError)
    return exc.response()


#: Recorded in ``sa_issuer_http_requests_total`` for a request whose client went away before its
#: body was read (nginx's "client closed request"; nothing is sent, the connection is gone).
CLIENT_CLOSED_REQUEST = 499


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    # The client hung up mid-body (or was cut off by issuer.http.limits): not a server error, no
    # traceback (issue 9 item 14).
    log.info(
        "client went away before sending its whole request: %s %s", request.method, request.url.path
    )
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Remote callers get a generic text (STYLE.md §6); the log has the traceback.
    log.error("unhandled error serving %s %s", request.method, request.url.path, exc_info=exc)
    return status_response(500, "InternalError", "an internal error occurred")


def create_app(ctx: IssuerContext, *, manage_lifecycle: bool = True) -> IssuerApp:
    """The issuer app for ``ctx``; ``app.state.ctx`` is ``ctx``.

    With ``manage_lifecycle`` (the default) the lifespan starts the key manager (bootstrap,
    store watch, rotation loop every ``rotation_check_interval``) and closes the context
    (key manager, store, audit log) at shutdown.
    """
    config = ctx.config
    requests = ctx.metrics.requests
    discovery = DocumentEndpoint(
        ctx.documents, jwks=False, route="/.well-known/openid-configuration", requests=requests
    )
    jwks = DocumentEndpoint(ctx.documents, jwks=True, route="/openid/v1/jwks", requests=requests)
    fast: dict[str, DocumentEndpoint] = {}
    routes: list[BaseRoute] = []
    for path in discovery_paths(config.issuer_path):
        fast[path] = discovery
        routes.append(Route(path, discovery))
    for path in jwks_paths(config.issuer_path):
        fast[path] = jwks
        routes.append(Route(path, jwks))
    routes.extend(health_routes())
    routes.extend(api.routes())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        upkeep: UpkeepThread | None = None
        if manage_lifecycle:
            await run_in_threadpool(
                lambda: ctx.keys.start(rotate=True, interval=config.rotation_check_interval)
            )
            # Trim invalidation events once no token they could affect is alive (every replica
            # runs one; a store lease makes one of them do the work).
            upkeep = UpkeepThread(
                ctx.store, retention=config.max_token_lifetime, leeway=config.retention_leeway
            ).start()
        try:
            yield
        finally:
            hub = getattr(app.state, "watch_hub", None)
            if hub is not None:  # ?watch=true streams: end them, stop following the store
                await hub.close()
            if upkeep is not None:
                await run_in_threadpool(upkeep.stop)
            if manage_lifecycle:
                await run_in_threadpool(ctx.close)

    return IssuerApp(
        ctx,
        fast,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_exception,
            StatusError: _status_error,
            ClientDisconnect: _client_disconnect,
            Exception: _internal_error,
        },
    )


def app_from_env() -> IssuerApp:
    """uvicorn factory for worker processes: config from ``SA_ISSUER_*`` (see
    :func:`issuer.config.config_to_env`), context built in this process."""
    from issuer.workers import die_with_parent

    die_with_parent()  # a worker must not outlive its supervisor (issue 9 item 12)
    config = load_config({}, os.environ, None)
    setup_logging(config.log_level)  # spawned workers do not inherit the parent's handlers
    ctx = build_context(config)
    metrics_dir = os.environ.get(WORKER_METRICS_ENV)
    if metrics_dir:
        ctx.metrics.share(Path(metrics_dir))  # one /metrics for the whole process group
    return create_app(ctx)
