"""JSON Web Keys (RFC 7517) and the key set a verifier checks signatures against.

:class:`KeySet` is built once (from a JWKS document or from public-key objects); every key is
validated and turned into a ready ``cryptography`` key object at construction, so the hot path only
looks a kid up and calls ``verify``.

Rules for a JWKS document (``KeySet.from_jwks``):

- The document must be a JSON object with a ``keys`` array (RFC 7517 §5), at most
  :data:`MAX_JWKS_BYTES` long and holding at most :data:`MAX_KEYS` entries — else
  :class:`KeySetError`.
- Private or secret members (``d p q dp dq qi oth`` — RFC 7518 §6.3.2 — and ``k``, §6.4.1) anywhere
  refuse the WHOLE document: an issuer publishing secrets is broken, and nothing it serves should be
  trusted.
- Keys this verifier cannot or must not use are SKIPPED, never fatal (RFC 7517 §5: "Implementations
  SHOULD ignore JWKs within a JWK Set that use "kty" (key type) values that are not understood by
  them, that are missing required members, or for which values are out of the supported ranges"),
  so a future key type in the set does not break verification with today's keys:
  unknown ``kty`` (``oct`` without ``k``, ``OKP``...), unknown or unfitting ``alg`` (RFC 7517 §4.4),
  ``use`` other than ``sig`` (§4.2), ``key_ops`` without ``verify`` (§4.3), non-string ``kid``,
  RSA moduli under 2048 bits (RFC 7518 §3.3) or over 8192, ``e`` even or < 3, ROCA-weak moduli
  (CVE-2017-15361), EC points off their curve or coordinates of the wrong length
  (RFC 7518 §6.2.1.2).
  Skipped keys are listed in :attr:`KeySet.skipped` with the reason.
- Two usable keys with the same ``kid``: the kid is ambiguous and tokens naming it are rejected with
  ``unknown_key`` (no single key is identified; Wycheproof json_web_key_test "DuplicateKid" says
  reject; the remote verifier's refetch-on-``unknown_key`` is rate-limited, and a fixed JWKS
  heals it).

Key type ↔ algorithm fit (kube: pkg/serviceaccount/jwt.go; RFC 7518 §3.1): RSA → RS256/RS384/RS512
(never PS*, never HS*); EC P-256 → ES256, P-384 → ES384, P-521 → ES512 only. A JWK's own ``alg``
narrows that to exactly one.

ECDSA signatures in JWS are raw ``r || s`` (RFC 7518 §3.4). Wrong length, ``r`` or ``s`` equal to 0
or not below the group order → ``bad_signature`` before any curve arithmetic (CVE-2022-21449).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._b64 import Base64Error, b64url_decode, b64url_encode
from ._json import JSONError, loads_object
from .errors import InvalidToken, KeySetError
from .jws import ParsedJWS, parse_compact
from .policy import MAX_TOKEN_BYTES, SUPPORTED_ALGORITHMS

__all__ = [
    "MAX_JWKS_BYTES",
    "MAX_KEYS",
    "KeySet",
    "PublicKey",
    "kid_for_public_key",
]

#: Cap on a JWKS document's size (bytes) and on the number of keys it may hold.
MAX_JWKS_BYTES: Final = 512 * 1024
MAX_KEYS: Final = 100
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192

#: Members that only a private or secret JWK has (RFC 7518 §6.3.2, §6.4.1; §6.2.2 ``d`` for EC).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_RSA_ALGS: Final = frozenset({"RS256", "RS384", "RS512"})
_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "ES512": hashes.SHA512(),
}
_PKCS1: Final = padding.PKCS1v15()


class _Curve:
    """What JWS needs to know about one NIST curve (RFC 7518 §3.4, §6.2.1.1)."""

    __slots__ = ("alg", "crv", "curve", "ecdsa", "order", "size")

    def __init__(self, crv: str, curve: ec.EllipticCurve, alg: str, size: int, order: int) -> None:
        self.crv = crv
        self.curve = curve
        self.alg = alg
        self.size = size
        self.order = order
        self.ecdsa = ec.ECDSA(_HASHES[alg])


# Group orders from SEC 2 v2 §2.4.2, §2.5.1, §2.6.1.
_CURVES: Final[dict[str, _Curve]] = {
    "P-256": _Curve(
        "P-256",
        ec.SECP256R1(),
        "ES256",
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    "P-384": _Curve(
        "P-384",
        ec.SECP384R1(),
        "ES384",
        48,
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
    ),
    "P-521": _Curve(
        "P-521",
        ec.SECP521R1(),
        "ES512",
        66,
        0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409,
    ),
}
_CURVE_BY_NAME: Final = {c.curve.name: c for c in _CURVES.values()}

# ROCA (CVE-2017-15361) fingerprint, Nemec et al. CCS 2017 / crocs-muni/roca detect.py: a modulus
# made by the flawed Infineon generator lies, modulo each of these small primes, in the subgroup
# generated by 65537. A random modulus passes all 38 tests with negligible probability.
_ROCA_PRIMES: Final = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip


def _subgroup(g: int, p: int) -> frozenset[int]:
    out = {1}
    x = g % p
    while x not in out:
        out.add(x)
        x = x * g % p
    return frozenset(out)


_ROCA_SUBGROUPS: Final = tuple((p, _subgroup(65537, p)) for p in _ROCA_PRIMES)


def _is_roca_weak(n: int) -> bool:
    return all(n % p in group for p, group in _ROCA_SUBGROUPS)


def kid_for_public_key(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """The Kubernetes key id: base64url (no padding) of SHA-256 over the DER SubjectPublicKeyInfo.

    kube: pkg/serviceaccount/jwt.go ``keyIDFromPublicKey``.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url_encode(hashlib.sha256(der).digest())


