"""SelfSubjectAccessReview / SelfSubjectRulesReview / SelfSubjectReview, impersonation and the
bootstrap ClusterRoles, on the real app over both stores.

Expected answers come from Kubernetes' documentation and source: the impersonation filter
(apiserver/pkg/endpoints/filters/impersonation.go: the ``impersonate`` verb on users, groups,
uids, userextras/KEY and serviceaccounts; a service account's fixed groups; 403 with the
Forbidden text), kube's bootstrap policy (admin ⊇ edit ⊇ view by aggregation; system:basic-user
lets every authenticated user create self reviews) and the self-review registries.
"""

from __future__ import annotations

from typing import Any

import pytest
from _api_support import Api
from starlette.datastructures import Headers

from issuer.api.auth import Caller, Impersonation, impersonated, impersonation_request

SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSRR = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _setup(api: Api) -> str:
    """dev/app bound to a Role on jobs.batch in maintenance (the seed's cross-namespace grant);
    returns app's token."""
    for ns in ("dev", "maintenance"):
        api.ns(ns)
    api.sa("dev", "app")
    api.ok(
        api.post(
            f"{RBAC}/namespaces/maintenance/roles",
            {
                "metadata": {"name": "job-runner"},
                "rules": [
                    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]}
                ],
            },
        )
    )
    api.ok(
        api.post(
            f"{RBAC}/namespaces/maintenance/rolebindings",
            {
                "metadata": {"name": "app-jobs"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "job-runner",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}],
            },
        )
    )
    return api.token("dev", "app")


def _ssar(attrs: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }


AS_APP = {"Impersonate-User": "system:serviceaccount:dev:app"}

# (headers beyond the admin token, attributes, allowed) — RBAC on resources never served (jobs).
CAN_I = [
    (
        AS_APP,
        {"verb": "list", "group": "batch", "resource": "jobs", "namespace": "maintenance"},
        True,
    ),
    (
        AS_APP,
        {"verb": "delete", "group": "batch", "resource": "jobs", "namespace": "maintenance"},
        False,
    ),
    (AS_APP, {"verb": "list", "group": "batch", "resource": "jobs", "namespace": "dev"}, False),
    (
        AS_APP,
        {"verb": "create", "resource": "selfsubjectaccessreviews", "group": "authorization.k8s.io"},
        True,
    ),
    (
        {},
        {"verb": "delete", "group": "coordination.k8s.io", "resource": "leases", "namespace": "x"},
        True,
    ),
]


@pytest.mark.parametrize(("headers", "attrs", "allowed"), CAN_I)
def test_self_subject_access_review(
    api: Api, headers: dict[str, str], attrs: dict[str, str], allowed: bool
) -> None:
    _setup(api)
    out = api.ok(api.post(SSAR, _ssar(attrs), headers=headers))
    assert out["kind"] == "SelfSubjectAccessReview"
    assert out["spec"]["resourceAttributes"] == attrs
    assert out["status"]["allowed"] is allowed


def test_resource_dot_group_as_kubectl_sends_it(api: Api) -> None:
    """kubectl sends "jobs.batch" with no group when discovery does not list jobs."""
    _setup(api)
    attrs = {"verb": "list", "resource": "jobs.batch", "namespace": "maintenance"}
    out = api.ok(api.post(SSAR, _ssar(attrs), headers=AS_APP))
    assert out["status"]["allowed"] is True and out["spec"]["resourceAttributes"] == attrs
    attrs = {"verb": "list", "resource": "jobs.apps", "namespace": "maintenance"}
    assert api.ok(api.post(SSAR, _ssar(attrs), headers=AS_APP))["status"]["allowed"] is False


def test_service_account_asks_about_itself(api: Api) -> None:
    token = _setup(api)
    own = {"Authorization": f"Bearer {token}"}
    attrs = {"verb": "list", "group": "batch", "resource": "jobs", "namespace": "maintenance"}
    r = api.client.post(SSAR, json=_ssar(attrs), headers=own)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    assert 'RoleBinding "app-jobs/maintenance"' in r.json()["status"]["reason"]
    who = api.client.post(
        SSR,
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers=own,
    )
    info = who.json()["status"]["userInfo"]
    assert who.status_code == 201 and info["username"] == "system:serviceaccount:dev:app"
    assert info["uid"] and set(info["groups"]) >= {
        "system:serviceaccounts:dev",
        "system:authenticated",
    }


@pytest.mark.parametrize(
    ("spec", "status", "needle"),
    [
        ({}, 422, "exactly one of nonResourceAttributes or resourceAttributes"),
        (
            {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/x"}},
            422,
            "cannot be specified in combination with resourceAttributes",
        ),
        ({"user": "someone-else", "resourceAttributes": {}}, 400, 'unknown field "spec.user"'),
        ({"resourceAttributes": {"verb": 7}}, 400, "cannot unmarshal number"),
    ],
)
def test_self_subject_access_review_refuses_bad_specs(
    api: Api, spec: dict[str, Any], status: int, needle: str
) -> None:
    r = api.post(
        SSAR,
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec},
    )
    assert r.status_code == status and needle in r.json()["message"], r.text


