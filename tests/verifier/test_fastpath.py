"""The hand-written fast paths agree with the reference paths; the verified-token cache is safe.

Fast paths under test (docs/BENCHMARKS.md §1):

- ``verify`` (with its fused fast path) versus ``core.verify_reference`` (the plain composition of
  parse_compact → verify_parsed → loads_object → identity_from_claims) AND versus
  ``reference_verify`` below, built from the pre-optimisation parts (split-based parser,
  stdlib-``json`` strict parser, the validators): same identity or same refusal reason, for valid
  tokens, one token per reason and random token/claim mutations.
- ``claims.bound_identity`` (inline checks) versus the validators composed exactly as before the
  rewrite (``_reference_identity`` below).
- ``jws.parse_compact`` (find-based split, inline header cache, tuple.__new__) versus the former
  split-based parser; ``_json``'s translate-based nesting bound versus counting brackets.
- ``ServiceAccountIdentity`` (one-tuple ``__slots__`` class) keeps the dataclass semantics.
- PyJWT and joserfc accept exactly the valid tokens we accept and decode the same claims.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jwt as pyjwt
import pytest
from _core_helpers import (
    AUDIENCE,
    DROP,
    ISSUER,
    NOW,
    b64,
    claims,
    ec_key,
    jwk_for,
    kube_kid,
    make_token,
    rsa_key,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwk as jrfc_jwk
from joserfc import jwt as jrfc_jwt
from joserfc.errors import JoseError

from verifier import (
    InvalidToken,
    KeySet,
    Policy,
    ServiceAccountIdentity,
    VerifiedTokenCache,
    verify,
)
from verifier import claims as claims_mod
from verifier._b64 import Base64Error, b64url_decode
from verifier._json import NOT_OPENERS, JSONError, _depth_ok, loads_object_slow
from verifier.core import verify_reference
from verifier.identity import FIELD_NAMES, _from_values
from verifier.jws import ParsedJWS, header_cache, parse_compact, parse_header, to_bytes

RSA = rsa_key(0)
RSA_OTHER = rsa_key(1)
EC = ec_key("ES256")
EC384 = ec_key("ES384")
KEYS = KeySet.from_jwks(
    {"keys": [jwk_for(RSA), jwk_for(EC), jwk_for(EC384), jwk_for(RSA_OTHER, kid="rs-any", alg="")]}
)


def _policy(**kw: Any) -> Policy:
    base: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ("RS256", "RS384", "ES256", "ES384"),
    }
    base.update(kw)
    return Policy(**base)


POLICY = _policy()


def outcome(fn: Callable[[], ServiceAccountIdentity]) -> Any:
    """An identity's full field tuple, or the refusal reason."""
    try:
        ident = fn()
    except InvalidToken as exc:
        return exc.reason
    return ("ok", ident, ident.to_dict())


def reference_verify(
    token: str | bytes, keys: KeySet, policy: Policy, now: float
) -> ServiceAccountIdentity:
    """verify() from the pre-optimisation parts: split parser, stdlib JSON, validators only."""
    parsed = ParsedJWS(*_parse_compact_split(token, policy.max_token_bytes))
    key = keys.verify_parsed(parsed, frozenset(policy.algorithms), policy.require_kid)
    try:
        c = loads_object_slow(parsed.payload)
    except JSONError:
        raise InvalidToken("malformed", "payload is not a strict JSON object") from None
    return _reference_identity(c, policy, now, key.kid)


def both(token: str | bytes, policy: Policy = POLICY, now: float = NOW, keys: KeySet = KEYS) -> Any:
    fast = outcome(lambda: verify(token, keys, policy, now))
    plain = outcome(lambda: verify_reference(token, keys, policy, now))
    ref = outcome(lambda: reference_verify(token, keys, policy, now))
    assert fast == plain == ref, (fast, plain, ref)
    return fast


