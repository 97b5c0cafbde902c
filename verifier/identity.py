"""ServiceAccountIdentity: what a verified token says about the workload that holds it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Groups kube-apiserver gives every service account (kube: pkg/serviceaccount/util.go MakeGroupNames).
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
AUTHENTICATED_GROUP = "system:authenticated"
USERNAME_PREFIX = "system:serviceaccount:"


def username_for(namespace: str, name: str) -> str:
    """``system:serviceaccount:NS:NAME`` (kube: serviceaccount.MakeUsername)."""
    return f"{USERNAME_PREFIX}{namespace}:{name}"


def groups_for(namespace: str) -> tuple[str, ...]:
    """The groups TokenReview reports for a service account in ``namespace``."""
    return (
        ALL_SERVICE_ACCOUNTS_GROUP,
        f"{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}",
        AUTHENTICATED_GROUP,
    )


@dataclass(frozen=True, slots=True)
class ServiceAccountIdentity:
    """A verified service-account identity.

    Built only from a token whose signature and claims were checked (or from a TokenReview answer).
    Times are POSIX seconds (``None`` where the token has none, as for legacy Secret tokens).
    """

    namespace: str
    service_account_name: str
    service_account_uid: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    secret_name: str | None = None
    secret_uid: str | None = None
    node_name: str | None = None
    node_uid: str | None = None
    audiences: tuple[str, ...] = ()
    issued_at: int | None = None
    not_before: int | None = None
    expires_at: int | None = None
    warn_after: int | None = None
    token_id: str | None = None
    issuer: str | None = None
    key_id: str | None = None
    legacy: bool = False
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def username(self) -> str:
        """``system:serviceaccount:NS:NAME``."""
        return username_for(self.namespace, self.service_account_name)

    @property
    def groups(self) -> tuple[str, ...]:
        """``system:serviceaccounts``, ``system:serviceaccounts:NS``, ``system:authenticated``."""
        return groups_for(self.namespace)

    @property
    def extra(self) -> dict[str, list[str]]:
        """TokenReview ``user.extra`` (kube: pkg/serviceaccount/claims.go, util.go)."""
        out: dict[str, list[str]] = {}
        if self.pod_name:
            out["authentication.kubernetes.io/pod-name"] = [self.pod_name]
        if self.pod_uid:
            out["authentication.kubernetes.io/pod-uid"] = [self.pod_uid]
        if self.node_name:
            out["authentication.kubernetes.io/node-name"] = [self.node_name]
        if self.node_uid:
            out["authentication.kubernetes.io/node-uid"] = [self.node_uid]
        if self.token_id:
            out["authentication.kubernetes.io/credential-id"] = [f"JTI={self.token_id}"]
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by ``sa-verifier --json`` and the middleware)."""
        return {
            "username": self.username,
            "uid": self.service_account_uid,
            "groups": list(self.groups),
            "extra": self.extra,
            "namespace": self.namespace,
            "serviceAccount": {"name": self.service_account_name, "uid": self.service_account_uid},
            "pod": {"name": self.pod_name, "uid": self.pod_uid} if self.pod_name else None,
            "secret": {"name": self.secret_name, "uid": self.secret_uid} if self.secret_name else None,
            "node": {"name": self.node_name, "uid": self.node_uid} if self.node_name else None,
            "audiences": list(self.audiences),
            "issuedAt": self.issued_at,
            "notBefore": self.not_before,
            "expiresAt": self.expires_at,
            "warnAfter": self.warn_after,
            "tokenId": self.token_id,
            "issuer": self.issuer,
            "keyId": self.key_id,
            "legacy": self.legacy,
        }


__all__ = [
    "ServiceAccountIdentity",
    "groups_for",
    "username_for",
]
