"""docs/CONTRACTS.md "What good verifiers do": the items no other
test pinned yet. The map from each item to its tests: docs/SECURITY.md §5.

Real components only: the issuer app in-process (its TestClient is the verifier's httpx client) or
the discovery + JWKS stand-in of tests/verifier/jwks_server.py on a loopback socket; clocks are
injected so cache ages and cooldowns need no sleeping.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from typing import Any

import _security_jwks_server as js  # loaded by conftest.py (tests/verifier/jwks_server.py)
import pytest

from verifier import AsyncOIDCVerifier, InvalidToken, OIDCVerifier, TokenReviewVerifier


class Clock:
    """Starts at real time; moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _jwks_fetches(api: Any) -> int:
    """JWKS requests the issuer app has answered (its own Prometheus counter)."""
    text = api.client.get("/metrics").text
    pattern = r'sa_issuer_http_requests_total\{route="/openid/v1/jwks",[^}]*\} (\d+)'
    return sum(int(m.group(1)) for m in re.finditer(pattern, text))


def _offline(api: Any, clock: Callable[[], float] = time.time, **kw: Any) -> OIDCVerifier:
    """An OIDCVerifier talking to the in-process issuer (its TestClient is the transport)."""
    issuer = api.ctx.config.issuer
    return OIDCVerifier(
        issuer,
        [api.ctx.api_audiences[0]],
        client=api.client,
        insecure_allow_http=True,  # loopback issuer of the test app
        clock=clock,
        **kw,
    )


def _setup(api: Any) -> None:
    api.ns("dev")
    api.sa("dev", "app")


# --- panva/jose defaults: 5 s fetch timeout, 30 s cooldown, 10 min max cache age ----------------


@pytest.mark.parametrize("cls", [OIDCVerifier, AsyncOIDCVerifier])
def test_panva_jose_defaults(cls: type[Any]) -> None:
    params = inspect.signature(cls).parameters
    assert params["timeout"].default == 5.0  # panva/jose timeoutDuration; AWS gives up at 5 s
    assert params["refetch_cooldown"].default == 30.0  # panva/jose cooldownDuration
    assert params["max_cache"].default == 600.0  # panva/jose cacheMaxAge (10 min)
    assert inspect.signature(TokenReviewVerifier).parameters["timeout"].default == 5.0


def test_default_verifier_caps_cache_at_10_min_and_cools_down_30_s() -> None:
    """The defaults in action on a fake clock: a year-long max-age is still refetched after 10
    minutes, and unknown kids refetch at most once per 30 s."""
    clock = Clock()
    with js.JWKSServer() as srv:
        srv.keys = [js.rsa_key()]
        srv.cache_control = "public, max-age=31536000"
        with OIDCVerifier(srv.issuer, [js.AUDIENCE], insecure_allow_http=True, clock=clock) as v:
            token = js.token_for(srv, js.rsa_key(), now=clock.now, ttl=100_000)
            v.verify(token)
            assert srv.counts["jwks"] == 1
            clock.advance(599)
            v.verify(token)
            time.sleep(0.05)
            assert srv.counts["jwks"] == 1  # fresh for (at most) 600 s
            clock.advance(2)
            v.verify(token)  # stale: served, one refresh in the background
            wait_for(lambda: srv.counts["jwks"] == 2)
            # Unknown kids: the refresh at t=601 started the 30 s cooldown.
            clock.advance(29)
            for i in range(20):
                with pytest.raises(InvalidToken, match="unknown_key"):
                    v.verify(js.token_for(srv, js.rsa_key(), now=clock.now, kid=f"random-{i}"))
            assert srv.counts["jwks"] == 2
            clock.advance(2)
            with pytest.raises(InvalidToken, match="unknown_key"):
                v.verify(js.token_for(srv, js.rsa_key(), now=clock.now, kid="random-x"))
            assert srv.counts["jwks"] == 3


# --- PyJWT: cached keys never expired (cache_keys=True) -----------------------------------------