# --- verify() == verify_reference() == reference_verify() ----------------------------------------

HEADER_JSON = b'{"alg":"RS256","kid":"' + kube_kid(RSA).encode() + b'"}'

CASES: list[tuple[str, Callable[[], str | bytes], dict[str, Any], Any]] = [
    ("valid RS256", lambda: make_token(RSA), {}, "ok"),
    ("valid ES256", lambda: make_token(EC, "ES256"), {}, "ok"),
    ("valid ES384", lambda: make_token(EC384, "ES384"), {}, "ok"),
    ("valid RS384 on alg-less key", lambda: make_token(RSA_OTHER, "RS384", kid="rs-any"), {}, "ok"),
    ("valid bytes", lambda: make_token(RSA).encode(), {}, "ok"),
    ("valid no kid", lambda: make_token(RSA, kid=None), {"require_kid": False}, "ok"),
    ("no kid, kid required", lambda: make_token(RSA, kid=None), {}, "malformed"),
    ("valid aud string", lambda: make_token(RSA, payload=claims(aud=AUDIENCE)), {}, "ok"),
    ("valid two auds", lambda: make_token(RSA, payload=claims(aud=["x", AUDIENCE])), {}, "ok"),
    (
        "valid float times",
        lambda: make_token(RSA, payload=claims(exp=NOW + 9.5, nbf=NOW - 0.5)),
        {},
        "ok",
    ),
    (
        "valid no nbf/iat/jti/pod/node/warnafter",
        lambda: make_token(
            RSA,
            payload=claims(
                nbf=DROP,
                iat=DROP,
                jti=DROP,
                kubernetes_io={"namespace": "default", "serviceaccount": {"name": "app"}},
            ),
        ),
        {},
        "ok",
    ),
    (
        "valid secret-bound",
        lambda: make_token(
            RSA,
            payload=claims(
                kubernetes_io={
                    "namespace": "default",
                    "serviceaccount": {"name": "app", "uid": "u"},
                    "secret": {"name": "s", "uid": "su"},
                }
            ),
        ),
        {},
        "ok",
    ),
    (
        "valid whitespace JSON (slow JSON path)",
        lambda: make_token(RSA, payload=json.dumps(claims(), indent=1).encode()),
        {},
        "ok",
    ),
    (
        "valid legacy",
        lambda: make_token(
            RSA,
            payload={
                "iss": "kubernetes/serviceaccount",
                "sub": "system:serviceaccount:default:app",
                "kubernetes.io/serviceaccount/namespace": "default",
                "kubernetes.io/serviceaccount/service-account.name": "app",
                "kubernetes.io/serviceaccount/service-account.uid": "u",
                "kubernetes.io/serviceaccount/secret.name": "s",
            },
        ),
        {"allow_legacy": True},
        "ok",
    ),
    ("too large", lambda: make_token(RSA) + "A" * 20000, {}, "token_too_large"),
    ("non-ASCII", lambda: make_token(RSA) + "é", {}, "malformed"),
    ("two segments", lambda: make_token(RSA).rsplit(".", 1)[0], {}, "malformed"),
    ("four segments", lambda: make_token(RSA) + ".AA", {}, "malformed"),
    ("five segments", lambda: make_token(RSA) + ".AA.AA", {}, "malformed"),
    ("empty header", lambda: "." + make_token(RSA).split(".", 1)[1], {}, "malformed"),
    ("empty signature", lambda: make_token(RSA).rsplit(".", 1)[0] + ".", {}, "bad_signature"),
    ("padded payload", lambda: make_token(RSA).replace(".", "=.", 1), {}, "malformed"),
    ("bad b64 in payload", lambda: _poke(make_token(RSA), 1, "*"), {}, "malformed"),
    ("bad b64 in signature", lambda: _poke(make_token(RSA), 2, "+"), {}, "malformed"),
    ("non-canonical signature bits", lambda: _last_bits(make_token(RSA)), {}, "malformed"),
    (
        "alg not allowed",
        lambda: make_token(EC, "ES256"),
        {"algorithms": ("RS256",)},
        "unsupported_algorithm",
    ),
    ("alg does not fit key", lambda: make_token(RSA, "RS384"), {}, "unsupported_algorithm"),
    ("unknown kid", lambda: make_token(RSA, kid="nope"), {}, "unknown_key"),
    ("bad signature", lambda: make_token(RSA_OTHER, kid=kube_kid(RSA)), {}, "bad_signature"),
    (
        "signature of other token",
        lambda: _swap_sig(make_token(RSA), make_token(RSA, payload=claims(jti="x"))),
        {},
        "bad_signature",
    ),
    ("payload not JSON", lambda: make_token(RSA, payload=b"not json"), {}, "malformed"),
    ("payload an array", lambda: make_token(RSA, payload=b"[1]"), {}, "malformed"),
    (
        "duplicate member",
        lambda: make_token(RSA, payload=json.dumps(claims()).encode()[:-1] + b',"iss":"x"}'),
        {},
        "malformed",
    ),
    (
        "duplicate nested member",
        lambda: make_token(
            RSA,
            payload=json.dumps(claims())
            .encode()
            .replace(b'"namespace"', b'"namespace": "x", "namespace"'),
        ),
        {},
        "malformed",
    ),
    (
        "too deep",
        lambda: make_token(RSA, payload=claims(x=json.loads("[" * 20 + "]" * 20))),
        {},
        "malformed",
    ),
    (
        "deep but within bound",
        lambda: make_token(RSA, payload=claims(x=json.loads("[" * 12 + "]" * 12))),
        {},
        "ok",
    ),
    (
        "brackets in strings only (slow JSON path decides)",
        lambda: make_token(RSA, payload=claims(x="{[" * 20)),
        {},
        "ok",
    ),
    (
        "NaN",
        lambda: make_token(RSA, payload=json.dumps(claims()).encode()[:-1] + b',"x":NaN}'),
        {},
        "malformed",
    ),
    (
        "issuer mismatch",
        lambda: make_token(RSA, payload=claims(iss=ISSUER + "/")),
        {},
        "issuer_mismatch",
    ),
    (
        "legacy not allowed",
        lambda: make_token(RSA, payload=claims(iss="kubernetes/serviceaccount")),
        {},
        "issuer_mismatch",
    ),
    ("expired", lambda: make_token(RSA, payload=claims(exp=NOW - 60)), {}, "expired"),
    ("not yet valid", lambda: make_token(RSA, payload=claims(nbf=NOW + 61)), {}, "not_yet_valid"),
    (
        "audience mismatch",
        lambda: make_token(RSA, payload=claims(aud=["x"])),
        {},
        "audience_mismatch",
    ),
    (
        "sub mismatch",
        lambda: make_token(RSA, payload=claims(sub="system:serviceaccount:a:b")),
        {},
        "invalid_claim",
    ),
    (
        "no kubernetes.io",
        lambda: make_token(RSA, payload=claims(kubernetes_io=DROP)),
        {},
        "missing_claim",
    ),
]


