"""Remote verifiers: OIDC discovery + JWKS over HTTPS, cached, then the pure ``verify`` core.

::

    OIDCVerifier(issuer, audiences).verify(token)              threads; httpx.Client
    await AsyncOIDCVerifier(issuer, audiences).verify(token)   asyncio; httpx.AsyncClient

Both share the sans-I/O state machine in :mod:`verifier._cache` (freshness, stale-while-refresh,
unknown-kid cooldown, last-good keys) and the response checks below; they differ only in transport
and in what one in-progress fetch is (a ``threading.Event`` / an ``asyncio.Task``).

Fetch rules (each a lesson from another verifier, see docs/CONTRACTS.md "What good verifiers do"):

- Discovery ``{issuer}/.well-known/openid-configuration``; its ``issuer`` must equal the configured
  one exactly — a trailing slash is a different issuer (go-oidc ``NewProvider``; OIDC Discovery
  §4.3).
  A mismatch is a configuration error: no key set is ever loaded, so no token is ever accepted.
- ``https`` only, for the issuer and the ``jwks_uri``, unless ``insecure_allow_http=True``.
- Redirects are never followed (a discovery document or JWKS served from elsewhere than its URL is
  refused). The ``jwks_uri`` host may differ from the issuer's (Google does this; OIDC allows it).
- Bounded: ``timeout`` seconds per request in total (panva/jose: 5 s; AWS gives up after 5 s), body
  capped at ``max_response_bytes`` while streaming, no compressed bodies (``Accept-Encoding:
  identity``, so a small gzip bomb cannot expand past the cap).
- A bad response (status, content type, JSON, a JWKS that ``KeySet.from_jwks`` refuses) is a failed
  fetch: the last good key set stays in force.

``VerifierUnavailable`` is raised only when there is no key set at all; an unknown ``kid`` that is
still unknown after the (cooled-down) refetch is ``InvalidToken("unknown_key")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx

from verifier import _cache
from verifier._cache import Decision, Do, Failed, Fetched, FetchResult, KeyCache, NotModified
from verifier.core import verify as core_verify
from verifier.deadline import DeadlineTransport, total_deadline
from verifier.errors import InvalidToken, KeySetError, VerifierUnavailable
from verifier.identity import ServiceAccountIdentity
from verifier.jwk import KeySet
from verifier.policy import DEFAULT_ALGORITHMS, Policy

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
USER_AGENT: Final = "sa-oidc-verifier/0.1"
# Lenient on purpose: buckets and CDNs label JSON in several ways; an HTML error page is refused.
_JSON_TYPES: Final = frozenset(
    {"application/json", "application/jwk-set+json", "text/plain", "application/octet-stream"}
)
_JWKS_ACCEPT: Final = "application/jwk-set+json, application/json;q=0.9"
# Before the first key set, a failed fetch is retried at most this often (seconds), so an outage
# costs one upstream request per second, not one per incoming token.
_COLD_RETRY: Final = 1.0


class _FetchError(Exception):
    """A fetch failed; the message is safe for logs and VerifierUnavailable (no token content)."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes


class _Base:
    """Configuration, response checks and the verification step shared by both verifiers."""

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: int = 60,
        ca_bundle: str | None = None,
        timeout: float = 5.0,
        min_cache: float = 60.0,
        max_cache: float = 600.0,
        refetch_cooldown: float = 30.0,
        max_response_bytes: int = 512 * 1024,
        insecure_allow_http: bool = False,
        clock: Callable[[], float] = time.time,
        discovery_url: str | None = None,
        ca_data: str | None = None,
        has_client: bool,
    ) -> None:
        self._policy = Policy(issuer, audiences, algorithms=algorithms, leeway=leeway)
        self.issuer = issuer
        self._insecure_allow_http = insecure_allow_http
        _check_url(issuer, "issuer", insecure_allow_http)
        url = httpx.URL(issuer)
        if url.query or url.fragment:
            raise ValueError("issuer must not have a query or fragment (OIDC Discovery §2)")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 0 < min_cache <= max_cache:
            raise ValueError("need 0 < min_cache <= max_cache")
        if refetch_cooldown < 0:
            raise ValueError("refetch_cooldown must be >= 0")
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if has_client and (ca_bundle is not None or ca_data is not None):
            raise ValueError(
                "pass ca_bundle/ca_data or client, not both (configure the client's TLS)"
            )
        if discovery_url is not None:
            _check_url(discovery_url, "discovery_url", insecure_allow_http)
        self._timeout = float(timeout)
        self._max_bytes = int(max_response_bytes)
        self._clock = clock
        # go-oidc: strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"; kube's
        # AuthenticationConfiguration ``issuer.discoveryURL`` replaces it, used exactly as given.
        self._discovery_url = discovery_url or issuer.rstrip("/") + DISCOVERY_PATH
        self._cache: KeyCache[Any] = KeyCache(
            min_cache=min_cache,
            max_cache=max_cache,
            refetch_cooldown=refetch_cooldown,
            cold_retry=min(_COLD_RETRY, refetch_cooldown) if refetch_cooldown else 0.0,
        )
        # Bound on how long a caller waits for someone else's fetch: discovery + JWKS, plus slack.
        self._wait_bound = 2 * self._timeout + 5.0

    @property
    def policy(self) -> Policy:
        """The :class:`Policy` every token is checked against."""
        return self._policy

    def _check(self, token: str, keys: KeySet) -> ServiceAccountIdentity:
        return core_verify(token, keys, self._policy, now=self._clock())

    def _unavailable(self) -> VerifierUnavailable:
        why = self._cache.last_error or "no key set could be fetched"
        return VerifierUnavailable(f"cannot verify tokens from issuer {self.issuer!r}: {why}")

    @staticmethod
    def _tls(ca_bundle: str | None, ca_data: str | None = None) -> ssl.SSLContext | bool:
        # None: httpx's default trust store (certifi, or SSL_CERT_FILE).
        if ca_bundle is None and ca_data is None:
            return True
        return ssl.create_default_context(cafile=ca_bundle, cadata=ca_data)

    def _record(self, result: FetchResult) -> None:
        """Store a fetch outcome in the cache and log failures (never any token content)."""
        entry = self._cache.complete(self._clock(), result)
        if isinstance(result, Failed):
            logger.warning(
                "key fetch for issuer %s failed: %s (%s)",
                self.issuer,
                result.reason,
                "keeping the last good key set" if entry is not None else "no key set yet",
            )

    def _timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self._timeout)

    # -- sans-I/O response handling (shared by both transports) ----------------------------------

    def _jwks_headers(self, no_cache: bool) -> dict[str, str]:
        headers = {"Accept": _JWKS_ACCEPT}
        entry = self._cache.entry
        if entry is not None and entry.etag:
            headers["If-None-Match"] = entry.etag
        if no_cache:
            # RFC 9111 §5.2.1.4: make any cache on the way (CDN, proxy) revalidate with the issuer.
            headers["Cache-Control"] = "no-cache"
        return headers

    def _parse_discovery(self, resp: _Response) -> str:
        doc = _json_object(resp, "discovery document")
        issuer = doc.get("issuer")
        if issuer != self.issuer:
            # Exact comparison: "https://x" and "https://x/" are different issuers (go-oidc).
            shown = repr(issuer)[:200]  # the remote value can be anything, of any length
            raise _FetchError(
                f"discovery document issuer {shown} does not equal the configured issuer "
                f"{self.issuer!r} exactly (a trailing slash makes a different issuer); "
                "refusing every token until the configuration is fixed"
            )
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise _FetchError("discovery document has no jwks_uri")
        try:
            _check_url(jwks_uri, "jwks_uri", self._insecure_allow_http)
        except ValueError as exc:
            raise _FetchError(str(exc)) from None
        return jwks_uri

    def _parse_jwks(self, resp: _Response) -> FetchResult:
        cache = self._cache
        lifetime = _cache.freshness_lifetime(
            resp.headers, floor=cache.min_cache, ceiling=cache.max_cache
        )
        if resp.status == 304:
            return NotModified(lifetime)
        _check_content_type(resp, "JWKS")
        try:
            keys = KeySet.from_jwks(resp.body)
        except KeySetError as exc:
            return Failed(f"JWKS refused: {exc}")
        return Fetched(keys, lifetime, resp.headers.get("etag"))

    def _read_limit(self, resp: httpx.Response) -> None:
        if resp.status_code not in (200, 304):
            kind = "redirect (not followed)" if resp.is_redirect else "status"
            raise _FetchError(f"GET {resp.request.url}: {kind} {resp.status_code}")
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise _FetchError(f"GET {resp.request.url}: compressed body ({encoding}) refused")
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_bytes:
            raise _FetchError(f"GET {resp.request.url}: body over {self._max_bytes} bytes")

    def _add_chunk(self, body: bytearray, chunk: bytes, url: httpx.URL, deadline: float) -> None:
        body += chunk
        if len(body) > self._max_bytes:
            raise _FetchError(f"GET {url}: body over {self._max_bytes} bytes")
        if time.monotonic() > deadline:
            raise _FetchError(f"GET {url}: took longer than {self._timeout:g} s")


