"""JWT claim checks (RFC 7519 §4.1) and the Kubernetes service-account claims.

One small ``validate_<claim>`` per claim, each raising :class:`~verifier.errors.InvalidToken` with a
stable reason; :func:`identity_from_claims` runs them in order and maps the ``kubernetes.io`` claims
(kube: pkg/serviceaccount/claims.go) or the legacy Secret-token claims (kube:
pkg/serviceaccount/legacy.go) to a :class:`~verifier.identity.ServiceAccountIdentity`.

These run only on claims whose signature has been verified. Exception details never quote claim
values (they may be attacker-chosen or sensitive); they name the claim and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from .errors import InvalidToken
from .identity import (
    FIELD_NAMES,
    USERNAME_PREFIX,
    ServiceAccountIdentity,
    new_identity,
    set_identity_values,
)
from .policy import LEGACY_ISSUER, Policy

__all__ = [
    "bound_identity",
    "identity_from_claims",
    "validate_aud",
    "validate_exp",
    "validate_iat",
    "validate_iss",
    "validate_jti",
    "validate_nbf",
    "validate_sub",
]

#: Largest time claim accepted: 9999-12-31T23:59:59Z. Beyond it a value is nonsense.
MAX_TIME: Final = 253402300799

# kube apimachinery validation: namespaces are DNS-1123 labels, service accounts DNS-1123
# subdomains.
_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)

# Parsed, valid subjects (a workload presents the same sub over and over; bounded).
_SUB_CACHE_MAX: Final = 4096
_sub_cache: dict[str, tuple[str, str]] = {}

# ServiceAccountIdentity is built from one positional value tuple on the hot path (identity.py);
# pin the field order so a change to identity.py fails loudly at import, not silently.
if FIELD_NAMES != (
    "namespace",
    "service_account_name",
    "service_account_uid",
    "pod_name",
    "pod_uid",
    "secret_name",
    "secret_uid",
    "node_name",
    "node_uid",
    "audiences",
    "issued_at",
    "not_before",
    "expires_at",
    "warn_after",
    "token_id",
    "issuer",
    "key_id",
    "legacy",
    "claims",
):  # pragma: no cover
    raise ImportError("ServiceAccountIdentity fields changed; update claims.bound_identity")

# Legacy Secret-based token claims (kube: pkg/serviceaccount/legacy.go).
LEGACY_NAMESPACE_CLAIM: Final = "kubernetes.io/serviceaccount/namespace"
LEGACY_SA_NAME_CLAIM: Final = "kubernetes.io/serviceaccount/service-account.name"
LEGACY_SA_UID_CLAIM: Final = "kubernetes.io/serviceaccount/service-account.uid"
LEGACY_SECRET_NAME_CLAIM: Final = "kubernetes.io/serviceaccount/secret.name"  # noqa: S105


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate (RFC 7519 §2): a JSON number, not a bool or string; None when absent."""
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise InvalidToken("invalid_claim", f"{name} is null")
        return None
    t = type(value)
    if (t is not int and t is not float) or not (-MAX_TIME <= value <= MAX_TIME):
        raise InvalidToken("invalid_claim", f"{name} is not a NumericDate in range (RFC 7519 §2)")
    return value  # type: ignore[no-any-return]


def validate_iss(claims: Mapping[str, Any], policy: Policy) -> bool:
    """RFC 7519 §4.1.1: "The "iss" (issuer) claim identifies the principal that issued the JWT."

    Compared exactly, no normalisation (a trailing slash is a different issuer). Returns True for a
    legacy Secret token (issuer ``kubernetes/serviceaccount``) when the policy allows legacy tokens.
    """
    iss = claims.get("iss")
    if iss is None:
        raise InvalidToken("missing_claim", "iss is required")
    if type(iss) is not str:
        raise InvalidToken("invalid_claim", "iss is not a string")
    if iss == policy.issuer:
        return False
    if iss == LEGACY_ISSUER and policy.allow_legacy:
        return True
    raise InvalidToken("issuer_mismatch", "iss is not the expected issuer")


