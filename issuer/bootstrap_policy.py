"""Kubernetes' default ClusterRoles and ClusterRoleBindings that matter here, with kube's rules.

Source: kube's bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go; the
rendered rules are its testdata/cluster-roles.yaml and cluster-role-bindings.yaml). Pure data
(JSON-shaped rules, no imports of our own): :mod:`issuer.authz` turns it into its RBAC types.

``admin``, ``edit`` and ``view`` have no rules of their own: an ``aggregationRule`` selects every
ClusterRole labelled ``rbac.authorization.k8s.io/aggregate-to-<name>: "true"`` and their rules
are the union (kube: pkg/controller/clusterroleaggregation). ``edit`` carries the label
``aggregate-to-admin`` and ``view`` the label ``aggregate-to-edit``, so ``admin`` ⊇ ``edit`` ⊇
``view``; the ``system:aggregate-to-*`` roles hold the rules. Stored ClusterRoles carrying one of
those labels are aggregated too (:func:`issuer.authz.aggregate`), as kube's controller does.

sa-oidc's one addition: ``system:auth-delegator`` may also read the invalidation stream
(``invalidations.sa-oidc.dev``), which is for callers allowed to review tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "AGGREGATE_LABEL",
    "AGGREGATION_ORDER",
    "BOOTSTRAP_LABELS",
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
]

#: kube: bootstrappolicy Label / the autoupdate annotation.
BOOTSTRAP_LABELS: Final = {"kubernetes.io/bootstrapping": "rbac-defaults"}
#: ``AGGREGATE_LABEL + name`` = "true" puts a ClusterRole's rules into ``name``.
AGGREGATE_LABEL: Final = "rbac.authorization.k8s.io/aggregate-to-"
#: Aggregated roles, each after the ones it includes.
AGGREGATION_ORDER: Final = ("view", "edit", "admin")

_READ: Final = ["get", "list", "watch"]
_WRITE: Final = ["create", "delete", "deletecollection", "patch", "update"]
_RW: Final = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _r(verbs: list[str], groups: list[str], resources: list[str]) -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources}


def _u(verbs: list[str], urls: list[str]) -> dict[str, Any]:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _agg(name: str) -> dict[str, str]:
    return {AGGREGATE_LABEL + name: "true"}


#: name -> {"rules": [...], "labels": {...}, "aggregate": [label selectors] (aggregated roles)}.
CLUSTER_ROLES: Final[Mapping[str, Mapping[str, Any]]] = {
    "cluster-admin": {"rules": [_r(["*"], ["*"], ["*"]), _u(["*"], ["*"])]},
    "admin": {"rules": [], "aggregate": [_agg("admin")]},
    "edit": {"rules": [], "labels": _agg("admin"), "aggregate": [_agg("edit")]},
    "view": {"rules": [], "labels": _agg("edit"), "aggregate": [_agg("view")]},
    "system:aggregate-to-admin": {
        "labels": _agg("admin"),
        "rules": [
            _r(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
            _r(_RW, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
        ],
    },
    "system:aggregate-to-edit": {
        "labels": _agg("edit"),
        "rules": [
            _r(
                _READ,
                [""],
                [
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            _r(["impersonate"], [""], ["serviceaccounts"]),
            _r(
                _WRITE,
                [""],
                ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
            ),
            _r(["create"], [""], ["pods/eviction"]),
            _r(
                _WRITE,
                [""],
                [
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            _r(["create"], [""], ["serviceaccounts/token"]),
            _r(
                _WRITE,
                ["apps"],
                [
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            _r(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
            _r(_WRITE, ["batch"], ["cronjobs", "jobs"]),
            _r(
                _WRITE,
                ["extensions"],
                [
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            _r(_WRITE, ["policy"], ["poddisruptionbudgets"]),
            _r(_WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
            _r(_RW, ["coordination.k8s.io"], ["leases"]),
        ],
    },
    "system:aggregate-to-view": {
        "labels": _agg("view"),
        "rules": [
            _r(
                _READ,
                [""],
                [
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            _r(
                _READ,
                [""],
                [
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            _r(_READ, [""], ["namespaces"]),
            _r(_READ, ["discovery.k8s.io"], ["endpointslices"]),
            _r(
                _READ,
                ["apps"],
                [
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            _r(
                _READ,
                ["autoscaling"],
                ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
            ),
            _r(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
            _r(
                _READ,
                ["extensions"],
                [
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            _r(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
            _r(_READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
        ],
    },
    "system:auth-delegator": {
        "rules": [
            _r(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            _r(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
            _r(_READ, ["sa-oidc.dev"], ["invalidations"]),  # sa-oidc (module docstring)
        ]
    },
    "system:basic-user": {
        "rules": [
            _r(
                ["create"],
                ["authorization.k8s.io"],
                ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            _r(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
        ]
    },
    "system:discovery": {
        "rules": [
            _u(
                ["get"],
                [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            ),
        ]
    },
    "system:public-info-viewer": {
        "rules": [_u(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])]
    },
    "system:service-account-issuer-discovery": {
        "rules": [_u(["get"], ["/.well-known/openid-configuration", "/openid/v1/jwks"])]
    },
}

_AUTHENTICATED: Final = "system:authenticated"
_UNAUTHENTICATED: Final = "system:unauthenticated"

#: name -> (ClusterRole name, [group subjects]) (kube: ClusterRoleBindings() in policy.go).
CLUSTER_ROLE_BINDINGS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "cluster-admin": ("cluster-admin", ("system:masters",)),
    "system:basic-user": ("system:basic-user", (_AUTHENTICATED,)),
    "system:discovery": ("system:discovery", (_AUTHENTICATED,)),
    "system:public-info-viewer": ("system:public-info-viewer", (_AUTHENTICATED, _UNAUTHENTICATED)),
    "system:service-account-issuer-discovery": (
        "system:service-account-issuer-discovery",
        ("system:serviceaccounts",),
    ),
}
