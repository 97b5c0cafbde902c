"""Pure RBAC evaluation (issuer.authz): one row per docs/CONTRACTS.md "RBAC" rule, request
attributes from (method, path) like kube's RequestInfoFactory, escalation coverage, and kube's
denial texts."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.authz import (
    ADMIN_GROUPS,
    ADMIN_USER,
    BUILTIN_CLUSTER_ROLES,
    Attributes,
    Binding,
    PolicyRule,
    Role,
    RoleRef,
    Subject,
    authorize,
    breakdown_rule,
    compact_rules,
    covers,
    forbidden_message,
    request_info,
    rule_allows,
    rules_for,
)

SA_DEV_APP = "system:serviceaccount:dev:app"
SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated")


def rule(**kw: Any) -> PolicyRule:
    """PolicyRule from kube's JSON names (verbs=, apiGroups=, resources=, ...)."""
    return PolicyRule.from_json(kw)


def res(
    verb: str, resource: str, group: str = "", ns: str = "", name: str = "", sub: str = ""
) -> Attributes:
    return Attributes(
        user=SA_DEV_APP,
        groups=SA_GROUPS,
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=sub,
        namespace=ns,
        name=name,
    )


def url(verb: str, path: str) -> Attributes:
    return Attributes(
        user=SA_DEV_APP, groups=SA_GROUPS, verb=verb, path=path, resource_request=False
    )


# --- one rule against one request (kube: evaluation_helpers.go) ---------------------------------

MINT = rule(verbs=["create"], apiGroups=[""], resources=["serviceaccounts/token"])

