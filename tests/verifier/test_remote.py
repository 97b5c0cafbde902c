"""OIDCVerifier / AsyncOIDCVerifier against a real issuer stand-in on a loopback socket.

``respx`` only for faults a real server will not produce on demand (timeouts, truncated and
oversize bodies, 500s, garbage). Cache ages run on an injected clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from jwks_server import (
    AUDIENCE,
    JWKSServer,
    claims_for,
    ec_key,
    rsa_key,
    self_signed_tls,
    sign_token,
    token_for,
)

from verifier import AsyncOIDCVerifier, InvalidToken, OIDCVerifier, VerifierUnavailable
from verifier._cache import Do, Failed, Fetched, KeyCache, freshness_lifetime
from verifier.jwk import KeySet


class Clock:
    """An injectable clock: starts at real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    srv.keys = [rsa_key(), ec_key()]
    with srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(clock: Clock) -> Iterator[Callable[..., OIDCVerifier]]:
    made: list[OIDCVerifier] = []

    def factory(srv: JWKSServer, **kw: Any) -> OIDCVerifier:
        kw.setdefault("insecure_allow_http", True)
        kw.setdefault("clock", clock)
        v = OIDCVerifier(kw.pop("issuer", srv.issuer), [AUDIENCE], **kw)
        made.append(v)
        return v

    yield factory
    for v in made:
        v.close()


def tok(srv: JWKSServer, clock: Clock, key: Any = None, **kw: Any) -> str:
    return token_for(srv, key or rsa_key(), now=clock.now, **kw)


# -- happy path ----------------------------------------------------------------------------------


