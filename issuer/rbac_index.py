"""The RBAC index: the stored Roles, ClusterRoles and bindings in memory, keyed by subject, so
that an authorization decision costs the same with 10 or 10,000 bindings.

::

    index_for(store).policy(user, groups, namespace) -> PolicyObjects
        1. one store read: the revisions of ClusterRoleBindings and ClusterRoles (cluster-wide)
           and of RoleBindings and Roles in ``namespace`` (Store.object_revisions)
        2. a part whose revisions moved is rebuilt from the store before deciding
        3. the bindings naming the user, one of its groups or (as its user name) its service
           account, and the roles they reference — dictionary lookups

The decision itself stays :func:`issuer.authz.authorize` over those few objects, so the index
decides exactly as a from-scratch evaluation of every stored object does (the property test in
tests/api/test_rbac_index.py checks this on random policies).

**Freshness.** Every decision first reads the four revisions (one round trip, a constant cost),
and the store bumps a revision in the same atomic write as the object change. A binding created
or deleted through any replica or worker is therefore in force for the next decision made
anywhere — "takes effect at once", as when every decision read the store — and there is no
notification to lose: a missed pub/sub message or a reconnect gap cannot leave the index stale.
When the revisions cannot be read (the store is unreachable) the decision fails with
StoreUnavailable (503 at the API), never from possibly stale memory.

**Cost.** A rebuild lists one part: all cluster-wide bindings and roles, or one namespace's. It
happens once per change, shared by every thread of the process. Aggregated ClusterRoles
(``aggregationRule``) are resolved at rebuild time, built-in ones included
(:func:`issuer.authz.resolve_aggregation`). At most :data:`MAX_NAMESPACES` namespaces are kept
(least recently used first out); a namespace that drops out is read again when next needed.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from issuer import authz
from issuer.authz import Binding, Role

__all__ = [
    "CLUSTER_ROLE",
    "CLUSTER_ROLE_BINDING",
    "MAX_NAMESPACES",
    "ROLE",
    "ROLE_BINDING",
    "PolicyObjects",
    "RbacIndex",
    "index_for",
]

#: Stored kinds of the RBAC objects (rbac.authorization.k8s.io/v1).
ROLE: Final = "Role"
CLUSTER_ROLE: Final = "ClusterRole"
ROLE_BINDING: Final = "RoleBinding"
CLUSTER_ROLE_BINDING: Final = "ClusterRoleBinding"

#: Namespaces whose RoleBindings and Roles stay in memory (least recently used dropped first).
MAX_NAMESPACES: Final = 4096


@dataclass(frozen=True, slots=True)
class PolicyObjects:
    """The stored RBAC objects that can matter for one (user, groups, namespace)."""

    roles: tuple[Role, ...] = ()
    cluster_roles: tuple[Role, ...] = ()
    role_bindings: tuple[Binding, ...] = ()
    cluster_role_bindings: tuple[Binding, ...] = ()


def _subject_keys(binding: Binding) -> set[tuple[str, str]]:
    """The keys under which ``binding`` is found: ("User", name) — a ServiceAccount subject is
    the user ``system:serviceaccount:NS:NAME`` it authenticates as — or ("Group", name).

    Mirrors :func:`issuer.authz.applies_to`: a ServiceAccount subject without a namespace takes
    the binding's; with neither it applies to nobody, as does an unknown kind."""
    keys: set[tuple[str, str]] = set()
    for subject in binding.subjects:
        if subject.kind == "User":
            keys.add(("User", subject.name))
        elif subject.kind == "Group":
            keys.add(("Group", subject.name))
        elif subject.kind == "ServiceAccount":
            namespace = subject.namespace or binding.namespace
            if namespace:
                keys.add(("User", f"system:serviceaccount:{namespace}:{subject.name}"))
    return keys


@dataclass(frozen=True, slots=True)
class _Bindings:
    """Bindings in store order, and, per subject key, the positions of those naming it."""

    ordered: tuple[Binding, ...]
    by_subject: Mapping[tuple[str, str], tuple[int, ...]]

    @classmethod
    def build(cls, bindings: Iterable[Binding]) -> _Bindings:
        ordered = tuple(bindings)
        by_subject: dict[tuple[str, str], list[int]] = {}
        for i, binding in enumerate(ordered):
            for key in _subject_keys(binding):
                by_subject.setdefault(key, []).append(i)
        return cls(ordered, {k: tuple(v) for k, v in by_subject.items()})

    def matching(self, user: str, groups: Sequence[str]) -> tuple[Binding, ...]:
        """The bindings naming ``user`` or one of ``groups``, in store order."""
        hits: set[int] = set(self.by_subject.get(("User", user), ()))
        for group in groups:
            hits.update(self.by_subject.get(("Group", group), ()))
        return tuple(self.ordered[i] for i in sorted(hits))


@dataclass(frozen=True, slots=True)
class _ClusterPart:
    revisions: tuple[int, int]  # (ClusterRoleBinding, ClusterRole) when read
    bindings: _Bindings
    cluster_roles: Mapping[str, Role]  # aggregation resolved, built-ins included