def test_self_subject_rules_review(api: Api) -> None:
    _setup(api)
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "maintenance"},
    }
    out = api.ok(api.post(SSRR, body, headers=AS_APP))
    rules = out["status"]["resourceRules"]
    assert {"verbs": ["get", "list"], "apiGroups": ["batch"], "resources": ["jobs"]} in rules
    assert {
        "verbs": ["create"],
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["selfsubjectreviews"],
    } in rules
    assert {
        "verbs": ["get"],
        "nonResourceURLs": ["/.well-known/openid-configuration", "/openid/v1/jwks"],
    } in out["status"]["nonResourceRules"]
    assert out["status"]["incomplete"] is False
    body["spec"] = {"namespace": "dev"}
    dev = api.ok(api.post(SSRR, body, headers=AS_APP))["status"]["resourceRules"]
    assert not any("jobs" in r["resources"] for r in dev)
    body["spec"] = {}
    r = api.post(SSRR, body)
    assert r.status_code == 400 and r.json()["message"] == "no namespace on request"


def test_rules_review_reports_a_dangling_binding_as_incomplete(api: Api) -> None:
    _setup(api)
    api.ok(
        api.post(
            f"{RBAC}/namespaces/dev/rolebindings",
            {
                "metadata": {"name": "gone"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "missing",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "app"}],
            },
        )
    )
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "dev"},
    }
    status = api.ok(api.post(SSRR, body, headers=AS_APP))["status"]
    assert status["incomplete"] is True
    assert 'role.rbac.authorization.k8s.io "missing" not found' in status["evaluationError"]


# --- impersonation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "user", "groups", "extra"),
    [
        (
            AS_APP,
            "system:serviceaccount:dev:app",
            ["system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"],
            None,
        ),
        ({"Impersonate-User": "alice"}, "alice", ["system:authenticated"], None),
        (
            {"Impersonate-User": "alice", "Impersonate-Group": "devs"},
            "alice",
            ["devs", "system:authenticated"],
            None,
        ),
        (
            {"Impersonate-User": "alice", "Impersonate-Extra-Scopes%2Fv1": "read"},
            "alice",
            ["system:authenticated"],
            {"scopes/v1": ["read"]},
        ),
    ],
)
def test_impersonation_as_admin(
    api: Api, headers: dict[str, str], user: str, groups: list[str], extra: dict[str, Any] | None
) -> None:
    api.ns("dev")
    api.sa("dev", "app")
    info = api.ok(
        api.post(
            SSR,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers=headers,
        )
    )["status"]["userInfo"]
    assert info["username"] == user and info["groups"] == groups
    assert info.get("extra") == extra


def test_impersonating_anonymous_drops_authenticated_rights(api: Api) -> None:
    # system:anonymous is in system:unauthenticated only: system:basic-user does not apply.
    r = api.post(
        SSR,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Impersonate-User": "system:anonymous"},
    )
    assert r.status_code == 403
    assert 'User "system:anonymous" cannot create' in r.json()["message"]


def test_impersonation_runs_the_request_as_the_target(api: Api) -> None:
    """--as is honoured: the admin acting as app is refused what app may not do."""
    _setup(api)
    r = api.client.get("/api/v1/namespaces/dev/secrets", headers={**api.headers, **AS_APP})
    assert r.status_code == 403
    assert r.json()["message"] == (
        'secrets is forbidden: User "system:serviceaccount:dev:app" cannot list resource '
        '"secrets" in API group "" in the namespace "dev"'
    )


def test_impersonation_needs_the_impersonate_verb(api: Api) -> None:
    token = _setup(api)
    own = {"Authorization": f"Bearer {token}"}
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    r = api.client.post(SSR, json=body, headers={**own, "Impersonate-User": "alice"})
    assert r.status_code == 403
    assert r.json()["message"] == (
        'users "alice" is forbidden: User "system:serviceaccount:dev:app" cannot impersonate '
        'resource "users" in API group "" at the cluster scope'
    )
    r = api.client.post(
        SSR, json=body, headers={**own, "Impersonate-User": "system:serviceaccount:dev:default"}
    )
    assert r.status_code == 403
    assert r.json()["message"] == (
        'serviceaccounts "default" is forbidden: User "system:serviceaccount:dev:app" cannot '
        'impersonate resource "serviceaccounts" in API group "" in the namespace "dev"'
    )
    # kube's edit role (aggregated from system:aggregate-to-edit) may impersonate service
    # accounts of its namespace, not users or groups.
    api.ok(
        api.post(
            f"{RBAC}/namespaces/dev/rolebindings",
            {
                "metadata": {"name": "app-edit"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "app"}],
            },
        )
    )
    r = api.client.post(
        SSR, json=body, headers={**own, "Impersonate-User": "system:serviceaccount:dev:default"}
    )
    assert r.status_code == 201
    assert r.json()["status"]["userInfo"]["username"] == "system:serviceaccount:dev:default"
    r = api.client.post(
        SSR,
        json=body,
        headers={
            **own,
            "Impersonate-User": "system:serviceaccount:dev:default",
            "Impersonate-Group": "system:masters",
        },
    )
    assert r.status_code == 403
    assert r.json()["message"].startswith('groups "system:masters" is forbidden')