def test_verifies_rs256_and_es256_with_one_fetch(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    v = make(server)
    ident = v.verify(tok(server, clock, namespace="prod", name="billing"))
    assert ident.username == "system:serviceaccount:prod:billing"
    assert ident.pod_name == "app-7d9f"
    assert ident.key_id == rsa_key().kid
    assert v.verify(tok(server, clock, ec_key())).key_id == ec_key().kid
    for _ in range(20):
        v.verify(tok(server, clock))
    assert server.counts == {"discovery": 1, "jwks": 1}
    assert "cache-control" not in server.jwks_requests[0]  # a plain fetch is not a forced one


def test_invalid_token_is_not_a_fetch_trigger(server: JWKSServer, make: Any, clock: Clock) -> None:
    v = make(server)
    v.verify(tok(server, clock))
    for bad in ("garbage", "a.b.c", tok(server, clock, audiences=["other"])):
        with pytest.raises(InvalidToken) as e:
            v.verify(bad)
        assert e.value.reason != "unknown_key"
    assert server.counts["jwks"] == 1


# -- discovery -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["configured_has_slash", "discovered_has_slash"])
def test_discovery_issuer_must_match_exactly(
    server: JWKSServer, make: Any, clock: Clock, which: str
) -> None:
    if which == "configured_has_slash":
        v = make(server, issuer=server.issuer + "/")
    else:
        server.discovery_issuer = server.issuer + "/"
        v = make(server)
    token = tok(server, clock)
    for _ in range(2):
        with pytest.raises(VerifierUnavailable, match="trailing slash"):
            v.verify(token)
        clock.advance(5)  # past the cold-retry backoff: a retry is refused the same way
    assert server.counts["jwks"] == 0  # the keys of a mismatched issuer are never even fetched


def test_http_issuer_needs_the_scary_flag() -> None:
    with pytest.raises(ValueError, match="insecure_allow_http"):
        OIDCVerifier("http://127.0.0.1:1", [AUDIENCE])
    with pytest.raises(ValueError, match="query or fragment"):
        OIDCVerifier("https://issuer.test/?x=1", [AUDIENCE])
    with pytest.raises(ValueError, match="not both"):
        OIDCVerifier("https://issuer.test", [AUDIENCE], client=httpx.Client(), ca_bundle="x.pem")
    with pytest.raises(ValueError):
        OIDCVerifier("https://issuer.test", [AUDIENCE], min_cache=700, max_cache=600)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


def test_https_issuer_with_ca_bundle(tls_files: tuple[Path, Path], clock: Clock) -> None:
    with JWKSServer(tls=tls_files) as srv:
        srv.keys = [rsa_key()]
        with OIDCVerifier(srv.issuer, [AUDIENCE], ca_bundle=str(tls_files[0]), clock=clock) as v:
            assert v.verify(tok(srv, clock)).namespace == "default"
        # Without the CA bundle the self-signed certificate is refused: could not check.
        with (
            OIDCVerifier(srv.issuer, [AUDIENCE], clock=clock) as v,
            pytest.raises(VerifierUnavailable),
        ):
            v.verify(tok(srv, clock))


def test_http_jwks_uri_refused_without_flag(
    tls_files: tuple[Path, Path], server: JWKSServer, clock: Clock
) -> None:
    with JWKSServer(tls=tls_files) as srv:
        srv.jwks_uri = f"{server.url}/openid/v1/jwks"  # plain http
        with (
            OIDCVerifier(srv.issuer, [AUDIENCE], ca_bundle=str(tls_files[0]), clock=clock) as v,
            pytest.raises(VerifierUnavailable, match=r"jwks_uri .* is not https"),
        ):
            v.verify(tok(srv, clock))
    assert server.counts["jwks"] == 0


def test_no_redirect_to_another_host(server: JWKSServer, make: Any, clock: Clock) -> None:
    with JWKSServer() as other:
        other.keys = [rsa_key()]
        server.jwks_redirect = f"{other.url}/openid/v1/jwks"
        v = make(server)
        with pytest.raises(VerifierUnavailable, match="redirect"):
            v.verify(tok(server, clock))
        assert other.counts["jwks"] == 0


def test_content_type_checks_are_lenient_but_refuse_html(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    for ctype in ("application/json", "application/jwk-set+json; charset=utf-8", "text/plain"):
        server.jwks_content_type = ctype
        assert make(server).verify(tok(server, clock))
    server.jwks_content_type = "text/html"
    with pytest.raises(VerifierUnavailable, match="content type"):
        make(server).verify(tok(server, clock))


# -- cache ages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "lifetime"),
    [
        ("public, max-age=120", 120),
        ("max-age=5", 60),  # floor: min_cache
        ("public, max-age=100000", 600),  # ceiling: max_cache (panva: 10 min)
        ("no-store", 60),
        ("no-cache, max-age=300", 60),
        ("max-age=abc", 60),
        (None, 60),
    ],
)
def test_cache_honours_max_age_within_floor_and_ceiling(
    server: JWKSServer, make: Any, clock: Clock, header: str | None, lifetime: int
) -> None:
    server.cache_control = header
    v = make(server)
    token = tok(server, clock, ttl=10_000)
    v.verify(token)
    clock.advance(lifetime - 1)
    v.verify(token)
    time.sleep(0.05)
    assert server.counts["jwks"] == 1
    clock.advance(2)
    v.verify(token)  # stale: served at once, one refresh runs in the background
    wait_for(lambda: server.counts["jwks"] == 2)
    v.verify(token)
    assert server.counts["jwks"] == 2


def test_freshness_lifetime_rules() -> None:
    def life(**headers: str) -> float:
        hdrs = {k.replace("_", "-"): val for k, val in headers.items()}
        return freshness_lifetime(hdrs, floor=60, ceiling=600)

    assert life(cache_control="Public, MAX-AGE=300") == 300
    assert life(cache_control="max-age=300", age="100") == 200  # RFC 9111 §4.2.3
    assert life(cache_control="max-age=300", age="290") == 60
    assert life(cache_control='max-age="120"') == 120
    assert life(cache_control="max-age=100, max-age=200") == 60  # conflicting: treat as stale
    assert life(cache_control="s-maxage=300") == 60


def test_key_cache_state_machine_on_a_fake_clock() -> None:
    cache: KeyCache[str] = KeyCache(min_cache=60, max_cache=600, refetch_cooldown=30, cold_retry=1)
    flights = iter(f"flight-{i}" for i in range(100))

    def new() -> str:
        return next(flights)

    # Cold: the first caller fetches, the others wait for that same flight.
    first = cache.on_cold(0, new)
    assert (first.do, first.flight) == (Do.FETCH, "flight-0")
    assert (cache.on_cold(0, new).do, cache.on_cold(0, new).flight) == (Do.WAIT, "flight-0")
    cache.complete(0.5, Failed("down"))
    assert cache.on_cold(0.9, new).do is Do.GIVE_UP  # cold backoff: 1 s from the last attempt
    assert cache.on_cold(1.6, new).do is Do.FETCH
    keys1 = KeySet.from_jwks({"keys": [rsa_key().jwk()]})
    cache.complete(2, Fetched(keys1, 120, None))
    assert cache.entry is not None and cache.entry.fresh_until == 122
    # Unknown kid inside the cooldown of the last attempt (t=1.6): give up, no fetch.
    assert cache.on_unknown_kid(20, keys1, new).do is Do.GIVE_UP
    # A caller that tried an older set is told to retry with the current one.
    old = KeySet.from_jwks({"keys": [ec_key().jwk()]})
    assert cache.on_unknown_kid(20, old, new).keys is keys1
    # After the cooldown: one refetch, everybody else waits for it.
    assert cache.on_unknown_kid(32, keys1, new).do is Do.FETCH
    assert cache.on_unknown_kid(32, keys1, new).do is Do.WAIT
    assert cache.on_stale(200, new) is None  # a flight is already running
    cache.complete(33, Failed("garbage"))
    assert cache.entry is not None and cache.entry.keys is keys1  # last good keys kept
    # Stale: one background refresh, then none while it runs or within the cooldown of a failure.
    assert cache.on_stale(100, new) is None  # still fresh (until 122)
    assert cache.on_stale(130, new) is not None
    assert cache.on_stale(130, new) is None
    cache.complete(131, Failed("down"))
    assert cache.on_stale(150, new) is None
    assert cache.on_stale(162, new) is not None


def test_stale_keys_served_while_one_caller_refreshes(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    server.cache_control = "max-age=120"
    v = make(server)
    token = tok(server, clock, ttl=10_000)
    v.verify(token)
    server.jwks_delay = 1.0
    clock.advance(121)
    start = time.perf_counter()
    for _ in range(50):
        v.verify(token)
    assert time.perf_counter() - start < 0.5  # nobody waited for the slow refresh
    wait_for(lambda: server.counts["jwks"] == 2)
    time.sleep(0.1)
    assert server.counts["jwks"] == 2  # exactly one refresh for the 50 stale hits


def test_etag_revalidation_keeps_keys_and_extends_freshness(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    server.etag = True
    server.cache_control = "max-age=120"
    v = make(server)
    token = tok(server, clock, ttl=10_000)
    v.verify(token)
    clock.advance(121)
    v.verify(token)
    wait_for(lambda: server.counts["jwks"] == 2)
    assert server.jwks_requests[1]["if-none-match"].startswith('"')
    wait_for(lambda: v._cache.entry is not None and v._cache.entry.fresh_until > clock.now)
    assert v.verify(token)


# -- unknown kid ---------------------------------------------------------------------------------


def test_unknown_kid_refetches_once_per_cooldown(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    server.keys = [rsa_key()]
    v = make(server, refetch_cooldown=30)
    v.verify(tok(server, clock))
    assert server.counts["jwks"] == 1
    # Rotation: a new key is published and used before our cache expires.
    clock.advance(31)
    server.keys = [rsa_key(), ec_key()]
    assert v.verify(tok(server, clock, ec_key())).key_id == ec_key().kid
    assert server.counts["jwks"] == 2
    assert server.jwks_requests[1]["cache-control"] == "no-cache"
    # Random kids inside the cooldown: no fetch at all.
    for i in range(50):
        with pytest.raises(InvalidToken) as e:
            v.verify(tok(server, clock, kid=f"random-{i}"))
        assert e.value.reason == "unknown_key"
    assert server.counts["jwks"] == 2
    # After the cooldown: one more refetch, still unknown.
    clock.advance(31)
    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown_key"):
            v.verify(tok(server, clock, kid="still-unknown"))
    assert server.counts["jwks"] == 3


def test_verify_cached_never_blocks(server: JWKSServer, make: Any, clock: Clock) -> None:
    server.keys = [rsa_key()]
    v = make(server)
    token = tok(server, clock)
    assert v.verify_cached(token) is None  # cold: would have to fetch
    assert server.counts["jwks"] == 0
    v.verify(token)
    assert v.verify_cached(token) is not None
    with pytest.raises(InvalidToken, match="unknown_key"):  # inside the cooldown: decided now
        v.verify_cached(tok(server, clock, kid="nope"))
    clock.advance(31)
    assert v.verify_cached(tok(server, clock, kid="nope")) is None  # would refetch
    assert server.counts["jwks"] == 1


# -- failures ------------------------------------------------------------------------------------


def test_unavailable_when_cold_and_down(make: Any, clock: Clock) -> None:
    srv = JWKSServer()  # never started: connection refused
    srv.keys = [rsa_key()]
    v = make(srv)
    token = tok(srv, clock)
    with pytest.raises(VerifierUnavailable, match="cannot verify tokens from issuer"):
        v.verify(token)
    with srv:
        with pytest.raises(VerifierUnavailable):  # within the 1 s cold backoff: no new attempt
            v.verify(token)
        assert srv.counts["discovery"] == 0
        clock.advance(2)
        assert v.verify(token).namespace == "default"


def test_last_good_keys_kept_when_issuer_goes_down(
    server: JWKSServer, make: Any, clock: Clock
) -> None:
    server.cache_control = "max-age=60"
    v = make(server)
    token = tok(server, clock, ttl=10_000)
    v.verify(token)
    server.stop()
    for _ in range(3):
        clock.advance(120)  # stale, refresh fails in the background; keys stay
        assert v.verify(token).namespace == "default"
        wait_for(lambda: v._cache.last_error is not None)
    with pytest.raises(InvalidToken, match="unknown_key"):  # not "unavailable": we have keys
        v.verify(tok(server, clock, kid="rotated-away"))
    server.start()
    clock.advance(120)
    v.verify(token)
    wait_for(lambda: v._cache.last_error is None)


def test_slow_issuer_times_out(server: JWKSServer, make: Any, clock: Clock) -> None:
    server.jwks_delay = 1.0
    v = make(server, timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(VerifierUnavailable, match="Timeout"):
        v.verify(tok(server, clock))
    assert time.perf_counter() - start < 0.9


# -- respx: faults on demand ---------------------------------------------------------------------

ISSUER = "https://issuer.test"
JWKS_URI = f"{ISSUER}/openid/v1/jwks"
DISCOVERY = {"issuer": ISSUER, "jwks_uri": JWKS_URI}


def good_jwks() -> httpx.Response:
    return httpx.Response(
        200,
        json={"keys": [rsa_key().jwk()]},
        headers={"Cache-Control": "max-age=60", "Content-Type": "application/jwk-set+json"},
    )


class Truncated(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"keys": ['
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


class Endless(httpx.SyncByteStream):
    def __init__(self) -> None:
        self.chunks = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.chunks += 1
            yield b" " * 65536


def _oversize() -> httpx.Response:
    body = json.dumps({"keys": [rsa_key().jwk()], "pad": "x" * 600_000}).encode()
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


FAULTS: dict[str, Callable[[], httpx.Response | Exception]] = {
    "500": lambda: httpx.Response(500, text="oops"),
    "not_json": lambda: httpx.Response(
        200, text="{not json", headers={"Content-Type": "text/plain"}
    ),
    "bad_jwks": lambda: httpx.Response(200, json={"keys": "nope"}),
    "html": lambda: httpx.Response(200, text="<html>", headers={"Content-Type": "text/html"}),
    "oversize": _oversize,
    "truncated": lambda: httpx.Response(200, stream=Truncated()),
    "read_timeout": lambda: httpx.ReadTimeout("timed out"),
    "connect_timeout": lambda: httpx.ConnectTimeout("timed out"),
    "gzip": lambda: httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}),
}


def _issuer_token(clock: Clock, **kw: Any) -> str:
    return sign_token(rsa_key(), claims_for(ISSUER, now=clock.now, ttl=10_000), **kw)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_refresh_keeps_last_good_keys(fault: str, clock: Clock) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{ISSUER}/.well-known/openid-configuration").respond(json=DISCOVERY)
        jwks = mock.get(JWKS_URI)
        jwks.side_effect = [good_jwks(), FAULTS[fault]()]
        with OIDCVerifier(ISSUER, [AUDIENCE], clock=clock) as v:
            token = _issuer_token(clock)
            v.verify(token)
            clock.advance(61)
            v.verify(token)  # stale; the refresh fails
            wait_for(lambda: v._cache.last_error is not None)
            assert v.verify(token).namespace == "default"  # last good keys still in force
            assert jwks.call_count == 2


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_first_fetch_is_unavailable_not_invalid(fault: str, clock: Clock) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{ISSUER}/.well-known/openid-configuration").respond(json=DISCOVERY)
        mock.get(JWKS_URI).side_effect = [FAULTS[fault]()]
        with OIDCVerifier(ISSUER, [AUDIENCE], clock=clock) as v:
            with pytest.raises(VerifierUnavailable) as e:
                v.verify(_issuer_token(clock))
            assert "eyJ" not in str(e.value)  # never any token content in the message


def test_body_cap_is_enforced_while_streaming(clock: Clock) -> None:
    endless = Endless()
    with respx.mock() as mock:
        mock.get(f"{ISSUER}/.well-known/openid-configuration").respond(json=DISCOVERY)
        mock.get(JWKS_URI).respond(200, stream=endless)
        with (
            OIDCVerifier(ISSUER, [AUDIENCE], clock=clock, max_response_bytes=100_000) as v,
            pytest.raises(VerifierUnavailable, match="body over 100000 bytes"),
        ):
            v.verify(_issuer_token(clock))
    assert endless.chunks <= 3  # stopped reading right after the cap


def test_async_verifier_end_to_end(server: JWKSServer, clock: Clock) -> None:
    server.keys = [rsa_key()]

    async def main() -> None:
        async with AsyncOIDCVerifier(
            server.issuer, [AUDIENCE], insecure_allow_http=True, clock=clock
        ) as v:
            assert (await v.verify(tok(server, clock))).namespace == "default"
            with pytest.raises(InvalidToken, match="unknown_key"):
                await v.verify(tok(server, clock, kid="nope"))
            server.keys = [rsa_key(), ec_key()]
            clock.advance(31)
            assert (await v.verify(tok(server, clock, ec_key()))).key_id == ec_key().kid
            assert server.jwks_requests[-1]["cache-control"] == "no-cache"
            server.stop()
            clock.advance(4000)  # far past max-age, issuer down: keys kept
            assert (await v.verify(tok(server, clock, ttl=100))).namespace == "default"
            await asyncio.sleep(0.2)
            assert (await v.verify(tok(server, clock, ttl=100))).namespace == "default"

    asyncio.run(main())


def test_async_unavailable_when_cold_and_down(clock: Clock) -> None:
    async def main() -> None:
        srv = JWKSServer()
        async with AsyncOIDCVerifier(
            srv.issuer, [AUDIENCE], insecure_allow_http=True, clock=clock
        ) as v:
            with pytest.raises(VerifierUnavailable):
                await v.verify(tok(srv, clock))

    asyncio.run(main())
