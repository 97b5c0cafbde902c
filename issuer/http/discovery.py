"""OIDC discovery and JWKS: pre-rendered bytes served by raw ASGI endpoints.

What kube-apiserver serves (kube: pkg/serviceaccount/openidmetadata.go,
pkg/routes/openidmetadata.go; docs/CONTRACTS.md "Discovery and JWKS"):

- ``GET /.well-known/openid-configuration`` — ``application/json``, members in the order
  ``issuer, jwks_uri, response_types_supported, subject_types_supported,
  id_token_signing_alg_values_supported`` (sorted, deduplicated), compact like Go's json.Marshal.
- ``GET /openid/v1/jwks`` — ``application/jwk-set+json``, public keys only.

Both are also served under the issuer URL's path (issuer ``https://h/tenant-a`` →
``/tenant-a/.well-known/openid-configuration``, OpenID Connect Discovery 1.0 §4, and
``/tenant-a/openid/v1/jwks`` = its ``jwks_uri``).

Unlike kube (static ``max-age=3600``), ``Cache-Control: public, max-age=N`` uses
N = min(jwks_max_age, seconds until the key set next changes), so caches never hold a key set past
a scheduled change (docs/CONTRACTS.md "Issuer HTTP surface"; dex server/discovery/discovery.go
learned this the hard way).
Strong ``ETag`` = quoted hash of the bytes; ``If-None-Match`` uses the weak comparison
(RFC 9110 §13.1.2) and answers ``304`` with ETag and Cache-Control (RFC 9110 §15.4.5).

Bytes and headers are rendered when keys change (a KeyManager listener), never per request; the
only per-request work is reading the clock for max-age (header lists are cached per max-age value).
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from starlette.types import Receive, Scope, Send

from issuer.http.metrics import Counter
from issuer.http.status import status_body

__all__ = [
    "DISCOVERY_PATH",
    "JWKS_CONTENT_TYPE",
    "JWKS_PATH",
    "DiscoveryDocuments",
    "DocumentEndpoint",
    "RenderedDocument",
    "discovery_paths",
    "jwks_paths",
    "public_jwks",
    "render_discovery",
    "render_jwks",
]

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
#: kube: pkg/serviceaccount/openidmetadata.go ``JWKSPath``.
JWKS_PATH: Final = "/openid/v1/jwks"
#: kube: pkg/routes/openidmetadata.go ``mimeJWKS``.
JWKS_CONTENT_TYPE: Final = "application/jwk-set+json"
DISCOVERY_CONTENT_TYPE: Final = "application/json"

#: Public JWK members in the order kube's go-jose marshals them (docs/CONTRACTS.md "Discovery and
#: JWKS").
_RSA_MEMBERS: Final = ("use", "kty", "kid", "alg", "n", "e")
_EC_MEMBERS: Final = ("use", "kty", "kid", "crv", "alg", "x", "y")


class PublishedLike(Protocol):
    """What the renderer needs from ``issuer.keys.PublishedKeys``."""

    @property
    def version(self) -> int: ...
    @property
    def jwks(self) -> Mapping[str, Any]: ...
    @property
    def algorithms(self) -> Sequence[str]: ...
    @property
    def next_change(self) -> float | None: ...


def _go_json(obj: Any) -> bytes:
    # Go's encoding/json escapes <, >, & and U+2028/2029 (HTMLEscape); kube's bodies come from it.
    out = orjson.dumps(obj)
    if any(c in out for c in (b"<", b">", b"&", b"\xe2\x80\xa8", b"\xe2\x80\xa9")):
        out = (
            out.replace(b"<", b"\\u003c")
            .replace(b">", b"\\u003e")
            .replace(b"&", b"\\u0026")
            .replace(b"\xe2\x80\xa8", b"\\u2028")
            .replace(b"\xe2\x80\xa9", b"\\u2029")
        )
    return out


def render_discovery(issuer: str, jwks_uri: str, algorithms: Sequence[str]) -> bytes:
    """The discovery document, byte for byte as kube-apiserver renders it
    (kube: openidmetadata.go ``openIDMetadata``; fields in struct order)."""
    return _go_json(
        {
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted(set(algorithms)),
        }
    )


def public_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only public members of each key, in kube's member order; drop anything else.

    Defence in depth: whatever the key manager hands us, a private member (``d``, ``p``, ``q``,
    ``dp``, ``dq``, ``qi``, ``oth``, ``k``) can never reach the wire.
    """
    keys: list[dict[str, Any]] = []
    for jwk in jwks.get("keys", ()):
        if not isinstance(jwk, Mapping):
            continue
        members = _EC_MEMBERS if jwk.get("kty") == "EC" else _RSA_MEMBERS
        out = {m: jwk[m] for m in members if m in jwk}
        out.setdefault("use", "sig")
        keys.append({m: out[m] for m in members if m in out})
    return {"keys": keys}


