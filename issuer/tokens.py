"""Pure claim building for service-account tokens, exactly as Kubernetes writes them.

- :func:`bound_claims` — a TokenRequest token (kube: pkg/serviceaccount/claims.go ``Claims``):
  ``aud, exp, iat, iss, jti, kubernetes.io{namespace, node?, pod?|secret?|node?, serviceaccount,
  warnafter?}, nbf, sub``; iat = nbf = now; a pod-bound token also carries the pod's node when
  it is known (ServiceAccountTokenPodNodeInfo).
- :func:`plan_expiration` — kube's TokenRequest expiration rules (registry/core/serviceaccount/
  storage/token.go): the configured maximum shortens a longer request (with a warning), and the
  optional "extended expiration" turns a pod-bound 3607 s token for API audiences only into a
  one-year token with ``warnafter`` at 3607 s.
- :func:`legacy_claims` — a Secret-based token (kube: pkg/serviceaccount/legacy.go
  ``LegacyClaims``): ``iss "kubernetes/serviceaccount"``, ``sub`` and four
  ``kubernetes.io/serviceaccount/...`` claims; no exp, iat or aud.

Keys are emitted in sorted order, as Go's JSON encoding of the merged claim map does. The clock
and the token id are parameters: no I/O, no hidden time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from verifier.identity import username_for
from verifier.policy import LEGACY_ISSUER

__all__ = [
    "EXPIRATION_EXTENSION_SECONDS",
    "WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS",
    "BoundRef",
    "ExpirationPlan",
    "bound_claims",
    "legacy_claims",
    "new_token_id",
    "plan_expiration",
]

#: kube: claims.go WarnOnlyBoundTokenExpirationSeconds / ExpirationExtensionSeconds.
WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: Final = 60 * 60 + 7
EXPIRATION_EXTENSION_SECONDS: Final = 24 * 365 * 60 * 60


@dataclass(frozen=True, slots=True)
class BoundRef:
    """A ``{name, uid}`` reference as it appears under ``kubernetes.io``."""

    name: str
    uid: str

    def claim(self) -> dict[str, str]:
        """The claim object (kube: claims.go ``ref``; empty fields omitted)."""
        out: dict[str, str] = {}
        if self.name:
            out["name"] = self.name
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass(frozen=True, slots=True)
class ExpirationPlan:
    """How long a requested token lives.

    ``expiration_seconds`` is what the response's ``spec.expirationSeconds`` and
    ``status.expirationTimestamp`` report; ``exp_seconds`` is what the ``exp`` claim gets (longer
    only with extended expiration); ``warn_after_seconds`` is 0 unless extended; ``warning`` is
    the text of a ``Warning`` header, or "".
    """

    expiration_seconds: int
    exp_seconds: int
    warn_after_seconds: int = 0
    warning: str = ""


def plan_expiration(
    requested: int,
    *,
    max_expiration: int,
    extended_expiration: bool,
    pod_bound: bool,
    audiences: Sequence[str],
    api_audiences: Sequence[str],
) -> ExpirationPlan:
    """kube: token.go — shorten to the configured maximum, then maybe extend (see module doc).

    ``requested`` must already have passed validation (600 <= requested <= 2^32).
    """
    warning = ""
    seconds = requested
    if max_expiration > 0 and seconds > max_expiration:
        warning = f"requested expiration of {seconds} seconds shortened to {max_expiration} seconds"
        seconds = max_expiration
    exp = seconds
    warn_after = 0
    # "tokenAudiences must be strictly a subset of apiserver audiences" (token.go isKubeAudiences).
    if (
        extended_expiration
        and pod_bound
        and seconds == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
        and set(audiences) <= set(api_audiences)
    ):
        warn_after = seconds
        exp = EXPIRATION_EXTENSION_SECONDS
    return ExpirationPlan(seconds, exp, warn_after, warning)


def new_token_id() -> str:
    """A fresh ``jti`` (kube: claims.go, uuid.NewUUID with ServiceAccountTokenJTI)."""
    return str(uuid.uuid4())


def bound_claims(
    *,
    issuer: str,
    namespace: str,
    service_account: BoundRef,
    audiences: Sequence[str],
    now: int,
    plan: ExpirationPlan,
    jti: str,
    pod: BoundRef | None = None,
    secret: BoundRef | None = None,
    node: BoundRef | None = None,
) -> dict[str, Any]:
    """The claims of a bound token (kube: claims.go ``Claims``), keys sorted as Go emits them.

    At most one of ``pod``/``secret`` may be given; ``node`` alone binds to a node, and with
    ``pod`` records the pod's node.
    """
    if secret is not None and (pod is not None or node is not None):
        # kube: claims.go "internal error, token can only be bound to one object type"
        raise ValueError("token can only be bound to one object type")
    kube: dict[str, Any] = {"namespace": namespace}
    if node is not None:
        kube["node"] = node.claim()
    if pod is not None:
        kube["pod"] = pod.claim()
    if secret is not None:
        kube["secret"] = secret.claim()
    kube["serviceaccount"] = service_account.claim()
    if plan.warn_after_seconds:
        kube["warnafter"] = now + plan.warn_after_seconds
    return {
        "aud": list(audiences),
        "exp": now + plan.exp_seconds,
        "iat": now,
        "iss": issuer,
        "jti": jti,
        "kubernetes.io": kube,
        "nbf": now,
        "sub": username_for(namespace, service_account.name),
    }


def legacy_claims(*, namespace: str, service_account: BoundRef, secret_name: str) -> dict[str, Any]:
    """The claims of a legacy Secret-based token (kube: legacy.go ``LegacyClaims``)."""
    return {
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": service_account.name,
        "kubernetes.io/serviceaccount/service-account.uid": service_account.uid,
        "sub": username_for(namespace, service_account.name),
    }
