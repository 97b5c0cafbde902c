"""Bulk seeding for the scale benchmark: objects and events written straight through the store API
(``Store.create_objects`` / ``Store.append_events``: one transaction on SQLite, pipelined scripts
on Redis), thousands per round trip instead of one HTTP request each.

The data at scale ``S`` (:class:`Sizes` per 1x, times S), grown in place from one scale to the
next (:func:`grow`), so the largest scale is written once:

- ``pods`` Pods in namespaces ``s0000``, ``s0001``, ... (100 per namespace), labelled
  ``app=a<i % 10>`` (a tenth of them each) and ``shard=s<i % 1000>`` (a thousandth);
- ``service_accounts`` ServiceAccounts, spread the same way;
- ``bindings`` RBAC bindings: a fifth ClusterRoleBindings (to users and groups nobody is), the rest
  RoleBindings, one in ten of them in the benchmark's own namespace (so the caller's namespace
  grows too), each namespace with a ``reader`` Role;
- ``revoked`` TokenRevoked and ``deleted`` ObjectDeleted invalidation events (random jtis/uids,
  expiring in a day): what a hybrid verifier's follower holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from issuer.store import JSON, NotFound, Store

RBAC = "rbac.authorization.k8s.io"
CHUNK = 5000


@dataclass(frozen=True)
class Sizes:
    """How many of each at 1x."""

    pods: int = 100
    service_accounts: int = 20
    bindings: int = 10
    revoked: int = 100
    deleted: int = 100


def _ns(i: int) -> str:
    return f"s{i // 100:04d}"


def _meta(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4())}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def pod(i: int) -> tuple[str, str, JSON]:
    ns, name = _ns(i), f"p{i:07d}"
    labels = {"app": f"a{i % 10}", "shard": f"s{i % 1000}"}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, ns, labels),
        "spec": {
            "serviceAccountName": "default",
            "nodeName": f"n{i % 50}",
            "containers": [{"name": "c", "image": "example.invalid/c:1"}],
        },
        "status": {"phase": "Running"},
    }
    return ns, name, body


def service_account(i: int) -> tuple[str, str, JSON]:
    ns, name = _ns(i * 5), f"sa{i:07d}"
    return ns, name, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, ns)}


def binding(i: int, own_namespace: str) -> tuple[str, str, str, JSON]:
    """(kind, namespace, name, object) of the i-th binding."""
    ref = {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"}
    if i % 5 == 0:
        name = f"crb{i:07d}"
        subjects = [{"kind": "User", "name": f"user{i}"}, {"kind": "Group", "name": f"group{i}"}]
        body = {"metadata": _meta(name, ""), "roleRef": ref, "subjects": subjects}
        return "ClusterRoleBinding", "", name, body
    ns = own_namespace if i % 10 == 1 else _ns(i * 10)
    name = f"rb{i:07d}"
    ref = {"apiGroup": RBAC, "kind": "Role", "name": "reader"}
    subjects = [{"kind": "ServiceAccount", "name": f"sa{i:07d}", "namespace": ns}]
    return "RoleBinding", ns, name, {"metadata": _meta(name, ns), "roleRef": ref,
                                     "subjects": subjects}  # fmt: skip


def _chunks(start: int, stop: int) -> Iterator[range]:
    for lo in range(start, stop, CHUNK):
        yield range(lo, min(stop, lo + CHUNK))


def _roles(store: Store, namespaces: set[str]) -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    items = [
        (ns, "reader", {"metadata": _meta("reader", ns), "rules": [rule]}) for ns in namespaces
    ]
    for ns, name, body in items:
        try:
            store.get_object("Role", ns, name)
        except NotFound:
            store.create_objects("Role", [(ns, name, body)])


def grow(store: Store, sizes: Sizes, old: int, new: int, own_namespace: str) -> float:
    """Grow the data from scale ``old`` (0 = nothing) to ``new``; return the seconds taken."""
    t0 = time.perf_counter()
    for c in _chunks(sizes.pods * old, sizes.pods * new):
        store.create_objects("Pod", [pod(i) for i in c])
    for c in _chunks(sizes.service_accounts * old, sizes.service_accounts * new):
        store.create_objects("ServiceAccount", [service_account(i) for i in c])
    for c in _chunks(sizes.bindings * old, sizes.bindings * new):
        made = [binding(i, own_namespace) for i in c]
        _roles(store, {ns for kind, ns, _, _ in made if kind == "RoleBinding"})
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            store.create_objects(kind, [(ns, n, b) for k, ns, n, b in made if k == kind])
    exp = int(time.time()) + 86400
    for c in _chunks(sizes.revoked * old, sizes.revoked * new):
        store.append_events(
            [{"type": "TokenRevoked", "jti": str(uuid.uuid4()), "exp": exp} for _ in c]
        )
    for c in _chunks(sizes.deleted * old, sizes.deleted * new):
        store.append_events(
            [{"type": "ObjectDeleted", "kind": "Pod", "namespace": _ns(i), "name": f"gone{i}",
              "uid": str(uuid.uuid4())} for i in c]
        )  # fmt: skip
    return time.perf_counter() - t0