def _poke(token: str, segment: int, char: str) -> str:
    parts = token.split(".")
    parts[segment] = parts[segment][:5] + char + parts[segment][6:]
    return ".".join(parts)


def _last_bits(token: str) -> str:
    head, sig = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return f"{head}.{sig[:-1]}{alphabet[alphabet.index(sig[-1]) + 1]}"


def _swap_sig(a: str, b: str) -> str:
    return a.rsplit(".", 1)[0] + "." + b.rsplit(".", 1)[1]


@pytest.mark.parametrize(("name", "token", "policy", "expected"), CASES, ids=[c[0] for c in CASES])
def test_verify_matches_reference(
    name: str, token: Callable[[], str | bytes], policy: dict[str, Any], expected: Any
) -> None:
    t = token()
    p = _policy(**policy)
    for _ in range(2):  # the second round runs with the header cached (fast path engaged)
        got = both(t, p)
        assert (got[0] if isinstance(got, tuple) else got) == expected, name


def test_fast_path_is_taken_for_the_common_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import verifier.core as core_mod

    t = make_token(RSA)
    verify(t, KEYS, POLICY, NOW)
    assert t.encode().split(b".")[0] in header_cache  # fast path precondition
    calls: list[int] = []
    real = core_mod.verify_reference

    def spy(*a: Any, **kw: Any) -> ServiceAccountIdentity:
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(core_mod, "verify_reference", spy)
    verify(t, KEYS, POLICY, NOW)
    assert calls == []
    verify(t.encode(), KEYS, POLICY, NOW)  # bytes: reference path
    assert calls == [1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_token_mutations_agree(data: st.DataObject) -> None:
    token = make_token(RSA) if data.draw(st.booleans()) else make_token(EC, "ES256")
    verify(token, KEYS, POLICY, NOW)  # header cached
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(chars) - 1))
        op = data.draw(st.sampled_from(["set", "del", "ins"]))
        c = data.draw(st.sampled_from([*"AQgw_-.=+/ {}é\x00", "a", "0"]))
        if op == "set":
            chars[i] = c
        elif op == "del":
            del chars[i]
        else:
            chars.insert(i, c)
    both("".join(chars))


