"""A real OIDC issuer stand-in for the remote-verifier tests: discovery + JWKS over a real socket.

:class:`JWKSServer` runs a small Starlette app under uvicorn in a thread on a free loopback port
(optionally with TLS). Tests control what it serves (keys, Cache-Control, discovery fields, delay,
status, a redirect) and read what it saw (request counts and JWKS request headers). ``stop()`` takes
it down (connections are then refused); ``start()`` brings it back on the same port.

Tokens are signed with ``cryptography`` directly (:func:`sign_token`), not with project code, so a
bug in the verifier cannot hide behind the same bug in the helper.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import ipaddress
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

AUDIENCE = "https://api.example.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(n: int, size: int | None = None) -> str:
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


@dataclass(frozen=True)
class SigningKey:
    """A private key, its kube-style kid and its public JWK."""

    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    alg: str

    @functools.cached_property
    def kid(self) -> str:
        # kube: kid = base64url(SHA-256(DER SubjectPublicKeyInfo)).
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b64(hashlib.sha256(der).digest())

    def jwk(self) -> dict[str, str]:
        pub = self.private.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            return {
                "use": "sig",
                "kty": "RSA",
                "kid": self.kid,
                "alg": self.alg,
                "n": _int_b64(nums.n),
                "e": _int_b64(nums.e),
            }
        enums = pub.public_numbers()
        return {
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": self.alg,
            "x": _int_b64(enums.x, 32),
            "y": _int_b64(enums.y, 32),
        }


@functools.cache
def rsa_key(i: int = 0) -> SigningKey:
    """A cached 2048-bit RSA key (RS256); ``i`` picks a different one."""
    return SigningKey(rsa.generate_private_key(65537, 2048), "RS256")


@functools.cache
def ec_key(i: int = 0) -> SigningKey:
    """A cached P-256 key (ES256); ``i`` picks a different one."""
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256")


def claims_for(
    issuer: str,
    *,
    audiences: list[str] | None = None,
    namespace: str = "default",
    name: str = "app",
    now: float | None = None,
    ttl: int = 3600,
    pod: str = "app-7d9f",
) -> dict[str, Any]:
    """Kubernetes-shaped bound-token claims."""
    iat = int(time.time() if now is None else now)
    return {
        "aud": audiences or [AUDIENCE],
        "exp": iat + ttl,
        "iat": iat,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": pod, "uid": "5f1c0a6e-2c1b-4a57-9d6c-3c1f6e0f0a01"},
            "serviceaccount": {"name": name, "uid": "9b1e4a2d-1f0c-4c3b-8f5e-2a7d6c5b4e03"},
            "warnafter": iat + int(ttl * 0.8),
        },
        "nbf": iat,
        "sub": f"system:serviceaccount:{namespace}:{name}",
    }


def sign_token(key: SigningKey, claims: dict[str, Any], *, kid: str | None = None) -> str:
    """Compact JWS with header ``{"alg","kid"}``, signed with ``cryptography`` directly."""
    header = {"alg": key.alg, "kid": key.kid if kid is None else kid}
    signing_input = (
        b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64(json.dumps(claims, separators=(",", ":")).encode())
    ).encode()
    if isinstance(key.private, rsa.RSAPrivateKey):
        sig = key.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode() + "." + b64(sig)


def token_for(server: JWKSServer, key: SigningKey, **kw: Any) -> str:
    """A valid token from ``server``'s issuer signed by ``key`` (``kid=`` overrides the header)."""
    kid = kw.pop("kid", None)
    return sign_token(key, claims_for(server.issuer, **kw), kid=kid)


def self_signed_tls(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class JWKSServer:
    """Discovery + JWKS on a real loopback socket. Mutate the public attributes between requests.

    - ``keys``: published signing keys; ``jwks_body`` (bytes) overrides the rendered JWKS.
    - ``cache_control``: the JWKS ``Cache-Control`` header (None: no header); ``etag``: send an
      ``ETag`` and answer ``If-None-Match`` with 304.
    - ``jwks_delay``: seconds the JWKS handler sleeps first (to make concurrent misses overlap).
    - ``jwks_status``: the JWKS status code; ``jwks_redirect``: answer the JWKS with a 302 there.
    - ``discovery_issuer`` / ``jwks_uri``: override those discovery fields.
    - ``counts["discovery"]``, ``counts["jwks"]``: requests seen; ``jwks_requests``: their headers.
    """

    def __init__(self, *, tls: tuple[Path, Path] | None = None, port: int | None = None) -> None:
        self.tls = tls
        self.port = port or _free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.issuer = self.url
        self.keys: list[SigningKey] = []
        self.jwks_body: bytes | None = None
        self.jwks_content_type = "application/jwk-set+json"
        self.cache_control: str | None = "public, max-age=3600"
        self.etag = False
        self.jwks_delay = 0.0
        self.jwks_status = 200
        self.jwks_redirect: str | None = None
        self.discovery_issuer: str | None = None
        self.jwks_uri: str | None = None
        #: TokenReview answer (``status`` object) for ``POST .../tokenreviews``; None: 404.
        self.review_status: dict[str, Any] | None = None
        self.counts: Counter[str] = Counter()
        self.jwks_requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- the app ---------------------------------------------------------------------------------

    def jwks_document(self) -> bytes:
        if self.jwks_body is not None:
            return self.jwks_body
        return json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()

    async def _discovery(self, request: Request) -> Response:
        with self._lock:
            self.counts["discovery"] += 1
        doc = {
            "issuer": self.discovery_issuer or self.issuer,
            "jwks_uri": self.jwks_uri or f"{self.url}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        }
        return Response(json.dumps(doc), media_type="application/json")

    async def _jwks(self, request: Request) -> Response:
        with self._lock:
            self.counts["jwks"] += 1
            self.jwks_requests.append(dict(request.headers))
        if self.jwks_delay:
            await asyncio.sleep(self.jwks_delay)
        if self.jwks_redirect:
            return RedirectResponse(self.jwks_redirect, status_code=302)
        body = self.jwks_document()
        headers = {}
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if self.etag:
            tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["ETag"] = tag
            if request.headers.get("if-none-match") == tag:
                return Response(status_code=304, headers=headers)
        return Response(
            body,
            status_code=self.jwks_status,
            headers=headers,
            media_type=self.jwks_content_type,
        )

    async def _tokenreview(self, request: Request) -> Response:
        with self._lock:
            self.counts["tokenreview"] += 1
        if self.review_status is None:
            return Response(status_code=404)
        body = await request.json()
        answer = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": body.get("spec", {}),
            "status": self.review_status,
        }
        return Response(json.dumps(answer), media_type="application/json")

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> JWKSServer:
        """Serve on ``self.port`` (again, after :meth:`stop`)."""
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/openid/v1/jwks", self._jwks),
                Route(
                    "/apis/authentication.k8s.io/v1/tokenreviews",
                    self._tokenreview,
                    methods=["POST"],
                ),
            ]
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=4096,
            limit_concurrency=None,
            timeout_keep_alive=30,
            ssl_certfile=str(self.tls[0]) if self.tls else None,
            ssl_keyfile=str(self.tls[1]) if self.tls else None,
        )
        server = uvicorn.Server(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("JWKS test server did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving: new connections are refused until :meth:`start`."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