class _SkipKey(Exception):
    """This JWK is not usable here; skip it (RFC 7517 §5)."""


def _int_member(jwk: Mapping[str, Any], name: str) -> tuple[int, int]:
    """Decode a base64url unsigned big-endian integer member; return (value, byte length)."""
    value = jwk.get(name)
    if type(value) is not str or not value:
        raise _SkipKey(f"missing or non-string {name!r}")
    try:
        raw = b64url_decode(value)
    except Base64Error:
        raise _SkipKey(f"{name!r} is not canonical base64url") from None
    return int.from_bytes(raw, "big"), len(raw)


class PublicKey:
    """One usable public verification key: its kid, the algorithms it may verify, the key object."""

    __slots__ = ("_curve", "_ec", "_rsa", "_sig_len", "algorithms", "key", "kid", "kty")

    kid: str | None
    kty: str
    algorithms: frozenset[str]
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    def __init__(
        self,
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        kid: str | None = None,
        alg: str | None = None,
    ) -> None:
        """Wrap ``key``; ``alg`` (if given) narrows the algorithms it verifies to that one.

        Raises ``ValueError`` for weak or unsupported keys or an algorithm that does not fit.
        """
        self.kid = kid
        self.key = key
        self._curve: _Curve | None
        self._rsa: rsa.RSAPublicKey | None = None
        self._ec: ec.EllipticCurvePublicKey | None = None
        if isinstance(key, rsa.RSAPublicKey):
            nums = key.public_numbers()
            bits = nums.n.bit_length()
            if bits < MIN_RSA_BITS or bits > MAX_RSA_BITS:
                # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used".
                raise ValueError(
                    f"RSA modulus of {bits} bits (need {MIN_RSA_BITS}..{MAX_RSA_BITS})"
                )
            if nums.e < 3 or nums.e % 2 == 0 or nums.e >= 1 << 32:
                raise ValueError("RSA public exponent must be odd, >= 3 and < 2^32")
            if _is_roca_weak(nums.n):
                raise ValueError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")
            self.kty = "RSA"
            self._rsa = key
            self._curve = None
            self._sig_len = (bits + 7) // 8  # RFC 8017 §8.2.2: signature is exactly k octets
            fit: frozenset[str] = _RSA_ALGS
        elif isinstance(key, ec.EllipticCurvePublicKey):
            curve = _CURVE_BY_NAME.get(key.curve.name)
            if curve is None:
                raise ValueError(f"unsupported curve {key.curve.name}")
            self.kty = "EC"
            self._ec = key
            self._curve = curve
            self._sig_len = 2 * curve.size  # RFC 7518 §3.4: R and S, each the coordinate size
            fit = frozenset({curve.alg})
        else:
            raise ValueError("only RSA and EC (P-256/384/521) public keys are supported")
        if alg is not None:
            if alg not in fit:
                raise ValueError(f"alg {alg} does not fit a {self.kty} key")
            fit = frozenset({alg})
        self.algorithms = fit

    @property
    def crv(self) -> str | None:
        """The JWK curve name (``P-256``...) for EC keys, ``None`` for RSA."""
        return self._curve.crv if self._curve is not None else None

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Build from one public JWK (RFC 7517 §4, RFC 7518 §6); ``ValueError`` if unusable."""
        try:
            return cls._from_jwk(jwk)
        except _SkipKey as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def _from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        kty = jwk.get("kty")
        kid = jwk.get("kid")
        if kid is not None and type(kid) is not str:
            raise _SkipKey("kid is not a string (RFC 7517 §4.5)")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise _SkipKey("use is not 'sig' (RFC 7517 §4.2)")
        if "key_ops" in jwk:
            ops = jwk["key_ops"]
            if type(ops) is not list or any(type(o) is not str for o in ops) or "verify" not in ops:
                raise _SkipKey("key_ops does not include 'verify' (RFC 7517 §4.3)")
        alg = jwk.get("alg")
        if alg is not None and (type(alg) is not str or alg not in SUPPORTED_ALGORITHMS):
            raise _SkipKey("alg is not a supported JWS algorithm (RFC 7517 §4.4)")
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
        if kty == "RSA":
            n, _ = _int_member(jwk, "n")
            e, _ = _int_member(jwk, "e")
            if n < 3 or e < 1:
                raise _SkipKey("RSA n/e out of range")
            try:
                key = rsa.RSAPublicNumbers(e, n).public_key()
            except ValueError as exc:
                raise _SkipKey(f"bad RSA key: {exc}") from None
        elif kty == "EC":
            crv = jwk.get("crv")
            curve = _CURVES.get(crv) if type(crv) is str else None
            if curve is None:
                raise _SkipKey("crv is not P-256, P-384 or P-521")
            x, xlen = _int_member(jwk, "x")
            y, ylen = _int_member(jwk, "y")
            if xlen != curve.size or ylen != curve.size:
                # RFC 7518 §6.2.1.2/§6.2.1.3: full-size coordinates.
                raise _SkipKey("EC coordinate has the wrong length for its curve")
            try:
                # cryptography checks that (x, y) is on the curve.
                key = ec.EllipticCurvePublicNumbers(x, y, curve.curve).public_key()
            except ValueError:
                raise _SkipKey("EC point is not on its curve") from None
        else:
            raise _SkipKey("kty is not RSA or EC")
        try:
            return cls(key, kid, alg)
        except ValueError as exc:
            raise _SkipKey(str(exc)) from None

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is a valid ``alg`` signature over ``signing_input`` by this key.

        ``alg`` must be one of :attr:`algorithms` (callers check the fit first).
        """
        if len(signature) != self._sig_len:
            return False
        curve = self._curve
        try:
            if curve is None:
                assert self._rsa is not None
                self._rsa.verify(signature, signing_input, _PKCS1, _HASHES[alg])
                return True
            assert self._ec is not None
            size = curve.size
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            order = curve.order
            if not (0 < r < order and 0 < s < order):  # CVE-2022-21449 "psychic signatures"
                return False
            self._ec.verify(encode_dss_signature(r, s), signing_input, curve.ecdsa)
            return True
        except InvalidSignature:
            return False

    def to_jwk(self) -> dict[str, str]:
        """The public JWK: ``kty``, ``kid``, ``use``, ``alg`` (if exactly one), n/e or crv/x/y."""
        out: dict[str, str] = {"kty": self.kty, "use": "sig"}
        if self.kid is not None:
            out["kid"] = self.kid
        if len(self.algorithms) == 1:
            (out["alg"],) = self.algorithms
        if isinstance(self.key, rsa.RSAPublicKey):
            nums = self.key.public_numbers()
            out["n"] = b64url_encode(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big"))
            out["e"] = b64url_encode(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big"))
        else:
            assert self._curve is not None
            enums = self.key.public_numbers()
            out["crv"] = self._curve.crv
            out["x"] = b64url_encode(enums.x.to_bytes(self._curve.size, "big"))
            out["y"] = b64url_encode(enums.y.to_bytes(self._curve.size, "big"))
        return out

    def __repr__(self) -> str:
        return (
            f"PublicKey(kid={self.kid!r}, kty={self.kty!r}, algorithms={sorted(self.algorithms)})"
        )


# Allow-lists already checked, by the tuple a caller passes (a hot-path caller passes the same
# tuple every time). Only valid lists are stored, and there are finitely many (bounded anyway).
_checked_algorithms: dict[tuple[str, ...], frozenset[str]] = {}


def _check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    if type(algorithms) is tuple:
        hit = _checked_algorithms.get(algorithms)
        if hit is not None:
            return hit
    algs = frozenset([algorithms] if isinstance(algorithms, str) else algorithms)
    unknown = algs - SUPPORTED_ALGORITHMS
    if unknown or not algs:
        raise ValueError(
            f"algorithms may only list {sorted(SUPPORTED_ALGORITHMS)}; got {sorted(algs)}"
        )
    if type(algorithms) is tuple and len(_checked_algorithms) < 256:
        _checked_algorithms[algorithms] = algs
    return algs


class KeySet:
    """An immutable set of verification keys (see the module docstring for the rules).

    Build with :meth:`from_jwks` or :meth:`from_public_keys`; look keys up with :meth:`get`; check a
    token's signature with :meth:`verify_signature`. Thread-safe (never mutated after construction).
    """

    __slots__ = ("_by_alg", "_by_kid", "_keys", "skipped")

    def __init__(
        self, keys: Iterable[PublicKey], skipped: Iterable[tuple[str | None, str]] = ()
    ) -> None:
        """Index ``keys`` by kid; ``skipped`` records (kid, reason) for keys left out."""
        self._keys: tuple[PublicKey, ...] = tuple(keys)
        if len(self._keys) > MAX_KEYS:
            raise KeySetError(f"more than {MAX_KEYS} keys")
        by_kid: dict[str, PublicKey] = {}
        ambiguous: set[str] = set()
        for k in self._keys:
            if k.kid is None:
                continue
            if k.kid in by_kid:
                ambiguous.add(k.kid)
            by_kid[k.kid] = k
        for kid in ambiguous:
            del by_kid[kid]
        self._by_kid = by_kid
        by_alg: dict[str, tuple[PublicKey, ...]] = {}
        for alg in SUPPORTED_ALGORITHMS:
            by_alg[alg] = tuple(k for k in self._keys if alg in k.algorithms)
        self._by_alg = by_alg
        #: Keys of the source document that were left out, as (kid, reason) pairs.
        self.skipped: tuple[tuple[str | None, str], ...] = tuple(skipped)

    @classmethod
    def from_jwks(cls, doc: Mapping[str, Any] | str | bytes) -> KeySet:
        """Build from a JWK Set document (RFC 7517 §5): a dict, or its JSON text/bytes.

        Raises :class:`~verifier.errors.KeySetError` if the document is refused as a whole.
        """
        if isinstance(doc, str):
            doc = doc.encode("utf-8")
        if isinstance(doc, bytes | bytearray):
            if len(doc) > MAX_JWKS_BYTES:
                raise KeySetError(f"JWKS document larger than {MAX_JWKS_BYTES} bytes")
            try:
                doc = loads_object(bytes(doc))
            except JSONError as exc:
                raise KeySetError(f"JWKS is not a strict JSON object: {exc}") from None
        if not isinstance(doc, Mapping):
            raise KeySetError("JWKS is not a JSON object")
        entries = doc.get("keys")
        if type(entries) is not list:
            raise KeySetError('JWKS has no "keys" array (RFC 7517 §5.1)')
        if len(entries) > MAX_KEYS:
            raise KeySetError(f"JWKS holds more than {MAX_KEYS} keys")
        for entry in entries:
            if isinstance(entry, Mapping) and not _PRIVATE_MEMBERS.isdisjoint(entry.keys()):
                raise KeySetError("JWKS contains private or secret key material")
        keys: list[PublicKey] = []
        skipped: list[tuple[str | None, str]] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                skipped.append((None, "entry is not a JSON object"))
                continue
            try:
                keys.append(PublicKey._from_jwk(entry))
            except _SkipKey as exc:
                kid = entry.get("kid")
                skipped.append((kid if type(kid) is str else None, str(exc)))
        return cls(keys, skipped)

    @classmethod
    def from_public_keys(
        cls,
        keys: Iterable[rsa.RSAPublicKey | ec.EllipticCurvePublicKey | PublicKey],
        *,
        rsa_algorithm: str | None = "RS256",
    ) -> KeySet:
        """Build from ``cryptography`` public keys; kid = :func:`kid_for_public_key` (as kube).

        RSA keys verify ``rsa_algorithm`` only (kube signs RS256); ``None`` allows RS256/384/512.
        Raises ``ValueError`` for a weak or unsupported key.
        """
        out: list[PublicKey] = []
        for k in keys:
            if isinstance(k, PublicKey):
                out.append(k)
            else:
                alg = rsa_algorithm if isinstance(k, rsa.RSAPublicKey) else None
                out.append(PublicKey(k, kid_for_public_key(k), alg))
        return cls(out)

    def get(self, kid: str) -> PublicKey | None:
        """The key with this kid, or ``None`` (also ``None`` for an ambiguous, duplicated kid)."""
        return self._by_kid.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        """The kids that identify exactly one key."""
        return frozenset(self._by_kid)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self._by_kid)}, keys={len(self._keys)})"

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set document for these keys."""
        return {"keys": [k.to_jwk() for k in self._keys]}

    def verify_parsed(
        self, parsed: ParsedJWS, algorithms: frozenset[str], require_kid: bool
    ) -> PublicKey:
        """Check the signature of an already-parsed JWS; return the key that verified it.

        Order (STYLE.md §5): alg allow-list → kid → key/alg fit → signature. ``unknown_key`` is
        raised only for well-formed tokens with an allowed alg, so garbage cannot trigger a JWKS
        refetch.
        Reasons: ``unsupported_algorithm`` (alg not allowed, or the named key cannot do that alg),
        ``malformed`` (no kid while one is required), ``unknown_key``, ``bad_signature``.
        """
        header = parsed.header
        alg = header.alg
        if alg not in algorithms:  # check_algorithm, inline (hot path); RFC 8725 §3.1
            raise InvalidToken("unsupported_algorithm", "alg not on the allow-list")
        kid = header.kid
        if kid is not None:
            key = self._by_kid.get(kid)
            if key is None:
                # Unknown or ambiguous (duplicated) kid; see the module docstring.
                raise InvalidToken("unknown_key", "no single key has this kid")
            if alg not in key.algorithms:
                raise InvalidToken("unsupported_algorithm", "alg does not fit the key")
            if key.verify(alg, parsed.signing_input, parsed.signature):
                return key
            raise InvalidToken("bad_signature", "signature does not verify")
        if require_kid:
            raise InvalidToken("malformed", "token has no kid and the policy requires one")
        candidates = self._by_alg.get(alg, ())
        if not candidates:
            raise InvalidToken("unknown_key", "no key fits the alg")
        for key in candidates:
            if key.verify(alg, parsed.signing_input, parsed.signature):
                return key
        raise InvalidToken("bad_signature", "signature does not verify with any key")

    def verify_signature(
        self,
        token: str | bytes,
        algorithms: Iterable[str] = ("RS256",),
        *,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        require_kid: bool = False,
    ) -> bytes:
        """Check only the signature of a compact JWS; return the payload bytes (claims unchecked).

        A token without ``kid`` is tried against every key fitting its alg unless ``require_kid``.
        Raises :class:`~verifier.errors.InvalidToken`; ``ValueError`` for an unsupported name in
        ``algorithms`` (HMAC, PS*, ``none`` can never be allowed).
        """
        parsed = parse_compact(token, max_token_bytes)
        self.verify_parsed(parsed, _check_algorithms(algorithms), require_kid)
        return parsed.payload