def validate_aud(
    claims: Mapping[str, Any], policy: Policy, required: bool = True
) -> tuple[str, ...]:
    """RFC 7519 §4.1.3: "Each principal intended to process the JWT MUST identify itself with a
    value in the audience claim. If the principal processing the claim does not identify itself
    with a value in the "aud" claim when this claim is present, then the JWT MUST be rejected."

    ``aud`` is a string or an array of strings; it must intersect the policy's audiences.
    """
    aud = claims.get("aud")
    if aud is None:
        if required or "aud" in claims:
            raise InvalidToken("missing_claim", "aud is required")
        return ()
    if type(aud) is str:
        auds: tuple[str, ...] = (aud,)
    elif type(aud) is list:
        auds = tuple(aud)
        for a in auds:
            if type(a) is not str:
                raise InvalidToken("invalid_claim", "aud is not a string or an array of strings")
    else:
        raise InvalidToken("invalid_claim", "aud is not a string or an array of strings")
    if policy._aud_set.isdisjoint(auds):
        raise InvalidToken("audience_mismatch", "no audience of the token is accepted")
    return auds


def validate_exp(
    claims: Mapping[str, Any], now: float, leeway: float, required: bool = True
) -> float | None:
    """RFC 7519 §4.1.4: "The "exp" (expiration time) claim identifies the expiration time on or
    after which the JWT MUST NOT be accepted for processing ... Implementers MAY provide for some
    small leeway, usually no more than a few minutes, to account for clock skew."
    """
    exp = _numeric_date(claims, "exp")
    if exp is None:
        if required:
            raise InvalidToken("missing_claim", "exp is required")
        return None
    if exp + leeway <= now:
        raise InvalidToken("expired", "token has expired")
    return exp


def validate_nbf(claims: Mapping[str, Any], now: float, leeway: float) -> float | None:
    """RFC 7519 §4.1.5: "The "nbf" (not before) claim identifies the time before which the JWT MUST
    NOT be accepted for processing."
    """
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and nbf - leeway > now:
        raise InvalidToken("not_yet_valid", "token is not valid yet")
    return nbf


def validate_iat(claims: Mapping[str, Any], now: float, leeway: float) -> float | None:
    """RFC 7519 §4.1.6: "The "iat" (issued at) claim identifies the time at which the JWT was
    issued."

    A token issued in the future (beyond the leeway) is refused, as kube does (go-jose
    ``ErrIssuedInTheFuture``; kube: claims.go "service account token is issued in the future").
    """
    iat = _numeric_date(claims, "iat")
    if iat is not None and iat - leeway > now:
        raise InvalidToken("not_yet_valid", "token is issued in the future")
    return iat


def validate_jti(claims: Mapping[str, Any]) -> str | None:
    """RFC 7519 §4.1.7: "The "jti" (JWT ID) claim provides a unique identifier for the JWT."

    Must be a string when present.
    """
    jti = claims.get("jti")
    if jti is None:
        if "jti" in claims:
            raise InvalidToken("invalid_claim", "jti is null")
        return None
    if type(jti) is not str:
        raise InvalidToken("invalid_claim", "jti is not a string")
    return jti


def validate_sub(claims: Mapping[str, Any]) -> tuple[str, str]:
    """RFC 7519 §4.1.2: "The "sub" (subject) claim identifies the principal that is the subject of
    the JWT." For service accounts it is ``system:serviceaccount:NS:NAME`` (kube:
    serviceaccount.SplitUsername); returns ``(namespace, name)``.
    """
    sub = claims.get("sub")
    if sub is None:
        raise InvalidToken("missing_claim", "sub is required")
    if type(sub) is not str:
        raise InvalidToken("invalid_claim", "sub is not a service-account username")
    hit = _sub_cache.get(sub)
    if hit is not None:
        return hit
    if not sub.startswith(USERNAME_PREFIX):
        raise InvalidToken("invalid_claim", "sub is not a service-account username")
    parts = sub[len(USERNAME_PREFIX) :].split(":")
    if (
        len(parts) != 2
        or _DNS1123_LABEL.fullmatch(parts[0]) is None
        or _DNS1123_SUBDOMAIN.fullmatch(parts[1]) is None
    ):
        raise InvalidToken("invalid_claim", "sub is not system:serviceaccount:NAMESPACE:NAME")
    result = (parts[0], parts[1])
    if len(_sub_cache) >= _SUB_CACHE_MAX:
        _sub_cache.clear()
    _sub_cache[sub] = result  # only well-formed subjects are cached (bounded)
    return result