def test_a_key_removed_from_the_jwks_stops_verifying_without_an_unknown_kid() -> None:
    """PyJWT's PyJWKClient(cache_keys=True) kept a key forever once fetched, so a key the issuer
    withdrew kept verifying. Here the cache ages out: after max_cache the withdrawn key is gone,
    though no unknown kid ever triggered a refetch."""
    clock = Clock()
    with js.JWKSServer() as srv:
        srv.keys = [js.rsa_key(), js.ec_key()]
        srv.cache_control = "public, max-age=3600"
        with OIDCVerifier(srv.issuer, [js.AUDIENCE], insecure_allow_http=True, clock=clock) as v:
            withdrawn = js.token_for(srv, js.rsa_key(), now=clock.now, ttl=100_000)
            assert v.verify(withdrawn).key_id == js.rsa_key().kid
            srv.keys = [js.ec_key()]  # e.g. an emergency revocation
            clock.advance(601)
            v.verify(withdrawn)  # stale set still served while the refresh runs...
            wait_for(lambda: srv.counts["jwks"] == 2)
            wait_for(lambda: js.rsa_key().kid not in v._cache.entry.keys.kids)  # type: ignore[union-attr]
            with pytest.raises(InvalidToken, match="unknown_key"):
                v.verify(withdrawn)  # ...and then never again


# --- Kubernetes' OIDC authenticator never refetched on an unknown kid ---------------------------


def test_immediate_rotation_on_the_real_issuer_is_picked_up_by_a_warm_verifier(api: Any) -> None:
    """kube's authenticator once loaded keys only at start: after a rotation every new token
    failed. Against the real issuer app: a verifier with a fresh cache meets the new kid, refetches
    once, accepts the new token, still accepts the old one (retired key stays published), and
    random kids inside the cooldown cause no fetch and do not disturb known keys."""
    _setup(api)
    clock = Clock()
    v = _offline(api, clock=clock)
    old = api.token("dev", "app")
    old_kid = v.verify(old).key_id
    assert _jwks_fetches(api) == 1
    clock.advance(31)  # past the cooldown of the first fetch
    api.ctx.keys.rotate(immediately=True)  # breaks invariant 1 on purpose: a cached JWKS is stale
    new = api.token("dev", "app")
    ident = v.verify(new)
    assert ident.key_id != old_kid
    assert _jwks_fetches(api) == 2
    assert v.verify(old).key_id == old_kid
    for i in range(20):
        forged = js.sign_token(js.rsa_key(), js.claims_for(api.ctx.config.issuer), kid=f"r{i}")
        with pytest.raises(InvalidToken, match="unknown_key"):
            v.verify(forged)
    assert v.verify(new).key_id == ident.key_id
    assert _jwks_fetches(api) == 2  # the random-kid flood cost nothing upstream


# --- clock skew: tokens "from the future" -------------------------------------------------------


@pytest.mark.parametrize(("skew", "ok"), [(30, True), (59, True), (120, False)])
def test_control_plane_skew_is_absorbed_by_a_small_explicit_leeway(
    api: Any, skew: int, ok: bool
) -> None:
    """The issuer's clock runs ``skew`` s ahead (iat = nbf in the verifier's future): the default
    60 s leeway absorbs it, and no more."""
    _setup(api)
    api.clock.offset = skew
    token = api.token("dev", "app")
    api.clock.offset = 0
    v = _offline(api)
    assert v.policy.leeway == 60
    if ok:
        assert v.verify(token).service_account_name == "app"
    else:
        with pytest.raises(InvalidToken) as exc:
            v.verify(token)
        assert exc.value.reason == "not_yet_valid"


# --- trailing slash, end to end on the real issuer ----------------------------------------------


def test_trailing_slash_is_another_issuer_end_to_end(api: Any) -> None:
    """AWS IRSA / go-oidc users' most common mistake: ``https://x`` vs ``https://x/``. A verifier
    configured with the slash refuses every token from the real issuer (could not check: a
    configuration error), and never fetches its keys."""
    _setup(api)
    token = api.token("dev", "app")
    issuer = api.ctx.config.issuer
    assert not issuer.endswith("/")
    with OIDCVerifier(
        issuer + "/",
        [api.ctx.api_audiences[0]],
        client=api.client,
        insecure_allow_http=True,
    ) as v:
        from verifier import VerifierUnavailable

        with pytest.raises(VerifierUnavailable, match="trailing slash"):
            v.verify(token)
    assert _jwks_fetches(api) == 0
