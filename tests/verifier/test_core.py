"""verify(): one row per reason code (go-oidc verify_test.go style), plus the happy paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from _core_helpers import (
    AUDIENCE,
    DROP,
    ISSUER,
    NOW,
    claims,
    ec_key,
    jwk_for,
    make_token,
    rsa_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier import InvalidToken, KeySet, Policy, ServiceAccountIdentity, verify
from verifier import claims as claims_mod
from verifier.errors import REASONS

RSA = rsa_key(0)
RSA_OTHER = rsa_key(1)
EC = ec_key("ES256")
KEYS = KeySet.from_jwks({"keys": [jwk_for(RSA), jwk_for(EC)]})


def legacy_claims(**extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:default:app",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/service-account.name": "app",
        "kubernetes.io/serviceaccount/service-account.uid": "91e0f4b2-sa",
        "kubernetes.io/serviceaccount/secret.name": "app-token-x7k2p",
    }
    c.update(extra)
    return c


@dataclass
class Row:
    name: str
    token: Callable[[], str | bytes]
    reason: str | None  # None = valid
    policy: dict[str, Any] = field(default_factory=dict)
    now: float = NOW


def tok(**kw: Any) -> Callable[[], str]:
    return lambda: make_token(RSA, "RS256", **kw)


ROWS = [
    # --- valid ---
    Row("valid RS256", tok(), None),
    Row("valid ES256", lambda: make_token(EC, "ES256"), None),
    Row("valid bytes token", lambda: make_token(RSA).encode(), None),
    Row("valid aud as string", tok(payload=claims(aud=AUDIENCE)), None),
    Row("valid exp within leeway", tok(payload=claims(exp=NOW - 30)), None),
    Row("valid typ JWT", tok(header={"typ": "JWT"}), None),
    Row("valid typ application/jwt", tok(header={"typ": "application/JWT"}), None),
    Row("valid no kid, require_kid off", tok(kid=None), None, {"require_kid": False}),
    Row("valid legacy when allowed", tok(payload=legacy_claims()), None, {"allow_legacy": True}),
    # --- one row per reason code ---
    Row("token_too_large", lambda: make_token(RSA) + "A" * 20000, "token_too_large"),
    Row("malformed: two segments", lambda: make_token(RSA).rsplit(".", 1)[0], "malformed"),
    Row("unsupported_algorithm: ES256 not allowed", lambda: make_token(EC, "ES256"),
        "unsupported_algorithm", {"algorithms": ("RS256",)}),
    Row("unknown_key", tok(kid="no-such-kid"), "unknown_key"),
    Row("bad_signature", lambda: make_token(RSA_OTHER, kid=jwk_for(RSA)["kid"]), "bad_signature"),
    Row("issuer_mismatch", tok(payload=claims(iss=ISSUER + "/")), "issuer_mismatch"),
    Row("audience_mismatch", tok(payload=claims(aud=["other"])), "audience_mismatch"),
    Row("expired", tok(payload=claims(exp=NOW - 60)), "expired"),
    Row("not_yet_valid: nbf", tok(payload=claims(nbf=NOW + 61)), "not_yet_valid"),
    Row("missing_claim: exp", tok(payload=claims(exp=DROP)), "missing_claim"),
    Row("invalid_claim: sub", tok(payload=claims(sub="alice")), "invalid_claim"),
    # --- more rows on the same reasons ---
    Row("malformed: payload not JSON", tok(payload=b"not json"), "malformed"),
    Row("malformed: payload JSON array", tok(payload=b"[1,2]"), "malformed"),
    Row("malformed: no kid while required", tok(kid=None), "malformed"),
    Row("malformed: typ at+jwt", tok(header={"typ": "at+jwt"}), "malformed"),
    Row("not_yet_valid: iat in the future", tok(payload=claims(iat=NOW + 120)), "not_yet_valid"),
    Row("valid: nbf within leeway", tok(payload=claims(nbf=NOW + 60)), None),
    Row("expired exactly at exp+leeway", tok(payload=claims(exp=NOW - 60)), "expired"),
    Row("missing_claim: iss", tok(payload=claims(iss=DROP)), "missing_claim"),
    Row("missing_claim: aud", tok(payload=claims(aud=DROP)), "missing_claim"),
    Row("missing_claim: sub", tok(payload=claims(sub=DROP)), "missing_claim"),
    Row("missing_claim: kubernetes.io", tok(payload=claims(kubernetes_io=DROP)), "missing_claim"),
    Row("invalid_claim: kubernetes.io not object", tok(payload=claims(kubernetes_io="x")),
        "invalid_claim"),
    Row("invalid_claim: sub/namespace disagree",
        tok(payload=claims(sub="system:serviceaccount:kube-system:app")), "invalid_claim"),
    Row("invalid_claim: sub/name disagree",
        tok(payload=claims(sub="system:serviceaccount:default:other")), "invalid_claim"),
    Row("invalid_claim: sub with extra colon",
        tok(payload=claims(sub="system:serviceaccount:default:app:x")), "invalid_claim"),
    Row("invalid_claim: jti not a string", tok(payload=claims(jti=5)), "invalid_claim"),
    Row("invalid_claim: pod ref not an object",
        tok(payload=claims(kubernetes_io={**claims()["kubernetes.io"], "pod": "p"})),
        "invalid_claim"),
    Row("issuer_mismatch: legacy not allowed", tok(payload=legacy_claims()), "issuer_mismatch"),
    Row("missing_claim: legacy without secret.name",
        tok(payload={k: v for k, v in legacy_claims().items() if "secret" not in k}),
        "missing_claim", {"allow_legacy": True}),
    Row("invalid_claim: legacy sub disagrees",
        tok(payload=legacy_claims(sub="system:serviceaccount:default:other")), "invalid_claim",
        {"allow_legacy": True}),
    Row("expired: legacy with exp in the past", tok(payload=legacy_claims(exp=NOW - 3600)),
        "expired", {"allow_legacy": True}),
    Row("unknown_key: no kid and no key fits ES384", lambda: make_token(ec_key("ES384"), "ES384",
        kid=None), "unknown_key", {"require_kid": False, "algorithms": ("ES384",)}),
    Row("bad_signature: no kid, no key verifies", lambda: make_token(RSA_OTHER, kid=None),
        "bad_signature", {"require_kid": False}),
]  # fmt: skip


def _policy(**kw: Any) -> Policy:
    base: dict[str, Any] = {"issuer": ISSUER, "audiences": [AUDIENCE]}
    base.update(kw)
    return Policy(**base)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_verify_table(row: Row) -> None:
    token = row.token()
    policy = _policy(**row.policy)
    if row.reason is None:
        ident = verify(token, KEYS, policy, now=row.now)
        assert isinstance(ident, ServiceAccountIdentity)
        assert ident.namespace == "default" and ident.service_account_name == "app"
    else:
        with pytest.raises(InvalidToken) as exc:
            verify(token, KEYS, policy, now=row.now)
        assert exc.value.reason == row.reason, exc.value.detail


def test_every_reason_code_has_a_row() -> None:
    # "revoked" is the online verifiers' reason (TokenReview / invalidations); the pure core
    # cannot know about revocation, so it never raises it.
    covered = {r.reason for r in ROWS if r.reason}
    assert covered == REASONS - {"revoked"}


def test_identity_fields_from_bound_token() -> None:
    ident = verify(make_token(RSA), KEYS, _policy(), now=NOW)
    assert ident.username == "system:serviceaccount:default:app"
    assert ident.service_account_uid == "91e0f4b2-sa"
    assert (ident.pod_name, ident.pod_uid) == ("app-6d9f7c-abcde", "7a1d2b3c-pod")
    assert (ident.node_name, ident.node_uid) == ("node-1", "0c4f6f0e-node")
    assert ident.secret_name is None
    assert ident.audiences == (AUDIENCE,)
    assert ident.expires_at == NOW + 3600 and ident.issued_at == NOW - 10
    assert ident.not_before == NOW - 10 and ident.warn_after == NOW + 3000
    assert ident.token_id == "3f1c2a9e-6c1b-4b8f-9c53-0a1b2c3d4e5f"
    assert ident.issuer == ISSUER and ident.key_id == jwk_for(RSA)["kid"]
    assert ident.legacy is False
    assert ident.claims["sub"] == "system:serviceaccount:default:app"
    assert ident.extra["authentication.kubernetes.io/credential-id"] == [
        "JTI=3f1c2a9e-6c1b-4b8f-9c53-0a1b2c3d4e5f"
    ]


def test_identity_fields_from_legacy_token() -> None:
    ident = verify(make_token(RSA, payload=legacy_claims()), KEYS, _policy(allow_legacy=True), NOW)
    assert ident.legacy is True
    assert ident.secret_name == "app-token-x7k2p"
    assert ident.service_account_uid == "91e0f4b2-sa"
    assert ident.expires_at is None and ident.audiences == ()


def test_now_defaults_to_wall_clock() -> None:
    import time

    t = make_token(RSA, payload=claims(exp=int(time.time()) + 600, iat=int(time.time())))
    assert verify(t, KEYS, _policy()).service_account_name == "app"
    with pytest.raises(InvalidToken) as exc:
        verify(make_token(RSA), KEYS, _policy())  # exp is in 2023
    assert exc.value.reason == "expired"


def test_time_boundaries_are_exact() -> None:
    t = make_token(RSA, payload=claims(exp=NOW + 100, nbf=NOW + 50, iat=NOW))
    p = _policy(leeway=0)
    verify(t, KEYS, p, now=NOW + 50)  # nbf == now: valid (RFC 7519 §4.1.5 "before")
    with pytest.raises(InvalidToken, match="not_yet_valid"):
        verify(t, KEYS, p, now=NOW + 49.5)
    verify(t, KEYS, p, now=NOW + 99.9)
    with pytest.raises(InvalidToken, match="expired"):  # "on or after" exp (RFC 7519 §4.1.4)
        verify(t, KEYS, p, now=NOW + 100)


def test_multiple_audiences_intersect() -> None:
    t = make_token(RSA, payload=claims(aud=["a", "b", AUDIENCE]))
    assert verify(t, KEYS, _policy(audiences=["zzz", AUDIENCE]), NOW).audiences == (
        "a",
        "b",
        AUDIENCE,
    )


def test_errors_never_quote_unverified_claims() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    for payload in (
        claims(iss=secret),
        claims(aud=[secret]),
        claims(sub=secret),
        claims(jti=[secret]),
        claims(kubernetes_io={"namespace": secret}),
    ):
        with pytest.raises(InvalidToken) as exc:
            verify(make_token(RSA, payload=payload), KEYS, _policy(), NOW)
        assert secret not in str(exc.value) and secret not in repr(exc.value.args)
    # Unverified (bad signature): nothing from the payload either.
    t = make_token(RSA_OTHER, payload=claims(iss=secret), kid=jwk_for(RSA)["kid"])
    with pytest.raises(InvalidToken) as exc:
        verify(t, KEYS, _policy(), NOW)
    assert exc.value.reason == "bad_signature" and secret not in str(exc.value)


def test_public_api_exports() -> None:
    import verifier

    for name in [
        "KeySet",
        "Policy",
        "verify",
        "OIDCVerifier",
        "AsyncOIDCVerifier",
        "TokenReviewVerifier",
        "HybridVerifier",
        "ServiceAccountIdentity",
        "VerificationError",
        "InvalidToken",
        "VerifierUnavailable",
        "KeySetError",
        "VerifiedTokenCache",
        "BearerTokenFile",
    ]:
        assert name in verifier.__all__


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, verifier; bad = [m for m in ('starlette', 'redis', 'sqlite3', 'httpx', "
        "'yaml', 'cel_expr_python', 'authlib', 'flask', 'django', 'fastapi') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- the inline hot-path checks in claims.bound_identity agree with the validators ---------------


_time_values = (
    st.integers(-(2**40), 2**40)
    | st.integers(NOW - 200, NOW + 200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.text(max_size=3)
    | st.none()
)


def _reference(c: dict[str, Any], policy: Policy, now: float) -> str:
    """Outcome using only the public validate_* functions, in verify()'s order."""
    try:
        claims_mod.validate_iss(c, policy)
        claims_mod.validate_exp(c, now, policy.leeway)
        claims_mod.validate_nbf(c, now, policy.leeway)
        claims_mod.validate_iat(c, now, policy.leeway)
        claims_mod.validate_aud(c, policy)
        claims_mod.validate_jti(c)
        claims_mod.validate_sub(c)
    except InvalidToken as exc:
        return exc.reason
    return "valid"