# Values a claim may take in the mutation tests: valid-looking and type-confused ones.
claim_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**66)
    | st.integers(NOW - 200, NOW + 4000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "default", "app", AUDIENCE, ISSUER, "system:serviceaccount:default:app"])
    | st.lists(st.sampled_from([AUDIENCE, "x", 1, None]), max_size=3)
    | st.fixed_dictionaries(
        {},
        optional={"name": st.sampled_from(["app", "", 1]), "uid": st.sampled_from(["u", 2, None])},
    )
)
TOP = ["aud", "exp", "iat", "iss", "jti", "nbf", "sub", "kubernetes.io"]
KUBE = ["namespace", "serviceaccount", "pod", "secret", "node", "warnafter"]


@st.composite
def mutated_claims(draw: st.DrawFn) -> dict[str, Any]:
    c = claims()
    for name in draw(st.lists(st.sampled_from(TOP), max_size=3)):
        if draw(st.booleans()):
            c.pop(name, None)
        else:
            c[name] = draw(claim_values)
    kube = c.get("kubernetes.io")
    if isinstance(kube, dict):
        for name in draw(st.lists(st.sampled_from(KUBE), max_size=3)):
            if draw(st.booleans()):
                kube.pop(name, None)
            else:
                kube[name] = draw(claim_values)
    return c


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_claims())
def test_random_claims_signed_agree(c: dict[str, Any]) -> None:
    both(make_token(RSA, payload=c))


# --- claims.bound_identity == the validators composed as before the rewrite ---------------------


