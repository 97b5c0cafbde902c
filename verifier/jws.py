"""Compact JWS parsing (RFC 7515 §7.1) with the header rules of this verifier.

Only the compact serialization of a signed JWT is accepted: exactly three base64url segments.
A five-segment compact JWE (RFC 7516 §7.1) and the JSON serializations (RFC 7515 §7.2) are
``malformed``: this is a signature verifier; it decrypts nothing and picks no signature out of a
list.

Header rules (each refusal names the rule it enforces):

- ``alg`` is required and a string (RFC 7515 §4.1.1) — else ``malformed``.
- ``none`` in any casing is never accepted (RFC 8725 §3.1) — ``unsupported_algorithm``.
- ``alg`` must be on the caller's allow-list (RFC 8725 §3.1) — ``unsupported_algorithm``.
- ``crit`` present at all → ``malformed``. RFC 7515 §4.1.11: a recipient that does not understand
  every listed extension MUST reject the JWS; we understand none. We pick ``malformed`` rather than
  ``invalid_claim`` because the header is not a claim and the JWS, as we read it, is not valid JWS.
- ``b64`` other than ``true`` → ``malformed`` (RFC 7797 unencoded payloads are not JWTs, §7).
- ``typ``, if present, must be ``JWT`` or ``application/jwt``, compared case-insensitively
  (RFC 7519 §5.1: "JWT" is the recommended value; RFC 7515 §4.1.9: the ``application/`` prefix
  may be omitted, and media types compare case-insensitively per RFC 2045). Anything else — e.g.
  ``at+jwt`` (RFC 9068) — is a different kind of token: ``malformed`` (RFC 8725 §3.11).
- ``kid``, if present, must be a string (RFC 7515 §4.1.4) — else ``malformed``.
- ``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t``, ``x5t#S256`` are IGNORED: a key is chosen only
  from the caller's :class:`~verifier.jwk.KeySet`, never from the token itself (RFC 8725 §3.10).
- Duplicate header members → ``malformed`` (RFC 7515 §5.2 step 4, we choose "reject").
- The decoded header is capped at :data:`~verifier.policy.MAX_HEADER_BYTES` → ``token_too_large``.

Parsed headers are cached by their encoded segment (bounded): every token signed by one key carries
the same header bytes, so the hot path decodes and checks a header once, not once per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ._b64 import Base64Error, b64url_decode, b64url_decode_bytes
from ._json import JSONError, loads_object
from .errors import InvalidToken
from .policy import MAX_HEADER_BYTES, MAX_TOKEN_BYTES

__all__ = [
    "Header",
    "ParsedJWS",
    "check_algorithm",
    "header_cache",
    "parse_compact",
    "parse_header",
]

_TYP_OK: Final = frozenset({"jwt", "application/jwt"})
#: An encoded header longer than this decodes to more than MAX_HEADER_BYTES.
_MAX_HEADER_SEGMENT: Final = (MAX_HEADER_BYTES * 4 + 2) // 3
_HEADER_CACHE_MAX: Final = 256
#: Parsed headers by their raw (encoded) segment, at most _HEADER_CACHE_MAX: tokens from one issuer
#: share a handful of headers. Filled by :func:`parse_header`; read by the core's fast path. A hit
#: is a header that already passed every structural rule (the algorithm is still checked per call).
header_cache: dict[bytes, Header] = {}


@dataclass(frozen=True, slots=True)
class Header:
    """A JOSE header that passed the structural rules (the allow-list is checked separately)."""

    alg: str
    kid: str | None
    typ: str | None
    raw: dict[str, Any]


class ParsedJWS(NamedTuple):
    """A compact JWS split and decoded; the signature is NOT verified yet.

    A NamedTuple rather than a dataclass: built once per token on the hot path (~3x cheaper).
    """

    header: Header
    signing_input: bytes
    payload: bytes
    signature: bytes


# Builds a ParsedJWS from a 4-tuple in C (the NamedTuple's own __new__ is a Python function).
_new_parsed: Final = tuple.__new__


def parse_header(segment: bytes) -> Header:
    """Decode and check a protected-header segment (cached; see the module docstring)."""
    cached = header_cache.get(segment)
    if cached is not None:
        return cached
    if len(segment) > _MAX_HEADER_SEGMENT:
        raise InvalidToken("token_too_large", "JOSE header too large")
    try:
        raw = loads_object(b64url_decode(segment))
    except Base64Error:
        raise InvalidToken("malformed", "header is not canonical base64url") from None
    except JSONError as exc:
        raise InvalidToken("malformed", f"header is not a strict JSON object ({exc})") from None
    alg = raw.get("alg")
    if type(alg) is not str:
        raise InvalidToken("malformed", "header has no string alg (RFC 7515 §4.1.1)")
    if alg.lower() == "none":
        raise InvalidToken("unsupported_algorithm", "alg none is never accepted (RFC 8725 §3.1)")
    if "crit" in raw:
        raise InvalidToken(
            "malformed", "crit header: no extensions are understood (RFC 7515 §4.1.11)"
        )
    if "b64" in raw and raw["b64"] is not True:
        raise InvalidToken("malformed", "unencoded payload (RFC 7797) is not a JWT")
    kid = raw.get("kid")
    if kid is not None and type(kid) is not str:
        raise InvalidToken("malformed", "kid is not a string (RFC 7515 §4.1.4)")
    if "kid" in raw and kid is None:
        raise InvalidToken("malformed", "kid is null (RFC 7515 §4.1.4)")
    typ = raw.get("typ")
    if "typ" in raw and (type(typ) is not str or typ.lower() not in _TYP_OK):
        raise InvalidToken("malformed", "typ is not JWT (RFC 7519 §5.1, RFC 8725 §3.11)")
    header = Header(alg=alg, kid=kid, typ=typ, raw=raw)
    if len(header_cache) >= _HEADER_CACHE_MAX:
        header_cache.clear()  # bounded; garbage headers can only cost a re-parse
    header_cache[segment] = header
    return header


def check_algorithm(header: Header, algorithms: frozenset[str]) -> None:
    """Refuse ``header.alg`` unless it is on the allow-list (RFC 8725 §3.1)."""
    if header.alg not in algorithms:
        raise InvalidToken("unsupported_algorithm", "alg not on the allow-list")


def to_bytes(token: str | bytes, max_token_bytes: int) -> bytes:
    """Return the token as ASCII bytes after the size cap (the first, cheapest check)."""
    if len(token) > max_token_bytes:
        raise InvalidToken("token_too_large", "token exceeds the size cap")
    if isinstance(token, str):
        try:
            return token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed", "token is not ASCII") from None
    if isinstance(token, bytes | bytearray | memoryview):
        return bytes(token)
    raise InvalidToken("malformed", "token is not a string")


def _split_error(data: bytes) -> InvalidToken:
    """The refusal for a token that is not ``HEADER.PAYLOAD.SIGNATURE`` with a non-empty header."""
    segments = data.split(b".")
    if len(segments) != 3:
        if data[:1] == b"{":
            return InvalidToken("malformed", "JWS JSON serialization is not accepted")
        if len(segments) == 5:
            return InvalidToken("malformed", "JWE is not accepted (RFC 7516 compact form)")
        return InvalidToken("malformed", "not three dot-separated segments (RFC 7515 §7.1)")
    return InvalidToken("malformed", "empty protected header")


def parse_compact(token: str | bytes, max_token_bytes: int = MAX_TOKEN_BYTES) -> ParsedJWS:
    """Split a compact JWS and decode its three segments (the payload is not parsed as JSON).

    Every segment is checked to be canonical base64url here, before any key lookup, so a garbage
    token can never be reported as ``unknown_key`` (which makes remote verifiers refetch).

    Hot path (docs/BENCHMARKS.md §1): a ``str`` token is encoded inline (same cap and ASCII
    rule as :func:`to_bytes`); the two dots are located with ``bytes.find`` (memchr) rather than
    ``split`` (a byte-by-byte loop, ~4x slower on a 1 KiB token); the header cache is probed
    inline; the result is built with ``tuple.__new__`` (skipping the NamedTuple's Python-level
    ``__new__``). Refusals are those of the straightforward split-based code (tests cross-check).
    """
    if type(token) is str and len(token) <= max_token_bytes:
        try:
            data = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed", "token is not ASCII") from None
    else:
        data = to_bytes(token, max_token_bytes)
    # RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
    dot1 = data.find(b".")
    dot2 = data.find(b".", dot1 + 1)
    if dot1 <= 0 or dot2 < 0 or data.find(b".", dot2 + 1) >= 0:
        raise _split_error(data)
    head = data[:dot1]
    header = header_cache.get(head)
    if header is None:
        header = parse_header(head)
    try:
        payload = b64url_decode_bytes(data[dot1 + 1 : dot2])
        signature = b64url_decode_bytes(data[dot2 + 1 :])
    except Base64Error:
        raise InvalidToken("malformed", "segment is not canonical base64url") from None
    return _new_parsed(ParsedJWS, (header, data[:dot2], payload, signature))
