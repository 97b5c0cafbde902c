"""The RBAC index (issuer/rbac_index.py) decides exactly as a from-scratch evaluation, stays current
across processes, and fails closed.

- Property: random Roles, ClusterRoles (labels, aggregationRule), RoleBindings and
  ClusterRoleBindings are written to, replaced in and deleted from a real store step by step; after
  every step the index's decision equals ``authz.authorize`` over every stored object, for every
  user, group set, namespace and request in a fixed grid. One index lives through all the steps,
  so its incremental rebuilds are what is checked.
- Two real ``sa-issuer serve`` processes on one Redis: a binding created through A is enforced by
  B, and its deletion through A revokes on B, on the very next request.
- Redis gone after the index was warm: 503 with a Status, never a decision from memory.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from _services import RedisServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuer import authz
from issuer.api.auth import decide
from issuer.authz import Attributes, Binding, Role
from issuer.rbac_index import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
    RbacIndex,
    index_for,
)
from issuer.selectors import label_selector_from_json
from issuer.store import NotFound, Store, StoreUnavailable
from issuer.store.redis_store import RedisStore
from issuer.store.sqlite import SQLiteStore

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
NAMESPACES = ("a", "b")
USERS = ("u1", "u2", "system:serviceaccount:a:s1", "system:serviceaccount:b:s1")
GROUP_SETS = ((), ("g1",), ("g1", "g2"), ("system:serviceaccounts",))
REQUESTS = (
    Attributes(verb="get", resource="pods", namespace="a", name="p"),
    Attributes(verb="create", resource="serviceaccounts", subresource="token", namespace="b"),
    Attributes(verb="list", resource="secrets", namespace="a"),
    Attributes(verb="get", api_group="apps", resource="deployments"),
    Attributes(verb="get", path="/healthz", resource_request=False),
)

# --- random policies ----------------------------------------------------------------------------

rules = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "verbs": st.lists(st.sampled_from(["get", "list", "create", "*"]), min_size=1),
                "apiGroups": st.lists(st.sampled_from(["", "apps", "*"]), min_size=1),
                "resources": st.lists(
                    st.sampled_from(["pods", "secrets", "serviceaccounts/token", "*"]), min_size=1
                ),
            }
        ),
        st.fixed_dictionaries(
            {"verbs": st.just(["get"]), "nonResourceURLs": st.sampled_from([["/healthz"], ["*"]])}
        ),
    ),
    max_size=2,
)
# Some labels make a stored role part of the built-in admin/edit/view aggregation.
LABEL_KEYS = ["agg", "tier", "rbac.authorization.k8s.io/aggregate-to-view"]
labels = st.dictionaries(
    st.sampled_from(LABEL_KEYS), st.sampled_from(["x", "y", "true"]), max_size=2
)
selector = st.one_of(
    st.builds(lambda m: {"matchLabels": m}, labels),
    st.builds(
        lambda k, op: {"matchExpressions": [{"key": k, "operator": op}]},
        st.sampled_from(["agg", "tier"]),
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
    st.builds(
        lambda k, v: {"matchExpressions": [{"key": k, "operator": "In", "values": v}]},
        st.sampled_from(["agg", "tier"]),
        st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=2),
    ),
)
subject = st.one_of(
    st.builds(lambda n: {"kind": "User", "name": n}, st.sampled_from(["u1", "u2"])),
    st.builds(
        lambda n: {"kind": "Group", "name": n},
        st.sampled_from(["g1", "g2", "system:serviceaccounts"]),
    ),
    st.builds(
        lambda ns: {"kind": "ServiceAccount", "name": "s1", "namespace": ns},
        st.sampled_from(["", *NAMESPACES]),
    ),
)
cluster_role_names = st.sampled_from(
    ["c1", "c2", "c3", "cluster-admin", "view", "edit", "admin", "missing"]
)


def _meta(name: str, ns: str, lbls: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": str(uuid.uuid4())}
    if ns:
        meta["namespace"] = ns
    if lbls:
        meta["labels"] = lbls
    return meta


@st.composite
def rbac_object(draw: st.DrawFn) -> tuple[str, str, str, dict[str, Any]]:
    kind = draw(st.sampled_from([ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING]))
    ns = draw(st.sampled_from(NAMESPACES)) if kind in (ROLE, ROLE_BINDING) else ""
    if kind == ROLE:
        name = draw(st.sampled_from(["r1", "r2"]))
        return kind, ns, name, {"metadata": _meta(name, ns), "rules": draw(rules)}
    if kind == CLUSTER_ROLE:
        name = draw(st.sampled_from(["c1", "c2", "c3"]))
        obj: dict[str, Any] = {"metadata": _meta(name, "", draw(labels)), "rules": draw(rules)}
        if draw(st.booleans()):
            obj["aggregationRule"] = {
                "clusterRoleSelectors": draw(st.lists(selector, min_size=1, max_size=2))
            }
        return kind, ns, name, obj
    name = draw(st.sampled_from(["b1", "b2", "b3"]))
    if kind == ROLE_BINDING and draw(st.booleans()):
        ref = {"kind": "Role", "name": draw(st.sampled_from(["r1", "r2", "missing"]))}
    else:
        ref = {"kind": "ClusterRole", "name": draw(cluster_role_names)}
    ref["apiGroup"] = authz.RBAC_GROUP
    body = {"metadata": _meta(name, ns), "roleRef": ref, "subjects": draw(st.lists(subject))}
    return kind, ns, name, body


step = st.one_of(
    st.tuples(st.just("put"), rbac_object()),
    st.tuples(
        st.just("delete"),
        st.tuples(
            st.sampled_from([ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING]),
            st.sampled_from(NAMESPACES),
            st.sampled_from(["r1", "r2", "c1", "c2", "c3", "b1", "b2", "b3"]),
        ),
    ),
)

# --- the oracle ---------------------------------------------------------------------------------


def from_scratch(store: Store, attrs: Attributes) -> authz.Decision:
    """kube's evaluation over every stored object, no index."""
    return authz.authorize(
        attrs,
        [Role.from_object(o) for o in store.list_objects(ROLE, None)],
        [Role.from_object(o) for o in store.list_objects(CLUSTER_ROLE, "")],
        [Binding.from_object(o) for o in store.list_objects(ROLE_BINDING, None)],
        [Binding.from_object(o) for o in store.list_objects(CLUSTER_ROLE_BINDING, "")],
    )