def _reference_identity(
    c: dict[str, Any], policy: Policy, now: float, key_id: str | None
) -> ServiceAccountIdentity:
    """identity_from_claims for bound tokens, written with the validators only (pre-fast-path)."""
    if claims_mod.validate_iss(c, policy):
        return claims_mod._legacy_identity(c, policy, now, key_id)
    leeway = policy.leeway
    exp = claims_mod.validate_exp(c, now, leeway)
    nbf = claims_mod.validate_nbf(c, now, leeway)
    iat = claims_mod.validate_iat(c, now, leeway)
    auds = claims_mod.validate_aud(c, policy)
    jti = claims_mod.validate_jti(c)
    namespace, name = claims_mod.validate_sub(c)
    kube = c.get("kubernetes.io")
    if kube is None:
        raise InvalidToken("missing_claim", "kubernetes.io is required")
    if type(kube) is not dict:
        raise InvalidToken("invalid_claim", "kubernetes.io is not an object")
    ns_claim = kube.get("namespace")
    if ns_claim is None:
        raise InvalidToken("missing_claim", "kubernetes.io.namespace is required")
    if kube.get("serviceaccount") is None:
        raise InvalidToken("missing_claim", "kubernetes.io.serviceaccount is required")
    sa_name, sa_uid = claims_mod._ref(kube, "serviceaccount")
    if ns_claim != namespace or sa_name != name:
        raise InvalidToken("invalid_claim", "sub does not match kubernetes.io claims")
    pod_name, pod_uid = claims_mod._ref(kube, "pod")
    secret_name, secret_uid = claims_mod._ref(kube, "secret")
    node_name, node_uid = claims_mod._ref(kube, "node")
    warn = claims_mod._numeric_date(kube, "warnafter")
    return ServiceAccountIdentity(
        namespace=namespace,
        service_account_name=name,
        service_account_uid=sa_uid,
        pod_name=pod_name,
        pod_uid=pod_uid,
        secret_name=secret_name,
        secret_uid=secret_uid,
        node_name=node_name,
        node_uid=node_uid,
        audiences=auds,
        issued_at=None if iat is None else int(iat),
        not_before=None if nbf is None else int(nbf),
        expires_at=None if exp is None else int(exp),
        warn_after=None if warn is None else int(warn),
        token_id=jti,
        issuer=policy.issuer,
        key_id=key_id,
        legacy=False,
        claims=MappingProxyType(c),
    )


@settings(max_examples=1500, deadline=None)
@given(mutated_claims(), st.sampled_from([NOW, NOW - 100, NOW + 3650, NOW + 5000]))
def test_bound_identity_matches_validators(c: dict[str, Any], now: int) -> None:
    fast = outcome(lambda: claims_mod.identity_from_claims(c, POLICY, now, "kid"))
    ref = outcome(lambda: _reference_identity(c, POLICY, now, "kid"))
    assert fast == ref
    if isinstance(fast, tuple):
        # Same values AND same types (an int field never turns into a float or a bool).
        for name in FIELD_NAMES:
            a, b = getattr(fast[1], name), getattr(ref[1], name)
            assert type(a) is type(b) and a == b, name


# --- jws.parse_compact == the former split-based parser ------------------------------------------


def _parse_compact_split(token: str | bytes, max_token_bytes: int = 16 * 1024) -> Any:
    """The parser as it was before the fast path (split, parse_header, b64url_decode)."""
    data = to_bytes(token, max_token_bytes)
    segments = data.split(b".")
    if len(segments) != 3:
        if data[:1] == b"{":
            raise InvalidToken("malformed", "JWS JSON serialization is not accepted")
        if len(segments) == 5:
            raise InvalidToken("malformed", "JWE is not accepted (RFC 7516 compact form)")
        raise InvalidToken("malformed", "not three dot-separated segments (RFC 7515 §7.1)")
    head, body, sig = segments
    if not head:
        raise InvalidToken("malformed", "empty protected header")
    header = parse_header(head)
    try:
        payload = b64url_decode(body)
        signature = b64url_decode(sig)
    except Base64Error:
        raise InvalidToken("malformed", "segment is not canonical base64url") from None
    return (header, data[: len(head) + len(body) + 1], payload, signature)


def _parse_outcome(fn: Callable[[], Any]) -> Any:
    try:
        return tuple(fn())
    except InvalidToken as exc:
        return (exc.reason, str(exc))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "e30", b64(HEADER_JSON), "eyJ", "AA", "AQ", "_-", "{", "é"]),
        min_size=0,
        max_size=6,
    ),
    st.booleans(),
)
def test_parse_compact_matches_split_parser(parts: list[str], as_bytes: bool) -> None:
    token = ".".join(parts)
    tok: str | bytes = token.encode() if as_bytes and token.isascii() else token
    fast = _parse_outcome(lambda: parse_compact(tok))
    ref = _parse_outcome(lambda: _parse_compact_split(tok))
    assert fast == ref
    if len(fast) == 4:
        assert type(parse_compact(tok)).__name__ == "ParsedJWS"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.text('{[]}"a', max_size=60).map(str.encode), st.integers(0, 20))