RULE_ROWS = [
    # verbs: "*" or exact
    (
        "verb exact",
        rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
        res("get", "pods"),
        True,
    ),
    (
        "verb other",
        rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
        res("list", "pods"),
        False,
    ),
    ("verb *", rule(verbs=["*"], apiGroups=[""], resources=["pods"]), res("delete", "pods"), True),
    (
        "verb case-sensitive",
        rule(verbs=["GET"], apiGroups=[""], resources=["pods"]),
        res("get", "pods"),
        False,
    ),
    # apiGroups: "*" or exact, "" = core
    (
        "core group",
        rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
        res("get", "pods"),
        True,
    ),
    (
        "core rule, other group",
        rule(verbs=["create"], apiGroups=[""], resources=["tokenreviews"]),
        res("create", "tokenreviews", "authentication.k8s.io"),
        False,
    ),
    (
        "group *",
        rule(verbs=["create"], apiGroups=["*"], resources=["tokenreviews"]),
        res("create", "tokenreviews", "authentication.k8s.io"),
        True,
    ),
    (
        "group prefix is not a match",
        rule(verbs=["create"], apiGroups=["authentication"], resources=["tokenreviews"]),
        res("create", "tokenreviews", "authentication.k8s.io"),
        False,
    ),
    # resources: "*", exact res or res/sub, "*/sub"
    (
        "resource *",
        rule(verbs=["get"], apiGroups=[""], resources=["*"]),
        res("get", "secrets"),
        True,
    ),
    (
        "resource * covers sub",
        rule(verbs=["create"], apiGroups=[""], resources=["*"]),
        res("create", "serviceaccounts", sub="token"),
        True,
    ),
    (
        "res/sub exact",
        MINT,
        res("create", "serviceaccounts", ns="dev", name="app", sub="token"),
        True,
    ),
    ("res/sub is not res", MINT, res("create", "serviceaccounts", ns="dev", name="app"), False),
    (
        "res is not res/sub",
        rule(verbs=["create"], apiGroups=[""], resources=["serviceaccounts"]),
        res("create", "serviceaccounts", ns="dev", name="app", sub="token"),
        False,
    ),
    (
        "*/sub",
        rule(verbs=["create"], apiGroups=[""], resources=["*/token"]),
        res("create", "serviceaccounts", ns="dev", name="app", sub="token"),
        True,
    ),
    (
        "*/sub other sub",
        rule(verbs=["get"], apiGroups=[""], resources=["*/status"]),
        res("get", "serviceaccounts", ns="dev", name="app", sub="token"),
        False,
    ),
    (
        "*/sub needs a sub",
        rule(verbs=["get"], apiGroups=[""], resources=["*/status"]),
        res("get", "pods"),
        False,
    ),
    (
        "*/sub must be the whole sub",
        rule(verbs=["get"], apiGroups=[""], resources=["*/en"]),
        res("get", "serviceaccounts", sub="token"),
        False,
    ),
    # resourceNames: empty = all, else exact
    ("no names = all", MINT, res("create", "serviceaccounts", name="anything", sub="token"), True),
    (
        "names limit",
        rule(
            verbs=["create"],
            apiGroups=[""],
            resources=["serviceaccounts/token"],
            resourceNames=["app"],
        ),
        res("create", "serviceaccounts", ns="dev", name="app", sub="token"),
        True,
    ),
    (
        "names refuse others",
        rule(
            verbs=["create"],
            apiGroups=[""],
            resources=["serviceaccounts/token"],
            resourceNames=["app"],
        ),
        res("create", "serviceaccounts", ns="dev", name="other", sub="token"),
        False,
    ),
    (
        "names refuse nameless (list)",
        rule(verbs=["list"], apiGroups=[""], resources=["pods"], resourceNames=["web"]),
        res("list", "pods", ns="dev"),
        False,
    ),
    # nonResourceURLs: exact, "*", trailing "*" prefix; never for resource requests
    ("url exact", rule(verbs=["get"], nonResourceURLs=["/healthz"]), url("get", "/healthz"), True),
    (
        "url exact only",
        rule(verbs=["get"], nonResourceURLs=["/healthz"]),
        url("get", "/healthz/ready"),
        False,
    ),
    (
        "url prefix",
        rule(verbs=["get"], nonResourceURLs=["/healthz/*"]),
        url("get", "/healthz/ready"),
        True,
    ),
    (
        "url prefix w/o slash",
        rule(verbs=["get"], nonResourceURLs=["/health*"]),
        url("get", "/healthz"),
        True,
    ),
    (
        "url prefix other",
        rule(verbs=["get"], nonResourceURLs=["/healthz/*"]),
        url("get", "/metrics"),
        False,
    ),
    ("url *", rule(verbs=["get"], nonResourceURLs=["*"]), url("get", "/anything"), True),
    ("url verb", rule(verbs=["get"], nonResourceURLs=["*"]), url("post", "/anything"), False),
    ("url rule vs resource", rule(verbs=["*"], nonResourceURLs=["*"]), res("get", "pods"), False),
    (
        "resource rule vs url",
        rule(verbs=["*"], apiGroups=["*"], resources=["*"]),
        url("get", "/metrics"),
        False,
    ),
    # empty lists allow nothing
    ("no verbs", rule(apiGroups=["*"], resources=["*"]), res("get", "pods"), False),
    ("no groups", rule(verbs=["*"], resources=["*"]), res("get", "pods"), False),
]


@pytest.mark.parametrize(
    ("rule_", "attrs", "allowed"), [r[1:] for r in RULE_ROWS], ids=[r[0] for r in RULE_ROWS]
)
def test_rule_allows(rule_: PolicyRule, attrs: Attributes, allowed: bool) -> None:
    assert rule_allows(attrs, rule_) is allowed


# --- bindings (kube: rule.go VisitRulesFor / appliesToUser) --------------------------------------

MINTER = Role("minter", (MINT,), namespace="dev")
MINTER_IN_MAINT = Role("minter", (MINT,), namespace="maintenance")
POD_READER = Role("pod-reader", (rule(verbs=["get", "list"], apiGroups=[""], resources=["pods"]),))


def rb(ns: str, ref: RoleRef, *subjects: Subject, name: str = "b") -> Binding:
    return Binding(name, ref, subjects, namespace=ns)


def crb(ref: RoleRef, *subjects: Subject, name: str = "b") -> Binding:
    return Binding(name, ref, subjects)


SA_APP = Subject("ServiceAccount", "app", "dev")
SA_APP_NO_NS = Subject("ServiceAccount", "app")