def apply(store: Store, op: str, what: Any) -> None:
    if op == "put":
        kind, ns, name, obj = what
        try:
            store.update_object(kind, ns, name, obj)
        except NotFound:
            store.create_object(kind, ns, name, obj)
        return
    kind, ns, name = what
    if kind in (CLUSTER_ROLE, CLUSTER_ROLE_BINDING):
        ns = ""
    with contextlib.suppress(NotFound):
        store.delete_object(kind, ns, name)


def check_agrees(store: Store) -> None:
    for user in USERS:
        for groups in GROUP_SETS:
            for req in REQUESTS:
                attrs = req.as_user(user, groups)
                assert decide(store, attrs) == from_scratch(store, attrs), (user, groups, req)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_index_agrees_with_from_scratch_evaluation(steps: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "issuer.db")
        try:
            check_agrees(store)
            for op, what in steps:
                apply(store, op, what)
                check_agrees(store)
        finally:
            store.close()


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(step, min_size=1, max_size=6))
def test_index_agrees_on_redis(redis_url: str, steps: list[tuple[str, Any]]) -> None:
    store = RedisStore.from_url(redis_url, prefix=uuid.uuid4().hex)
    try:
        for op, what in steps:
            apply(store, op, what)
            check_agrees(store)
    finally:
        store.close()


@st.composite
def aggregating_cluster_role(draw: st.DrawFn, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": _meta(name, "", draw(labels)), "rules": draw(rules)}
    if draw(st.booleans()):
        obj["aggregationRule"] = {
            "clusterRoleSelectors": draw(st.lists(selector, min_size=1, max_size=2))
        }
    return obj


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    roles=st.tuples(*(aggregating_cluster_role(n) for n in ("c1", "c2", "c3", "c4"))),
    bound=st.lists(
        st.sampled_from(["c1", "c2", "c3", "c4", "view", "admin"]), min_size=1, max_size=2
    ),
)
def test_aggregation_agrees_with_from_scratch_evaluation(
    roles: tuple[dict[str, Any], ...], bound: list[str]
) -> None:
    """Every ClusterRole present, some aggregating others (chains, cycles): a user bound to some
    of them holds exactly what kube's aggregation gives."""
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "issuer.db")
        try:
            for obj in roles:
                store.create_object(CLUSTER_ROLE, "", obj["metadata"]["name"], obj)
            for i, name in enumerate(bound):
                store.create_object(CLUSTER_ROLE_BINDING, "", f"b{i}", {
                    "metadata": _meta(f"b{i}", ""),
                    "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "ClusterRole", "name": name},
                    "subjects": [{"kind": "User", "name": "u1"}],
                })  # fmt: skip
            for req in REQUESTS:
                attrs = req.as_user("u1", ())
                assert decide(store, attrs) == from_scratch(store, attrs), req
        finally:
            store.close()