def test_translate_depth_bound_matches_counting(raw: bytes, max_depth: int) -> None:
    assert _depth_ok(raw, max_depth) == (raw.count(b"{") + raw.count(b"[") <= max_depth)
    assert len(raw.translate(None, NOT_OPENERS)) == raw.count(b"{") + raw.count(b"[")


# --- other implementations agree on what is valid ------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_claims())
def test_pyjwt_and_joserfc_decode_the_same_claims(c: dict[str, Any]) -> None:
    token = make_token(RSA, payload=c)
    got = outcome(lambda: verify(token, KEYS, POLICY, NOW))
    if not isinstance(got, tuple):
        return  # our claim rules are stricter than theirs; nothing to compare
    pub = RSA.public_key()
    decoded = pyjwt.decode(
        token,
        pub,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert decoded == dict(got[1].claims)
    jtok = jrfc_jwt.decode(token, jrfc_jwk.import_key(jwk_for(RSA)), algorithms=["RS256"])
    assert jtok.claims == dict(got[1].claims)


def test_pyjwt_and_joserfc_refuse_what_fails_our_signature_check() -> None:
    pub = RSA.public_key()
    jkey = jrfc_jwk.import_key(jwk_for(RSA))
    good = make_token(RSA)
    for bad in (_swap_sig(good, make_token(RSA, payload=claims(jti="x"))), _poke(good, 1, "A")):
        if bad == good:
            continue
        assert isinstance(both(bad), str)
        with pytest.raises(pyjwt.PyJWTError):
            pyjwt.decode(bad, pub, algorithms=["RS256"], audience=AUDIENCE)
        with pytest.raises((JoseError, ValueError)):
            jrfc_jwt.decode(bad, jkey, algorithms=["RS256"])


# --- ServiceAccountIdentity keeps the dataclass semantics ----------------------------------------

IDENT_KW: dict[str, Any] = {
    "namespace": "ns",
    "service_account_name": "sa",
    "service_account_uid": "sa-uid",
    "pod_name": "p",
    "pod_uid": "p-uid",
    "audiences": ("a",),
    "expires_at": 5,
    "token_id": "j",
}


def test_identity_construction_paths_agree() -> None:
    kw = ServiceAccountIdentity(**IDENT_KW)
    positional = ServiceAccountIdentity(
        "ns", "sa", "sa-uid", "p", "p-uid", None, None, None, None, ("a",), None, None, 5, None, "j"
    )
    defaults = {"audiences": (), "legacy": False}
    values = (*(IDENT_KW.get(n, defaults.get(n)) for n in FIELD_NAMES[:-1]), MappingProxyType({}))
    fast = _from_values(values)
    assert kw == positional == fast
    assert kw.claims == {} and isinstance(kw.claims, MappingProxyType)
    assert kw.legacy is False and kw.audiences == ("a",) and kw.secret_name is None


def test_identity_is_immutable_and_compares_like_a_dataclass() -> None:
    a = ServiceAccountIdentity(**IDENT_KW)
    for name in ("namespace", "claims", "anything"):
        with pytest.raises(dataclasses.FrozenInstanceError):  # an AttributeError, as before
            setattr(a, name, "x")
        with pytest.raises(AttributeError):
            delattr(a, name)
    assert not hasattr(a, "__dict__")
    assert a == ServiceAccountIdentity(**IDENT_KW)
    assert a != ServiceAccountIdentity(**{**IDENT_KW, "pod_uid": "other"})
    assert a != tuple(getattr(a, n) for n in FIELD_NAMES)  # not a tuple
    with pytest.raises(TypeError):
        hash(a)  # like the frozen dataclass: claims is an (unhashable) mapping proxy
    assert copy.copy(a) == a
    r = repr(a)
    assert r.startswith("ServiceAccountIdentity(namespace='ns', service_account_name='sa', ")
    assert all(f"{n}=" in r for n in FIELD_NAMES)
    match a:
        case ServiceAccountIdentity(ns, sa):
            assert (ns, sa) == ("ns", "sa")
        case _:  # pragma: no cover
            pytest.fail("match_args")


def test_identity_derived_views_unchanged() -> None:
    a = ServiceAccountIdentity(**{**IDENT_KW, "node_name": "n", "node_uid": "nu"})
    assert a.username == "system:serviceaccount:ns:sa"
    assert a.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:ns",
        "system:authenticated",
    )
    assert a.extra == {
        "authentication.kubernetes.io/pod-name": ["p"],
        "authentication.kubernetes.io/pod-uid": ["p-uid"],
        "authentication.kubernetes.io/node-name": ["n"],
        "authentication.kubernetes.io/node-uid": ["nu"],
        "authentication.kubernetes.io/credential-id": ["JTI=j"],
    }
    d = a.to_dict()
    assert d["serviceAccount"] == {"name": "sa", "uid": "sa-uid"} and d["secret"] is None
    assert d["node"] == {"name": "n", "uid": "nu"} and d["expiresAt"] == 5
    json.dumps(d)


