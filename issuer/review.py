"""TokenReview decisions: the pure verifier core, then the online checks, in kube's order.

::

    verify(token, published keys, Policy(issuer, requested audiences, leeway, allow_legacy=True))
        issuer → parse → kid → signature → audience → exp/nbf/iat        (verifier.core)
    legacy token?  audiences = API audiences ∩ requested                   (kube: jwt.go)
                   Secret exists → holds this token → SA exists with uid   (kube: legacy.go)
    bound token:   SA exists with uid → bound secret → pod → node          (kube: claims.go)
    token (jti) not revoked, signing key not revoked                       (sa-oidc)

:func:`review_token` does no I/O of its own: objects come from an :class:`ObjectGetter` (a
:class:`issuer.store.Store` is one) and revocation from a callable. A getter that cannot reach its
backend raises :class:`issuer.store.StoreUnavailable`, which propagates: the caller answers with an
error, never ``authenticated: true`` (docs/CONTRACTS.md "Failure rules").

Error texts are kube-apiserver's, so a kube-apiserver using this endpoint as its token webhook
reports what a native cluster would. Bad tokens of every other kind get the generic "invalid bearer
token" (kube: bearertoken authenticator) — details stay in ``reason`` for logs and metrics.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from issuer.goquote import go_quote, go_quote_list
from issuer.store.base import NotFound
from verifier import InvalidToken, KeySet, Policy, ServiceAccountIdentity, verify
from verifier._json import loads_object
from verifier.jws import parse_compact
from verifier.policy import SUPPORTED_ALGORITHMS

__all__ = [
    "ObjectGetter",
    "ReviewResult",
    "ReviewSettings",
    "review_token",
]

INVALID_BEARER_TOKEN: Final = "invalid bearer token"  # noqa: S105 - an error text
INVALIDATED: Final = "service account token has been invalidated"
_ALL_ALGORITHMS: Final = tuple(sorted(SUPPORTED_ALGORITHMS))


class ObjectGetter(Protocol):
    """Where the online checks read objects; :class:`issuer.store.Store` satisfies it."""

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Return the object; raise NotFound (or StoreUnavailable)."""


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """The issuer-side inputs of a review."""

    issuer: str
    api_audiences: tuple[str, ...]
    leeway: int = 60


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """The outcome of one review.

    ``error`` is the kube-style text for the caller; ``reason`` a stable code for logs/metrics
    (a verifier reason, or one of ``service_account_not_found``, ``service_account_uid_mismatch``,
    ``bound_object_not_found``, ``bound_object_uid_mismatch``, ``legacy_secret_not_found``,
    ``legacy_token_mismatch``, ``revoked``, ``token_revoked``; "" on success).
    """

    authenticated: bool
    error: str = ""
    reason: str = ""
    identity: ServiceAccountIdentity | None = None
    audiences: tuple[str, ...] = field(default=())

    def status(self) -> dict[str, Any]:
        """The TokenReview ``status`` (authentication.k8s.io/v1 TokenReviewStatus)."""
        if not self.authenticated or self.identity is None:
            return {"authenticated": False, "user": {}, "error": self.error}
        ident = self.identity
        user: dict[str, Any] = {"username": ident.username}
        if ident.service_account_uid:
            user["uid"] = ident.service_account_uid
        user["groups"] = list(ident.groups)
        extra = _extra(ident)
        if extra:
            user["extra"] = extra
        return {"authenticated": True, "user": user, "audiences": list(self.audiences)}


def _extra(ident: ServiceAccountIdentity) -> dict[str, list[str]]:
    # kube: apiserver/pkg/authentication/serviceaccount/util.go ServiceAccountInfo.UserInfo:
    # pod name+uid together, credential id, node name (node uid only with a node name).
    out: dict[str, list[str]] = {}
    if ident.pod_name and ident.pod_uid:
        out["authentication.kubernetes.io/pod-name"] = [ident.pod_name]
        out["authentication.kubernetes.io/pod-uid"] = [ident.pod_uid]
    if ident.token_id:
        out["authentication.kubernetes.io/credential-id"] = [f"JTI={ident.token_id}"]
    if ident.node_name:
        out["authentication.kubernetes.io/node-name"] = [ident.node_name]
        if ident.node_uid:
            out["authentication.kubernetes.io/node-uid"] = [ident.node_uid]
    return out


def _fail(error: str, reason: str) -> ReviewResult:
    return ReviewResult(False, error, reason)


def _audience_error(token_auds: Sequence[str], requested: Sequence[str]) -> ReviewResult:
    # kube: pkg/serviceaccount/jwt.go "token audiences %q is invalid for the target audiences %q"
    return _fail(
        f"token audiences {go_quote_list(token_auds)} is invalid for the target audiences "
        f"{go_quote_list(requested)}",
        "audience_mismatch",
    )


def _verified_audiences(token: str) -> list[str]:
    """The ``aud`` of a token whose signature verify() has already checked (it checks audiences
    only after the signature), for the audience error text."""
    parsed = parse_compact(token)
    claims = loads_object(parsed.payload)
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _header_kid(token: str) -> str | None:
    try:
        return parse_compact(token).header.kid
    except InvalidToken:
        return None


def _map_invalid(
    err: InvalidToken, token: str, requested: Sequence[str], is_revoked: Callable[[str], bool]
) -> ReviewResult:
    reason = err.reason
    if reason == "unknown_key":
        # Revoked keys leave the published key set at once; say why the kid is unknown.
        kid = _header_kid(token)
        if kid is not None and is_revoked(kid):
            return _fail(INVALIDATED, "revoked")
    elif reason == "expired":
        return _fail("service account token has expired", reason)  # kube: claims.go
    elif reason == "not_yet_valid":
        return _fail("service account token is not valid yet", reason)  # kube: claims.go
    elif reason == "audience_mismatch":
        return _audience_error(_verified_audiences(token), requested)
    return _fail(INVALID_BEARER_TOKEN, reason)