def test_aggregated_rules_are_the_selected_roles_rules() -> None:
    """kube's controller: per selector, matching roles in name order, never itself, each rule
    once; the role's own rules are replaced; a chain reaches through."""
    get = authz.PolicyRule(("get",), ("",), ("pods",))
    lst = authz.PolicyRule(("list",), ("",), ("pods",))
    sel = label_selector_from_json({"matchLabels": {"agg": "x"}})
    roles = {
        "view": Role("view", (get,), labels=(("agg", "x"),)),
        "edit": Role("edit", (lst,), labels=(("agg", "x"),), aggregation=(sel,)),
        "admin": Role("admin", (lst,), aggregation=(sel,)),
        "none": Role("none", (get,), aggregation=()),
    }
    out = authz.resolve_aggregation(roles)
    assert out["view"].rules == (get,)
    assert out["edit"].rules == (get,)  # its own rule is replaced; itself is not selected
    assert out["admin"].rules == (get,)  # edit (aggregated: get) and view (get), once
    assert out["none"].rules == ()


def test_stored_role_aggregates_into_a_built_in(tmp_path: Path) -> None:
    """A stored ClusterRole labelled aggregate-to-view grants through the built-in ``view``
    (kube's aggregation of the default roles), from scratch and from the index alike."""
    store = SQLiteStore(tmp_path / "issuer.db")
    try:
        mint = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
        store.create_object(CLUSTER_ROLE, "", "extra", {
            "metadata": _meta("extra", "", {"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            "rules": [mint],
        })  # fmt: skip
        store.create_object(CLUSTER_ROLE_BINDING, "", "u1-views", {
            "metadata": _meta("u1-views", ""),
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "u1"}],
        })  # fmt: skip
        attrs = REQUESTS[1].as_user("u1", ())
        assert from_scratch(store, attrs).allowed
        assert decide(store, attrs) == from_scratch(store, attrs)
        assert not authz.authorize(attrs).allowed  # the built-ins alone do not allow it
    finally:
        store.close()


def test_unchanged_policy_is_not_rebuilt(tmp_path: Path) -> None:
    """Steady state: decisions read revisions only; a change rebuilds just its part."""
    store = SQLiteStore(tmp_path / "issuer.db")
    try:
        index = RbacIndex(store)
        index.policy("u1", (), "a")
        built = index.rebuilds
        for _ in range(5):
            index.policy("u1", (), "a")
        assert index.rebuilds == built
        apply(store, "put", (ROLE_BINDING, "b", "x", {"metadata": _meta("x", "b")}))
        index.policy("u1", (), "a")
        assert index.rebuilds == built  # namespace b changed, a did not
        index.policy("u1", (), "b")
        assert index.rebuilds == built + 1
    finally:
        store.close()


def test_namespaces_kept_are_bounded(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "issuer.db")
    try:
        index = RbacIndex(store, max_namespaces=2)
        for ns in ("a", "b", "c", "a"):
            index.policy("u1", (), ns)
        assert list(index._namespaces) == ["c", "a"]
    finally:
        store.close()


# --- across processes, and failing closed -------------------------------------------------------


def _bind_sa(client: httpx.Client, headers: dict[str, str]) -> None:
    role = {"metadata": {"name": "minter"}, "rules": [
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
    ]}  # fmt: skip
    r = client.post(f"{RBAC}/namespaces/dev/roles", json=role, headers=headers)
    assert r.status_code == 201, r.text


