"""Starlette / ASGI: require a token accepted by an AuthenticationConfiguration.

::

    verifier = MultiIssuerVerifier("/etc/auth/authn.yaml")        # or AsyncMultiIssuerVerifier
    app = Starlette(routes=[...], middleware=[Middleware(
        MultiIssuerMiddleware, verifier=verifier, realm="orders",
        requirements={"/admin": Requirements.of(groups=["ops"]), "/": Requirements.of(
            audiences=["https://orders.internal"])},
        exclude_paths=["/healthz"])])

    @require(namespaces=["shop"])           # per endpoint, on top of the middleware
    async def orders(request): auth = authenticated(request) ...

The :class:`~verifier.multi.Authenticated` result is at ``request.scope["sa_auth"]``
(:func:`authenticated`). Answers per RFC 6750 §3 (:mod:`verifier.integrations`). A sync
:class:`~verifier.multi.MultiIssuerVerifier` is called inline when it can answer from its key cache
(CPU only) and in the thread pool only when it would fetch keys.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.integrations.rules import NO_CREDENTIALS, Refusal, Requirements, refusal_for
from verifier.middleware import bearer_token
from verifier.multi import AsyncMultiIssuerVerifier, Authenticated, MultiIssuerVerifier

__all__ = [
    "SCOPE_KEY",
    "AnyMultiVerifier",
    "MultiIssuerMiddleware",
    "authenticate",
    "authenticated",
    "refusal_response",
    "require",
    "verify_async",
]

logger = logging.getLogger(__name__)

#: Where the result goes in the ASGI scope.
SCOPE_KEY: Final = "sa_auth"
_F = TypeVar("_F", bound=Callable[..., Any])
#: Either verifier; the async one is awaited, the sync one runs inline or in the thread pool.
AnyMultiVerifier = MultiIssuerVerifier | AsyncMultiIssuerVerifier


async def verify_async(verifier: AnyMultiVerifier, token: str) -> Authenticated:
    """Verify without blocking the event loop on I/O (see the module docstring)."""
    if isinstance(verifier, AsyncMultiIssuerVerifier):
        return await verifier.verify(token)
    result = verifier.verify_cached(token)
    if result is not None:
        return result
    return await run_in_threadpool(verifier.verify, token)


async def authenticate(
    verifier: AnyMultiVerifier, token: str | None, requirements: Requirements | None
) -> Authenticated | Refusal:
    """The accepted result, or the refusal to answer with (reason logged, never returned)."""
    if token is None:
        return NO_CREDENTIALS
    try:
        result = await verify_async(verifier, token)
    except InvalidToken as exc:
        logger.info("refused a bearer token: %s", exc)
        return refusal_for(exc)
    except VerifierUnavailable as exc:
        logger.warning("could not verify a bearer token: %s", exc)
        return refusal_for(exc)
    refusal = None if requirements is None else requirements.check(result)
    if refusal is not None:
        logger.info("refused %s: %s", result.user.username, refusal.error)
        return refusal
    return result


def refusal_response(refusal: Refusal, realm: str | None = None) -> Response:
    """The JSON answer for ``refusal`` with its RFC 6750 headers."""
    return JSONResponse(refusal.body(), refusal.status, headers=refusal.headers(realm))


def _for_path(requirements: Mapping[str, Requirements], path: str) -> Requirements | None:
    best: str | None = None
    for prefix in requirements:
        base = prefix.rstrip("/")
        if (not base or path == base or path.startswith(base + "/")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return None if best is None else requirements[best]


class MultiIssuerMiddleware:
    """ASGI middleware: every request (but ``exclude_paths``) needs an accepted Bearer token.

    ``requirements``: one :class:`Requirements` for all paths, or path prefix → requirements
    (longest prefix wins; an unmatched path has no extra rule).
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: AnyMultiVerifier,
        *,
        requirements: Requirements | Mapping[str, Requirements] | None = None,
        exclude_paths: Iterable[str] = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        if isinstance(requirements, Requirements):
            requirements = {"/": requirements}
        self.requirements: Mapping[str, Requirements] = requirements or {}
        self.exclude_paths = tuple(p for p in exclude_paths if p)
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in self.exclude_paths
        ):
            await self.app(scope, receive, send)
            return
        outcome = await authenticate(
            self.verifier, bearer_token(Headers(scope=scope)), _for_path(self.requirements, path)
        )
        if isinstance(outcome, Refusal):
            await refusal_response(outcome, self.realm)(scope, receive, send)
            return
        scope[SCOPE_KEY] = outcome
        await self.app(scope, receive, send)


def authenticated(request: HTTPConnection) -> Authenticated | None:
    """The result :class:`MultiIssuerMiddleware` attached to ``request``, if any."""
    result = request.scope.get(SCOPE_KEY)
    return result if isinstance(result, Authenticated) else None


def require(
    *,
    audiences: Iterable[str] | None = None,
    namespaces: Iterable[str] | None = None,
    service_accounts: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    realm: str | None = None,
) -> Callable[[_F], _F]:
    """Decorate a Starlette endpoint ``(request) -> response`` behind :class:`MultiIssuerMiddleware`
    with further requirements for this route (401/403 per RFC 6750 §3)."""
    req = Requirements.of(audiences, namespaces, service_accounts, groups)

    def decorator(endpoint: _F) -> _F:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            result = authenticated(request)
            refusal = NO_CREDENTIALS if result is None else req.check(result)
            if refusal is not None:
                return refusal_response(refusal, realm)
            if is_async:
                return await cast(Callable[..., Awaitable[Any]], endpoint)(request, *args, **kwargs)
            return await run_in_threadpool(endpoint, request, *args, **kwargs)

        return cast(_F, wrapper)

    return decorator