def _get(objects: ObjectGetter, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return objects.get_object(kind, namespace, name)
    except NotFound:
        return None


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _check_legacy(
    token: str, ident: ServiceAccountIdentity, objects: ObjectGetter
) -> ReviewResult | None:
    # kube: pkg/serviceaccount/legacy.go legacyValidator.Validate (texts verbatim).
    ns = ident.namespace
    secret = _get(objects, "Secret", ns, ident.secret_name or "")
    if secret is None:
        return _fail("Token has been invalidated", "legacy_secret_not_found")
    stored = (secret.get("data") or {}).get("token", "")
    try:
        stored_bytes = base64.b64decode(stored, validate=True) if isinstance(stored, str) else b""
    except (binascii.Error, ValueError):
        stored_bytes = b""
    if not hmac.compare_digest(stored_bytes, token.encode()):
        return _fail("Token does not match server's copy", "legacy_token_mismatch")
    sa = _get(objects, "ServiceAccount", ns, ident.service_account_name)
    if sa is None:
        return _fail(
            f"serviceaccounts {go_quote(ident.service_account_name)} not found",
            "service_account_not_found",
        )
    if _uid(sa) != ident.service_account_uid:
        return _fail(
            f"ServiceAccount UID ({_uid(sa)}) does not match claim ({ident.service_account_uid})",
            "service_account_uid_mismatch",
        )
    return None


def _check_bound(ident: ServiceAccountIdentity, objects: ObjectGetter) -> ReviewResult | None:
    # kube: pkg/serviceaccount/claims.go validator.Validate (texts verbatim).
    ns = ident.namespace
    sa = _get(objects, "ServiceAccount", ns, ident.service_account_name)
    if sa is None:
        return _fail(
            f"serviceaccounts {go_quote(ident.service_account_name)} not found",
            "service_account_not_found",
        )
    if _uid(sa) != (ident.service_account_uid or ""):
        return _fail(
            f"service account UID ({_uid(sa)}) does not match claim "
            f"({ident.service_account_uid or ''})",
            "service_account_uid_mismatch",
        )
    if ident.secret_name:
        failure = _check_ref(objects, "Secret", ns, ident.secret_name, ident.secret_uid)
        if failure is not None:
            return failure
    if ident.pod_name:
        return _check_ref(objects, "Pod", ns, ident.pod_name, ident.pod_uid)
    if ident.node_name:
        # A node claim on a pod-bound token is informational only (kube: claims.go); a
        # node-bound token needs the node to exist with that uid.
        return _check_ref(objects, "Node", "", ident.node_name, ident.node_uid)
    return None


def _check_ref(
    objects: ObjectGetter, kind: str, namespace: str, name: str, claimed_uid: str | None
) -> ReviewResult | None:
    """The bound object exists with the uid in the token (kube: claims.go, texts verbatim:
    "<kind> UID (%s) does not match service account <kind> ref claim (%s)")."""
    obj = _get(objects, kind, namespace, name)
    if obj is None:
        return _fail(INVALIDATED, "bound_object_not_found")
    if _uid(obj) != (claimed_uid or ""):
        label = kind.lower()
        return _fail(
            f"{label} UID ({_uid(obj)}) does not match service account {label} ref claim "
            f"({claimed_uid or ''})",
            "bound_object_uid_mismatch",
        )
    return None


def review_token(
    token: str,
    requested_audiences: Sequence[str],
    *,
    keyset: KeySet,
    is_revoked: Callable[[str], bool],
    objects: ObjectGetter,
    settings: ReviewSettings,
    now: float,
    is_token_revoked: Callable[[str], bool] | None = None,
) -> ReviewResult:
    """Decide a TokenReview (see the module docstring for the order of checks).

    ``requested_audiences`` empty means the issuer's API audiences (kube: tokenreview/storage.go).
    ``is_token_revoked(jti)``, when given, refuses tokens revoked one by one (issuer.revocations).
    Raises StoreUnavailable (from ``objects``) when the online checks cannot be made.
    """
    requested = tuple(a for a in requested_audiences if a)
    if requested_audiences and not requested:
        # Only empty audiences: nothing can match them; never widen to the API audiences.
        return _fail(
            f"target audiences {go_quote_list(requested_audiences)} are invalid",
            "audience_mismatch",
        )
    requested = requested or settings.api_audiences
    policy = Policy(
        issuer=settings.issuer,
        audiences=requested,
        algorithms=_ALL_ALGORITHMS,
        leeway=settings.leeway,
        allow_legacy=True,
    )
    try:
        ident = verify(token, keyset, policy, now=now)
    except InvalidToken as err:
        return _map_invalid(err, token, requested, is_revoked)

    if ident.legacy:
        # Legacy tokens have no aud: they count as API-audience tokens (kube: jwt.go).
        token_auds = settings.api_audiences
        auds = tuple(a for a in token_auds if a in requested)
        if not auds:
            return _audience_error(token_auds, requested)
        failure = _check_legacy(token, ident, objects)
    else:
        auds = tuple(a for a in ident.audiences if a in requested)
        failure = _check_bound(ident, objects)
    if failure is not None:
        return failure
    if is_token_revoked is not None and ident.token_id and is_token_revoked(ident.token_id):
        return _fail(INVALIDATED, "token_revoked")
    if ident.key_id is not None and is_revoked(ident.key_id):
        return _fail(INVALIDATED, "revoked")
    return ReviewResult(True, identity=ident, audiences=auds)
