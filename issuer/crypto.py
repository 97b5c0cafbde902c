"""Signing-key cryptography for the issuer: generation, key ids, public JWKs, the KEK, signing.

Kubernetes compatibility (kube: pkg/serviceaccount/jwt.go):

- RSA keys sign RS256 only; EC P-256/P-384/P-521 sign ES256/ES384/ES512
  (``signerFromRSAPrivateKey``, ``signerFromECDSAPrivateKey``).
- kid = base64url, no padding, of SHA-256 over the DER SubjectPublicKeyInfo
  (``keyIDFromPublicKey``).
- The JWS header carries only ``alg`` and ``kid``.

Private keys never leave this module unencrypted except as in-memory key objects: at rest they are
PKCS#8 DER sealed with AES-256-GCM under a key-encryption key, AAD = kid (docs/CONTRACTS.md "Keys",
invariant 4), so a store dump alone never yields a signing key and a blob copied onto another kid
does not decrypt. ``repr()`` of :class:`Kek` and :class:`Signer` never shows key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ALGORITHMS",
    "KEK_ENV",
    "KEK_SIZE",
    "RSA_SIZES",
    "Kek",
    "KekError",
    "PrivateKey",
    "PublicKey",
    "Signer",
    "alg_for_key",
    "create_kek_file",
    "generate_private_key",
    "kid_for_public_key",
    "load_kek",
    "load_kek_file",
    "load_private_key",
    "private_key_to_pkcs8",
    "public_jwk",
]

log = logging.getLogger(__name__)

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: Environment variable holding the KEK (docs/CONFIG.md: every setting has ``SA_ISSUER_<NAME>``).
KEK_ENV: Final = "SA_ISSUER_KEK"
#: AES-256: the KEK is exactly 32 bytes.
KEK_SIZE: Final = 32
_NONCE_SIZE: Final = 12

#: RSA modulus sizes accepted for new keys.
RSA_SIZES: Final = frozenset({2048, 3072, 4096})

# alg -> (curve, JWK crv, coordinate/scalar size in bytes, hash)
_EC: Final[dict[str, tuple[ec.EllipticCurve, str, int, hashes.HashAlgorithm]]] = {
    "ES256": (ec.SECP256R1(), "P-256", 32, hashes.SHA256()),
    "ES384": (ec.SECP384R1(), "P-384", 48, hashes.SHA384()),
    "ES512": (ec.SECP521R1(), "P-521", 66, hashes.SHA512()),
}
_CURVE_ALG: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

#: Algorithms the issuer can sign with.
ALGORITHMS: Final = frozenset({"RS256", *_EC})


class KekError(Exception):
    """The key-encryption key is unusable: wrong key, tampered ciphertext, or a bad KEK source.

    The message names the problem, never key material.
    """


# --- keys ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int, size: int | None = None) -> str:
    """Unsigned big-endian base64url: minimal length (RSA n/e), or fixed ``size`` (EC x/y)."""
    if size is None:
        size = max(1, (n.bit_length() + 7) // 8)
    return _b64url(n.to_bytes(size, "big"))


def generate_private_key(alg: str = "RS256", rsa_bits: int = 2048) -> PrivateKey:
    """A new private key: RS256 with ``rsa_bits`` in 2048/3072/4096, or ES256/ES384/ES512."""
    if alg == "RS256":
        if rsa_bits not in RSA_SIZES:
            raise ValueError(f"RSA key size must be one of {sorted(RSA_SIZES)}, got {rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg in _EC:
        return ec.generate_private_key(_EC[alg][0])
    raise ValueError(f"unsupported signing algorithm {alg!r}: use one of {sorted(ALGORITHMS)}")


def alg_for_key(key: PrivateKey | PublicKey) -> str:
    """The one algorithm Kubernetes signs with for this key type (kube: jwt.go)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"RSA key of {key.key_size} bits is too small (minimum 2048)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        alg = _CURVE_ALG.get(key.curve.name)
        if alg is None:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        return alg
    raise ValueError(f"unsupported key type {type(key).__name__}")


