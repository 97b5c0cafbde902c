"""sa-oidc verifier: check Kubernetes-style service-account tokens offline (OIDC) or online.

Public API (docs/CONTRACTS.md "Verifier public API")::

    from verifier import KeySet, Policy, verify
    keys = KeySet.from_jwks(jwks)                    # dict | str | bytes
    policy = Policy(issuer=..., audiences=[...], algorithms=("RS256", "ES256"), leeway=60)
    ident = verify(token, keys, policy, now=None)    # pure; raises InvalidToken(reason=...)
    cache = VerifiedTokenCache(max_entries=10_000)   # optional: verify(..., cache=cache)
    payload = keys.verify_signature(token, algorithms=("RS256",))

    TokenReviewVerifier(url, BearerTokenFile(path), audiences=[...])   # a rotating credential

``OIDCVerifier``/``AsyncOIDCVerifier`` (remote.py), ``TokenReviewVerifier`` (tokenreview.py) and
``HybridVerifier`` (hybrid.py) and ``MultiIssuerVerifier``/``AsyncMultiIssuerVerifier`` (multi.py:
Kubernetes' AuthenticationConfiguration, many issuers) are imported lazily on first access, so
``import verifier`` stays cheap and never pulls in HTTP, YAML, CEL or web-framework modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core import VerifiedTokenCache, verify
from .credentials import BearerTokenFile
from .errors import InvalidToken, KeySetError, VerificationError, VerifierUnavailable
from .identity import ServiceAccountIdentity
from .jwk import KeySet, kid_for_public_key
from .policy import Policy

if TYPE_CHECKING:  # pragma: no cover
    from .hybrid import HybridVerifier
    from .multi import AsyncMultiIssuerVerifier, MultiIssuerVerifier
    from .remote import AsyncOIDCVerifier, OIDCVerifier
    from .tokenreview import TokenReviewVerifier

__all__ = [
    "AsyncMultiIssuerVerifier",
    "AsyncOIDCVerifier",
    "BearerTokenFile",
    "HybridVerifier",
    "InvalidToken",
    "KeySet",
    "KeySetError",
    "MultiIssuerVerifier",
    "OIDCVerifier",
    "Policy",
    "ServiceAccountIdentity",
    "TokenReviewVerifier",
    "VerificationError",
    "VerifiedTokenCache",
    "VerifierUnavailable",
    "kid_for_public_key",
    "verify",
]

_LAZY = {
    "OIDCVerifier": ".remote",
    "AsyncOIDCVerifier": ".remote",
    "TokenReviewVerifier": ".tokenreview",
    "HybridVerifier": ".hybrid",
    "MultiIssuerVerifier": ".multi",
    "AsyncMultiIssuerVerifier": ".multi",
}


def __getattr__(name: str) -> Any:
    """Import the network-facing verifiers on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
