"""FastAPI: a dependency that verifies the Bearer token and declares the scheme in OpenAPI.

::

    verifier = MultiIssuerVerifier("/etc/auth/authn.yaml")       # or AsyncMultiIssuerVerifier
    sa = ServiceAccountBearer(verifier, realm="orders")

    @app.get("/orders")
    async def orders(auth: Authenticated = Depends(sa.require(
            audiences=["https://orders.internal"], namespaces=["shop"]))):
        return {"user": auth.user.username}

The OpenAPI document gets a ``ServiceAccountToken`` security scheme (``type: http``, ``scheme:
bearer``, ``bearerFormat: JWT``) and every route using the dependency lists it under
``security``. Answers per RFC 6750 §3 (:mod:`verifier.integrations`), raised as
``HTTPException`` with ``{"detail": {"error", "error_description"}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from verifier.integrations.rules import Requirements
from verifier.integrations.starlette import AnyMultiVerifier, authenticate
from verifier.multi import Authenticated

__all__ = ["ServiceAccountBearer"]


class ServiceAccountBearer:
    """Builds FastAPI dependencies for routes that need an accepted service-account token."""

    def __init__(
        self,
        verifier: AnyMultiVerifier,
        *,
        realm: str | None = None,
        scheme_name: str = "ServiceAccountToken",
    ) -> None:
        self.verifier = verifier
        self.realm = realm
        # auto_error=False: the answer to a missing token is ours (RFC 6750 §3.1), not FastAPI's.
        self.scheme = HTTPBearer(
            bearerFormat="JWT",
            scheme_name=scheme_name,
            description="A JWT from an issuer of the AuthenticationConfiguration",
            auto_error=False,
        )

    def require(
        self,
        *,
        audiences: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
        service_accounts: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
    ) -> Callable[..., Awaitable[Authenticated]]:
        """A dependency returning the :class:`~verifier.multi.Authenticated` for this route."""
        req = Requirements.of(audiences, namespaces, service_accounts, groups)

        async def dependency(
            credentials: HTTPAuthorizationCredentials | None = Depends(self.scheme),  # noqa: B008
        ) -> Authenticated:
            token = None if credentials is None else credentials.credentials
            outcome = await authenticate(self.verifier, token, req)
            if isinstance(outcome, Authenticated):
                return outcome
            raise HTTPException(
                outcome.status, detail=outcome.body(), headers=outcome.headers(self.realm)
            )

        return dependency