def kid_for_public_key(public_key: PublicKey) -> str:
    """kid = base64url(SHA-256(DER SubjectPublicKeyInfo)), no padding, 43 characters.

    kube: pkg/serviceaccount/jwt.go ``keyIDFromPublicKey``. (Same algorithm as
    ``verifier.jwk.kid_for_public_key``; tests pin that both agree.)
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


def public_jwk(public_key: PublicKey, kid: str | None = None) -> dict[str, str]:
    """The public JWK as kube-apiserver publishes it, never with private members.

    RSA: ``{"use","kty","kid","alg","n","e"}`` with n/e minimal big-endian; EC:
    ``{"use","kty","kid","crv","alg","x","y"}`` with x/y zero-padded to the curve size (RFC 7518
    §6.2.1.2). ``kid`` defaults to :func:`kid_for_public_key`.
    """
    if kid is None:
        kid = kid_for_public_key(public_key)
    alg = alg_for_key(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {
            "use": "sig",
            "kty": "RSA",
            "kid": kid,
            "alg": alg,
            "n": _uint(nums.n),
            "e": _uint(nums.e),
        }
    _, crv, size, _ = _EC[alg]
    pn = public_key.public_numbers()
    return {
        "use": "sig",
        "kty": "EC",
        "kid": kid,
        "crv": crv,
        "alg": alg,
        "x": _uint(pn.x, size),
        "y": _uint(pn.y, size),
    }


def private_key_to_pkcs8(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER (only ever handed to :meth:`Kek.encrypt`)."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pkcs8_der: bytes) -> PrivateKey:
    """Parse PKCS#8 DER into an RSA or EC private key (other types are refused)."""
    key = serialization.load_der_private_key(pkcs8_der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


# --- KEK -------------------------------------------------------------------------------------


class Kek:
    """A 32-byte key-encryption key: AES-256-GCM, 12-byte random nonce prefix, AAD = kid.

    Blob layout: ``nonce(12) || ciphertext || tag(16)``. Binding the kid as AAD means a blob moved
    onto another key's record fails to decrypt (docs/CONTRACTS.md invariant 4).
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEK_SIZE:
            n = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
            raise KekError(f"KEK must be exactly {KEK_SIZE} bytes (AES-256), got {n}")
        self._aead = AESGCM(bytes(key))

    @classmethod
    def generate(cls) -> Kek:
        """A fresh random KEK (tests, ``create_kek_file``)."""
        return cls(os.urandom(KEK_SIZE))

    @classmethod
    def from_base64(cls, text: str | bytes) -> Kek:
        """Decode standard or URL-safe base64 (padding optional) of exactly 32 bytes."""
        raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        raw = b"".join(raw.split())  # tolerate a trailing newline / wrapped lines
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
        raw += b"=" * (-len(raw) % 4)
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise KekError("KEK is not valid base64") from None
        if len(key) != KEK_SIZE:
            raise KekError(
                f"KEK must decode to exactly {KEK_SIZE} bytes (AES-256), got {len(key)}; "
                "create one with `head -c 32 /dev/urandom | base64`"
            )
        return cls(key)

    def encrypt(self, kid: str, pkcs8_der: bytes) -> bytes:
        """Seal a private key for storage under ``kid``."""
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, pkcs8_der, kid.encode("utf-8"))

    def decrypt(self, kid: str, blob: bytes) -> bytes:
        """Open a blob sealed for ``kid``; :class:`KekError` on wrong KEK, kid or tampering."""
        if len(blob) < _NONCE_SIZE + 16:
            raise KekError(f"encrypted private key for kid {kid} is truncated")
        try:
            return self._aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], kid.encode("utf-8"))
        except InvalidTag:
            raise KekError(
                f"cannot decrypt the private key of kid {kid}: wrong KEK, or the stored key was "
                "tampered with or copied from another kid"
            ) from None

    def same_key(self, other: Kek) -> bool:
        """True if ``other`` is the same KEK (a probe sealed by one opens under the other).

        Compares without ever exposing either key's bytes.
        """
        probe = os.urandom(16)
        blob = self.encrypt("kek-compare", probe)
        try:
            return other.decrypt("kek-compare", blob) == probe
        except KekError:
            return False

    def __repr__(self) -> str:
        return "Kek(<redacted>)"

    def __reduce__(self) -> Any:
        # Never let a KEK be pickled into a log, a cache or a crash dump by accident.
        raise TypeError("Kek objects cannot be pickled")


def _check_kek_file_mode(path: Path, st: os.stat_result) -> None:
    if st.st_mode & 0o077:
        # Warn rather than refuse: Kubernetes Secret volumes default to 0644 inside a pod where the
        # process is the only user. On a shared host this is a real leak: say so loudly.
        log.warning(
            "KEK file %s is readable or writable by group/others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )


def load_kek_file(path: str | os.PathLike[str]) -> Kek:
    """Read a KEK file: exactly 32 raw bytes, or base64 of 32 bytes (whitespace ignored).

    Warns (logging) when the file is group/world accessible; refuses anything of the wrong length.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KekError(f"KEK file {p} is not a regular file")
            data = f.read(4097)
    except OSError as e:
        raise KekError(f"cannot read KEK file {p}: {e.strerror or e}") from None
    _check_kek_file_mode(p, st)
    if len(data) == KEK_SIZE:
        # Base64 of 32 bytes is 43-44 characters (plus whitespace), so 32 bytes are raw key bytes.
        return Kek(data)
    if len(data) > 4096:
        raise KekError(f"KEK file {p} is too large to be a KEK")
    try:
        return Kek.from_base64(data)
    except KekError as e:
        raise KekError(f"KEK file {p}: {e}") from None


def load_kek(source: str | os.PathLike[str] | None = None) -> Kek:
    """Load the KEK from ``source``: base64 text, or a path to a KEK file.

    With ``source=None`` the environment variable ``SA_ISSUER_KEK`` is used (base64 or a path).
    A ``PathLike`` is always a file; a string is a file if such a file exists, else base64 text.
    Raises :class:`KekError` with a clear message otherwise.
    """
    if source is None:
        env = os.environ.get(KEK_ENV)
        if not env:
            raise KekError(f"no KEK configured: set {KEK_ENV} (base64 of 32 bytes, or a file path)")
        source = env
    if not isinstance(source, str):
        return load_kek_file(source)
    text = source.strip()
    if not text:
        raise KekError("empty KEK")
    if os.path.exists(text):
        return load_kek_file(text)
    try:
        return Kek.from_base64(text)
    except KekError as e:
        raise KekError(f"KEK is neither an existing file nor usable base64 ({e})") from None


def create_kek_file(path: str | os.PathLike[str]) -> Kek:
    """Create a new KEK file (32 random bytes, base64 + newline), mode 0600, durably.

    Never overwrites: the file is created with ``O_CREAT|O_EXCL`` (FileExistsError if it exists),
    written and fsynced before it is visible under its name (a temporary name, then ``link``), and
    the directory is fsynced. Returns the new KEK.
    """
    p = Path(path)
    key = os.urandom(KEK_SIZE)
    body = base64.b64encode(key) + b"\n"
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # independent of the umask
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, p)  # atomic, and fails if ``p`` exists: never replaces a KEK
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links: fall back to an exclusive create of the final name.
        fd = os.open(p, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.unlink(tmp)
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return Kek(key)


# --- signing ---------------------------------------------------------------------------------


class Signer:
    """Signs compact JWS/JWTs with one private key, Kubernetes style.

    ``sign_jwt`` emits header ``{"alg":..,"kid":..}`` only (kube: jwt.go), a compact orjson payload,
    base64url without padding. The encoded header is computed once per signer (hot path).

    ``max_token_lifetime`` (seconds), when set, refuses claims whose ``exp`` lies further than that
    after ``iat``: the key's stored lifetime is what keeps it published long enough after retirement
    (docs/CONTRACTS.md invariant 2), so a longer token would outlive its key.
    """

    __slots__ = ("_ec_size", "_hash", "_header_b64", "_key", "alg", "kid", "max_token_lifetime")

    def __init__(
        self,
        private_key: PrivateKey,
        kid: str | None = None,
        *,
        max_token_lifetime: float | None = None,
    ) -> None:
        self._key = private_key
        self.alg: str = alg_for_key(private_key)
        self.kid: str = kid if kid is not None else kid_for_public_key(private_key.public_key())
        self.max_token_lifetime = max_token_lifetime
        self._ec_size = _EC[self.alg][2] if self.alg in _EC else 0
        self._hash: hashes.HashAlgorithm = _EC[self.alg][3] if self.alg in _EC else hashes.SHA256()
        header = orjson.dumps({"alg": self.alg, "kid": self.kid})
        self._header_b64 = base64.urlsafe_b64encode(header).rstrip(b"=")

    @classmethod
    def from_pkcs8(
        cls, pkcs8_der: bytes, kid: str | None = None, *, max_token_lifetime: float | None = None
    ) -> Signer:
        """Build a signer from PKCS#8 DER (as decrypted by :meth:`Kek.decrypt`)."""
        return cls(load_private_key(pkcs8_der), kid, max_token_lifetime=max_token_lifetime)

    def public_key(self) -> PublicKey:
        """The public half."""
        return self._key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK (see :func:`public_jwk`)."""
        return public_jwk(self._key.public_key(), self.kid)

    def sign(self, signing_input: bytes) -> bytes:
        """JWS signature over ``signing_input``: RS256 = RSASSA-PKCS1-v1_5 SHA-256; ES* = raw
        ``r || s``, each zero-padded to the curve size (RFC 7518 §3.4), converted from DER."""
        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(self._hash)))
        n = self._ec_size
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")

    def sign_jwt(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS of ``claims`` (JSON-serializable; orjson, compact)."""
        if self.max_token_lifetime is not None:
            exp = claims.get("exp")
            if exp is not None:
                iat = claims.get("iat")
                # Without iat, judge the lifetime from the wall clock (tokens are minted "now").
                base = iat if isinstance(iat, int | float) else time.time()
                if not isinstance(exp, int | float) or exp - base > self.max_token_lifetime:
                    raise ValueError(
                        f"token lifetime exceeds the key's max_token_lifetime "
                        f"({self.max_token_lifetime:g} s): raise KeyPolicy.max_token_lifetime to "
                        "the TokenRequest maximum"
                    )
        payload = orjson.dumps(claims if type(claims) is dict else dict(claims))
        signing_input = self._header_b64 + b"." + base64.urlsafe_b64encode(payload).rstrip(b"=")
        sig = base64.urlsafe_b64encode(self.sign(signing_input)).rstrip(b"=")
        return (signing_input + b"." + sig).decode("ascii")

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r}, alg={self.alg!r})"

    def __reduce__(self) -> Any:
        raise TypeError("Signer objects cannot be pickled")
