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

Two paths, one contract (docs/BENCHMARKS.md §1):

- :func:`verify_reference` is the straightforward composition of the building blocks
  (``parse_compact`` → ``KeySet.verify_parsed`` → ``loads_object`` → ``identity_from_claims``).
- :func:`verify` first tries a fused fast path for the common case — a ``str`` token whose encoded
  header is already in the header cache (so it already passed every header rule once), naming a
  ``kid`` we hold, with an allowed ``alg`` that fits the key. It runs the very same checks with
  fewer Python calls and no intermediate objects, and hands EVERY other case (and every structural
  failure) to :func:`verify_reference` before any signature work, so refusals keep their reasons
  and order. The only outcomes the fast path produces itself are: a verified identity,
  ``bad_signature`` (for a token the reference path would also have sent to the same key), and the
  claim refusals of ``identity_from_claims``. tests/verifier/test_fastpath.py checks that both paths
  agree on valid tokens, on every refusal reason and on random mutations.

:class:`VerifiedTokenCache` (optional, ``verify(..., cache=cache)``) remembers successful
verifications of the exact same token bytes under the same ``KeySet`` and ``Policy`` objects and
re-runs the time checks (RFC 7519 §4.1.4-§4.1.6) on every hit.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Final

import orjson

from ._b64 import Base64Error, b64url_decode_bytes
from ._json import NOT_OPENERS, JSONError, loads_object
from .claims import bound_identity, identity_from_claims
from .errors import InvalidToken
from .identity import ServiceAccountIdentity
from .jwk import KeySet
from .jws import header_cache, parse_compact
from .policy import MAX_JSON_DEPTH, Policy

__all__ = ["VerifiedTokenCache", "verify", "verify_reference"]


def verify_reference(
    token: str | bytes, keys: KeySet, policy: Policy, now: float | None = None
) -> ServiceAccountIdentity:
    """The reference implementation of :func:`verify` (same contract, no fast path, no cache)."""
    parsed = parse_compact(token, policy.max_token_bytes)
    key = keys.verify_parsed(parsed, policy._alg_set, policy.require_kid)
    try:
        claims = loads_object(parsed.payload)
    except JSONError:
        raise InvalidToken("malformed", "payload is not a strict JSON object") from None
    return identity_from_claims(claims, policy, time.time() if now is None else now, key.kid)


def verify(
    token: str | bytes,
    keys: KeySet,
    policy: Policy,
    now: float | None = None,
    *,
    cache: VerifiedTokenCache | None = None,
) -> ServiceAccountIdentity:
    """Verify a service-account JWT offline and return the identity it proves.

    ``now`` is POSIX seconds (``None``: ``time.time()``). Raises
    :class:`~verifier.errors.InvalidToken` with a stable ``reason``; never does I/O. With
    ``cache``, a token already verified under the same ``keys`` and ``policy`` objects costs a keyed
    hash and the time checks (see :class:`VerifiedTokenCache`).
    """
    if cache is not None:
        return cache.verify(token, keys, policy, now)
    if now is None:
        now = time.time()
    # ---- fused fast path (see the module docstring); any doubt → verify_reference ----------------
    if type(token) is str and len(token) <= policy.max_token_bytes and token.isascii():
        data = token.encode("ascii")
        # RFC 7515 §7.1: exactly HEADER '.' PAYLOAD '.' SIGNATURE, header non-empty. bytes.find is
        # a memchr; bytes.split walks the token byte by byte.
        dot1 = data.find(b".")
        dot2 = data.find(b".", dot1 + 1)
        if 0 < dot1 < dot2 and data.find(b".", dot2 + 1) < 0:
            # Only a header that already passed parse_header's rules is in the cache.
            header = header_cache.get(data[:dot1])
            if header is not None:
                alg = header.alg
                kid = header.kid
                key = None if kid is None else keys._by_kid.get(kid)
                # RFC 8725 §3.1 allow-list; the key must fit the alg (RFC 7517 §4.4).
                if key is not None and alg in policy._alg_set and alg in key.algorithms:
                    try:
                        # Both segments are decoded before any crypto, as parse_compact does.
                        payload = b64url_decode_bytes(data[dot1 + 1 : dot2])
                        signature = b64url_decode_bytes(data[dot2 + 1 :])
                    except Base64Error:
                        return verify_reference(token, keys, policy, now)  # raises malformed
                    if not key.verify(alg, data[:dot2], signature):
                        raise InvalidToken("bad_signature", "signature does not verify")
                    # loads_object's fast path, inline: orjson, then the exact duplicate-member
                    # proof (re-serialisation is byte-identical) and the nesting bound; anything
                    # else goes through loads_object itself (its slow path or its refusal).
                    try:
                        claims: Any = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        claims = None
                    if (
                        type(claims) is not dict
                        or orjson.dumps(claims) != payload
                        or len(payload.translate(None, NOT_OPENERS)) > MAX_JSON_DEPTH
                    ):
                        try:
                            claims = loads_object(payload)
                        except JSONError:
                            raise InvalidToken(
                                "malformed", "payload is not a strict JSON object"
                            ) from None
                    iss = claims.get("iss")
                    if type(iss) is str and iss == policy.issuer:  # RFC 7519 §4.1.1
                        return bound_identity(claims, policy, now, key.kid)
                    return identity_from_claims(claims, policy, now, key.kid)
    return verify_reference(token, keys, policy, now)