def test_binding_created_on_one_replica_is_enforced_on_another(
    issuer_factory: Any, redis_url: str
) -> None:
    kek = issuer_factory.make_kek()
    # One issuer URL for both replicas (behind one load balancer), one Redis.
    a = issuer_factory.start(store=redis_url, kek=kek, issuer="https://issuer.example.com")
    b = issuer_factory.start(store=redis_url, kek=kek, issuer="https://issuer.example.com")
    admin = {"Authorization": f"Bearer {a.admin_token}"}
    with a.client() as ca, b.client() as cb:
        assert ca.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}},
                       headers=admin).status_code == 201  # fmt: skip
        for sa in ("app", "caller"):
            r = ca.post("/api/v1/namespaces/dev/serviceaccounts", json={"metadata": {"name": sa}},
                        headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
        _bind_sa(ca, admin)
        r = ca.post("/api/v1/namespaces/dev/serviceaccounts/caller/token", json={}, headers=admin)
        caller = {"Authorization": f"Bearer {r.json()['status']['token']}"}
        mint = "/api/v1/namespaces/dev/serviceaccounts/app/token"
        # B decides first (its index is built without the binding) ...
        assert cb.post(mint, json={}, headers=caller).status_code == 403
        binding = {
            "metadata": {"name": "caller-mints"},
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "Role", "name": "minter"},
            "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": "dev"}],
        }
        r = ca.post(f"{RBAC}/namespaces/dev/rolebindings", json=binding, headers=admin)
        assert r.status_code == 201, r.text
        # ... and enforces the binding created through A on the very next request.
        assert cb.post(mint, json={}, headers=caller).status_code == 201
        r = ca.delete(f"{RBAC}/namespaces/dev/rolebindings/caller-mints", headers=admin)
        assert r.status_code == 200, r.text
        r = cb.post(mint, json={}, headers=caller)
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "Forbidden"


def test_deleted_binding_is_out_of_force_on_every_worker_at_once(issuer_factory: Any) -> None:
    """``--workers 2`` on SQLite: each worker has its own index; after the binding is deleted,
    no request, on whichever worker it lands, is allowed by it."""
    s = issuer_factory.start(extra_args=["--workers", "2"])
    admin = {"Authorization": f"Bearer {s.admin_token}"}
    with s.client() as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}},
                      headers=admin).status_code == 201  # fmt: skip
        for sa in ("app", "caller"):
            r = c.post("/api/v1/namespaces/dev/serviceaccounts", json={"metadata": {"name": sa}},
                       headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
        _bind_sa(c, admin)
        binding = {
            "metadata": {"name": "caller-mints"},
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "Role", "name": "minter"},
            "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": "dev"}],
        }
        assert c.post(f"{RBAC}/namespaces/dev/rolebindings", json=binding,
                      headers=admin).status_code == 201  # fmt: skip
        r = c.post("/api/v1/namespaces/dev/serviceaccounts/caller/token", json={}, headers=admin)
        caller = {"Authorization": f"Bearer {r.json()['status']['token']}"}
    mint = s.url + "/api/v1/namespaces/dev/serviceaccounts/app/token"
    # New connections: the kernel hands them to either worker; both indexes get built.
    for _ in range(10):
        assert httpx.post(mint, json={}, headers=caller, timeout=10).status_code == 201
    r = httpx.delete(f"{s.url}{RBAC}/namespaces/dev/rolebindings/caller-mints", headers=admin)
    assert r.status_code == 200, r.text
    for _ in range(10):
        assert httpx.post(mint, json={}, headers=caller, timeout=10).status_code == 403


