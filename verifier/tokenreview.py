"""Online verification: ask the issuer (``POST /apis/authentication.k8s.io/v1/tokenreviews``).

:class:`TokenReviewVerifier` (sync) and :class:`AsyncTokenReviewVerifier` send the token to the
issuer's TokenReview endpoint — exactly what kube-apiserver's authentication webhook and
``kubectl``-side callers do — and map the answer onto the verifier's one exception tree::

    status.authenticated true   -> ServiceAccountIdentity (username, uid, extra, audiences)
    status.authenticated false  -> InvalidToken(reason mapped from status.error, see below)
    transport error, timeout,
    HTTP 401/403/429/5xx,
    a body that is not a TokenReview -> VerifierUnavailable ("could not check")
    HTTP 400 (e.g. empty token)  -> InvalidToken("malformed")

Mapping of ``status.error`` (the texts kube's pkg/serviceaccount/claims.go and jwt.go produce,
mirrored by this issuer; first match wins, case-insensitive):

=========================================  ====================
error text contains                        reason
=========================================  ====================
"has expired"                              ``expired``
"not valid yet"                            ``not_yet_valid``
"audience"                                 ``audience_mismatch``
"does not match", "not found",
"invalidated", "revoked", "deleted"        ``revoked``
"issuer"                                   ``issuer_mismatch``
"kid" / "key"  ("unknown key", "no key")   ``unknown_key``
"malformed", "parse", "decode"             ``malformed``
anything else                              ``bad_signature``
=========================================  ====================

Why the catch-all is ``bad_signature``: kube answers a token it cannot verify with a generic text
("invalid bearer token", a go-jose message); for a caller "the issuer did not vouch for it" is the
closest stable code.

The bearer credential: the issuer authorizes every TokenReview with RBAC (create
``tokenreviews.authentication.k8s.io``). Give the verifier a least-privilege credential — a token
of a service account bound to the built-in ClusterRole ``system:auth-delegator``, minted for the
issuer's API audiences — rather than an admin token, which can do everything on the issuer,
minting tokens for any service account included. The same credential can read the invalidation
stream (``HybridVerifier``). Such a token expires (the issuer caps it at ``token_max_expiration``,
24 h by default); the verifier keeps the string it was given, so create a new verifier with a
fresh token before then. Without the
permission the answer is 403, which maps to ``VerifierUnavailable``, not to an invalid token.

Audiences: when the request names audiences, the answer must return a compatible one in
``status.audiences`` — the TokenReview API doc (k8s.io/api/authentication/v1 TokenReviewStatus)
tells clients to check this "to ensure that the TokenReview server is audience aware". An
authenticated answer without one is refused as ``audience_mismatch``.

Success cache (optional, ``cache_ttl`` > 0): modelled on kube-apiserver's cached token authenticator
(staging/src/k8s.io/apiserver/pkg/authentication/token/cache/cached_token_authenticator.go): only
successes are cached, for a short TTL (kube: 10 s), keyed by an HMAC under a random per-process key
of the token and the audiences (so the cache never holds a token and a dump of it is useless), in a
bounded map (least recently used entries leave first).

``calls`` counts requests sent to the issuer (the demo reports issuer calls per check).
Tokens are never logged and never appear in an exception message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import httpx

from ._json import JSONError, loads_object
from .credentials import BearerToken, as_bearer_token
from .deadline import DeadlineTransport, total_deadline
from .errors import CredentialRefused, InvalidToken, Reason, VerifierUnavailable
from .identity import FIELD_NAMES, USERNAME_PREFIX, ServiceAccountIdentity
from .jws import parse_compact
from .policy import LEGACY_ISSUER

__all__ = [
    "TOKENREVIEW_PATH",
    "AsyncTokenReviewVerifier",
    "TokenReviewVerifier",
    "error_reason",
]

#: Where the issuer serves TokenReview (appended to the base URL).
TOKENREVIEW_PATH: Final = "/apis/authentication.k8s.io/v1/tokenreviews"

#: TokenReview ``user.extra`` keys (kube: pkg/serviceaccount/claims.go, util.go).
_EXTRA_POD_NAME: Final = "authentication.kubernetes.io/pod-name"
_EXTRA_POD_UID: Final = "authentication.kubernetes.io/pod-uid"
_EXTRA_NODE_NAME: Final = "authentication.kubernetes.io/node-name"
_EXTRA_NODE_UID: Final = "authentication.kubernetes.io/node-uid"
_EXTRA_CREDENTIAL_ID: Final = "authentication.kubernetes.io/credential-id"

#: Cap on a TokenReview answer we are willing to read (enforced while streaming, uncompressed:
#: ``Accept-Encoding: identity``), and the whole answer must arrive within ``timeout`` seconds.
_MAX_RESPONSE_BYTES: Final = 256 * 1024

# (needles, reason) — first match wins; see the table in the module docstring.
_ERROR_MAP: Final[tuple[tuple[tuple[str, ...], Reason], ...]] = (
    (("has expired",), "expired"),
    (("not valid yet",), "not_yet_valid"),
    (("audience",), "audience_mismatch"),
    (("does not match", "not found", "invalidated", "revoked", "deleted"), "revoked"),
    (("issuer",), "issuer_mismatch"),
    (("kid", "unknown key", "no key"), "unknown_key"),
    (("malformed", "parse", "decode"), "malformed"),
)


def error_reason(error: str) -> Reason:
    """Map a TokenReview ``status.error`` text to an :class:`InvalidToken` reason code."""
    text = error.lower()
    for needles, reason in _ERROR_MAP:
        if any(n in text for n in needles):
            return reason
    return "bad_signature"


class _SuccessCache:
    """Bounded TTL cache of successful reviews, keyed by HMAC(per-process key, token, audiences).

    kube: staging/src/k8s.io/apiserver/pkg/authentication/token/cache (cache_simple.go,
    cached_token_authenticator.go keyFunc). Thread-safe.
    """

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = os.urandom(32)
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, ServiceAccountIdentity]] = OrderedDict()

    def key(self, token: str, audiences: Sequence[str]) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # Length-prefix every part so ("ab","c") and ("a","bc") never collide.
        for part in (token, *audiences):
            raw = part.encode()
            mac.update(len(raw).to_bytes(8, "big"))
            mac.update(raw)
        return mac.digest()

    def get(self, key: bytes, now: float) -> ServiceAccountIdentity | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            expires, ident = hit
            if now >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return ident

    def put(self, key: bytes, ident: ServiceAccountIdentity, now: float) -> None:
        expires = now + self.ttl
        if ident.expires_at is not None:
            # Never serve an identity past the token's own expiry (wall clock vs monotonic: the
            # difference is re-based on the current wall time).
            expires = min(expires, now + max(0.0, ident.expires_at - time.time()))
        with self._lock:
            self._entries[key] = (expires, ident)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _extra_one(extra: Mapping[str, Any], key: str) -> str | None:
    vals = extra.get(key)
    if isinstance(vals, list) and vals and isinstance(vals[0], str) and vals[0]:
        return vals[0]
    return None


def identity_from_review(
    body: Mapping[str, Any], requested: Sequence[str], issuer: str | None = None
) -> ServiceAccountIdentity:
    """Turn a TokenReview response body into an identity or raise (see module docstring).

    Raises VerifierUnavailable if ``body`` is not a TokenReview answer.
    """
    status = body.get("status")
    if body.get("kind") != "TokenReview" or not isinstance(status, Mapping):
        raise VerifierUnavailable("issuer answered with something that is not a TokenReview")
    if status.get("authenticated") is not True:
        error = status.get("error")
        text = error if isinstance(error, str) else ""
        # The issuer's own words are for logs only (they never echo the token).
        raise InvalidToken(
            error_reason(text),
            f"the issuer did not authenticate the token (TokenReview: {text or 'no reason given'})",
        )
    user = status.get("user")
    if not isinstance(user, Mapping):
        raise VerifierUnavailable("TokenReview answer authenticated without a user")
    username = user.get("username")
    if not isinstance(username, str) or not username.startswith(USERNAME_PREFIX):
        raise InvalidToken("invalid_claim", "authenticated user is not a service account")
    ns, sep, name = username[len(USERNAME_PREFIX) :].partition(":")
    if not sep or not ns or not name or ":" in name:
        raise InvalidToken("invalid_claim", "malformed service-account username")
    auds_raw = status.get("audiences")
    auds = tuple(a for a in auds_raw if isinstance(a, str)) if isinstance(auds_raw, list) else ()
    if requested and not set(auds) & set(requested):
        # TokenReviewStatus.Audiences doc: clients setting spec.audiences must see a compatible one.
        raise InvalidToken("audience_mismatch", "TokenReview answer names no requested audience")
    extra_raw = user.get("extra")
    extra: Mapping[str, Any] = extra_raw if isinstance(extra_raw, Mapping) else {}
    cred = _extra_one(extra, _EXTRA_CREDENTIAL_ID)
    jti = cred[len("JTI=") :] if cred and cred.startswith("JTI=") else None
    uid = user.get("uid")
    return ServiceAccountIdentity(
        namespace=ns,
        service_account_name=name,
        service_account_uid=uid if isinstance(uid, str) and uid else None,
        pod_name=_extra_one(extra, _EXTRA_POD_NAME),
        pod_uid=_extra_one(extra, _EXTRA_POD_UID),
        node_name=_extra_one(extra, _EXTRA_NODE_NAME),
        node_uid=_extra_one(extra, _EXTRA_NODE_UID),
        audiences=auds,
        token_id=jti or None,
        issuer=issuer,
        claims=MappingProxyType({}),
    )


class _Base:
    """What the sync and async verifiers share: configuration, request body, answer mapping."""

    def __init__(
        self,
        url: str,
        bearer_token: str | BearerToken,
        audiences: Iterable[str],
        *,
        timeout: float,
        cache_ttl: float,
        cache_size: int,
        ca_bundle: str | os.PathLike[str] | None,
        insecure_allow_http: bool,
    ) -> None:
        if isinstance(audiences, str):
            audiences = (audiences,)
        self.audiences: tuple[str, ...] = tuple(audiences)
        if not self.audiences or any(not a for a in self.audiences):
            raise ValueError("audiences must be a non-empty list of non-empty strings")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("https", "http") or not parsed.host:
            raise ValueError(f"TokenReview URL must be http(s)://host[:port][/path], got {url!r}")
        if parsed.scheme == "http" and not insecure_allow_http:
            raise ValueError(
                "TokenReview URL must be https (tokens are sent to it); "
                "pass insecure_allow_http=True only for loopback tests"
            )
        if not bearer_token:
            raise ValueError("bearer_token is required (the issuer authorizes TokenReview callers)")
        bearer = as_bearer_token(bearer_token)
        self.url = url.rstrip("/")
        self.endpoint = self.url + TOKENREVIEW_PATH
        self.timeout = timeout
        self._bearer = bearer
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=os.fspath(ca_bundle)) if ca_bundle else True
        )
        self._cache = _SuccessCache(cache_ttl, cache_size) if cache_ttl > 0 else None
        self._lock = threading.Lock()
        #: Requests sent to the issuer so far (cache hits and local refusals are not counted).
        self.calls = 0
        #: Successful answers served from the cache.
        self.cache_hits = 0

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._bearer.value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        }

    def _body(self, token: str) -> dict[str, Any]:
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(self.audiences)},
        }

    def _precheck(self, token: str) -> bytes | None:
        """Local refusals and the cache lookup; returns the cache key (None without a cache)."""
        if not isinstance(token, str) or not token.strip():
            raise InvalidToken("malformed", "empty token")
        if self._cache is None:
            return None
        return self._cache.key(token, self.audiences)

    def _cached(self, key: bytes | None) -> ServiceAccountIdentity | None:
        if key is None or self._cache is None:
            return None
        ident = self._cache.get(key, time.monotonic())
        if ident is not None:
            with self._lock:
                self.cache_hits += 1
        return ident

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def _check_head(self, resp: httpx.Response) -> None:
        """Refuse on the status line and headers, before any of the body is read."""
        code = resp.status_code
        if code == 400:
            raise InvalidToken("malformed", "issuer refused the TokenReview request (400)")
        if code == 401:
            self._bearer.invalidate()  # a rotated credential file: re-read before the next call
        if code in (401, 403):
            # Our own credential is wrong, revoked or lacks `create tokenreviews`: the token was
            # not checked (docs/CONTRACTS.md "Failure rules": never "invalid", never "valid").
            what = "not accepted" if code == 401 else "not allowed to create tokenreviews"
            raise CredentialRefused(
                code, f"TokenReview failed: HTTP {code}: the reviewer credential was {what}"
            )
        if code not in (200, 201):
            # 401/403: our own credentials are wrong; 429/5xx: the issuer cannot answer. Either way
            # the token was not checked (docs/CONTRACTS.md "Failure rules": never "invalid",
            # never "valid").
            raise VerifierUnavailable(f"TokenReview failed: HTTP {code}")
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity: a compressed answer could expand far past the cap.
            raise VerifierUnavailable(f"TokenReview answer is compressed ({encoding}); refused")
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > _MAX_RESPONSE_BYTES:
            raise VerifierUnavailable("TokenReview answer too large")

    def _add_chunk(self, body: bytearray, chunk: bytes, deadline: float) -> None:
        body += chunk
        if len(body) > _MAX_RESPONSE_BYTES:
            raise VerifierUnavailable("TokenReview answer too large")
        if time.monotonic() > deadline:
            raise VerifierUnavailable(f"TokenReview answer took longer than {self.timeout:g} s")

    def _handle(self, raw: bytes, key: bytes | None, token: str) -> ServiceAccountIdentity:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            raise VerifierUnavailable("TokenReview answer is not JSON") from None
        if not isinstance(body, Mapping):
            raise VerifierUnavailable("TokenReview answer is not a JSON object")
        try:
            ident = identity_from_review(body, self.audiences, issuer=None)
        except InvalidToken as exc:
            raise _explain_refusal(token, exc) from None
        ident = _with_token_times(ident, token)
        if key is not None and self._cache is not None:
            self._cache.put(key, ident, time.monotonic())
        return ident

    def clear_cache(self) -> None:
        """Forget every cached success."""
        if self._cache is not None:
            self._cache.clear()


class TokenReviewVerifier(_Base):
    """Check tokens by asking the issuer (TokenReview). Thread-safe.

    ``url`` is the issuer's base URL (the TokenReview path is appended); ``bearer_token`` a
    credential allowed to create tokenreviews: a ``str``, or a
    :class:`~verifier.credentials.BearerTokenFile` for a token that rotates. ``cache_ttl``
    seconds (0 = off; kube uses 10) enables the success cache. ``client`` may be an
    ``httpx.Client`` to reuse (its transport is used; this verifier does not close it).
    ``ca_bundle``: PEM file of CAs for an https issuer. ``insecure_allow_http``: allow an http
    URL — tokens then travel in clear text; tests only.
    """

    def __init__(
        self,
        url: str,
        bearer_token: str | BearerToken,
        audiences: Iterable[str],
        *,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        cache_ttl: float = 0.0,
        cache_size: int = 4096,
        ca_bundle: str | os.PathLike[str] | None = None,
        insecure_allow_http: bool = False,
    ) -> None:
        super().__init__(
            url,
            bearer_token,
            audiences,
            timeout=timeout,
            cache_ttl=cache_ttl,
            cache_size=cache_size,
            ca_bundle=ca_bundle,
            insecure_allow_http=insecure_allow_http,
        )
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=timeout, transport=DeadlineTransport(self._verify)
        )

    def verify(self, token: str) -> ServiceAccountIdentity:
        """The identity the issuer vouches for; else InvalidToken / VerifierUnavailable."""
        key = self._precheck(token)
        hit = self._cached(key)
        if hit is not None:
            return hit
        self._count()
        deadline = time.monotonic() + self.timeout
        try:
            # The whole exchange, headers included, within ``timeout`` (verifier/deadline.py).
            with (
                total_deadline(self.timeout),
                self._client.stream(
                    "POST",
                    self.endpoint,
                    json=self._body(token),
                    headers=self._headers(),
                    timeout=self.timeout,
                    follow_redirects=False,
                ) as resp,
            ):
                self._check_head(resp)
                raw = bytearray()
                for chunk in resp.iter_bytes():  # identity only: see _check_head
                    self._add_chunk(raw, chunk, deadline)
        except httpx.HTTPError as e:
            raise VerifierUnavailable(f"TokenReview request failed: {type(e).__name__}") from None
        return self._handle(bytes(raw), key, token)

    def close(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> TokenReviewVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTokenReviewVerifier(_Base):
    """The async twin of :class:`TokenReviewVerifier` (``await v.verify(token)``)."""

    def __init__(
        self,
        url: str,
        bearer_token: str | BearerToken,
        audiences: Iterable[str],
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        cache_ttl: float = 0.0,
        cache_size: int = 4096,
        ca_bundle: str | os.PathLike[str] | None = None,
        insecure_allow_http: bool = False,
    ) -> None:
        super().__init__(
            url,
            bearer_token,
            audiences,
            timeout=timeout,
            cache_ttl=cache_ttl,
            cache_size=cache_size,
            ca_bundle=ca_bundle,
            insecure_allow_http=insecure_allow_http,
        )
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, verify=self._verify)

    async def verify(self, token: str) -> ServiceAccountIdentity:
        """The identity the issuer vouches for; else InvalidToken / VerifierUnavailable."""
        key = self._precheck(token)
        hit = self._cached(key)
        if hit is not None:
            return hit
        self._count()
        deadline = time.monotonic() + self.timeout
        try:
            # The whole exchange within ``timeout``: httpx's own timeouts are per socket
            # operation, so trickled headers would never trip them (issue 9, item 3).
            async with (
                asyncio.timeout(self.timeout),
                self._client.stream(
                    "POST",
                    self.endpoint,
                    json=self._body(token),
                    headers=self._headers(),
                    timeout=self.timeout,
                    follow_redirects=False,
                ) as resp,
            ):
                self._check_head(resp)
                raw = bytearray()
                async for chunk in resp.aiter_bytes():  # identity only: see _check_head
                    self._add_chunk(raw, chunk, deadline)
        except TimeoutError:
            raise VerifierUnavailable(
                f"TokenReview answer took longer than {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as e:
            raise VerifierUnavailable(f"TokenReview request failed: {type(e).__name__}") from None
        return self._handle(bytes(raw), key, token)

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncTokenReviewVerifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _explain_refusal(token: str, exc: InvalidToken) -> InvalidToken:
    """Say "not a JWT" when it is not one, rather than the issuer's generic words.

    kube-apiserver answers any token it cannot authenticate with "invalid bearer token", which
    reads like a complaint about the *reviewer's* credential (issue 9, item 15). When the answer
    is that generic one and the token is not even a compact JWS, the local parser's precise
    reason is given instead; a specific answer (revoked, expired, wrong audience) is kept.
    """
    if exc.reason != "bad_signature":
        return exc  # the issuer named a specific cause (revoked, expired, audience...): keep it
    try:
        parse_compact(token)
    except InvalidToken as shape:
        return InvalidToken(shape.reason, f"{shape.detail}; the issuer did not authenticate it")
    return exc


def _with_token_times(ident: ServiceAccountIdentity, token: str) -> ServiceAccountIdentity:
    """``ident`` with the token's own iat/nbf/exp and its legacy flag, which a TokenReview answer
    does not carry.

    The issuer has just authenticated this exact token, so its claims are the issuer's; they are
    read, not trusted for any decision (the review made it). A legacy token has no exp, and its
    ``iss`` is ``kubernetes/serviceaccount``: it is reported as ``legacy`` (issue 9, item 5), so a
    caller whose policy refuses legacy tokens, as ``HybridVerifier`` does, can tell.
    """
    try:
        payload = loads_object(parse_compact(token).payload)
    except (InvalidToken, JSONError):
        return ident
    updates: dict[str, Any] = {
        field: value
        for field, claim in (("issued_at", "iat"), ("not_before", "nbf"), ("expires_at", "exp"))
        if type(value := payload.get(claim)) is int
    }
    if payload.get("iss") == LEGACY_ISSUER:
        updates.update(legacy=True, issuer=LEGACY_ISSUER)
    if not updates:
        return ident
    values = {name: getattr(ident, name) for name in FIELD_NAMES}
    values.update(updates)
    return ServiceAccountIdentity(**values)
