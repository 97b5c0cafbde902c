"""The verifier's one exception tree, with stable reason codes.

::

    VerificationError                 base: anything the verifier raises on purpose
    ├── InvalidToken                  the token was checked and is not acceptable
    │                                 (.reason is one of REASONS, stable; .detail is for logs)
    ├── VerifierUnavailable           could not check: issuer unreachable and nothing usable cached.
    │   │                             Never means "valid", never means "invalid".
    │   └── CredentialRefused         the issuer refused the verifier's OWN credential (401/403)
    └── KeySetError                   a JWKS document (or a key in it) was refused

"Invalid token" and "could not check" are different branches on purpose (STYLE.md §6): a caller
that treats an outage as "invalid" locks out every workload, one that treats it as "valid" lets
anyone in.
Messages shown to remote callers stay generic (``InvalidToken.public_message``); ``detail`` may say
more and is meant for logs. Neither ever contains unverified claims.
"""

from __future__ import annotations

from typing import Final, Literal

Reason = Literal[
    "malformed",
    "token_too_large",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
    "issuer_mismatch",
    "audience_mismatch",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "invalid_claim",
    "revoked",
]

#: Every reason code ``InvalidToken.reason`` can carry (docs/CONTRACTS.md "Verifier public API").
REASONS: Final[frozenset[str]] = frozenset(
    {
        "malformed",
        "token_too_large",
        "unsupported_algorithm",
        "unknown_key",
        "bad_signature",
        "issuer_mismatch",
        "audience_mismatch",
        "expired",
        "not_yet_valid",
        "missing_claim",
        "invalid_claim",
        "revoked",
    }
)


class VerificationError(Exception):
    """Base class of every error the verifier raises deliberately."""


class InvalidToken(VerificationError):
    """The token was checked and must not be accepted.

    ``reason`` is a stable code from :data:`REASONS`; ``detail`` is a human sentence for logs.
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        if reason not in REASONS:  # pragma: no cover - programming error
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason: Reason = reason
        self.detail = detail or reason.replace("_", " ")
        super().__init__(f"{reason}: {self.detail}")

    @property
    def public_message(self) -> str:
        """A message safe to show a remote caller: the reason code only."""
        return f"invalid token ({self.reason})"


class VerifierUnavailable(VerificationError):
    """The token could not be checked (issuer unreachable, nothing usable cached)."""


class CredentialRefused(VerifierUnavailable):
    """The issuer refused this verifier's own bearer credential (HTTP ``status``: 401 or 403).

    Nothing is known about the token; the reviewer credential (a token file, an admin token)
    needs fixing or rotating.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class KeySetError(VerificationError, ValueError):
    """A JWKS document or a key in it was refused (not a JWKS, private material, weak key...)."""


__all__ = [
    "REASONS",
    "CredentialRefused",
    "InvalidToken",
    "KeySetError",
    "Reason",
    "VerificationError",
    "VerifierUnavailable",
]
