"""Token minting for the verifier-core tests, written against ``cryptography`` only (not our code),
so a bug in the verifier cannot hide behind the same bug in the minting helper."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.example.com"
AUDIENCE = "https://kubernetes.default.svc"
NOW = 1_700_000_000

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
CURVE_FOR_ALG = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
COORD = {"ES256": 32, "ES384": 48, "ES512": 66}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


@functools.cache
def rsa_key(i: int = 0, bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


@functools.cache
def ec_key(alg: str = "ES256", i: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE_FOR_ALG[alg]())


def kube_kid(key: PrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    pub = key.public_key() if hasattr(key, "private_numbers") else key
    der = pub.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64(hashlib.sha256(der).digest())


def jwk_for(key: PrivateKey, kid: str | None = None, alg: str | None = None) -> dict[str, Any]:
    pub = key.public_key()
    out: dict[str, Any] = {"use": "sig", "kid": kid if kid is not None else kube_kid(key)}
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        out.update(
            kty="RSA",
            alg=alg or "RS256",
            n=b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
            e=b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")),
        )
    else:
        size = (pub.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        nums = pub.public_numbers()
        out.update(
            kty="EC",
            crv=crv,
            alg=alg or {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[crv],
            x=b64(nums.x.to_bytes(size, "big")),
            y=b64(nums.y.to_bytes(size, "big")),
        )
    if alg == "":
        del out["alg"]
    return out


def raw_sign(alg: str, key: Any, signing_input: bytes) -> bytes:
    """Sign with ``alg`` using ``cryptography`` directly (also PS*/HS* for attack tokens)."""
    h = HASHES[alg[2:]]()
    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), h)  # type: ignore[no-any-return]
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        return key.sign(signing_input, pss, h)  # type: ignore[no-any-return]
    if alg.startswith("HS"):
        mac = hmac.HMAC(key, h)
        mac.update(signing_input)
        return mac.finalize()
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(h)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(alg)


def claims(**overrides: Any) -> dict[str, Any]:
    """Bound-token claims as kube-apiserver writes them (docs/CONTRACTS.md "Bound token")."""
    c: dict[str, Any] = {
        "aud": [AUDIENCE],
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "iss": ISSUER,
        "jti": "3f1c2a9e-6c1b-4b8f-9c53-0a1b2c3d4e5f",
        "kubernetes.io": {
            "namespace": "default",
            "node": {"name": "node-1", "uid": "0c4f6f0e-node"},
            "pod": {"name": "app-6d9f7c-abcde", "uid": "7a1d2b3c-pod"},
            "serviceaccount": {"name": "app", "uid": "91e0f4b2-sa"},
            "warnafter": NOW + 3000,
        },
        "nbf": NOW - 10,
        "sub": "system:serviceaccount:default:app",
    }
    for k, v in overrides.items():
        k = k.replace("__", ".").replace("kubernetes_io", "kubernetes.io")
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


DROP = object()


def make_token(
    key: Any,
    alg: str = "RS256",
    payload: dict[str, Any] | bytes | None = None,
    *,
    kid: str | object | None = ...,
    header: dict[str, Any] | None = None,
    raw_header: bytes | None = None,
) -> str:
    """A compact JWS. ``kid=...`` means the Kubernetes kid of ``key``; ``kid=None`` omits it."""
    if raw_header is None:
        h: dict[str, Any] = {"alg": alg}
        if kid is ...:
            h["kid"] = kube_kid(key) if not isinstance(key, bytes) else "hmac"
        elif kid is not None:
            h["kid"] = kid
        if header:
            h.update(header)
        raw_header = json.dumps(h, separators=(",", ":")).encode()
    if payload is None:
        payload = claims()
    body = (
        payload
        if isinstance(payload, bytes)
        else json.dumps(payload, separators=(",", ":")).encode()
    )
    signing_input = f"{b64(raw_header)}.{b64(body)}".encode()
    return f"{signing_input.decode()}.{b64(raw_sign(alg, key, signing_input))}"