def _opt_str(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise InvalidToken("invalid_claim", f"{where}.{name} is not a string")
    return value


def _ref(kube: Mapping[str, Any], kind: str) -> tuple[str | None, str | None]:
    """A bound-object reference ``{name, uid}`` under ``kubernetes.io`` (kube: claims.go ref)."""
    ref = kube.get(kind)
    if ref is None:
        return None, None
    if type(ref) is dict:
        name = ref.get("name")
        uid = ref.get("uid")
        if type(name) is str and name and (uid is None or type(uid) is str):
            return name, uid  # the common, well-formed case
    else:
        raise InvalidToken("invalid_claim", f"kubernetes.io.{kind} is not an object")
    name = _opt_str(ref, "name", f"kubernetes.io.{kind}")
    if not name:
        raise InvalidToken("invalid_claim", f"kubernetes.io.{kind}.name is required")
    return name, _opt_str(ref, "uid", f"kubernetes.io.{kind}")


def bound_identity(
    claims: dict[str, Any], policy: Policy, now: float, key_id: str | None
) -> ServiceAccountIdentity:
    """A bound token (kube: claims.go): every check of :func:`identity_from_claims` after ``iss``.

    Hot path. The usual shapes (in-range integer times, a one-element ``aud`` list, a cached
    ``sub``, well-formed ``{name, uid}`` references) are checked inline with exactly the rules of
    the validators; ANY other shape is handed to the validator itself, which accepts it or raises
    with its own reason. So the inline code can only ever accept what the validators accept and
    the order of refusals is the documented one. tests/verifier/test_core.py and test_fastpath.py
    cross-check this function against the validators.
    """
    get = claims.get
    leeway = policy.leeway
    # RFC 7519 §4.1.4 exp (required), §4.1.5 nbf, §4.1.6 iat: NumericDates (RFC 7519 §2).
    exp = get("exp")
    if type(exp) is int and 0 <= exp <= MAX_TIME:
        if exp + leeway <= now:
            raise InvalidToken("expired", "token has expired")
    else:
        exp_v = validate_exp(claims, now, leeway)
        exp = None if exp_v is None else int(exp_v)
    nbf = get("nbf")
    if type(nbf) is int and 0 <= nbf <= MAX_TIME:
        if nbf - leeway > now:
            raise InvalidToken("not_yet_valid", "token is not valid yet")
    else:
        nbf_v = validate_nbf(claims, now, leeway)
        nbf = None if nbf_v is None else int(nbf_v)
    iat = get("iat")
    if type(iat) is int and 0 <= iat <= MAX_TIME:
        if iat - leeway > now:
            raise InvalidToken("not_yet_valid", "token is issued in the future")
    else:
        iat_v = validate_iat(claims, now, leeway)
        iat = None if iat_v is None else int(iat_v)
    # RFC 7519 §4.1.3 aud: kube-apiserver issues a one-element array.
    aud = get("aud")
    auds: tuple[str, ...]
    if type(aud) is list and len(aud) == 1 and type(aud[0]) is str:
        auds = (aud[0],)
        if auds[0] not in policy._aud_set:
            raise InvalidToken("audience_mismatch", "no audience of the token is accepted")
    else:
        auds = validate_aud(claims, policy)
    # RFC 7519 §4.1.7 jti.
    jti = get("jti")
    if type(jti) is not str:
        jti = validate_jti(claims)
    # RFC 7519 §4.1.2 sub: system:serviceaccount:NS:NAME; well-formed subjects are cached.
    sub = get("sub")
    hit = _sub_cache.get(sub) if type(sub) is str else None
    namespace, name = validate_sub(claims) if hit is None else hit
    # kube: claims.go privateClaims, "kubernetes.io": {namespace, serviceaccount, pod|secret, node}.
    kube = get("kubernetes.io")
    if type(kube) is not dict:
        if kube is None:
            raise InvalidToken("missing_claim", "kubernetes.io is required")
        raise InvalidToken("invalid_claim", "kubernetes.io is not an object")
    kget = kube.get
    ns_claim = kget("namespace")
    if ns_claim is None:
        raise InvalidToken("missing_claim", "kubernetes.io.namespace is required")
    # Each reference: inline for {"name": non-empty str, "uid": str or absent}, else _ref decides.
    ref = kget("serviceaccount")
    if ref is None:
        raise InvalidToken("missing_claim", "kubernetes.io.serviceaccount is required")
    if type(ref) is dict and type(sa_name := ref.get("name")) is str and sa_name:
        sa_uid = ref.get("uid")
        if sa_uid is not None and type(sa_uid) is not str:
            sa_name, sa_uid = _ref(kube, "serviceaccount")
    else:
        sa_name, sa_uid = _ref(kube, "serviceaccount")
    # sub and the private claims must name the same account (kube: claims.go builds both from it).
    if ns_claim != namespace or sa_name != name:
        raise InvalidToken("invalid_claim", "sub does not match kubernetes.io claims")
    ref = kget("pod")
    if ref is None:
        pod_name = pod_uid = None
    elif type(ref) is dict and type(pod_name := ref.get("name")) is str and pod_name:
        pod_uid = ref.get("uid")
        if pod_uid is not None and type(pod_uid) is not str:
            pod_name, pod_uid = _ref(kube, "pod")
    else:
        pod_name, pod_uid = _ref(kube, "pod")
    secret_name, secret_uid = (None, None) if kget("secret") is None else _ref(kube, "secret")
    ref = kget("node")
    if ref is None:
        node_name = node_uid = None
    elif type(ref) is dict and type(node_name := ref.get("name")) is str and node_name:
        node_uid = ref.get("uid")
        if node_uid is not None and type(node_uid) is not str:
            node_name, node_uid = _ref(kube, "node")
    else:
        node_name, node_uid = _ref(kube, "node")
    warn = kget("warnafter")
    if type(warn) is not int or not 0 <= warn <= MAX_TIME:
        warn_v = _numeric_date(kube, "warnafter")
        warn = None if warn_v is None else int(warn_v)
    ident = new_identity(ServiceAccountIdentity)  # identity._from_values, inline (hot path)
    set_identity_values(
        ident,
        (
            namespace,
            name,
            sa_uid,
            pod_name,
            pod_uid,
            secret_name,
            secret_uid,
            node_name,
            node_uid,
            auds,
            iat,
            nbf,
            exp,
            warn,
            jti,
            policy.issuer,
            key_id,
            False,
            MappingProxyType(claims),
        ),
    )
    return ident


def _legacy_identity(
    claims: dict[str, Any], policy: Policy, now: float, key_id: str | None
) -> ServiceAccountIdentity:
    """Legacy Secret-based token (kube: legacy.go): no exp/aud required; checked if present."""
    leeway = policy.leeway
    exp = validate_exp(claims, now, leeway, required=False)
    nbf = validate_nbf(claims, now, leeway)
    iat = validate_iat(claims, now, leeway)
    auds = validate_aud(claims, policy, required=False)
    namespace, name = validate_sub(claims)
    values: dict[str, str] = {}
    for claim in (
        LEGACY_NAMESPACE_CLAIM,
        LEGACY_SA_NAME_CLAIM,
        LEGACY_SA_UID_CLAIM,
        LEGACY_SECRET_NAME_CLAIM,
    ):
        value = claims.get(claim)
        if value is None:
            raise InvalidToken("missing_claim", f"{claim} is required")
        if type(value) is not str or not value:
            raise InvalidToken("invalid_claim", f"{claim} is not a non-empty string")
        values[claim] = value
    # kube: legacy.go "sub claim does not match namespace/service-account.name claims".
    if values[LEGACY_NAMESPACE_CLAIM] != namespace or values[LEGACY_SA_NAME_CLAIM] != name:
        raise InvalidToken("invalid_claim", "sub does not match the legacy claims")
    return ServiceAccountIdentity(
        namespace=namespace,
        service_account_name=name,
        service_account_uid=values[LEGACY_SA_UID_CLAIM],
        secret_name=values[LEGACY_SECRET_NAME_CLAIM],
        audiences=auds,
        issued_at=None if iat is None else int(iat),
        not_before=None if nbf is None else int(nbf),
        expires_at=None if exp is None else int(exp),
        issuer=LEGACY_ISSUER,
        key_id=key_id,
        legacy=True,
        claims=MappingProxyType(claims),
    )


def identity_from_claims(
    claims: dict[str, Any], policy: Policy, now: float, key_id: str | None = None
) -> ServiceAccountIdentity:
    """Check verified ``claims`` against ``policy`` at time ``now``; map them to an identity.

    Order: iss → exp → nbf → iat → aud → jti → sub → ``kubernetes.io``. Time claims come before
    ``aud`` (as in PyJWT and joserfc) so a stale token reports the actionable ``expired`` even when
    it lacks our audience — e.g. RFC 7515 A.2, which has no ``aud``; kube's TokenReview checks the
    audience first, so a token both expired and mis-addressed reads differently there. Reasons:
    ``issuer_mismatch``, ``audience_mismatch``, ``expired``, ``not_yet_valid``, ``missing_claim``,
    ``invalid_claim``.
    """
    iss = claims.get("iss")
    if type(iss) is str and iss == policy.issuer:  # validate_iss's first accepting case
        return bound_identity(claims, policy, now, key_id)
    if validate_iss(claims, policy):
        return _legacy_identity(claims, policy, now, key_id)
    return bound_identity(claims, policy, now, key_id)