BINDING_ROWS: list[tuple[str, dict[str, Any], Attributes, bool]] = [
    (
        "RoleBinding grants in its namespace",
        {"roles": [MINTER], "rbs": [rb("dev", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", ns="dev", name="app", sub="token"),
        True,
    ),
    (
        "RoleBinding grants nothing in another namespace",
        {"roles": [MINTER], "rbs": [rb("dev", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", ns="prod", name="app", sub="token"),
        False,
    ),
    (
        "RoleBinding grants nothing cluster-wide",
        {"roles": [MINTER], "rbs": [rb("dev", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", name="app", sub="token"),
        False,
    ),
    (
        "RoleBinding in maintenance binds a subject from dev",
        {"roles": [MINTER_IN_MAINT], "rbs": [rb("maintenance", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", ns="maintenance", name="job", sub="token"),
        True,
    ),
    (
        "...but not in dev",
        {"roles": [MINTER_IN_MAINT], "rbs": [rb("maintenance", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", ns="dev", name="job", sub="token"),
        False,
    ),
    (
        "SA subject without namespace = binding's namespace",
        {"roles": [MINTER], "rbs": [rb("dev", RoleRef("Role", "minter"), SA_APP_NO_NS)]},
        res("create", "serviceaccounts", ns="dev", name="x", sub="token"),
        True,
    ),
    (
        "SA subject without namespace in maintenance is maintenance's SA",
        {
            "roles": [MINTER_IN_MAINT],
            "rbs": [rb("maintenance", RoleRef("Role", "minter"), SA_APP_NO_NS)],
        },
        res("create", "serviceaccounts", ns="maintenance", name="x", sub="token"),
        False,
    ),
    (
        "SA subject without namespace in a ClusterRoleBinding matches no one",
        {
            "cluster_roles": [POD_READER],
            "crbs": [crb(RoleRef("ClusterRole", "pod-reader"), SA_APP_NO_NS)],
        },
        res("get", "pods", ns="dev", name="web"),
        False,
    ),
    (
        "Role ref resolves in the binding's namespace only",
        {"roles": [MINTER_IN_MAINT], "rbs": [rb("dev", RoleRef("Role", "minter"), SA_APP)]},
        res("create", "serviceaccounts", ns="dev", name="x", sub="token"),
        False,
    ),
    (
        "ClusterRole via RoleBinding grants in that namespace",
        {
            "cluster_roles": [POD_READER],
            "rbs": [rb("dev", RoleRef("ClusterRole", "pod-reader"), SA_APP)],
        },
        res("list", "pods", ns="dev"),
        True,
    ),
    (
        "ClusterRole via RoleBinding: not in other namespaces",
        {
            "cluster_roles": [POD_READER],
            "rbs": [rb("dev", RoleRef("ClusterRole", "pod-reader"), SA_APP)],
        },
        res("list", "pods", ns="prod"),
        False,
    ),
    (
        "ClusterRole via RoleBinding: not across all namespaces",
        {
            "cluster_roles": [POD_READER],
            "rbs": [rb("dev", RoleRef("ClusterRole", "pod-reader"), SA_APP)],
        },
        res("list", "pods"),
        False,
    ),
    (
        "ClusterRoleBinding grants everywhere",
        {
            "cluster_roles": [POD_READER],
            "crbs": [crb(RoleRef("ClusterRole", "pod-reader"), SA_APP)],
        },
        res("list", "pods"),
        True,
    ),
    (
        "Group subject",
        {
            "cluster_roles": [POD_READER],
            "crbs": [
                crb(
                    RoleRef("ClusterRole", "pod-reader"),
                    Subject("Group", "system:serviceaccounts:dev"),
                )
            ],
        },
        res("get", "pods", ns="x", name="y"),
        True,
    ),
    (
        "User subject",
        {
            "cluster_roles": [POD_READER],
            "crbs": [crb(RoleRef("ClusterRole", "pod-reader"), Subject("User", SA_DEV_APP))],
        },
        res("get", "pods", ns="x", name="y"),
        True,
    ),
    (
        "User subject is not a group",
        {
            "cluster_roles": [POD_READER],
            "crbs": [
                crb(RoleRef("ClusterRole", "pod-reader"), Subject("User", "system:serviceaccounts"))
            ],
        },
        res("get", "pods", ns="x", name="y"),
        False,
    ),
    (
        "unknown subject kind",
        {
            "cluster_roles": [POD_READER],
            "crbs": [crb(RoleRef("ClusterRole", "pod-reader"), Subject("Robot", "app", "dev"))],
        },
        res("get", "pods", ns="x", name="y"),
        False,
    ),
    (
        "missing role grants nothing",
        {"rbs": [rb("dev", RoleRef("Role", "gone"), SA_APP)]},
        res("get", "pods", ns="dev", name="y"),
        False,
    ),
    (
        "built-in auth-delegator via a stored binding",
        {"crbs": [crb(RoleRef("ClusterRole", "system:auth-delegator"), SA_APP)]},
        res("create", "tokenreviews", "authentication.k8s.io"),
        True,
    ),
    (
        "auth-delegator: subjectaccessreviews",
        {"crbs": [crb(RoleRef("ClusterRole", "system:auth-delegator"), SA_APP)]},
        res("create", "subjectaccessreviews", "authorization.k8s.io"),
        True,
    ),
    (
        "auth-delegator: watch the invalidation stream",
        {"crbs": [crb(RoleRef("ClusterRole", "system:auth-delegator"), SA_APP)]},
        res("watch", "invalidations", "sa-oidc.dev"),
        True,
    ),
    (
        "auth-delegator: not token revocations",
        {"crbs": [crb(RoleRef("ClusterRole", "system:auth-delegator"), SA_APP)]},
        res("create", "tokenrevocations", "sa-oidc.dev"),
        False,
    ),
    (
        "auth-delegator: not pods",
        {"crbs": [crb(RoleRef("ClusterRole", "system:auth-delegator"), SA_APP)]},
        res("create", "pods", ns="dev"),
        False,
    ),
    ("nothing bound", {}, res("get", "pods", ns="dev", name="x"), False),
]


@pytest.mark.parametrize(
    ("objects", "attrs", "allowed"), [r[1:] for r in BINDING_ROWS], ids=[r[0] for r in BINDING_ROWS]
)
def test_authorize_bindings(objects: dict[str, Any], attrs: Attributes, allowed: bool) -> None:
    decision = authorize(
        attrs,
        objects.get("roles", ()),
        objects.get("cluster_roles", ()),
        objects.get("rbs", ()),
        objects.get("crbs", ()),
    )
    assert decision.allowed is allowed, decision


def test_admin_is_cluster_admin_without_stored_objects() -> None:
    for attrs in (res("delete", "namespaces", ns="dev", name="dev"), url("get", "/anything")):
        decision = authorize(attrs.as_user(ADMIN_USER, ADMIN_GROUPS))
        assert decision.allowed
        assert decision.reason == (
            'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" '
            'to Group "system:masters"'
        )


def test_reasons_name_the_binding_and_resolution_errors() -> None:
    ok = authorize(
        res("create", "serviceaccounts", ns="maintenance", name="x", sub="token"),
        [MINTER_IN_MAINT],
        role_bindings=[rb("maintenance", RoleRef("Role", "minter"), SA_APP, name="mint")],
    )
    # kube: rule.go roleBindingDescriber / describeSubject
    assert ok.reason == (
        'RBAC: allowed by RoleBinding "mint/maintenance" of Role "minter" to '
        'ServiceAccount "app/dev"'
    )
    one = authorize(
        res("get", "pods", ns="dev"), role_bindings=[rb("dev", RoleRef("Role", "gone"), SA_APP)]
    )
    assert one == type(one)(False, 'RBAC: role.rbac.authorization.k8s.io "gone" not found')
    two = authorize(
        res("get", "pods", ns="dev"),
        role_bindings=[rb("dev", RoleRef("Role", "gone"), SA_APP)],
        cluster_role_bindings=[crb(RoleRef("ClusterRole", "nope"), SA_APP)],
    )
    assert two.reason == (
        'RBAC: [clusterrole.rbac.authorization.k8s.io "nope" not found, '
        'role.rbac.authorization.k8s.io "gone" not found]'
    )


def test_rules_for_collects_every_applicable_rule() -> None:
    rules, errors = rules_for(
        SA_DEV_APP,
        SA_GROUPS,
        "dev",
        [MINTER],
        [POD_READER],
        [
            rb("dev", RoleRef("Role", "minter"), SA_APP),
            rb("prod", RoleRef("Role", "minter"), SA_APP),
        ],
        [crb(RoleRef("ClusterRole", "pod-reader"), Subject("Group", "system:serviceaccounts"))],
    )
    # kube's bootstrap bindings come first: basic-user, discovery and public-info-viewer for
    # system:authenticated, service-account-issuer-discovery for system:serviceaccounts.
    builtin = [
        rule
        for name in (
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:service-account-issuer-discovery",
        )
        for rule in BUILTIN_CLUSTER_ROLES[name].rules
    ]
    assert rules == [*builtin, *POD_READER.rules, MINT]
    assert errors == []


# --- request attributes (kube: requestinfo.go) --------------------------------------------------

REQUEST_ROWS = [
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
    ("POST", "/api/v1/namespaces", {}, ("create", "", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/dev", {}, ("get", "", "namespaces", "", "dev", "dev")),
    ("DELETE", "/api/v1/namespaces/dev", {}, ("delete", "", "namespaces", "", "dev", "dev")),
    ("GET", "/api/v1/namespaces/dev/pods", {}, ("list", "", "pods", "", "dev", "")),
    ("HEAD", "/api/v1/namespaces/dev/pods/web", {}, ("get", "", "pods", "", "dev", "web")),
    (
        "POST",
        "/api/v1/namespaces/dev/serviceaccounts",
        {},
        ("create", "", "serviceaccounts", "", "dev", ""),
    ),
    ("DELETE", "/api/v1/namespaces/dev/secrets/s", {}, ("delete", "", "secrets", "", "dev", "s")),
    (
        "DELETE",
        "/api/v1/namespaces/dev/secrets",
        {},
        ("deletecollection", "", "secrets", "", "dev", ""),
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/serviceaccounts/app/token",
        {},
        ("create", "", "serviceaccounts", "token", "dev", "app"),
    ),
    ("GET", "/api/v1/pods", {}, ("list", "", "pods", "", "", "")),
    ("GET", "/api/v1/nodes/n1", {}, ("get", "", "nodes", "", "", "n1")),
    ("GET", "/api/v1/namespaces/dev/status", {}, ("get", "", "namespaces", "status", "dev", "dev")),
    (
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {},
        ("create", "authentication.k8s.io", "tokenreviews", "", "", ""),
    ),
    (
        "POST",
        "/apis/authentication.k8s.io/v1beta1/tokenreviews",
        {},
        ("create", "authentication.k8s.io", "tokenreviews", "", "", ""),
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {},
        ("create", "authorization.k8s.io", "subjectaccessreviews", "", "", ""),
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:auth-delegator",
        {},
        ("get", "rbac.authorization.k8s.io", "clusterroles", "", "", "system:auth-delegator"),
    ),
    (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
        {},
        ("create", "rbac.authorization.k8s.io", "rolebindings", "", "dev", ""),
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        {},
        ("list", "rbac.authorization.k8s.io", "rolebindings", "", "", ""),
    ),
    (
        "GET",
        "/apis/sa-oidc.dev/v1/invalidations",
        {"after": "3"},
        ("list", "sa-oidc.dev", "invalidations", "", "", ""),
    ),
    (
        "GET",
        "/apis/sa-oidc.dev/v1/invalidations",
        {"watch": "true"},
        ("watch", "sa-oidc.dev", "invalidations", "", "", ""),
    ),
    (
        "GET",
        "/apis/sa-oidc.dev/v1/invalidations",
        {"watch": "1"},
        ("watch", "sa-oidc.dev", "invalidations", "", "", ""),
    ),
    (
        "GET",
        "/apis/sa-oidc.dev/v1/invalidations",
        {"watch": "false"},
        ("list", "sa-oidc.dev", "invalidations", "", "", ""),
    ),
    (
        "POST",
        "/apis/sa-oidc.dev/v1/tokenrevocations",
        {},
        ("create", "sa-oidc.dev", "tokenrevocations", "", "", ""),
    ),
    ("GET", "/api/v1/watch/namespaces/dev/pods", {}, ("watch", "", "pods", "", "dev", "")),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "want"), REQUEST_ROWS, ids=[f"{r[0]} {r[1]}" for r in REQUEST_ROWS]
)
def test_request_info(method: str, path: str, query: dict[str, str], want: tuple[str, ...]) -> None:
    a = request_info(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want
    assert a.path == path and a.user == "" and a.groups == ()


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/healthz", "get"),
        ("GET", "/", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis/rbac.authorization.k8s.io", "get"),
        ("GET", "/apis/rbac.authorization.k8s.io/v1", "get"),
        ("POST", "/openid/v1/jwks", "post"),
        ("GET", "/other/v1/things", "get"),
    ],
)
def test_request_info_non_resource(method: str, path: str, verb: str) -> None:
    a = request_info(method, path)
    assert (a.resource_request, a.verb, a.path, a.resource) == (False, verb, path, "")


# --- escalation (kube: policy_comparator.go) ----------------------------------------------------

COVER_ROWS = [
    ("star covers all", [rule(verbs=["*"], apiGroups=["*"], resources=["*"])], [MINT], True),
    ("exact", [MINT], [MINT], True),
    (
        "*/sub covers res/sub",
        [rule(verbs=["create"], apiGroups=[""], resources=["*/token"])],
        [MINT],
        True,
    ),
    (
        "res does not cover res/sub",
        [rule(verbs=["create"], apiGroups=[""], resources=["serviceaccounts"])],
        [MINT],
        False,
    ),
    (
        "names: owner without names covers named",
        [MINT],
        [
            rule(
                verbs=["create"],
                apiGroups=[""],
                resources=["serviceaccounts/token"],
                resourceNames=["app"],
            )
        ],
        True,
    ),
    (
        "names: named owner does not cover all names",
        [
            rule(
                verbs=["create"],
                apiGroups=[""],
                resources=["serviceaccounts/token"],
                resourceNames=["app"],
            )
        ],
        [MINT],
        False,
    ),
    (
        "verbs split across rules",
        [
            rule(verbs=["get"], apiGroups=[""], resources=["pods"]),
            rule(verbs=["list"], apiGroups=[""], resources=["pods"]),
        ],
        [POD_READER.rules[0]],
        True,
    ),
    (
        "url prefix covers",
        [rule(verbs=["get"], nonResourceURLs=["/api/*"])],
        [rule(verbs=["get"], nonResourceURLs=["/api/v1"])],
        True,
    ),
    (
        "url exact does not cover prefix",
        [rule(verbs=["get"], nonResourceURLs=["/api"])],
        [rule(verbs=["get"], nonResourceURLs=["/api/*"])],
        False,
    ),
    ("nothing held", [], [MINT], False),
    ("nothing asked", [], [], True),
]


@pytest.mark.parametrize(
    ("owner", "servant", "ok"), [r[1:] for r in COVER_ROWS], ids=[r[0] for r in COVER_ROWS]
)
def test_covers(owner: list[PolicyRule], servant: list[PolicyRule], ok: bool) -> None:
    assert covers(owner, servant)[0] is ok


def test_breakdown_and_compact() -> None:
    big = rule(
        verbs=["get", "list"], apiGroups=["", "apps"], resources=["pods"], nonResourceURLs=[]
    )
    parts = breakdown_rule(big)
    assert len(parts) == 4 and all(len(p.verbs) == 1 for p in parts)
    compact = compact_rules(parts)
    assert sorted(r.compact_string() for r in compact) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}',
        '{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "list"]}',
    ]
    ok, missing = covers([rule(verbs=["get"], apiGroups=[""], resources=["pods"])], [big])
    assert not ok and len(missing) == 3


# --- denial texts (kube: responsewriters/errors.go forbiddenMessage) -----------------------------


def test_forbidden_messages() -> None:
    assert forbidden_message(res("create", "serviceaccounts", ns="dev", name="x", sub="token")) == (
        'User "system:serviceaccount:dev:app" cannot create resource "serviceaccounts/token" in '
        'API group "" in the namespace "dev"'
    )
    assert forbidden_message(res("create", "tokenreviews", "authentication.k8s.io")) == (
        'User "system:serviceaccount:dev:app" cannot create resource "tokenreviews" in API group '
        '"authentication.k8s.io" at the cluster scope'
    )
    assert forbidden_message(url("get", "/metrics")) == (
        'User "system:serviceaccount:dev:app" cannot get path "/metrics"'
    )


def test_from_object_tolerates_partial_documents() -> None:
    role = Role.from_object(
        {"metadata": {"name": "r", "namespace": "dev"}, "rules": [{"verbs": ["get"]}, "junk"]}
    )
    assert role == Role("r", (PolicyRule(verbs=("get",)),), "dev")
    binding = Binding.from_object(
        {"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "c"}}
    )
    assert binding.subjects == () and binding.role_ref.name == "c" and binding.namespace == ""
