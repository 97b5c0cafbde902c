"""Per-route requirements and RFC 6750 §3 answers, shared by every framework integration (pure).

:class:`Requirements` says what a route accepts on top of the verifier: ``audiences`` (the token
must carry one; RFC 7519 §4.1.3 — a token not meant for this resource is an *invalid token* for it,
401), and ``namespaces``, ``service_accounts`` (``namespace/name``) and ``groups`` (any of the
mapped user's groups) — a valid token that is simply not allowed here is *insufficient scope*, 403.
:class:`Refusal` renders the status, headers and JSON body of an answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from verifier.errors import InvalidToken, VerificationError, VerifierUnavailable
from verifier.multi import Authenticated

__all__ = [
    "INSUFFICIENT_SCOPE",
    "INVALID_TOKEN",
    "NO_CREDENTIALS",
    "Refusal",
    "Requirements",
    "refusal_for",
]

# RFC 6750 §3: quoted-string values; keep them to a safe printable subset.
_SAFE: Final = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal: HTTP ``status``, RFC 6750 ``error`` code (None: no credentials) and text."""

    status: int
    error: str | None
    description: str
    retry_after: int | None = None

    def headers(self, realm: str | None = None) -> dict[str, str]:
        """``WWW-Authenticate`` per RFC 6750 §3 (or ``Retry-After`` for 503)."""
        if self.status == 503:
            return {"Retry-After": str(self.retry_after or 30)}
        params = []
        if realm:
            params.append(f'realm="{_SAFE.sub("", realm)}"')
        if self.error is not None:
            # §3.1: no error code when the request carried no credentials.
            params.append(f'error="{self.error}"')
            params.append(f'error_description="{_SAFE.sub("", self.description)}"')
        return {"WWW-Authenticate": "Bearer" + (" " + ", ".join(params) if params else "")}

    def body(self) -> dict[str, str]:
        """The JSON body: ``{"error", "error_description"}``."""
        error = self.error or ("temporarily_unavailable" if self.status == 503 else "unauthorized")
        return {"error": error, "error_description": self.description}


NO_CREDENTIALS: Final = Refusal(401, None, "a Bearer token is required")
INVALID_TOKEN: Final = Refusal(
    401, "invalid_token", "the access token is invalid or not meant for this service"
)
INSUFFICIENT_SCOPE: Final = Refusal(
    403, "insufficient_scope", "the token's identity is not allowed to use this resource"
)
UNAVAILABLE: Final = Refusal(503, None, "cannot verify tokens now", retry_after=30)


def refusal_for(exc: VerificationError) -> Refusal:
    """The answer to a verifier error: ``InvalidToken`` 401, ``VerifierUnavailable`` 503."""
    if isinstance(exc, VerifierUnavailable):
        return UNAVAILABLE
    if isinstance(exc, InvalidToken):
        return INVALID_TOKEN
    return UNAVAILABLE  # pragma: no cover - nothing else is raised


def _set(values: Iterable[str] | str | None, what: str) -> frozenset[str]:
    if values is None:
        return frozenset()
    if isinstance(values, str):
        values = (values,)
    out = frozenset(values)
    if any(not isinstance(v, str) or not v for v in out):
        raise ValueError(f"{what} must be non-empty strings")
    return out


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a route accepts; an empty set means "no rule"."""

    audiences: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    service_accounts: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        audiences: Iterable[str] | str | None = None,
        namespaces: Iterable[str] | str | None = None,
        service_accounts: Iterable[str] | str | None = None,
        groups: Iterable[str] | str | None = None,
    ) -> Requirements:
        """Build from lists (a single string is one value); ``service_accounts`` as ``ns/name``."""
        sas = _set(service_accounts, "service_accounts")
        for sa in sas:
            ns, slash, name = sa.partition("/")
            if not slash or not ns or not name or "/" in name:
                raise ValueError(f"service account {sa!r} is not NAMESPACE/NAME")
        return cls(
            _set(audiences, "audiences"),
            _set(namespaces, "namespaces"),
            sas,
            _set(groups, "groups"),
        )

    def check(self, result: Authenticated) -> Refusal | None:
        """None when ``result`` may use the route; otherwise the refusal to answer with."""
        if self.audiences and self.audiences.isdisjoint(result.audiences):
            return INVALID_TOKEN
        sa = result.service_account
        if self.namespaces and (sa is None or sa.namespace not in self.namespaces):
            return INSUFFICIENT_SCOPE
        if self.service_accounts and (
            sa is None or f"{sa.namespace}/{sa.service_account_name}" not in self.service_accounts
        ):
            return INSUFFICIENT_SCOPE
        if self.groups and self.groups.isdisjoint(result.user.groups):
            return INSUFFICIENT_SCOPE
        return None
