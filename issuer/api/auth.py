"""Who may call the API: bearer tokens matching one of the configured admin tokens.

Anonymous callers get discovery and JWKS only (those routes live outside this package). Every API
route calls :func:`authenticate` first; a missing or wrong credential is 401 ``Unauthorized`` with
``WWW-Authenticate: Bearer`` (RFC 6750 §3), as kube-apiserver answers.

The comparison runs ``hmac.compare_digest`` against *every* admin token, without an early exit, so
timing says neither which token matched nor how much of one did. The caller is identified in audit
records by the token's position (``admin-token#1``), never by the token or a hash of it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request

from issuer.api.errors import unauthorized

__all__ = ["authenticate", "bearer_token", "match_admin_token"]


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header (scheme case-insensitive,
    RFC 7235 §2.1), or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def match_admin_token(presented: str, admin_tokens: Sequence[str]) -> int | None:
    """The index of the admin token equal to ``presented`` (constant time, no early exit)."""
    given = presented.encode("utf-8", "surrogatepass")
    found: int | None = None
    for i, candidate in enumerate(admin_tokens):
        if hmac.compare_digest(given, candidate.encode("utf-8", "surrogatepass")) and found is None:
            found = i
    return found


def authenticate(request: Request, admin_tokens: Sequence[str]) -> str:
    """Return the caller's audit label (``admin-token#N``) or raise 401 Unauthorized."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    index = match_admin_token(token, admin_tokens)
    if index is None:
        raise unauthorized()
    return f"admin-token#{index + 1}"
