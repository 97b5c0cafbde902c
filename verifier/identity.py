"""ServiceAccountIdentity: what a verified token says about the workload that holds it.

Performance note (docs/BENCHMARKS.md §1): an identity is built once per verified token, so its
construction is on the hot path. It used to be a frozen ``slots`` dataclass with 19 fields, whose
generated ``__init__`` performs 19 ``object.__setattr__`` calls (~1.3 µs). It is now a ``__slots__``
class holding ONE tuple of values; the public field names are read-only properties over it. The
verifier core builds it through :func:`_from_values` (one ``object.__new__`` and one slot store,
~0.15 µs); the public keyword constructor keeps the dataclass signature and defaults. Semantics kept
from the dataclass: immutability (assignment raises ``dataclasses.FrozenInstanceError``), equality
by type and all field values, ``hash`` over all fields (so, like before, unhashable while ``claims``
is a mapping proxy), a ``repr`` listing every field, ``__match_args__`` and ``copy.copy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from types import MappingProxyType
from typing import Any, Final, cast

#: Groups kube-apiserver gives every service account
#: (kube: pkg/serviceaccount/util.go MakeGroupNames).
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
AUTHENTICATED_GROUP = "system:authenticated"
USERNAME_PREFIX = "system:serviceaccount:"

#: The public field names, in constructor (and internal tuple) order.
FIELD_NAMES: Final = (
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
)

#: The internal value tuple, one entry per :data:`FIELD_NAMES` entry.
IdentityValues = tuple[
    str,  # namespace
    str,  # service_account_name
    str | None,  # service_account_uid
    str | None,  # pod_name
    str | None,  # pod_uid
    str | None,  # secret_name
    str | None,  # secret_uid
    str | None,  # node_name
    str | None,  # node_uid
    tuple[str, ...],  # audiences
    int | None,  # issued_at
    int | None,  # not_before
    int | None,  # expires_at
    int | None,  # warn_after
    str | None,  # token_id
    str | None,  # issuer
    str | None,  # key_id
    bool,  # legacy
    Mapping[str, Any],  # claims
]

_EMPTY_CLAIMS: Final[Mapping[str, Any]] = MappingProxyType({})


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


class ServiceAccountIdentity:
    """A verified service-account identity (immutable).

    Built only from a token whose signature and claims were checked (or from a TokenReview answer).
    Times are POSIX seconds (``None`` where the token has none, as for legacy Secret tokens).
    ``claims`` is a read-only view of the verified claims.
    """

    __slots__ = ("_v",)
    __match_args__ = FIELD_NAMES
    _v: IdentityValues

    def __init__(
        self,
        namespace: str,
        service_account_name: str,
        service_account_uid: str | None = None,
        pod_name: str | None = None,
        pod_uid: str | None = None,
        secret_name: str | None = None,
        secret_uid: str | None = None,
        node_name: str | None = None,
        node_uid: str | None = None,
        audiences: tuple[str, ...] = (),
        issued_at: int | None = None,
        not_before: int | None = None,
        expires_at: int | None = None,
        warn_after: int | None = None,
        token_id: str | None = None,
        issuer: str | None = None,
        key_id: str | None = None,
        legacy: bool = False,
        claims: Mapping[str, Any] = _EMPTY_CLAIMS,
    ) -> None:
        """Same signature and defaults as the former dataclass (positional or keyword)."""
        set_identity_values(
            self,
            (
                namespace,
                service_account_name,
                service_account_uid,
                pod_name,
                pod_uid,
                secret_name,
                secret_uid,
                node_name,
                node_uid,
                audiences,
                issued_at,
                not_before,
                expires_at,
                warn_after,
                token_id,
                issuer,
                key_id,
                legacy,
                claims,
            ),
        )

    # --- immutability, equality, hashing, repr, copy (as a frozen dataclass) --------------------

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._v == other._v
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._v)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={v!r}" for n, v in zip(FIELD_NAMES, self._v, strict=True))
        return f"{self.__class__.__qualname__}({body})"

    def __reduce__(self) -> tuple[Any, tuple[IdentityValues]]:
        return _from_values, (self._v,)

    # --- fields (read-only) ----------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The service account's namespace."""
        return self._v[0]

    @property
    def service_account_name(self) -> str:
        """The service account's name."""
        return self._v[1]

    @property
    def service_account_uid(self) -> str | None:
        """The service account's uid."""
        return self._v[2]

    @property
    def pod_name(self) -> str | None:
        """Name of the pod the token is bound to."""
        return self._v[3]

    @property
    def pod_uid(self) -> str | None:
        """Uid of the pod the token is bound to."""
        return self._v[4]

    @property
    def secret_name(self) -> str | None:
        """Name of the Secret the token is bound to (or, for legacy tokens, stored in)."""
        return self._v[5]

    @property
    def secret_uid(self) -> str | None:
        """Uid of the Secret the token is bound to."""
        return self._v[6]

    @property
    def node_name(self) -> str | None:
        """Name of the node the token (or its pod) is bound to."""
        return self._v[7]

    @property
    def node_uid(self) -> str | None:
        """Uid of the node the token (or its pod) is bound to."""
        return self._v[8]

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every audience the token names (RFC 7519 §4.1.3)."""
        return self._v[9]

    @property
    def issued_at(self) -> int | None:
        """``iat`` (RFC 7519 §4.1.6)."""
        return self._v[10]

    @property
    def not_before(self) -> int | None:
        """``nbf`` (RFC 7519 §4.1.5)."""
        return self._v[11]

    @property
    def expires_at(self) -> int | None:
        """``exp`` (RFC 7519 §4.1.4)."""
        return self._v[12]

    @property
    def warn_after(self) -> int | None:
        """``kubernetes.io.warnafter``: when a stale-token warning starts (kube: claims.go)."""
        return self._v[13]

    @property
    def token_id(self) -> str | None:
        """``jti`` (RFC 7519 §4.1.7)."""
        return self._v[14]

    @property
    def issuer(self) -> str | None:
        """``iss`` (RFC 7519 §4.1.1)."""
        return self._v[15]

    @property
    def key_id(self) -> str | None:
        """The kid of the key that verified the signature."""
        return self._v[16]

    @property
    def legacy(self) -> bool:
        """True for a legacy Secret-based token (kube: pkg/serviceaccount/legacy.go)."""
        return self._v[17]

    @property
    def claims(self) -> Mapping[str, Any]:
        """The verified claims (read-only view)."""
        return self._v[18]

    # --- derived views ---------------------------------------------------------------------------

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
            "secret": (
                {"name": self.secret_name, "uid": self.secret_uid} if self.secret_name else None
            ),
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


# The slot's own descriptor stores the value tuple, bypassing the raising __setattr__.
#: ``set_identity_values(ident, values)``: store all 19 values (FIELD_NAMES order) into an identity
#: made by :data:`new_identity`. For the verifier core's hot path (claims.bound_identity); the
#: caller guarantees the types.
set_identity_values: Final = cast(Any, ServiceAccountIdentity.__dict__["_v"]).__set__
#: ``new_identity(ServiceAccountIdentity)``: an empty identity (no ``__init__``), to be filled by
#: :data:`set_identity_values` at once.
new_identity: Final = object.__new__


def _from_values(values: IdentityValues) -> ServiceAccountIdentity:
    """Internal fast constructor: the verifier core passes all 19 values in FIELD_NAMES order.

    The caller guarantees the types (they come out of the claim checks in claims.py).
    """
    ident: ServiceAccountIdentity = new_identity(ServiceAccountIdentity)
    set_identity_values(ident, values)
    return ident


__all__ = [
    "FIELD_NAMES",
    "ServiceAccountIdentity",
    "groups_for",
    "new_identity",
    "set_identity_values",
    "username_for",
]