def render_jwks(jwks: Mapping[str, Any]) -> bytes:
    """The JWKS document (public members only)."""
    return _go_json(public_jwks(jwks))


def _etag(body: bytes) -> bytes:
    digest = hashlib.sha256(body).digest()[:18]
    return b'"' + base64.urlsafe_b64encode(digest) + b'"'


def discovery_paths(issuer_path: str) -> tuple[str, ...]:
    """Paths serving discovery: the root one, plus one under the issuer's path if it has one."""
    paths = [DISCOVERY_PATH]
    if issuer_path:
        paths.append(issuer_path + DISCOVERY_PATH)
    return tuple(paths)


def jwks_paths(issuer_path: str) -> tuple[str, ...]:
    """Paths that serve the JWKS: ``/openid/v1/jwks`` and the issuer-path one (``jwks_uri``)."""
    paths = [JWKS_PATH]
    if issuer_path:
        paths.append(issuer_path + JWKS_PATH)
    return tuple(paths)


class RenderedDocument:
    """One pre-rendered representation and its cached header lists (per max-age value)."""

    __slots__ = ("_blocks", "_cached", "body", "content_type", "etag", "etag_opaque")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = _etag(body)
        self.etag_opaque = self.etag  # strong tag, quotes included (RFC 9110 §8.8.3)
        self._cached: tuple[int, list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]] | None = None
        self._blocks: tuple[int, bytes, bytes] | None = None

    def headers(self, max_age: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """(200 headers, 304 headers) for ``max_age``; rebuilt only when max-age changes."""
        cached = self._cached
        if cached is not None and cached[0] == max_age:
            return cached[1], cached[2]
        cache_control = b"public, max-age=%d" % max_age
        ok = [
            (b"content-type", self.content_type.encode()),
            (b"content-length", b"%d" % len(self.body)),
            (b"etag", self.etag),
            (b"cache-control", cache_control),
        ]
        not_modified = [(b"etag", self.etag), (b"cache-control", cache_control)]
        self._cached = (max_age, ok, not_modified)
        return ok, not_modified

    def header_blocks(self, max_age: int) -> tuple[bytes, bytes]:
        """The same headers as :meth:`headers`, encoded as HTTP/1.1 header lines (each ending in
        CRLF) for 200 and 304; used by the raw HTTP fast lane (:mod:`issuer.http.fastlane`)."""
        blocks = self._blocks
        if blocks is not None and blocks[0] == max_age:
            return blocks[1], blocks[2]
        ok, nm = self.headers(max_age)
        ok_block = b"".join(k + b": " + v + b"\r\n" for k, v in ok)
        nm_block = b"".join(k + b": " + v + b"\r\n" for k, v in nm)
        self._blocks = (max_age, ok_block, nm_block)
        return ok_block, nm_block

    def matches(self, if_none_match: bytes) -> bool:
        """RFC 9110 §13.1.2: ``*`` or any listed tag equal to ours under weak comparison."""
        value = if_none_match.strip()
        if value == b"*":
            return True
        for tag in value.split(b","):
            tag = tag.strip()
            if tag.startswith(b"W/"):
                tag = tag[2:]
            if tag == self.etag_opaque:
                return True
        return False


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    discovery: RenderedDocument
    jwks: RenderedDocument
    next_change: float | None


class DiscoveryDocuments:
    """The current discovery + JWKS representations; ``update`` is the KeyManager listener.

    ``update`` may run on any thread: it builds a new immutable snapshot and swaps one reference.
    """

    def __init__(
        self,
        issuer: str,
        jwks_uri: str,
        max_age: int,
        clock: Callable[[], float],
    ) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.max_age = max_age
        self.clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """True once a key set has been rendered."""
        return self._snapshot is not None

    @property
    def version(self) -> int:
        """Key-set version of the rendered documents (0 before the first render)."""
        s = self._snapshot
        return s.version if s is not None else 0

    @property
    def next_change(self) -> float | None:
        """When the rendered key set next changes (POSIX s), if scheduled."""
        s = self._snapshot
        return s.next_change if s is not None else None

    def update(self, published: PublishedLike) -> None:
        """Re-render from a new published key set (ignores versions older than the current one)."""
        with self._lock:
            current = self._snapshot
            if current is not None and published.version < current.version:
                return
            if (
                current is not None
                and published.version == current.version
                and published.next_change == current.next_change
            ):
                return
            self._snapshot = _Snapshot(
                version=published.version,
                discovery=RenderedDocument(
                    render_discovery(self.issuer, self.jwks_uri, published.algorithms),
                    DISCOVERY_CONTENT_TYPE,
                ),
                jwks=RenderedDocument(render_jwks(published.jwks), JWKS_CONTENT_TYPE),
                next_change=published.next_change,
            )

    def documents(self) -> tuple[RenderedDocument, RenderedDocument] | None:
        """(discovery, jwks) as currently rendered, or None before the first key set."""
        s = self._snapshot
        return None if s is None else (s.discovery, s.jwks)

    def max_age_at(self, now: float) -> int:
        """min(jwks_max_age, floor(next_change - now)), never below 0."""
        s = self._snapshot
        if s is None or s.next_change is None:
            return self.max_age
        remaining = s.next_change - now
        if remaining >= self.max_age:
            return self.max_age
        if remaining <= 0:
            return 0
        return math.floor(remaining)


_METHOD_NOT_ALLOWED_BODY: Final = status_body(
    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
)
_NOT_READY_BODY: Final = status_body(503, "ServiceUnavailable", "no signing keys are published yet")


class DocumentEndpoint:
    """A raw ASGI endpoint serving one of the documents (GET and HEAD only)."""

    __slots__ = ("_counter_keys", "_docs", "_is_jwks", "_requests", "route")

    def __init__(
        self, docs: DiscoveryDocuments, *, jwks: bool, route: str, requests: Counter | None = None
    ) -> None:
        self._docs = docs
        self._is_jwks = jwks
        self.route = route
        self._requests = requests
        self._counter_keys = {code: (route, code) for code in ("200", "304", "405", "503")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the document; 304 on a matching If-None-Match; 405 for other methods."""
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await self._plain(send, 405, _METHOD_NOT_ALLOWED_BODY, [(b"allow", b"GET, HEAD")])
            return
        docs = self._docs
        snap = docs._snapshot
        if snap is None:
            await self._plain(send, 503, _NOT_READY_BODY, [(b"retry-after", b"1")])
            return
        doc = snap.jwks if self._is_jwks else snap.discovery
        ok_headers, nm_headers = doc.headers(docs.max_age_at(docs.clock()))
        for name, value in scope["headers"]:
            if name == b"if-none-match" and doc.matches(value):
                if self._requests is not None:
                    self._requests.inc_key(self._counter_keys["304"])
                await send({"type": "http.response.start", "status": 304, "headers": nm_headers})
                await send({"type": "http.response.body", "body": b""})
                return
        if self._requests is not None:
            self._requests.inc_key(self._counter_keys["200"])
        await send({"type": "http.response.start", "status": 200, "headers": ok_headers})
        await send({"type": "http.response.body", "body": doc.body if method == "GET" else b""})

    def raw_response(
        self, head: bool, headers: list[tuple[bytes, bytes]], prefix: bytes
    ) -> bytes | None:
        """The complete HTTP/1.1 response to a GET (``head=False``) or HEAD with request
        ``headers`` (lower-case names), for the raw fast lane; ``prefix`` = the server's default
        header lines (Date ...). None when the ASGI path must answer (no keys yet).
        Same semantics as :meth:`__call__`."""
        docs = self._docs
        snap = docs._snapshot
        if snap is None:
            return None
        doc = snap.jwks if self._is_jwks else snap.discovery
        ok_block, nm_block = doc.header_blocks(docs.max_age_at(docs.clock()))
        for name, value in headers:
            if name == b"if-none-match" and doc.matches(value):
                if self._requests is not None:
                    self._requests.inc_key(self._counter_keys["304"])
                return b"HTTP/1.1 304 Not Modified\r\n" + prefix + nm_block + b"\r\n"
        if self._requests is not None:
            self._requests.inc_key(self._counter_keys["200"])
        if head:
            return b"HTTP/1.1 200 OK\r\n" + prefix + ok_block + b"\r\n"
        return b"HTTP/1.1 200 OK\r\n" + prefix + ok_block + b"\r\n" + doc.body

    async def _plain(
        self, send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None:
        if self._requests is not None:
            self._requests.inc_key(self._counter_keys[str(status)])
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