class OIDCVerifier(_Base):
    """Verify service-account tokens against an OIDC issuer's published keys. Thread-safe.

    ``verify(token)`` returns a :class:`ServiceAccountIdentity` or raises ``InvalidToken`` (checked,
    not acceptable) or ``VerifierUnavailable`` (no key set could be obtained: could not check).

    - ``client``: an ``httpx.Client`` to use (not closed by :meth:`close`); otherwise one is made
      with ``ca_bundle`` (a PEM file of trusted roots) and ``timeout``.
    - ``min_cache`` / ``max_cache``: clamp on the JWKS ``Cache-Control: max-age`` (seconds).
    - ``refetch_cooldown``: at most one refetch per this many seconds for unknown ``kid`` values.
    - ``max_response_bytes``: cap on a discovery or JWKS body.
    - ``insecure_allow_http``: allow ``http://`` issuer and ``jwks_uri``. Anyone on the path can
      then substitute keys and mint accepted tokens: it MUST NOT be used in production.
    - ``clock``: returns POSIX seconds; used for token times and cache ages (tests inject one).
    - ``discovery_url``: fetch discovery from here instead of ``{issuer}/.well-known/...`` (kube's
      ``issuer.discoveryURL``); the document's ``issuer`` must still equal ``issuer``.
    - ``ca_data``: PEM text of trusted roots (kube's ``issuer.certificateAuthority``).
    """

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: int = 60,
        client: httpx.Client | None = None,
        ca_bundle: str | None = None,
        timeout: float = 5.0,
        min_cache: float = 60.0,
        max_cache: float = 600.0,
        refetch_cooldown: float = 30.0,
        max_response_bytes: int = 512 * 1024,
        insecure_allow_http: bool = False,
        clock: Callable[[], float] = time.time,
        discovery_url: str | None = None,
        ca_data: str | None = None,
    ) -> None:
        super().__init__(
            issuer,
            audiences,
            algorithms=algorithms,
            leeway=leeway,
            ca_bundle=ca_bundle,
            timeout=timeout,
            min_cache=min_cache,
            max_cache=max_cache,
            refetch_cooldown=refetch_cooldown,
            max_response_bytes=max_response_bytes,
            insecure_allow_http=insecure_allow_http,
            clock=clock,
            discovery_url=discovery_url,
            ca_data=ca_data,
            has_client=client is not None,
        )
        self._owns_client = client is None
        self._client = client or httpx.Client(
            transport=DeadlineTransport(self._tls(ca_bundle, ca_data)),
            timeout=self._timeouts(),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._refresher: threading.Thread | None = None

    # -- public ----------------------------------------------------------------------------------

    def verify(self, token: str) -> ServiceAccountIdentity:
        """Verify ``token``; fetch keys only when there are none or its ``kid`` is unknown."""
        return self.verify_with(functools.partial(self._check, token))

    def verify_with(self, check: Callable[[KeySet], _T]) -> _T:
        """Run ``check(keys)`` on this issuer's key set, with :meth:`verify`'s key handling.

        For callers with their own claim rules (``verifier.multi``): ``check`` verifies the
        signature with the keys it is given and raises ``InvalidToken``; when it raises
        ``unknown_key`` the keys are refetched (at most once per cooldown, one shared fetch) and
        ``check`` runs once more on the new set.
        """
        keys = self._keys(self._clock())
        try:
            return check(keys)
        except InvalidToken as exc:
            if exc.reason != "unknown_key":
                raise
            newer = self._after_unknown_kid(keys, exc)
        return check(newer)

    def verify_cached(self, token: str) -> ServiceAccountIdentity | None:
        """Like :meth:`verify`, but never blocks on the network: ``None`` means "would have to".

        CPU-only when it returns or raises; an async server can call it inline and hand only the
        ``None`` cases to a thread (``verifier.middleware`` does). A due background refresh of a
        stale key set is still started.
        """
        return self.verify_cached_with(functools.partial(self._check, token))

    def verify_cached_with(self, check: Callable[[KeySet], _T]) -> _T | None:
        """:meth:`verify_cached` for :meth:`verify_with`'s ``check``: ``None`` means "would have
        to fetch keys"; CPU-only otherwise."""
        now = self._clock()
        entry = self._cache.entry
        if entry is None:
            decision = self._cache.on_cold(now, threading.Event, claim=False)
            if decision.do is Do.GIVE_UP:
                raise self._unavailable()
            if decision.keys is None:
                return None
            keys = decision.keys
        else:
            keys = entry.keys
            if now >= entry.fresh_until:
                self._refresh_in_background(now)
        try:
            return check(keys)
        except InvalidToken as exc:
            if exc.reason != "unknown_key":
                raise
            decision = self._cache.on_unknown_kid(now, keys, threading.Event, claim=False)
            if decision.do is Do.GIVE_UP:
                raise
            if decision.do is Do.USE and decision.keys is not None:
                return check(decision.keys)
            return None

    def close(self) -> None:
        """Close the HTTP client if this verifier made it; wait briefly for a running refresh."""
        refresher = self._refresher
        if refresher is not None:
            refresher.join(self._wait_bound)
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- keys ------------------------------------------------------------------------------------

    def _keys(self, now: float) -> KeySet:
        entry = self._cache.entry  # the fast path: one attribute read, no lock
        if entry is not None:
            if now >= entry.fresh_until:
                self._refresh_in_background(now)
            return entry.keys
        decision = self._cache.on_cold(now, threading.Event)
        keys = self._settle(decision, no_cache=False)
        if keys is None:
            raise self._unavailable()
        return keys

    def _after_unknown_kid(self, tried: KeySet, exc: InvalidToken) -> KeySet:
        decision = self._cache.on_unknown_kid(self._clock(), tried, threading.Event)
        if decision.do is Do.GIVE_UP:
            raise exc
        newer = self._settle(decision, no_cache=True)
        if newer is None or newer is tried:
            raise exc
        return newer

    def _settle(self, decision: Decision[threading.Event], *, no_cache: bool) -> KeySet | None:
        """Carry out a decision; return the key set in force afterwards (None: still none)."""
        if decision.do is Do.USE:
            return decision.keys
        if decision.do is Do.FETCH and decision.flight is not None:
            self._fly(decision.flight, no_cache)
        elif decision.do is Do.WAIT and decision.flight is not None:
            decision.flight.wait(self._wait_bound)
        entry = self._cache.entry
        return entry.keys if entry is not None else None

    def _refresh_in_background(self, now: float) -> None:
        flight = self._cache.on_stale(now, threading.Event)
        if flight is not None:
            thread = threading.Thread(
                target=self._fly, args=(flight, False), name="sa-oidc-jwks-refresh", daemon=True
            )
            self._refresher = thread
            thread.start()

    def _fly(self, flight: threading.Event, no_cache: bool) -> None:
        result: FetchResult = Failed("fetch interrupted")
        try:
            result = self._fetch(no_cache)
        except Exception as exc:  # pragma: no cover - _fetch catches everything it expects
            logger.exception("unexpected error fetching keys for issuer %s", self.issuer)
            result = Failed(f"internal error during fetch ({type(exc).__name__})")
        finally:
            self._record(result)
            flight.set()

    # -- transport -------------------------------------------------------------------------------

    def _fetch(self, no_cache: bool) -> FetchResult:
        try:
            jwks_uri = self._cache.jwks_uri
            if jwks_uri is None:
                jwks_uri = self._parse_discovery(self._get(self._discovery_url, {}))
                self._cache.jwks_uri = jwks_uri
            return self._parse_jwks(self._get(jwks_uri, self._jwks_headers(no_cache)))
        except _FetchError as exc:
            return Failed(str(exc))
        except httpx.HTTPError as exc:
            return Failed(_describe(exc))

    def _get(self, url: str, headers: dict[str, str]) -> _Response:
        headers = {"Accept-Encoding": "identity", "Accept": "application/json", **headers}
        deadline = time.monotonic() + self._timeout
        # The whole exchange, headers included, within ``timeout`` (see verifier/deadline.py).
        with (
            total_deadline(self._timeout),
            self._client.stream(
                "GET", url, headers=headers, timeout=self._timeouts(), follow_redirects=False
            ) as resp,
        ):
            self._read_limit(resp)
            body = bytearray()
            for chunk in resp.iter_raw():
                self._add_chunk(body, chunk, resp.request.url, deadline)
            return _Response(resp.status_code, resp.headers, bytes(body))


class AsyncOIDCVerifier(_Base):
    """:class:`OIDCVerifier` for asyncio: same arguments, ``await v.verify(token)``.

    Use it from one event loop. Concurrent verifications share one in-flight fetch (an
    ``asyncio.Task``, shielded so a cancelled caller does not cancel it for the others).
    """

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: int = 60,
        client: httpx.AsyncClient | None = None,
        ca_bundle: str | None = None,
        timeout: float = 5.0,
        min_cache: float = 60.0,
        max_cache: float = 600.0,
        refetch_cooldown: float = 30.0,
        max_response_bytes: int = 512 * 1024,
        insecure_allow_http: bool = False,
        clock: Callable[[], float] = time.time,
        discovery_url: str | None = None,
        ca_data: str | None = None,
    ) -> None:
        super().__init__(
            issuer,
            audiences,
            algorithms=algorithms,
            leeway=leeway,
            ca_bundle=ca_bundle,
            timeout=timeout,
            min_cache=min_cache,
            max_cache=max_cache,
            refetch_cooldown=refetch_cooldown,
            max_response_bytes=max_response_bytes,
            insecure_allow_http=insecure_allow_http,
            clock=clock,
            discovery_url=discovery_url,
            ca_data=ca_data,
            has_client=client is not None,
        )
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            verify=self._tls(ca_bundle, ca_data),
            timeout=self._timeouts(),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._tasks: set[asyncio.Task[None]] = set()

    async def verify(self, token: str) -> ServiceAccountIdentity:
        """Verify ``token``; fetch keys only when there are none or its ``kid`` is unknown."""
        return await self.verify_with(functools.partial(self._check, token))

    async def verify_with(self, check: Callable[[KeySet], _T]) -> _T:
        """:meth:`OIDCVerifier.verify_with` for asyncio (``check`` itself is synchronous)."""
        keys = await self._keys(self._clock())
        try:
            return check(keys)
        except InvalidToken as exc:
            if exc.reason != "unknown_key":
                raise
            decision = self._cache.on_unknown_kid(self._clock(), keys, self._new_flight(True))
            if decision.do is Do.GIVE_UP:
                raise
            newer = await self._settle(decision)
            if newer is None or newer is keys:
                raise
        return check(newer)

    async def aclose(self) -> None:
        """Cancel background fetches and close the HTTP client if this verifier made it."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _keys(self, now: float) -> KeySet:
        entry = self._cache.entry
        if entry is not None:
            if now >= entry.fresh_until:
                self._cache.on_stale(now, self._new_flight(False))  # runs as a task; not awaited
            return entry.keys
        keys = await self._settle(self._cache.on_cold(now, self._new_flight(False)))
        if keys is None:
            raise self._unavailable()
        return keys

    def _new_flight(self, no_cache: bool) -> Callable[[], asyncio.Task[None]]:
        def start() -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(self._fly(no_cache))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return task

        return start

    async def _settle(self, decision: Decision[asyncio.Task[None]]) -> KeySet | None:
        if decision.do is Do.USE:
            return decision.keys
        if decision.flight is not None:
            # shield: a caller cancelled while waiting must not cancel everyone's fetch.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(decision.flight), self._wait_bound)
        entry = self._cache.entry
        return entry.keys if entry is not None else None

    async def _fly(self, no_cache: bool) -> None:
        result: FetchResult = Failed("fetch cancelled")
        try:
            result = await self._fetch(no_cache)
        except Exception as exc:  # pragma: no cover - _fetch catches everything it expects
            logger.exception("unexpected error fetching keys for issuer %s", self.issuer)
            result = Failed(f"internal error during fetch ({type(exc).__name__})")
        finally:
            self._record(result)

    async def _fetch(self, no_cache: bool) -> FetchResult:
        try:
            jwks_uri = self._cache.jwks_uri
            if jwks_uri is None:
                jwks_uri = self._parse_discovery(await self._get(self._discovery_url, {}))
                self._cache.jwks_uri = jwks_uri
            return self._parse_jwks(await self._get(jwks_uri, self._jwks_headers(no_cache)))
        except _FetchError as exc:
            return Failed(str(exc))
        except httpx.HTTPError as exc:
            return Failed(_describe(exc))
        except TimeoutError:
            return Failed(f"fetch took longer than {self._timeout:g} s")

    async def _get(self, url: str, headers: dict[str, str]) -> _Response:
        headers = {"Accept-Encoding": "identity", "Accept": "application/json", **headers}
        deadline = time.monotonic() + self._timeout
        async with (
            asyncio.timeout(self._timeout),
            self._client.stream(
                "GET", url, headers=headers, timeout=self._timeouts(), follow_redirects=False
            ) as resp,
        ):
            self._read_limit(resp)
            body = bytearray()
            async for chunk in resp.aiter_raw():
                self._add_chunk(body, chunk, resp.request.url, deadline)
            return _Response(resp.status_code, resp.headers, bytes(body))


# -- helpers -------------------------------------------------------------------------------------


def _check_url(value: str, what: str, insecure_allow_http: bool) -> None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError(f"{what} is not a valid URL") from None
    if url.scheme == "http" and not insecure_allow_http:
        raise ValueError(
            f"{what} {value!r} is not https; http is allowed only with insecure_allow_http=True, "
            "which MUST NOT be used in production"
        )
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(f"{what} {value!r} must be an absolute https URL")


def _check_content_type(resp: _Response, what: str) -> None:
    ctype = resp.headers.get("content-type")
    if ctype is None:
        return
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime not in _JSON_TYPES and not mime.endswith("+json"):
        raise _FetchError(f"{what} has content type {mime!r}, not JSON")


def _json_object(resp: _Response, what: str) -> dict[str, Any]:
    _check_content_type(resp, what)
    try:
        doc = json.loads(resp.body)
    except (ValueError, UnicodeDecodeError):
        raise _FetchError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _FetchError(f"{what} is not a JSON object")
    return doc


def _describe(exc: httpx.HTTPError) -> str:
    try:
        where = f"GET {exc.request.url}: "
    except RuntimeError:
        where = ""
    return f"{where}{type(exc).__name__}: {exc or 'no detail'}"


__all__ = ["AsyncOIDCVerifier", "OIDCVerifier"]
