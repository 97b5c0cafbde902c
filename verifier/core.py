"""The pure verification core: ``verify(token, keys, policy, now)`` — no I/O, clock passed in.

Order, cheapest first, so that garbage can never make a caller refetch keys (STYLE.md §5; go-oidc
``Verify``)::

    size (token_too_large) → three segments, strict base64url, header JSON and header rules
    (malformed / token_too_large) → alg allow-list (unsupported_algorithm) → kid required?
    (malformed) → kid lookup (unknown_key) → key/alg fit (unsupported_algorithm) → signature
    (bad_signature) → payload JSON (malformed) → claims: iss (issuer_mismatch) → exp, nbf, iat
    (expired, not_yet_valid) → aud (audience_mismatch) → sub, kubernetes.io (missing_claim,
    invalid_claim)

``unknown_key`` therefore means: a well-formed token with an allowed alg names a kid we do not
hold — the one case where fetching the JWKS again can help (remote.py relies on this).
Unverified claims never reach an exception message or a log line.
"""

from __future__ import annotations

import time

from ._json import JSONError, loads_object
from .claims import identity_from_claims
from .errors import InvalidToken
from .identity import ServiceAccountIdentity
from .jwk import KeySet
from .jws import parse_compact
from .policy import Policy

__all__ = ["verify"]


def verify(
    token: str | bytes, keys: KeySet, policy: Policy, now: float | None = None
) -> ServiceAccountIdentity:
    """Verify a service-account JWT offline and return the identity it proves.

    ``now`` is POSIX seconds (``None``: ``time.time()``). Raises
    :class:`~verifier.errors.InvalidToken` with a stable ``reason``; never does I/O.
    """
    parsed = parse_compact(token, policy.max_token_bytes)
    key = keys.verify_parsed(parsed, policy._alg_set, policy.require_kid)
    try:
        claims = loads_object(parsed.payload)
    except JSONError:
        raise InvalidToken("malformed", "payload is not a strict JSON object") from None
    return identity_from_claims(claims, policy, time.time() if now is None else now, key.kid)