def test_unreachable_store_fails_closed_after_the_index_was_built(
    make_api: Any, tmp_path: Path
) -> None:
    """A SubjectAccessReview (the admin authenticates without the store) about a bound service
    account: allowed while Redis is up; once Redis is gone, 503 — not the index's memory."""
    server = RedisServer(tmp_path / "private-redis")
    (tmp_path / "private-redis").mkdir()
    server.start()
    sar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "system:serviceaccount:dev:app",
            "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"},
        },
    }
    try:
        api = make_api(store=server.url)
        api.ns("dev")
        api.ok(api.post(f"{RBAC}/namespaces/dev/roles", {"metadata": {"name": "reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}))  # fmt: skip
        api.ok(api.post(f"{RBAC}/namespaces/dev/rolebindings", {
            "metadata": {"name": "app-reads"},
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}],
        }))  # fmt: skip
        assert api.ok(api.post(SAR, sar))["status"]["allowed"] is True
        index = index_for(api.ctx.store)
        assert index.rebuilds > 0
    finally:
        server.stop()
    r = api.post(SAR, sar)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
    with pytest.raises(StoreUnavailable):
        index.policy("system:serviceaccount:dev:app", (), "dev")


def test_binding_an_aggregated_role_checks_its_aggregated_rules(api: Any) -> None:
    """Escalation checks see a ClusterRole's aggregated rules (built-in ``admin``/``edit``/
    ``view``, or a stored aggregationRule): a caller holding ``view`` may bind ``view`` but not
    ``edit``, nor a stored role that aggregates what it lacks; ``admin`` may bind ``view``."""
    api.ns("dev")
    for sa in ("boss", "viewer"):
        api.sa("dev", sa)
    api.ok(
        api.post(
            f"{RBAC}/namespaces/dev/roles",
            {
                "metadata": {"name": "binder"},
                "rules": [
                    {
                        "apiGroups": [authz.RBAC_GROUP],
                        "resources": ["rolebindings"],
                        "verbs": ["create"],
                    }
                ],
            },
        )
    )
    for sa, kind, role in (
        ("boss", "ClusterRole", "admin"),
        ("viewer", "ClusterRole", "view"),
        ("viewer", "Role", "binder"),
    ):
        api.ok(api.post(f"{RBAC}/namespaces/dev/rolebindings", {
            "metadata": {"name": f"{sa}-is-{role}"},
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": "dev"}],
        }))  # fmt: skip
    secrets = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}
    api.ok(api.post(f"{RBAC}/clusterroles", {
        "metadata": {"name": "secret-maker", "labels": {"example.com/bundle": "x"}},
        "rules": [secrets],
    }))  # fmt: skip
    api.ok(api.post(f"{RBAC}/clusterroles", {
        "metadata": {"name": "bundle"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/bundle": "x"}}]},
    }))  # fmt: skip

    def bind(sa: str, name: str, role: str) -> httpx.Response:
        body = {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "dev"}],
        }
        headers = {"Authorization": f"Bearer {api.token('dev', sa)}"}
        return api.client.post(f"{RBAC}/namespaces/dev/rolebindings", json=body, headers=headers)

    assert bind("boss", "b1", "view").status_code == 201
    assert bind("viewer", "b2", "view").status_code == 201
    for role in ("edit", "bundle"):
        r = bind("viewer", f"b-{role}", role)
        assert r.status_code == 403, r.text
        assert "is attempting to grant RBAC permissions not currently held" in r.json()["message"]
    assert 'Resources:["secrets"]' in bind("viewer", "b4", "bundle").json()["message"]


def test_aggregation_rule_needs_full_authority_and_valid_selectors(api: Any) -> None:
    """kube: creating a ClusterRole with an aggregationRule needs * on *.* (it can gather
    anything); its selectors are validated (422)."""
    api.ns("dev")
    api.sa("dev", "maker")
    api.ok(
        api.post(
            f"{RBAC}/clusterroles",
            {
                "metadata": {"name": "role-maker"},
                "rules": [
                    {
                        "apiGroups": [authz.RBAC_GROUP],
                        "resources": ["clusterroles"],
                        "verbs": ["create"],
                    }
                ],
            },
        )
    )
    api.ok(api.post(f"{RBAC}/clusterrolebindings", {
        "metadata": {"name": "maker"},
        "roleRef": {"apiGroup": authz.RBAC_GROUP, "kind": "ClusterRole", "name": "role-maker"},
        "subjects": [{"kind": "ServiceAccount", "name": "maker", "namespace": "dev"}],
    }))  # fmt: skip
    body = {
        "metadata": {"name": "gatherer"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
    }
    headers = {"Authorization": f"Bearer {api.token('dev', 'maker')}"}
    r = api.client.post(f"{RBAC}/clusterroles", json=body, headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'clusterroles.rbac.authorization.k8s.io "gatherer" is forbidden: must have cluster-admin '
        "privileges to use the aggregationRule"
    )
    bad = {"metadata": {"name": "bad"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}]}}  # fmt: skip
    r = api.post(f"{RBAC}/clusterroles", bad)
    assert r.status_code == 422, r.text
    assert "aggregationRule.clusterRoleSelectors[0]" in r.json()["message"]
    r = api.post(f"{RBAC}/clusterroles", {"metadata": {"name": "e"}, "aggregationRule": {}})
    assert r.status_code == 422, r.text
    assert "at least one clusterRoleSelector required" in r.json()["message"]
    assert api.post(f"{RBAC}/clusterroles", body).status_code == 201  # the admin may