@settings(max_examples=400, deadline=None)
@given(
    exp=_time_values,
    nbf=_time_values,
    iat=_time_values,
    drop=st.sets(st.sampled_from(["exp", "nbf", "iat"])),
)
def test_hot_path_time_checks_match_validators(
    exp: Any, nbf: Any, iat: Any, drop: set[str]
) -> None:
    c = claims(exp=exp, nbf=nbf, iat=iat)
    for k in drop:
        del c[k]
    policy = _policy()
    try:
        claims_mod.identity_from_claims(c, policy, NOW)
        got = "valid"
    except InvalidToken as exc:
        got = exc.reason
    assert got == _reference(c, policy, NOW)


@settings(max_examples=200, deadline=None)
@given(
    name=st.none() | st.text(max_size=3) | st.integers(),
    uid=st.none() | st.text(max_size=3) | st.integers(),
    kind=st.sampled_from(["pod", "node", "secret"]),
)
def test_hot_path_bound_refs_match_slow_path(name: Any, uid: Any, kind: str) -> None:
    ref = {k: v for k, v in (("name", name), ("uid", uid)) if v is not None}
    kube = {"x": ref}
    expected: Any
    if not isinstance(name, str) or not name or (uid is not None and not isinstance(uid, str)):
        expected = "invalid_claim"
    else:
        expected = (name, uid)
    try:
        got: Any = claims_mod._ref(kube, "x")
    except InvalidToken as exc:
        got = exc.reason
    assert got == expected, kind
