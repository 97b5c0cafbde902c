"""Starlette / ASGI integration: authenticate requests by their service-account Bearer token.

Imported on demand only (``import verifier`` never imports this module, so the library works without
Starlette). Two ways in, one behaviour:

- :class:`ServiceAccountMiddleware` — plain ASGI middleware. Puts the identity at
  ``scope["sa_identity"]``, ``request.state.sa_identity``, ``request.user`` and ``request.auth``;
  answers itself when it must refuse::

      401  WWW-Authenticate: Bearer                        no (or a non-Bearer) credential
      401  WWW-Authenticate: Bearer error="invalid_token"  InvalidToken, or audience not accepted
      503  Retry-After: N                                  VerifierUnavailable (could not check)

- :class:`ServiceAccountAuthBackend` — for Starlette's ``AuthenticationMiddleware``; pass
  ``on_error=auth_error_response`` for the same 401/503 answers.

Remote callers only ever see the generic RFC 6750 §3.1 error code; the reason and detail go to the
log (STYLE.md §6), and the token goes nowhere.

Any verifier works: an object with ``verify(token)``, sync or ``async``. A sync verifier that offers
``verify_cached(token)`` (``OIDCVerifier``) is called inline when it can answer from its cache — a
known-key check is CPU-only and takes tens of microseconds — and moved to a worker thread only when
it would have to fetch keys. Other sync verifiers (``TokenReviewVerifier``, ``HybridVerifier``) do
I/O and always run in the thread pool.

Per-route audiences: ``audiences={"/billing": ["billing-api"], "/": ["api"]}`` (longest path prefix
wins) or the :func:`require_audience` decorator on an endpoint.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol, TypeVar, cast

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.identity import ServiceAccountIdentity

logger = logging.getLogger(__name__)

#: Where the middleware puts the identity in the ASGI scope (and in ``request.state``).
SCOPE_KEY: Final = "sa_identity"
# RFC 6750 §3: no error code when the request carried no credential; "invalid_token" otherwise.
CHALLENGE: Final = "Bearer"
CHALLENGE_INVALID: Final = 'Bearer error="invalid_token"'
_DESCRIPTION: Final = "the access token is missing, invalid or not meant for this service"

Audiences = Iterable[str] | Mapping[str, Iterable[str]]
_F = TypeVar("_F", bound=Callable[..., Any])


class Verifier(Protocol):
    """Anything with ``verify(token)``; it may be ``async def`` (then it returns an awaitable)."""

    def verify(self, token: str) -> Any: ...


class ServiceAccountUser(BaseUser):
    """``request.user`` for a verified service account; ``.sa_identity`` has everything.

    (``BaseUser.identity`` is a string in Starlette; here it is the username.)
    """

    def __init__(self, sa_identity: ServiceAccountIdentity) -> None:
        self.sa_identity = sa_identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.sa_identity.username

    @property
    def identity(self) -> str:
        return self.sa_identity.username


class InvalidBearerToken(AuthenticationError):
    """The Bearer token was refused (answered 401 ``invalid_token``)."""


class AuthenticationUnavailable(AuthenticationError):
    """The token could not be checked (answered 503)."""


def bearer_token(headers: Headers) -> str | None:
    """The credential of an ``Authorization: Bearer`` header (scheme case-insensitive, RFC 7235
    §2.1), or None when there is none or another scheme is used."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def verify_token(verifier: Verifier, token: str) -> ServiceAccountIdentity:
    """Run ``verifier`` on ``token`` without blocking the event loop on I/O (see module doc)."""
    verify = verifier.verify
    if inspect.iscoroutinefunction(verify):
        return cast(ServiceAccountIdentity, await verify(token))
    cached = getattr(verifier, "verify_cached", None)
    if cached is not None:
        ident = cached(token)  # CPU-only by contract; None means "would have to fetch"
        if ident is not None:
            return cast(ServiceAccountIdentity, ident)
    result = await run_in_threadpool(verify, token)
    if inspect.isawaitable(result):
        result = await result
    return cast(ServiceAccountIdentity, result)


