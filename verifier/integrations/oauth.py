"""authlib's resource-server extension points for :mod:`verifier.multi` (Flask and Django).

- :class:`MultiIssuerBearerValidator` is an authlib ``BearerTokenValidator``:
  ``authenticate_token`` verifies the token (returns the :class:`~verifier.multi.Authenticated`
  or None) and ``validate_token`` applies the route's
  :class:`~verifier.integrations.rules.Requirements`, given as the protector's keyword
  arguments (``audiences=``, ``namespaces=``, ``service_accounts=``, ``groups=``).
- The errors it raises are authlib ``OAuth2Error`` subclasses whose status, body and
  ``WWW-Authenticate`` follow RFC 6750 §3 (authlib's own missing-credentials answer carries a
  non-registered ``error="missing_authorization"`` and its insufficient-scope answer no challenge).
- :class:`ProtectorMixin` makes a ``ResourceProtector`` raise those errors for a missing or
  non-Bearer ``Authorization`` header too.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import MissingAuthorizationError
from authlib.oauth2.rfc6750 import BearerTokenValidator

from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.integrations.rules import (
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    NO_CREDENTIALS,
    Refusal,
    Requirements,
    refusal_for,
)
from verifier.multi import Authenticated, MultiIssuerVerifier

__all__ = [
    "MultiIssuerBearerValidator",
    "NoBearerToken",
    "ProtectorMixin",
    "RefusalError",
]

logger = logging.getLogger(__name__)


class RefusalError(OAuth2Error):  # type: ignore[misc]
    """An authlib error rendering a :class:`~verifier.integrations.rules.Refusal`."""

    def __init__(self, refusal: Refusal, realm: str | None = None) -> None:
        # Explicitly OAuth2Error's: in NoBearerToken the next class is ForbiddenError.
        OAuth2Error.__init__(self, description=refusal.description, status_code=refusal.status)
        self.refusal = refusal
        self.realm = realm
        self.error = refusal.body()["error"]

    def get_headers(self) -> list[tuple[str, str]]:
        """JSON content type plus the RFC 6750 challenge (or ``Retry-After``)."""
        return [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            *self.refusal.headers(self.realm).items(),
        ]

    def get_body(self) -> list[tuple[str, str]]:
        """``error`` and ``error_description``."""
        return list(self.refusal.body().items())


class NoBearerToken(RefusalError, MissingAuthorizationError):  # type: ignore[misc]
    """No (Bearer) credential: 401 ``WWW-Authenticate: Bearer realm=...`` without an error code.

    A ``MissingAuthorizationError``, so authlib's ``optional=True`` still lets the request in.
    """

    def __init__(self, realm: str | None = None) -> None:
        RefusalError.__init__(self, NO_CREDENTIALS, realm)


class MultiIssuerBearerValidator(BearerTokenValidator):  # type: ignore[misc]
    """Verifies Bearer tokens with a :class:`~verifier.multi.MultiIssuerVerifier`."""

    def __init__(self, verifier: MultiIssuerVerifier, realm: str | None = None) -> None:
        super().__init__(realm)
        self.verifier = verifier

    def authenticate_token(self, token_string: str) -> Authenticated | None:
        """The verified token, or None when it is refused (logged with its reason)."""
        try:
            return self.verifier.verify(token_string)
        except InvalidToken as exc:
            logger.info("refused a bearer token: %s", exc)
            return None
        except VerifierUnavailable as exc:
            logger.warning("could not verify a bearer token: %s", exc)
            raise RefusalError(refusal_for(exc), self.realm) from None

    def validate_token(
        self,
        token: Authenticated | None,
        scopes: Any,
        request: Any,
        audiences: Any = None,
        namespaces: Any = None,
        service_accounts: Any = None,
        groups: Any = None,
        **unused: Any,
    ) -> None:
        """Refuse a missing token (401) or one the route's requirements do not allow (401/403)."""
        if token is None:
            raise RefusalError(INVALID_TOKEN, self.realm)
        if scopes:
            # Service-account tokens carry no OAuth scopes: a route asking for one is refused.
            raise RefusalError(INSUFFICIENT_SCOPE, self.realm)
        req = Requirements.of(audiences, namespaces, service_accounts, groups)
        refusal = req.check(token)
        if refusal is not None:
            logger.info("refused %s: %s", token.user.username, refusal.error)
            raise RefusalError(refusal, self.realm)


class ProtectorMixin:
    """For an authlib ``ResourceProtector``: RFC 6750 answers for a missing/non-Bearer header."""

    _default_realm: str | None

    def parse_request_authorization(self, request: Any) -> tuple[Any, str]:
        """``Authorization: Bearer TOKEN`` (scheme case-insensitive, RFC 7235 §2.1) or 401."""
        value = request.headers.get("Authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NoBearerToken(self._default_realm)
        validator = self.get_token_validator("bearer")  # type: ignore[attr-defined]
        return validator, token