# --- VerifiedTokenCache --------------------------------------------------------------------------


def test_cache_hit_returns_the_verified_identity() -> None:
    cache = VerifiedTokenCache()
    t = make_token(RSA)
    first = verify(t, KEYS, POLICY, NOW, cache=cache)
    again = verify(t, KEYS, POLICY, NOW + 1, cache=cache)
    assert again is first and first == verify(t, KEYS, POLICY, NOW)
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    assert verify(t.encode(), KEYS, POLICY, NOW, cache=cache) is first  # same bytes, same entry
    assert cache.verify(t, KEYS, POLICY, NOW) is first


def test_cache_never_outlives_exp_and_rechecks_nbf_iat() -> None:
    cache = VerifiedTokenCache()
    p = _policy(leeway=0)
    c = claims(exp=NOW + 100, nbf=NOW - 0.5, iat=NOW - 0.25)
    t = make_token(RSA, payload=c)
    verify(t, KEYS, p, NOW, cache=cache)
    assert len(cache) == 1
    verify(t, KEYS, p, NOW + 99.9, cache=cache)
    # The same reasons as an uncached verify at that time, entry by entry.
    for now in (NOW + 100, NOW - 0.4, NOW - 0.3, NOW + 1e9):
        with pytest.raises(InvalidToken) as cached:
            verify(t, KEYS, p, now, cache=cache)
        with pytest.raises(InvalidToken) as fresh:
            verify(t, KEYS, p, now)
        assert cached.value.reason == fresh.value.reason
    assert len(cache) == 0  # an expired entry is dropped
    with pytest.raises(InvalidToken, match="expired"):
        verify(t, KEYS, p, NOW + 100, cache=cache)


def test_cache_applies_the_policy_leeway() -> None:
    cache = VerifiedTokenCache()
    t = make_token(RSA, payload=claims(exp=NOW + 10))
    verify(t, KEYS, POLICY, NOW, cache=cache)  # leeway 60
    verify(t, KEYS, POLICY, NOW + 69, cache=cache)
    with pytest.raises(InvalidToken) as exc:
        verify(t, KEYS, POLICY, NOW + 70, cache=cache)
    assert exc.value.reason == "expired"