@dataclass(frozen=True, slots=True)
class _NamespacePart:
    revisions: tuple[int, int]  # (RoleBinding, Role) in this namespace when read
    bindings: _Bindings
    roles: Mapping[str, Role]


def _fresh(have: tuple[int, int], read: tuple[int, int]) -> bool:
    # Revisions only grow; a part read after `read` (another thread's rebuild) is fresh too.
    return have[0] >= read[0] and have[1] >= read[1]


class RbacIndex:
    """The index of one store (see the module docstring). Thread-safe."""

    def __init__(self, store: Any, max_namespaces: int = MAX_NAMESPACES) -> None:
        self._store = store
        self._max_namespaces = max_namespaces
        self._cluster: _ClusterPart | None = None
        self._namespaces: OrderedDict[str, _NamespacePart] = OrderedDict()
        self._lock = threading.Lock()  # guards _namespaces' order and the rebuilds
        #: Rebuilds done (for tests and the benchmark: a steady state rebuilds nothing).
        self.rebuilds = 0

    def policy(self, user: str, groups: Sequence[str], namespace: str) -> PolicyObjects:
        """The bindings that apply to ``user`` (cluster-wide, and in ``namespace`` when given)
        and the roles they reference, current as of this call. StoreError propagates."""
        keys = [(CLUSTER_ROLE_BINDING, ""), (CLUSTER_ROLE, "")]
        if namespace:
            keys += [(ROLE_BINDING, namespace), (ROLE, namespace)]
        revisions = self._store.object_revisions(keys)
        cluster = self._cluster_part((revisions[0], revisions[1]))
        crbs = cluster.bindings.matching(user, groups)
        rbs: tuple[Binding, ...] = ()
        roles: list[Role] = []
        if namespace:
            part = self._namespace_part(namespace, (revisions[2], revisions[3]))
            rbs = part.bindings.matching(user, groups)
            for name in sorted({b.role_ref.name for b in rbs if b.role_ref.kind == "Role"}):
                role = part.roles.get(name)
                if role is not None:
                    roles.append(role)
        cluster_roles = [
            cluster.cluster_roles[name]
            for name in sorted(
                {b.role_ref.name for b in (*crbs, *rbs) if b.role_ref.kind == "ClusterRole"}
            )
            if name in cluster.cluster_roles
        ]
        return PolicyObjects(tuple(roles), tuple(cluster_roles), rbs, crbs)

    def cluster_role(self, name: str) -> Role | None:
        """The ClusterRole ``name`` (built-in or stored) with its aggregation resolved, current
        as of this call; None if there is none. StoreError propagates."""
        revisions = self._store.object_revisions([(CLUSTER_ROLE_BINDING, ""), (CLUSTER_ROLE, "")])
        return self._cluster_part((revisions[0], revisions[1])).cluster_roles.get(name)

    def _cluster_part(self, revisions: tuple[int, int]) -> _ClusterPart:
        part = self._cluster
        if part is not None and _fresh(part.revisions, revisions):
            return part
        with self._lock:
            part = self._cluster
            if part is not None and _fresh(part.revisions, revisions):
                return part
            # Listed after `revisions` was read: the part is at least that fresh.
            bindings = _Bindings.build(
                Binding.from_object(o) for o in self._store.list_objects(CLUSTER_ROLE_BINDING, "")
            )
            stored = {
                r.name: r
                for r in (Role.from_object(o) for o in self._store.list_objects(CLUSTER_ROLE, ""))
            }
            # The registry refuses stored objects with the built-ins' names: built-ins win.
            stored.update(authz.BUILTIN_CLUSTER_ROLES)
            resolved = {
                # Resolved here, once: the evaluation must not aggregate again over a subset
                # (and, without labels or a rule, it does not try to).
                name: dataclasses.replace(role, aggregation=None, labels=())
                for name, role in authz.resolve_aggregation(stored).items()
            }
            part = _ClusterPart(revisions, bindings, resolved)
            self._cluster = part
            self.rebuilds += 1
            return part

    def _namespace_part(self, namespace: str, revisions: tuple[int, int]) -> _NamespacePart:
        with self._lock:
            part = self._namespaces.get(namespace)
            if part is not None and _fresh(part.revisions, revisions):
                self._namespaces.move_to_end(namespace)
                return part
            bindings = _Bindings.build(
                Binding.from_object(o) for o in self._store.list_objects(ROLE_BINDING, namespace)
            )
            roles = {
                r.name: r
                for r in (Role.from_object(o) for o in self._store.list_objects(ROLE, namespace))
            }
            part = _NamespacePart(revisions, bindings, roles)
            self._namespaces[namespace] = part
            self._namespaces.move_to_end(namespace)
            while len(self._namespaces) > self._max_namespaces:
                self._namespaces.popitem(last=False)
            self.rebuilds += 1
            return part


_indexes: weakref.WeakKeyDictionary[Any, RbacIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def index_for(store: Any) -> RbacIndex:
    """The process's index of ``store`` (one per store object, dropped with it)."""
    with _indexes_lock:
        index = _indexes.get(store)
        if index is None:
            index = _indexes[store] = RbacIndex(store)
        return index