# ------------------------------------------------------------------------------------------------
# Verified-token cache


# A cache entry is a plain tuple (cheaper to build than a NamedTuple):
# (KeySet, Policy, identity, exp, nbf | None, iat | None) — the last three are the claim values.
_Entry = tuple[KeySet, Policy, ServiceAccountIdentity, float, float | None, float | None]


class VerifiedTokenCache:
    """A bounded cache of successful verifications: ``verify(token, keys, policy, now, cache=c)``.

    - **Key**: a keyed BLAKE2b-256 hash (random per-process key, RFC 7693) of the exact token bytes,
      plus the identities of the ``KeySet`` and ``Policy`` objects. The token itself is not kept
      (a memory dump of the cache yields no usable bearer token); a different policy or a new key
      set (the remote verifiers build a new ``KeySet`` whenever the JWKS changes, so a removed key
      stops verifying at once) always misses. Entries hold strong references to their ``KeySet``
      and ``Policy``, so an ``id`` in a key can never be reused by another object while cached.
    - **Time checks on every hit**: ``exp`` (RFC 7519 §4.1.4), ``nbf`` (§4.1.5) and ``iat``
      (§4.1.6) are re-checked against ``now`` with the policy leeway, with exactly the rules and
      reasons of the uncached path (the original claim values are kept, not the truncated
      identity fields). Everything else a verification checks does not depend on ``now``. An entry
      found expired is dropped.
    - **Only successes** are stored, and only tokens with an ``exp`` (a legacy token without one
      has no bound on how long it may be trusted; it is always verified in full).
    - **Bounded**: at most ``max_entries``, least recently used evicted first. Thread-safe (one
      lock, never held while verifying).
    """

    __slots__ = ("_entries", "_hasher", "_lock", "hits", "max_entries", "misses")

    def __init__(self, max_entries: int = 10_000) -> None:
        """Create an empty cache holding at most ``max_entries`` verified tokens."""
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple[bytes, int, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        # Keyed once; each lookup copies the keyed state (cheaper than re-keying).
        self._hasher: Final = hashlib.blake2b(key=os.urandom(32), digest_size=32)
        #: Lookups answered from the cache / verified in full (metrics; approximate under threads).
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def verify(
        self, token: str | bytes, keys: KeySet, policy: Policy, now: float | None = None
    ) -> ServiceAccountIdentity:
        """:func:`verify` through this cache (same contract, same reasons)."""
        if now is None:
            now = time.time()
        # The size cap comes first, before hashing anything (same order as verify).
        if len(token) > policy.max_token_bytes:
            return verify(token, keys, policy, now)
        if type(token) is str:
            if not token.isascii():
                return verify(token, keys, policy, now)  # raises malformed
            data = token.encode("ascii")
        elif type(token) is bytes:
            data = token
        else:
            return verify(token, keys, policy, now)
        h = self._hasher.copy()
        h.update(data)
        k = (h.digest(), id(keys), id(policy))
        entries = self._entries
        with self._lock:
            entry = entries.get(k)
            if entry is not None:
                entries.move_to_end(k)
        if entry is not None and entry[0] is keys and entry[1] is policy:
            _, _, ident, exp, nbf, iat = entry
            leeway = policy.leeway
            # RFC 7519 §4.1.4-§4.1.6, as claims.validate_exp / validate_nbf / validate_iat.
            if exp + leeway <= now:
                with self._lock:
                    entries.pop(k, None)
                raise InvalidToken("expired", "token has expired")
            if nbf is not None and nbf - leeway > now:
                raise InvalidToken("not_yet_valid", "token is not valid yet")
            if iat is not None and iat - leeway > now:
                raise InvalidToken("not_yet_valid", "token is issued in the future")
            self.hits += 1
            return ident
        ident = verify(token, keys, policy, now)  # raises: nothing is cached
        self.misses += 1
        claims = ident.claims
        exp_claim = claims.get("exp")  # required for bound tokens (claims.validate_exp)
        if exp_claim is not None and not ident.legacy:
            new: _Entry = (keys, policy, ident, exp_claim, claims.get("nbf"), claims.get("iat"))
            with self._lock:
                entries[k] = new
                entries.move_to_end(k)  # k may have been inserted meanwhile by another thread
                if len(entries) > self.max_entries:
                    entries.popitem(last=False)
        return ident

    def __repr__(self) -> str:
        return (
            f"VerifiedTokenCache(entries={len(self._entries)}, max_entries={self.max_entries}, "
            f"hits={self.hits}, misses={self.misses})"
        )