@pytest.mark.parametrize(
    "headers",
    [{"Impersonate-Group": "g"}, {"Impersonate-Uid": "1"}, {"Impersonate-Extra-a": "b"}],
)
def test_impersonation_without_a_user_is_bad_request(api: Api, headers: dict[str, str]) -> None:
    r = api.client.get("/api/v1/namespaces", headers={**api.headers, **headers})
    assert r.status_code == 400 and "without impersonating a user" in r.json()["message"]
    r = api.client.get("/api", headers={**api.headers, **headers})
    assert r.status_code == 400


# --- bootstrap roles ----------------------------------------------------------------------------


def test_aggregated_roles_and_stored_aggregation(api: Api) -> None:
    view = api.ok(api.get(f"{RBAC}/clusterroles/view"), 200)
    assert view["aggregationRule"] == {
        "clusterRoleSelectors": [
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
        ]
    }
    admin = api.ok(api.get(f"{RBAC}/clusterroles/admin"), 200)["rules"]
    edit = api.ok(api.get(f"{RBAC}/clusterroles/edit"), 200)["rules"]
    assert all(r in edit for r in view["rules"]) and all(r in admin for r in edit)
    api.ns("dev")
    api.sa("dev", "app")
    api.ok(
        api.post(
            f"{RBAC}/namespaces/dev/rolebindings",
            {
                "metadata": {"name": "app-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "app"}],
            },
        )
    )
    widgets = {"verb": "get", "group": "example.com", "resource": "widgets", "namespace": "dev"}
    assert api.ok(api.post(SSAR, _ssar(widgets), headers=AS_APP))["status"]["allowed"] is False
    # A stored ClusterRole labelled aggregate-to-view widens view (kube's aggregation controller).
    api.ok(
        api.post(
            f"{RBAC}/clusterroles",
            {
                "metadata": {
                    "name": "widget-viewer",
                    "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
                },
                "rules": [
                    {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
                ],
            },
        )
    )
    assert api.ok(api.post(SSAR, _ssar(widgets), headers=AS_APP))["status"]["allowed"] is True
    assert (
        api.ok(api.post(SSAR, _ssar({**widgets, "verb": "delete"}), headers=AS_APP))["status"][
            "allowed"
        ]
        is False
    )


# --- impersonation headers, pure (kube: filters/impersonation.go) -------------------------------


@pytest.mark.parametrize(
    ("raw", "user", "groups", "uid", "extra"),
    [
        ([], None, (), "", ()),
        ([("Impersonate-User", "alice")], "alice", (), "", ()),
        ([("Impersonate-User", "")], None, (), "", ()),
        (
            [
                ("Impersonate-User", "alice"),
                ("Impersonate-Group", "a"),
                ("Impersonate-Group", "b,c"),
            ],
            "alice",
            ("a", "b,c"),
            "",
            (),
        ),
        ([("Impersonate-User", "alice"), ("Impersonate-Uid", "42")], "alice", (), "42", ()),
        (
            [
                ("Impersonate-User", "alice"),
                ("Impersonate-Extra-Scopes", "x"),
                ("impersonate-extra-scopes", "y"),
                ("Impersonate-Extra-Acme.com%2Fteam", "z"),
            ],
            "alice",
            (),
            "",
            (("acme.com/team", ("z",)), ("scopes", ("x", "y"))),
        ),
    ],
)
def test_impersonation_request(
    raw: list[tuple[str, str]],
    user: str | None,
    groups: tuple[str, ...],
    uid: str,
    extra: tuple[tuple[str, tuple[str, ...]], ...],
) -> None:
    headers = Headers(raw=[(k.lower().encode(), v.encode()) for k, v in raw])
    imp = impersonation_request(headers)
    if user is None:
        assert imp is None
        return
    assert imp == Impersonation(user, groups, uid, extra)


def test_impersonated_groups() -> None:
    admin = Caller("sa-oidc:admin", ("system:masters",), "admin-token#1")
    sa = impersonated(admin, Impersonation("system:serviceaccount:dev:app"))
    assert sa.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:dev",
        "system:authenticated",
    )
    assert sa.label == "admin-token#1 as system:serviceaccount:dev:app"
    # Groups given: a service account gets exactly those (plus system:authenticated).
    given = impersonated(admin, Impersonation("system:serviceaccount:dev:app", ("g",)))
    assert given.groups == ("g", "system:authenticated")
    anon = impersonated(admin, Impersonation("system:anonymous"))
    assert anon.groups == ("system:unauthenticated",)
