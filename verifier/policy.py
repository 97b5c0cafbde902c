"""Policy: what a caller accepts. Allow-lists with safe defaults (STYLE.md §4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Algorithms this verifier can check at all: the RSA PKCS#1 v1.5 and ECDSA families that AWS,
#: GCP and Entra accept (docs/CONTRACTS.md "Cloud consumers"). kube-apiserver itself signs RS256
#: with RSA keys and ES256/384/512 with EC keys (kube: pkg/serviceaccount/jwt.go). No PS*, no HS*.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
)
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")

#: The issuer Kubernetes writes into legacy Secret-based tokens
#: (kube: pkg/serviceaccount/legacy.go).
LEGACY_ISSUER = "kubernetes/serviceaccount"

#: Size caps (bytes) on what is read from a token before any crypto runs.
MAX_TOKEN_BYTES = 16 * 1024
MAX_HEADER_BYTES = 1024
MAX_JSON_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Policy:
    """What a verifier accepts.

    - ``issuer``: compared exactly (a trailing slash is a different issuer).
    - ``audiences``: the token's ``aud`` must intersect these (RFC 7519 §4.1.3). Required and
      non-empty.
    - ``algorithms``: allow-list; ``none`` and HMAC are never accepted whatever is listed.
    - ``leeway``: seconds of clock skew allowed on exp, nbf and iat.
    - ``require_kid``: a token without ``kid`` is refused unless this is False, in which case it is
      tried against every key that fits its alg.
    - ``allow_legacy``: also accept legacy Secret-based tokens (issuer
      ``kubernetes/serviceaccount``, no exp, no aud). Off by default; only TokenReview, which can
      check the Secret still exists, should turn it on.
    - ``max_token_bytes``: cap on the compact token's length.
    """

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: int = 60
    require_kid: bool = True
    allow_legacy: bool = False
    max_token_bytes: int = MAX_TOKEN_BYTES
    _alg_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _aud_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: int = 60,
        require_kid: bool = True,
        allow_legacy: bool = False,
        max_token_bytes: int = MAX_TOKEN_BYTES,
    ) -> None:
        if isinstance(audiences, str):
            audiences = (audiences,)
        auds = tuple(audiences)
        algs = tuple(algorithms)
        if not issuer:
            raise ValueError("Policy.issuer must be a non-empty string")
        if not auds or any(not isinstance(a, str) or not a for a in auds):
            raise ValueError("Policy.audiences must be a non-empty list of non-empty strings")
        unknown = [a for a in algs if a not in SUPPORTED_ALGORITHMS]
        if unknown or not algs:
            raise ValueError(
                f"Policy.algorithms may only list {sorted(SUPPORTED_ALGORITHMS)}; got {list(algs)}"
            )
        if leeway < 0 or leeway > 600:
            raise ValueError("Policy.leeway must be between 0 and 600 seconds")
        if max_token_bytes <= 0:
            raise ValueError("Policy.max_token_bytes must be positive")
        object.__setattr__(self, "issuer", issuer)
        object.__setattr__(self, "audiences", auds)
        object.__setattr__(self, "algorithms", algs)
        object.__setattr__(self, "leeway", int(leeway))
        object.__setattr__(self, "require_kid", bool(require_kid))
        object.__setattr__(self, "allow_legacy", bool(allow_legacy))
        object.__setattr__(self, "max_token_bytes", int(max_token_bytes))
        object.__setattr__(self, "_alg_set", frozenset(algs))
        object.__setattr__(self, "_aud_set", frozenset(auds))

    def allows_algorithm(self, alg: str) -> bool:
        """True when ``alg`` is on this policy's allow-list."""
        return alg in self._alg_set

    def audience_set(self) -> frozenset[str]:
        """The accepted audiences as a set."""
        return self._aud_set


__all__ = [
    "DEFAULT_ALGORITHMS",
    "LEGACY_ISSUER",
    "SUPPORTED_ALGORITHMS",
    "Policy",
]