def test_cache_misses_on_another_policy_or_key_set() -> None:
    cache = VerifiedTokenCache()
    t = make_token(RSA)
    verify(t, KEYS, POLICY, NOW, cache=cache)
    # Another policy object (even an equal one) misses, and its own rules apply.
    with pytest.raises(InvalidToken) as exc:
        verify(t, KEYS, _policy(audiences=["other"]), NOW, cache=cache)
    assert exc.value.reason == "audience_mismatch"
    with pytest.raises(InvalidToken) as exc:
        verify(t, KEYS, _policy(algorithms=("ES256",)), NOW, cache=cache)
    assert exc.value.reason == "unsupported_algorithm"
    verify(t, KEYS, _policy(), NOW, cache=cache)
    assert cache.hits == 0
    # A rotated key set without the key: the cached success must not be served.
    rotated = KeySet.from_jwks({"keys": [jwk_for(EC)]})
    with pytest.raises(InvalidToken) as exc:
        verify(t, rotated, POLICY, NOW, cache=cache)
    assert exc.value.reason == "unknown_key"
    assert cache.hits == 0


def test_cache_stores_no_failures_and_no_tokens() -> None:
    cache = VerifiedTokenCache()
    bad = [
        make_token(RSA_OTHER, kid=kube_kid(RSA)),
        make_token(RSA, payload=claims(exp=NOW - 100)),
        make_token(RSA) + "A" * 20000,
        make_token(RSA) + "é",
        "garbage",
    ]
    for t in bad:

        def cached(t: str = t) -> ServiceAccountIdentity:
            return verify(t, KEYS, POLICY, NOW, cache=cache)

        for _ in range(2):
            assert both(t) == outcome(cached)
    assert len(cache) == 0 and cache.hits == 0
    good = make_token(RSA)
    verify(good, KEYS, POLICY, NOW, cache=cache)
    for key in cache._entries:
        assert good.encode() not in key[0] and len(key[0]) == 32


def test_cache_does_not_keep_legacy_tokens() -> None:
    cache = VerifiedTokenCache()
    t = make_token(
        RSA,
        payload={
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:default:app",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/service-account.name": "app",
            "kubernetes.io/serviceaccount/service-account.uid": "u",
            "kubernetes.io/serviceaccount/secret.name": "s",
        },
    )
    p = _policy(allow_legacy=True)
    assert verify(t, KEYS, p, NOW, cache=cache).legacy
    assert len(cache) == 0


def test_cache_is_bounded_lru() -> None:
    cache = VerifiedTokenCache(max_entries=3)
    tokens = [make_token(RSA, payload=claims(jti=f"j{i}")) for i in range(5)]
    for t in tokens[:3]:
        verify(t, KEYS, POLICY, NOW, cache=cache)
    verify(tokens[0], KEYS, POLICY, NOW, cache=cache)  # touch: tokens[1] is now the oldest
    verify(tokens[3], KEYS, POLICY, NOW, cache=cache)
    assert len(cache) == 3
    hits = cache.hits
    verify(tokens[0], KEYS, POLICY, NOW, cache=cache)
    assert cache.hits == hits + 1
    verify(tokens[1], KEYS, POLICY, NOW, cache=cache)
    assert cache.hits == hits + 1  # evicted
    for t in tokens:
        verify(t, KEYS, POLICY, NOW, cache=cache)
    assert len(cache) == 3
    with pytest.raises(ValueError):
        VerifiedTokenCache(max_entries=0)
    cache.clear()
    assert len(cache) == 0 and "VerifiedTokenCache(" in repr(cache)


def test_cache_concurrent_use() -> None:
    cache = VerifiedTokenCache(max_entries=4)
    tokens = [make_token(RSA, payload=claims(jti=f"c{i}")) for i in range(8)]
    expected = {t: verify(t, KEYS, POLICY, NOW) for t in tokens}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(300):
                t = tokens[(i * 7 + seed) % len(tokens)]
                assert verify(t, KEYS, POLICY, NOW, cache=cache) == expected[t]
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(cache) <= 4
