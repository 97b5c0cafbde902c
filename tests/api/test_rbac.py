"""RBAC over HTTP: service-account tokens as API credentials, RBAC objects, SubjectAccessReview,
escalation prevention — the real app in-process on SQLite and Redis, and one story with the
official ``kubernetes`` client against a live ``sa-issuer serve``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _api_support import Api
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"
INVALIDATIONS = "/apis/sa-oidc.dev/v1/invalidations"
REVOCATIONS = "/apis/sa-oidc.dev/v1/tokenrevocations"
MINT_RULE = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}


# --- helpers ------------------------------------------------------------------------------------


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(api: Api, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
    kw: dict[str, Any] = {"headers": as_(token)}
    if body is not None:
        kw["json"] = body
    return api.client.request(method, path, **kw)


def sa_subject(ns: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": ns}


def role(api: Api, ns: str, name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    body = {"metadata": {"name": name}, "rules": list(rules)}
    if ns:
        return api.ok(api.post(f"{RBAC}/namespaces/{ns}/roles", body))
    return api.ok(api.post(f"{RBAC}/clusterroles", body))


def bind(
    api: Api, ns: str, name: str, ref_kind: str, ref_name: str, *subjects: dict[str, str]
) -> dict[str, Any]:
    body = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
        "subjects": list(subjects),
    }
    if ns:
        return api.ok(api.post(f"{RBAC}/namespaces/{ns}/rolebindings", body))
    return api.ok(api.post(f"{RBAC}/clusterrolebindings", body))


def mint(api: Api, token: str, ns: str, sa: str) -> httpx.Response:
    return call(api, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", token, {})


def forbidden_text(verb: str, resource: str, group: str, where: str, user: str) -> str:
    return f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {where}'


@pytest.fixture
def dev(api: Api) -> Api:
    """Namespace dev with service accounts app, other and caller (the caller has no grants)."""
    api.ns("dev")
    for name in ("app", "other", "caller"):
        api.sa("dev", name)
    return api


CALLER = "system:serviceaccount:dev:caller"


# --- the stories --------------------------------------------------------------------------------


def test_role_with_resource_names_limits_minting(dev: Api) -> None:
    api = dev
    role(api, "dev", "mint-app", {**MINT_RULE, "resourceNames": ["app"]})
    bind(api, "dev", "caller-mints-app", "Role", "mint-app", sa_subject("dev", "caller"))
    token = api.token("dev", "caller")

    r = mint(api, token, "dev", "app")
    assert r.status_code == 201, r.text
    minted = r.json()["status"]["token"]
    assert api.review(minted)["user"]["username"] == "system:serviceaccount:dev:app"

    r = mint(api, token, "dev", "other")
    assert r.status_code == 403
    body = r.json()
    assert body["reason"] == "Forbidden" and body["kind"] == "Status"
    assert body["message"] == (
        'serviceaccounts "other" is forbidden: '
        + forbidden_text("create", "serviceaccounts/token", "", 'in the namespace "dev"', CALLER)
    )
    assert body["details"] == {"name": "other", "kind": "serviceaccounts"}
    # The minted token of app can do nothing itself (no bindings for app).
    assert mint(api, minted, "dev", "app").status_code == 403


def test_auth_delegator_reviews_tokens_and_reads_the_stream(dev: Api) -> None:
    api = dev
    bind(
        api,
        "",
        "caller-delegator",
        "ClusterRole",
        "system:auth-delegator",
        sa_subject("dev", "caller"),
    )
    token = api.token("dev", "caller")
    app_token = api.token("dev", "app")

    r = call(api, "POST", REVIEW, token, {"spec": {"token": app_token}})
    assert r.status_code == 201 and r.json()["status"]["authenticated"] is True
    r = call(api, "GET", INVALIDATIONS + "?after=0", token)
    assert r.status_code == 200 and r.json()["kind"] == "InvalidationList"
    with api.client.stream(
        "GET", INVALIDATIONS + "?watch=true&timeoutSeconds=1", headers=as_(token)
    ) as w:
        assert w.status_code == 200
        assert b"HEARTBEAT" in next(w.iter_bytes())
    r = call(api, "POST", SAR, token, sar_body("caller", "create", "pods", ns="dev"))
    assert r.status_code == 201 and r.json()["status"]["allowed"] is False

    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    r = call(api, "POST", "/api/v1/namespaces/dev/pods", token, pod)
    assert r.status_code == 403
    assert r.json()["message"] == "pods is forbidden: " + forbidden_text(
        "create", "pods", "", 'in the namespace "dev"', CALLER
    )
    r = call(api, "POST", REVOCATIONS, token, revocation())
    assert r.status_code == 403
    assert r.json()["message"] == "tokenrevocations.sa-oidc.dev is forbidden: " + forbidden_text(
        "create", "tokenrevocations", "sa-oidc.dev", "at the cluster scope", CALLER
    )


def revocation() -> dict[str, Any]:
    return {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": {"jti": "j-1"}}


def test_no_binding_is_forbidden_everywhere(dev: Api) -> None:
    api = dev
    token = api.token("dev", "caller")
    requests = [
        ("GET", "/api/v1/namespaces", None),
        ("POST", "/api/v1/namespaces", {"metadata": {"name": "x"}}),
        ("GET", "/api/v1/namespaces/dev", None),
        ("DELETE", "/api/v1/namespaces/dev", None),
        ("GET", "/api/v1/namespaces/dev/serviceaccounts", None),
        ("GET", "/api/v1/namespaces/dev/serviceaccounts/caller", None),
        ("DELETE", "/api/v1/namespaces/dev/serviceaccounts/app", None),
        ("GET", "/api/v1/secrets", None),
        ("GET", "/api/v1/nodes", None),
        ("POST", "/api/v1/namespaces/dev/serviceaccounts/caller/token", {}),
        ("POST", REVIEW, {"spec": {"token": token}}),
        ("POST", SAR, sar_body("caller", "get", "pods")),
        ("GET", f"{RBAC}/clusterroles", None),
        ("POST", f"{RBAC}/namespaces/dev/roles", {"metadata": {"name": "r"}, "rules": []}),
        ("GET", f"{RBAC}/namespaces/dev/rolebindings/b", None),
        ("GET", INVALIDATIONS, None),
        ("GET", INVALIDATIONS + "?watch=true", None),
        ("POST", REVOCATIONS, revocation()),
    ]
    before = api.snapshot()
    for method, path, body in requests:
        r = call(api, method, path, token, body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["reason"] == "Forbidden"
        assert f'User "{CALLER}" cannot ' in r.json()["message"]
    assert api.snapshot() == before
    for bad in ("garbage", token + "x", token.rsplit(".", 1)[0] + ".AAAA"):
        r = call(api, "GET", "/api/v1/namespaces", bad)
        assert r.status_code == 401
        assert r.json()["message"] == "Unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_admin_keeps_everything(dev: Api) -> None:
    api = dev
    for path in ("/api/v1/namespaces", f"{RBAC}/clusterroles", f"{RBAC}/rolebindings"):
        assert api.get(path).status_code == 200
    assert api.post(SAR, sar_body("x", "delete", "nodes")).status_code == 201
    assert api.post(REVOCATIONS, revocation()).status_code == 201
    assert api.get(INVALIDATIONS).status_code == 200


def test_deleting_the_binding_revokes_at_once(dev: Api) -> None:
    api = dev
    role(api, "dev", "minter", MINT_RULE)
    bind(api, "dev", "caller-mints", "Role", "minter", sa_subject("dev", "caller"))
    token = api.token("dev", "caller")
    assert mint(api, token, "dev", "app").status_code == 201
    r = api.delete(f"{RBAC}/namespaces/dev/rolebindings/caller-mints")
    assert r.status_code == 200
    assert r.json()["status"] == "Success" and r.json()["details"]["kind"] == "rolebindings"
    assert mint(api, token, "dev", "app").status_code == 403
    # Rebinding to a deleted role grants nothing, and says why.
    bind(api, "dev", "caller-mints", "Role", "minter", sa_subject("dev", "caller"))
    assert mint(api, token, "dev", "app").status_code == 201
    api.delete(f"{RBAC}/namespaces/dev/roles/minter")
    r = mint(api, token, "dev", "app")
    assert r.status_code == 403
    assert r.json()["message"].endswith(': RBAC: role.rbac.authorization.k8s.io "minter" not found')


def test_deleted_service_account_token_is_unauthorized(dev: Api) -> None:
    api = dev
    bind(api, "", "caller-admin", "ClusterRole", "cluster-admin", sa_subject("dev", "caller"))
    token = api.token("dev", "caller")
    assert call(api, "GET", "/api/v1/namespaces", token).status_code == 200
    api.delete("/api/v1/namespaces/dev/serviceaccounts/caller")
    r = call(api, "GET", "/api/v1/namespaces", token)
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    # Recreated with the same name: a new uid, the old token stays out.
    api.sa("dev", "caller")
    assert call(api, "GET", "/api/v1/namespaces", token).status_code == 401


def test_legacy_secret_token_and_other_audiences(dev: Api) -> None:
    api = dev
    bind(api, "dev", "caller-view", "ClusterRole", "viewer", sa_subject("dev", "caller"))
    role(api, "", "viewer", {"apiGroups": [""], "resources": ["*"], "verbs": ["get", "list"]})
    secret = api.legacy_secret("dev", "caller-token", "caller")
    import base64

    legacy = base64.b64decode(secret["data"]["token"]).decode()
    assert call(api, "GET", "/api/v1/namespaces/dev/pods", legacy).status_code == 200
    assert call(api, "GET", "/api/v1/pods", legacy).status_code == 403  # RoleBinding: dev only
    api.delete("/api/v1/namespaces/dev/secrets/caller-token")
    assert call(api, "GET", "/api/v1/namespaces/dev/pods", legacy).status_code == 401
    # A token for another audience is not an API credential.
    vault = api.token("dev", "caller", audiences=["vault"])
    assert call(api, "GET", "/api/v1/namespaces/dev/pods", vault).status_code == 401


def test_cross_namespace_subject(dev: Api) -> None:
    api = dev
    api.ns("maintenance")
    api.sa("maintenance", "job")
    role(api, "maintenance", "minter", MINT_RULE)
    bind(api, "maintenance", "dev-caller", "Role", "minter", sa_subject("dev", "caller"))
    token = api.token("dev", "caller")
    assert mint(api, token, "maintenance", "job").status_code == 201
    assert mint(api, token, "dev", "app").status_code == 403
    # A ClusterRole bound by a RoleBinding grants in that namespace only.
    role(api, "", "cluster-minter", MINT_RULE)
    bind(
        api,
        "maintenance",
        "dev-caller-2",
        "ClusterRole",
        "cluster-minter",
        sa_subject("dev", "caller"),
    )
    assert mint(api, token, "dev", "app").status_code == 403
    # Deleting the namespace deletes its Roles and RoleBindings.
    assert api.delete("/api/v1/namespaces/maintenance").status_code == 200
    assert api.get(f"{RBAC}/namespaces/maintenance/rolebindings").json()["items"] == []
    assert api.get(f"{RBAC}/namespaces/maintenance/roles").json()["items"] == []


# --- SubjectAccessReview ------------------------------------------------------------------------


def sar_body(
    user: str,
    verb: str,
    resource: str,
    ns: str = "",
    name: str = "",
    group: str = "",
    sub: str = "",
) -> dict[str, Any]:
    attrs = {"verb": verb, "resource": resource, "namespace": ns, "name": name, "group": group}
    if sub:
        attrs["subresource"] = sub
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:dev:{user}",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:dev"],
            "resourceAttributes": {k: v for k, v in attrs.items() if v},
        },
    }


def test_subject_access_review(dev: Api) -> None:
    api = dev
    role(api, "dev", "mint-app", {**MINT_RULE, "resourceNames": ["app"]})
    bind(api, "dev", "caller-mints-app", "Role", "mint-app", sa_subject("dev", "caller"))
    allowed = api.ok(
        api.post(SAR, sar_body("caller", "create", "serviceaccounts", "dev", "app", sub="token"))
    )
    assert allowed["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "caller-mints-app/dev" of Role "mint-app" to '
        'ServiceAccount "caller/dev"',
    }
    assert allowed["kind"] == "SubjectAccessReview" and allowed["spec"]["user"].endswith("caller")
    denied = api.ok(
        api.post(SAR, sar_body("caller", "create", "serviceaccounts", "dev", "other", sub="token"))
    )
    assert denied["status"] == {"allowed": False}
    # Groups count; the masters group is cluster-admin.
    body = {
        "spec": {
            "groups": ["system:masters"],
            "nonResourceAttributes": {"path": "/x", "verb": "get"},
        }
    }
    assert api.ok(api.post(SAR, body))["status"]["allowed"] is True
    # v1beta1 (kube-apiserver's default webhook version) names the groups field "group".
    beta = {
        "apiVersion": "authorization.k8s.io/v1beta1",
        "kind": "SubjectAccessReview",
        "spec": {
            "group": ["system:masters"],
            "resourceAttributes": {"verb": "get", "resource": "pods"},
        },
    }
    out = api.ok(api.post("/apis/authorization.k8s.io/v1beta1/subjectaccessreviews", beta))
    assert out["apiVersion"] == "authorization.k8s.io/v1beta1" and out["status"]["allowed"] is True


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            {"user": "u"},
            422,
            'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: '
            "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must "
            "be specified",
        ),
        (
            {"resourceAttributes": {"verb": "get"}},
            422,
            'spec.user: Invalid value: "": at least one of user or group must be specified',
        ),
        (
            {"user": "u", "resourceAttributes": {}, "nonResourceAttributes": {}},
            422,
            "spec.nonResourceAttributes: Invalid value: {}: cannot be specified in combination "
            "with resourceAttributes",
        ),
        ({"user": "u", "resourceAttributes": {"verb": 1}}, 400, "json: cannot unmarshal number"),
        ({"user": "u", "nope": 1}, 400, 'strict decoding error: unknown field "spec.nope"'),
        ({"user": "u", "groups": "g"}, 400, "of type []string"),
    ],
)
def test_subject_access_review_errors(
    dev: Api, spec: dict[str, Any], code: int, message: str
) -> None:
    r = dev.post(SAR, {"spec": spec})
    assert r.status_code == code, r.text
    assert message in r.json()["message"]


# --- RBAC objects -------------------------------------------------------------------------------


def test_rbac_objects_crud_and_builtins(dev: Api) -> None:
    api = dev
    created = role(
        api, "dev", "reader", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    )
    assert created["apiVersion"] == "rbac.authorization.k8s.io/v1" and created["kind"] == "Role"
    assert created["metadata"]["namespace"] == "dev" and created["metadata"]["uid"]
    got = api.ok(api.get(f"{RBAC}/namespaces/dev/roles/reader"), 200)
    assert got["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    b = bind(api, "dev", "rb", "Role", "reader", {"kind": "User", "name": "alice"})
    assert b["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
    ]
    listed = api.ok(api.get(f"{RBAC}/rolebindings"), 200)
    assert listed["kind"] == "RoleBindingList" and [
        i["metadata"]["name"] for i in listed["items"]
    ] == ["rb"]

    names = [i["metadata"]["name"] for i in api.ok(api.get(f"{RBAC}/clusterroles"), 200)["items"]]
    # kube's bootstrap ClusterRoles (issuer/bootstrap_policy.py), sorted by name.
    assert names == [
        "admin",
        "cluster-admin",
        "edit",
        "system:aggregate-to-admin",
        "system:aggregate-to-edit",
        "system:aggregate-to-view",
        "system:auth-delegator",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "view",
    ]
    delegator = api.ok(api.get(f"{RBAC}/clusterroles/system:auth-delegator"), 200)
    assert {
        "verbs": ["create"],
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["tokenreviews"],
    } in delegator["rules"]
    crb = api.ok(api.get(f"{RBAC}/clusterrolebindings/cluster-admin"), 200)
    assert crb["subjects"][0]["name"] == "system:masters"
    r = api.post(f"{RBAC}/clusterroles", {"metadata": {"name": "cluster-admin"}, "rules": []})
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"
    r = api.delete(f"{RBAC}/clusterroles/cluster-admin")
    assert r.status_code == 403
    assert r.json()["message"].startswith(
        'clusterroles.rbac.authorization.k8s.io "cluster-admin" is forbidden'
    )

    r = api.post(f"{RBAC}/namespaces/dev/roles", {"metadata": {"name": "reader"}, "rules": []})
    assert r.status_code == 409
    assert r.json()["message"] == 'roles.rbac.authorization.k8s.io "reader" already exists'
    r = api.get(f"{RBAC}/namespaces/dev/roles/nope")
    assert (r.status_code, r.json()["message"]) == (
        404,
        'roles.rbac.authorization.k8s.io "nope" not found',
    )
    r = api.post(f"{RBAC}/namespaces/nowhere/roles", {"metadata": {"name": "x"}, "rules": []})
    assert (r.status_code, r.json()["message"]) == (404, 'namespaces "nowhere" not found')
    assert api.delete(f"{RBAC}/namespaces/dev/roles/nope").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        (
            "namespaces/dev/roles",
            {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
            422,
            'Role.rbac.authorization.k8s.io "r" is invalid: rules[0].verbs: Required value: verbs '
            "must contain at least one value",
        ),
        (
            "namespaces/dev/roles",
            {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]},
            422,
            'rules[0].nonResourceURLs: Invalid value: ["/x"]: namespaced rules cannot apply to '
            "non-resource URLs",
        ),
        (
            "clusterroles",
            {
                "metadata": {"name": "r"},
                "rules": [
                    {
                        "verbs": ["get"],
                        "resources": ["pods"],
                        "resourceNames": ["a"],
                        "apiGroups": [""],
                        "nonResourceURLs": ["/x"],
                    }
                ],
            },
            422,
            "rules cannot apply to both regular resources and non-resource URLs",
        ),
        (
            "clusterroles",
            {
                "metadata": {"name": "r"},
                "rules": [
                    {
                        "verbs": ["get"],
                        "resources": ["a", "b"],
                        "apiGroups": [""],
                        "resourceNames": ["n"],
                    }
                ],
            },
            422,
            "rules[0].resourceNames: Required value: resource names cannot apply to multiple "
            "resources",
        ),
        (
            "clusterroles",
            {"metadata": {"name": "a%b"}, "rules": []},
            422,
            "metadata.name: Invalid value: \"a%b\": may not contain '%'",
        ),
        ("clusterroles", {"rules": []}, 422, "metadata.name: Required value"),
        (
            "clusterrolebindings",
            {
                "metadata": {"name": "b"},
                "roleRef": {"kind": "Role", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "app"}],
            },
            422,
            '[roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole", '
            "subjects[0].namespace: Required value]",
        ),
        (
            "namespaces/dev/rolebindings",
            {
                "metadata": {"name": "b"},
                "roleRef": {"kind": "Role", "name": "r", "apiGroup": "x"},
                "subjects": [{"kind": "Robot", "name": "x"}],
            },
            422,
            'roleRef.apiGroup: Unsupported value: "x": supported values: '
            '"rbac.authorization.k8s.io", subjects[0].kind: Unsupported value: "Robot"',
        ),
        (
            "namespaces/dev/rolebindings",
            {
                "metadata": {"name": "b"},
                "roleRef": {"kind": "Role", "name": "r"},
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": "Bad_Name",
                        "apiGroup": "rbac.authorization.k8s.io",
                    }
                ],
            },
            422,
            'subjects[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain',
        ),
        (
            "namespaces/dev/rolebindings",
            {"metadata": {"name": "b"}, "roleRef": {"kind": "Role"}, "subjects": []},
            422,
            "roleRef.name: Required value",
        ),
        (
            "namespaces/dev/roles",
            {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "extra": 1}]},
            400,
            'strict decoding error: unknown field "rules[0].extra"',
        ),
        (
            "namespaces/dev/roles",
            {"metadata": {"name": "r"}, "rules": [{"verbs": "get"}]},
            400,
            "json: cannot unmarshal string into Go struct field Role.rules.verbs of type []string",
        ),
        (
            "namespaces/dev/roles",
            {"kind": "ClusterRole", "metadata": {"name": "r"}},
            400,
            "must be of type Role",
        ),
        (
            "clusterrolebindings",
            {
                "metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "c"},
                "subjects": [{"kind": "User", "name": "u", "bogus": 1}],
            },
            400,
            'unknown field "subjects[0].bogus"',
        ),
    ],
)
def test_rbac_validation_stores_nothing(
    dev: Api, path: str, body: dict[str, Any], code: int, message: str
) -> None:
    r = dev.post(f"{RBAC}/{path}", body)
    assert r.status_code == code, r.text
    assert message in r.json()["message"], r.json()["message"]
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        assert dev.ctx.store.list_objects(kind, None) == []


# --- escalation prevention ----------------------------------------------------------------------


def test_escalation_prevention(dev: Api) -> None:
    api = dev
    # caller may manage RoleBindings and Roles in dev, and holds get/list pods there.
    role(
        api,
        "dev",
        "rbac-editor",
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles", "rolebindings"],
            "verbs": ["create"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    )
    bind(api, "dev", "caller-editor", "Role", "rbac-editor", sa_subject("dev", "caller"))
    role(api, "dev", "minter", MINT_RULE)
    token = api.token("dev", "caller")

    # Binding a role with permissions the caller lacks: 403, kube's text.
    binding = {
        "metadata": {"name": "self-mint"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "minter"},
        "subjects": [sa_subject("dev", "caller")],
    }
    r = call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, binding)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'rolebindings.rbac.authorization.k8s.io "self-mint" is forbidden: user '
        f'"{CALLER}" (groups=["system:serviceaccounts" "system:serviceaccounts:dev" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["serviceaccounts/token"], Verbs:["create"]}'
    )
    # Nor cluster-admin; nor a role that does not exist (404, as kube).
    bind_admin = {
        **binding,
        "roleRef": {**binding["roleRef"], "kind": "ClusterRole", "name": "cluster-admin"},
    }
    assert (
        call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, bind_admin).status_code
        == 403
    )
    missing = {**binding, "roleRef": {**binding["roleRef"], "name": "ghost"}}
    r = call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, missing)
    assert (r.status_code, r.json()["message"]) == (
        404,
        'roles.rbac.authorization.k8s.io "ghost" not found',
    )
    # Nor write a Role granting more than it holds.
    greedy = {"metadata": {"name": "greedy"}, "rules": [MINT_RULE]}
    assert call(api, "POST", f"{RBAC}/namespaces/dev/roles", token, greedy).status_code == 403
    # A subset of what it holds is fine: a role and a binding to it.
    modest = {
        "metadata": {"name": "pod-getter"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert call(api, "POST", f"{RBAC}/namespaces/dev/roles", token, modest).status_code == 201
    ok = {
        **binding,
        "metadata": {"name": "app-gets"},
        "roleRef": {**binding["roleRef"], "name": "pod-getter"},
        "subjects": [sa_subject("dev", "app")],
    }
    assert call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, ok).status_code == 201
    # "bind" on the minter role (resourceNames limit which) lets it bind that role only.
    role(
        api,
        "dev",
        "minter-binder",
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"],
            "verbs": ["bind"],
            "resourceNames": ["minter"],
        },
    )
    bind(api, "dev", "caller-binder", "Role", "minter-binder", sa_subject("dev", "caller"))
    assert (
        call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, binding).status_code == 201
    )
    assert mint(api, token, "dev", "app").status_code == 201
    assert (
        call(api, "POST", f"{RBAC}/namespaces/dev/rolebindings", token, bind_admin).status_code
        == 403
    )


# --- the official kubernetes client against a live sa-issuer serve ------------------------------

API_AUD = "https://kubernetes.default.svc"


@pytest.fixture
def live(issuer_factory: Any) -> Iterator[tuple[Any, k8s.ApiClient]]:
    proc = issuer_factory.start(config={"key_alg": "ES256", "api_audiences": [API_AUD]})
    cfg = k8s.Configuration(
        host=proc.url,
        api_key={"authorization": proc.admin_token},
        api_key_prefix={"authorization": "Bearer"},
    )
    with k8s.ApiClient(cfg) as admin:
        yield proc, admin


def _client_for(url: str, token: str) -> k8s.ApiClient:
    cfg = k8s.Configuration(
        host=url, api_key={"authorization": token}, api_key_prefix={"authorization": "Bearer"}
    )
    return k8s.ApiClient(cfg)


def test_kubernetes_client_rbac_story(live: tuple[Any, k8s.ApiClient]) -> None:
    proc, admin = live
    core = k8s.CoreV1Api(admin)
    rbac = k8s.RbacAuthorizationV1Api(admin)
    authz = k8s.AuthorizationV1Api(admin)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="dev")))
    for name in ("app", "other", "minter"):
        core.create_namespaced_service_account(
            "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        )
    rbac.create_namespaced_role(
        "dev",
        k8s.V1Role(
            metadata=k8s.V1ObjectMeta(name="mint-app"),
            rules=[
                k8s.V1PolicyRule(
                    api_groups=[""],
                    resources=["serviceaccounts/token"],
                    verbs=["create"],
                    resource_names=["app"],
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        "dev",
        k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name="minter-mints-app"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="mint-app"
            ),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="minter", namespace="dev")],
        ),
    )
    assert [r.metadata.name for r in rbac.list_namespaced_role("dev").items] == ["mint-app"]
    assert "system:auth-delegator" in [r.metadata.name for r in rbac.list_cluster_role().items]

    review = authz.create_subject_access_review(
        k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user="system:serviceaccount:dev:minter",
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace="dev",
                    verb="create",
                    resource="serviceaccounts",
                    subresource="token",
                    name="app",
                ),
            )
        )
    )
    assert review.status.allowed is True and "minter-mints-app" in review.status.reason

    minter_token = core.create_namespaced_service_account_token(
        "minter", "dev", k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[]))
    ).status.token
    with _client_for(proc.url, minter_token) as as_minter:
        mcore = k8s.CoreV1Api(as_minter)
        request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=["vault"]))
        minted = mcore.create_namespaced_service_account_token("app", "dev", request)
        assert minted.status.token.count(".") == 2
        with pytest.raises(ApiException) as err:
            mcore.create_namespaced_service_account_token("other", "dev", request)
        assert err.value.status == 403
        assert (
            'serviceaccounts \\"other\\" is forbidden: User \\"system:serviceaccount:dev:minter\\"'
            in err.value.body
        )
        with pytest.raises(ApiException) as err:
            mcore.list_namespaced_pod("dev")
        assert err.value.status == 403

    rbac.delete_namespaced_role_binding("minter-mints-app", "dev")
    with _client_for(proc.url, minter_token) as as_minter:
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(as_minter).create_namespaced_service_account_token(
                "app", "dev", k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec())
            )
        assert err.value.status == 403
    core.delete_namespaced_service_account("minter", "dev")
    with _client_for(proc.url, minter_token) as as_minter:
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(as_minter).list_namespaced_pod("dev")
        assert err.value.status == 401


def test_namespace_deletion_takes_its_grants_along(dev: Api) -> None:
    """kube's namespace controller deletes Roles and RoleBindings with the namespace; here they go
    before the Namespace object, so a namespace recreated with the same name starts with none."""
    role(dev, "dev", "minter", MINT_RULE)
    bind(dev, "dev", "caller-mints", "Role", "minter", sa_subject("dev", "caller"))
    assert mint(dev, dev.token("dev", "caller"), "dev", "app").status_code == 201

    assert dev.delete("/api/v1/namespaces/dev").status_code == 200
    dev.ns("dev")
    dev.sa("dev", "caller")
    dev.sa("dev", "app")
    for res in ("roles", "rolebindings"):
        listed = dev.client.get(f"{RBAC}/namespaces/dev/{res}", headers=dev.headers)
        assert listed.status_code == 200 and listed.json()["items"] == []
    r = mint(dev, dev.token("dev", "caller"), "dev", "app")
    assert r.status_code == 403, r.text