def _audiences_for(audiences: Audiences | None, path: str) -> frozenset[str] | None:
    if audiences is None:
        return None
    if not isinstance(audiences, Mapping):
        return frozenset(audiences)
    best: str | None = None
    for prefix in audiences:
        if _under(path, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else frozenset(audiences[best])


def _under(path: str, prefix: str) -> bool:
    base = prefix.rstrip("/")
    return not base or path == base or path.startswith(base + "/")


def _accepts(ident: ServiceAccountIdentity, required: frozenset[str] | None) -> bool:
    # RFC 7519 §4.1.3: the token is meant for us if one of its audiences is one of ours.
    return required is None or not required.isdisjoint(ident.audiences)


def _scopes(ident: ServiceAccountIdentity) -> list[str]:
    return [
        "authenticated",
        "serviceaccount",
        f"namespace:{ident.namespace}",
        *(f"aud:{a}" for a in ident.audiences),
    ]


def unauthorized(*, invalid: bool = True) -> Response:
    """401 with the RFC 6750 challenge; never any detail about why."""
    if invalid:
        body = {"error": "invalid_token", "error_description": _DESCRIPTION}
        return JSONResponse(body, 401, headers={"WWW-Authenticate": CHALLENGE_INVALID})
    body = {"error": "unauthorized", "error_description": "a Bearer token is required"}
    return JSONResponse(body, 401, headers={"WWW-Authenticate": CHALLENGE})


def unavailable(retry_after: int = 30) -> Response:
    """503 with ``Retry-After``: the token could not be checked (not "invalid")."""
    return JSONResponse(
        {"error": "temporarily_unavailable", "error_description": "cannot verify tokens now"},
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


def auth_error_response(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``on_error`` for Starlette's ``AuthenticationMiddleware`` with this module's backend."""
    if isinstance(exc, AuthenticationUnavailable):
        return unavailable()
    return unauthorized()


class ServiceAccountAuthBackend(AuthenticationBackend):
    """A Starlette ``AuthenticationBackend`` for service-account Bearer tokens.

    No Bearer header: unauthenticated (``request.user`` is anonymous; protect routes with
    ``@requires("authenticated")``). A refused token raises :class:`InvalidBearerToken`, an outage
    :class:`AuthenticationUnavailable` — use ``on_error=auth_error_response`` to answer 401 / 503.
    ``audiences`` (optional) further restricts the audiences accepted, on top of the verifier's.
    Scopes: ``authenticated``, ``serviceaccount``, ``namespace:<ns>``, ``aud:<audience>`` each.
    """

    def __init__(self, verifier: Verifier, audiences: Iterable[str] | None = None) -> None:
        self.verifier = verifier
        self.audiences = None if audiences is None else frozenset(audiences)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = bearer_token(conn.headers)
        if token is None:
            return None
        try:
            ident = await verify_token(self.verifier, token)
        except InvalidToken as exc:
            logger.info("refused a bearer token: %s", exc)
            raise InvalidBearerToken("invalid token") from None
        except VerifierUnavailable as exc:
            logger.warning("could not verify a bearer token: %s", exc)
            raise AuthenticationUnavailable("unavailable") from None
        if not _accepts(ident, self.audiences):
            logger.info("refused %s: no accepted audience", ident.username)
            raise InvalidBearerToken("invalid token")
        return AuthCredentials(_scopes(ident)), ServiceAccountUser(ident)


class ServiceAccountMiddleware:
    """ASGI middleware requiring a valid service-account Bearer token on every request.

    - ``verifier``: anything with ``verify(token)``, sync or async (see module doc).
    - ``audiences``: None (the verifier's own audiences suffice), audiences every token must have
      one of, or a mapping path prefix → audiences (longest prefix wins; unmatched: no extra rule).
    - ``exclude_paths``: paths (and everything under them) served without a token, e.g. health.
    - ``retry_after``: seconds advertised in the 503 answer when tokens cannot be checked.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        audiences: Audiences | None = None,
        exclude_paths: Iterable[str] = (),
        retry_after: int = 30,
    ) -> None:
        self.app = app
        self.verifier = verifier
        if audiences is not None and isinstance(audiences, str):
            audiences = (audiences,)
        self.audiences = audiences
        self.exclude_paths = tuple(p for p in exclude_paths if p)
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._excluded(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope))
        if token is None:
            await self._refuse(scope, receive, send, unauthorized(invalid=False))
            return
        try:
            ident = await verify_token(self.verifier, token)
        except InvalidToken as exc:
            logger.info("refused a bearer token: %s", exc)
            await self._refuse(scope, receive, send, unauthorized())
            return
        except VerifierUnavailable as exc:
            logger.warning("could not verify a bearer token: %s", exc)
            await self._refuse(scope, receive, send, unavailable(self.retry_after))
            return
        if not _accepts(ident, _audiences_for(self.audiences, scope["path"])):
            logger.info("refused %s on %s: no accepted audience", ident.username, scope["path"])
            await self._refuse(scope, receive, send, unauthorized())
            return
        scope[SCOPE_KEY] = ident
        scope.setdefault("state", {})[SCOPE_KEY] = ident
        scope["user"] = ServiceAccountUser(ident)
        scope["auth"] = AuthCredentials(_scopes(ident))
        await self.app(scope, receive, send)

    def _excluded(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exclude_paths)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403 (ASGI spec);
            # 1008 = policy violation (RFC 6455 §7.4.1).
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)


def identity_of(request: HTTPConnection) -> ServiceAccountIdentity | None:
    """The verified identity the middleware (or backend) attached to ``request``, if any."""
    ident = request.scope.get(SCOPE_KEY)
    if ident is None and "user" in request.scope:
        user = request.scope["user"]
        ident = user.sa_identity if isinstance(user, ServiceAccountUser) else None
    return ident if isinstance(ident, ServiceAccountIdentity) else None


def require_audience(*audiences: str) -> Callable[[_F], _F]:
    """Decorate a Starlette endpoint ``(request) -> response`` (sync or async) so that it runs only
    for a token carrying one of ``audiences``; otherwise 401 ``invalid_token`` (RFC 6750 §3.1:
    a token not meant for this resource is an invalid token for it)."""
    required = frozenset(audiences)
    if not required:
        raise ValueError("require_audience needs at least one audience")

    def decorator(endpoint: _F) -> _F:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            ident = identity_of(request)
            if ident is None:
                return unauthorized(invalid=False)
            if not _accepts(ident, required):
                return unauthorized()
            if is_async:
                return await cast(Callable[..., Awaitable[Any]], endpoint)(request, *args, **kwargs)
            return await run_in_threadpool(endpoint, request, *args, **kwargs)

        return cast(_F, wrapper)

    return decorator


__all__ = [
    "CHALLENGE",
    "CHALLENGE_INVALID",
    "SCOPE_KEY",
    "AuthenticationUnavailable",
    "InvalidBearerToken",
    "ServiceAccountAuthBackend",
    "ServiceAccountMiddleware",
    "ServiceAccountUser",
    "Verifier",
    "auth_error_response",
    "bearer_token",
    "identity_of",
    "require_audience",
    "unauthorized",
    "unavailable",
    "verify_token",
]
