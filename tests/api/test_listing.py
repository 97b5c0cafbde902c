"""Lists: ``limit``/``continue`` and ``labelSelector``/``fieldSelector`` — kube's syntax and errors
(tables from k8s.io/apimachinery labels/selector_test.go and fields/selector_test.go), pages
over HTTP on SQLite and Redis, and the official kubernetes client paging a live server."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from _api_support import Api
from kubernetes import client as k8s

from issuer.api import listing
from issuer.http.status import StatusError
from issuer.label_index import label_index_for
from issuer.selectors import (
    SelectorError,
    label_selector_from_json,
    parse_field_selector,
    parse_label_selector,
)

# --- selector syntax (pure) ---------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "n": "7", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app=db", False),
        ("missing!=x", True),  # != and notin match an absent key
        ("tier in (front,back)", True),
        ("tier notin (front)", False),
        ("missing notin (a)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("n>5", True),
        ("n<5", False),
        ("missing>1", False),
        ("empty=", True),  # an empty value (kube: parseExactValue)
        ("empty in ()", True),  # "()" is the set {""}
        ("x in (foo,,baz)", False),
        ("  app = web  ,  tier  ", True),  # whitespace between tokens
        ("app in (in)", False),  # 'in' is a value in a value context
    ],
)
def test_label_selector_matching(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a,", "found '', expected: identifier after ','"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        (
            "a>x",
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' "
            "operators, the value must be an integer",
        ),
        ("a=!", "unable to parse requirement: found '!', expected: identifier"),
        ("a=<b", "unable to parse requirement: found '<', expected: identifier"),
    ],
)
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_label_selector(selector)
    assert str(e.value) == message


def test_label_selector_key_and_value_validation() -> None:
    with pytest.raises(SelectorError) as e:
        parse_label_selector("a@b=c")
    assert str(e.value).startswith(
        'unable to parse requirement: <nil>: Invalid value: "a@b": name part must consist of'
    )
    with pytest.raises(SelectorError) as e:
        parse_label_selector("a=" + "v" * 64)
    assert "values[0][a]: Invalid value" in str(e.value)
    assert "must be no more than 63 characters" in str(e.value)
    with pytest.raises(SelectorError) as e:
        parse_label_selector("example.com/=x")
    assert "name part must be non-empty" in str(e.value)
    assert parse_label_selector("example.com/app=x").matches({"example.com/app": "x"})


def test_structured_label_selectors() -> None:
    """metav1.LabelSelector (aggregationRule.clusterRoleSelectors): nil matches nothing,
    {} everything."""
    assert label_selector_from_json(None) is None
    everything = label_selector_from_json({})
    assert everything is not None and everything.matches({})
    sel = label_selector_from_json(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel is not None and sel.matches(LABELS)
    assert not sel.matches({**LABELS, "legacy": "1"})
    with pytest.raises(SelectorError, match='"Gt" is not a valid label selector operator'):
        label_selector_from_json({"matchExpressions": [{"key": "a", "operator": "Gt"}]})


@pytest.mark.parametrize(
    ("selector", "fields", "matches"),
    [
        ("metadata.name=a", {"metadata.name": "a"}, True),
        ("metadata.name==a", {"metadata.name": "a"}, True),
        ("metadata.name!=a", {"metadata.name": "a"}, False),
        ("metadata.name=a,status.phase=Running", {"metadata.name": "a", "status.phase": ""}, False),
        ("spec.nodeName=", {"spec.nodeName": ""}, True),
        (",,", {}, True),
    ],
)
def test_field_selectors(selector: str, fields: dict[str, str], matches: bool) -> None:
    assert parse_field_selector(selector).matches(fields) is matches


def test_field_selector_errors() -> None:
    with pytest.raises(SelectorError) as e:
        parse_field_selector("a=b,c")
    assert str(e.value) == "invalid selector: 'a=b,c'; can't understand 'c'"


# --- continue tokens ----------------------------------------------------------------------------


def test_continue_tokens_are_kubes() -> None:
    token = listing.encode_continue(("dev", "app"), True, 42)
    assert "=" not in token
    raw = json.loads(base64.urlsafe_b64decode(token + "=="))
    assert raw == {"v": "meta.k8s.io/v1", "rv": 42, "start": "dev/app\x00"}
    assert listing.decode_continue(token, None) == (("dev", "app"), 42)
    ns_token = listing.encode_continue(("dev", "app"), False, 42)
    assert listing.decode_continue(ns_token, "dev") == (("dev", "app"), 42)


def _tok(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (_tok({"v": "meta.k8s.io/v1", "rv": 0, "start": "a\x00"}),
         "invalid continue token: continue key is not valid: incorrect encoded start "
         "resourceVersion (version meta.k8s.io/v1)"),
        (_tok({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}),
         "invalid continue token: continue key is not valid: encoded start key empty "
         "(version meta.k8s.io/v1)"),
        (_tok({"v": "v2", "rv": 3, "start": "a"}),
         "invalid continue token: continue key is not valid: server does not recognize this "
         "encoded version v2"),
        (_tok({"v": "meta.k8s.io/v1", "rv": 3, "start": "../../x"}),
         "invalid continue token: continue key is not valid: ../../x"),
    ],
)  # fmt: skip
def test_bad_continue_tokens(token: str, message: str) -> None:
    with pytest.raises(StatusError) as e:
        listing.decode_continue(token, "dev")
    assert (e.value.code, e.value.reason, e.value.message) == (400, "BadRequest", message)


# --- over HTTP ----------------------------------------------------------------------------------


def _seed(api: Api) -> list[tuple[str, str]]:
    keys = []
    for ns in ("dev", "prod"):
        api.ns(ns)
        for i in range(12):
            name = f"p{i:02d}"
            spec: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}]}
            if i % 3 == 0:
                spec["nodeName"] = "n1"
            body = {
                "metadata": {
                    "name": name,
                    "labels": {"app": "web" if i % 2 else "db", "i": str(i)},
                },
                "spec": spec,
            }
            api.ok(api.post(f"/api/v1/namespaces/{ns}/pods", body))
            keys.append((ns, name))
    return keys


def _walk(api: Api, path: str, limit: int, **params: str) -> tuple[list[tuple[str, str]], int]:
    seen: list[tuple[str, str]] = []
    pages = 0
    cont = ""
    while True:
        q = {"limit": str(limit), **params}
        if cont:
            q["continue"] = cont
        r = api.client.get(path, params=q, headers=api.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        assert len(body["items"]) <= limit
        seen += [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in body["items"]]
        cont = body["metadata"].get("continue", "")
        if not cont:
            return seen, pages


def test_pages_over_http(api: Api) -> None:
    keys = _seed(api)
    full = api.client.get("/api/v1/pods", headers=api.headers).json()
    assert "continue" not in full["metadata"]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in full["items"]] == keys
    for limit, want_pages in ((1, 24), (5, 5), (24, 1), (25, 1)):
        seen, pages = _walk(api, "/api/v1/pods", limit)
        assert seen == keys
        assert pages == want_pages  # a full last page says there is no more
    seen, _ = _walk(api, "/api/v1/namespaces/prod/pods", 5)
    assert seen == [k for k in keys if k[0] == "prod"]
    # Selectors, with and without pages, agree.
    web = [k for k in keys if int(k[1][1:]) % 2]
    assert _walk(api, "/api/v1/pods", 4, labelSelector="app=web")[0] == web
    assert _walk(api, "/api/v1/pods", 100, labelSelector="app in (web),i notin (1,3)")[0] == [
        k for k in web if k[1] not in ("p01", "p03")
    ]
    on_n1 = [k for k in keys if int(k[1][1:]) % 3 == 0]
    assert _walk(api, "/api/v1/pods", 3, fieldSelector="spec.nodeName=n1")[0] == on_n1
    r = api.client.get(
        "/api/v1/pods",
        params={"fieldSelector": "metadata.namespace=dev,metadata.name!=p00"},
        headers=api.headers,
    )
    assert [o["metadata"]["name"] for o in r.json()["items"]] == [f"p{i:02d}" for i in range(1, 12)]


def test_bounded_selector_scan_returns_short_pages(api: Api, monkeypatch: Any) -> None:
    """A selective selector without one required value (no index): each request reads at most
    SCAN_BUDGET objects; short pages carry a continue token until the collection is done, and
    nothing is lost."""
    keys = _seed(api)
    monkeypatch.setattr(listing, "SCAN_BUDGET", 5)
    monkeypatch.setattr(listing, "_CHUNK", 2)
    seen, pages = _walk(api, "/api/v1/pods", 10, labelSelector="i in (11,40)")
    assert seen == [k for k in keys if k[1] == "p11"]
    assert pages >= 24 // 5
    # With a required value the label index finds the two at once, however small the budget.
    monkeypatch.setattr(listing, "INDEX_RATIO", 1)
    seen, pages = _walk(api, "/api/v1/pods", 10, labelSelector="i=11")
    assert (seen, pages) == ([k for k in keys if k[1] == "p11"], 1)


def _expected(api: Api, selector: str) -> list[tuple[str, str]]:
    sel = parse_label_selector(selector)
    return [
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in api.ctx.store.list_objects("Pod", None)
        if sel.matches(o["metadata"].get("labels") or {})
    ]


def test_label_index_follows_every_write(api: Api, make_api: Any, monkeypatch: Any) -> None:
    """Pages served from the label index stay right while pods are created, relabelled and
    deleted, through this replica or another one on the same store, and after the change log
    was trimmed under it (rebuild)."""
    keys = _seed(api)
    monkeypatch.setattr(listing, "INDEX_RATIO", 1)  # every pair not on all pods: the index
    # A second replica (same KEK): its own store handle, its own index.
    other = make_api(kek=str(api.ctx.config.data_dir / "kek"))
    store = api.ctx.store
    for selector in ("app=web", "app=web,i!=3", "app in (web)", "i=4"):
        assert _walk(api, "/api/v1/pods", 3, labelSelector=selector)[0] == _expected(api, selector)
    index = label_index_for(store, "Pod")
    assert index.builds == 1
    # Writes through the other replica: relabel, delete, create.
    p = other.client.get("/api/v1/namespaces/dev/pods/p00", headers=other.headers).json()
    assert p["metadata"]["labels"]["app"] == "db"
    store.delete_object("Pod", "dev", "p01")
    other.pod("dev", "p99")
    r = other.client.patch(
        "/api/v1/namespaces/dev/pods/p00",
        json={"metadata": {"labels": {"app": "web"}}},
        headers={**other.headers, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    r = other.client.patch(
        "/api/v1/namespaces/dev/pods/p99",
        json={"metadata": {"labels": {"app": "web"}}},
        headers={**other.headers, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    for selector in ("app=web", "app=db", "i=1"):
        assert _walk(api, "/api/v1/pods", 4, labelSelector=selector)[0] == _expected(api, selector)
    assert ("dev", "p00") in _expected(api, "app=web") and ("dev", "p99") in _expected(
        api, "app=web"
    )
    assert index.builds == 1  # followed the change log, no rebuild
    # The log trimmed past the index's position: it rebuilds and stays right.
    store.create_objects(
        "Pod",
        [
            (
                "prod",
                "late",
                {
                    "metadata": {
                        "name": "late",
                        "namespace": "prod",
                        "uid": "u-late",
                        "labels": {"app": "web"},
                    }
                },
            )
        ],
    )
    store.trim_changes(time.time() + 1)
    assert _walk(api, "/api/v1/pods", 4, labelSelector="app=web")[0] == _expected(api, "app=web")
    assert index.builds == 2
    assert len(keys) == 24


def test_only_rare_pairs_go_through_the_index(api: Api) -> None:
    """A pair on half the pods is scanned for (neighbouring reads are cheaper); one on 1 in 24
    comes from the label index, if the ratio says so."""
    _seed(api)
    index = label_index_for(api.ctx.store, "Pod")
    assert not index.selective(("app", "web"), listing.INDEX_RATIO)
    assert index.selective(("i", "4"), 11)  # 2 of 24 pods: fewer than 1 in 11
    assert not index.selective(("i", "4"), 12)


def test_rbac_lists_page_through_built_ins(api: Api) -> None:
    for name in ("a", "system:b", "zz"):
        api.ok(api.post("/apis/rbac.authorization.k8s.io/v1/clusterroles",
                        {"metadata": {"name": name}, "rules": []}))  # fmt: skip
    path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    full = [
        o["metadata"]["name"] for o in api.client.get(path, headers=api.headers).json()["items"]
    ]
    assert "cluster-admin" in full and full == sorted(full)
    for limit in (1, 2, 3, 100):
        seen, _ = _walk_names(api, path, limit)
        assert seen == full
    r = api.client.get(path, params={"labelSelector": "kubernetes.io/bootstrapping=rbac-defaults"},
                       headers=api.headers)  # fmt: skip
    assert "a" not in [o["metadata"]["name"] for o in r.json()["items"]]


def _walk_names(api: Api, path: str, limit: int) -> tuple[list[str], int]:
    names: list[str] = []
    cont, pages = "", 0
    while True:
        q = {"limit": str(limit)} | ({"continue": cont} if cont else {})
        body = api.client.get(path, params=q, headers=api.headers).json()
        names += [o["metadata"]["name"] for o in body["items"]]
        pages += 1
        cont = body["metadata"].get("continue", "")
        if not cont:
            return names, pages


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "x"}, 'strconv.ParseInt: parsing "x": invalid syntax'),
        ({"labelSelector": "a in b"}, "unable to parse requirement: found 'b' expected: '('"),
        (
            {"fieldSelector": "nonsense"},
            "invalid selector: 'nonsense'; can't understand 'nonsense'",
        ),
        ({"fieldSelector": "spec.foo=x"}, "field label not supported: spec.foo"),
        ({"continue": "!!"}, "invalid continue token: continue key is not valid"),
    ],
)
def test_bad_list_parameters_are_400(api: Api, params: dict[str, str], message: str) -> None:
    api.ns("dev")
    before = api.snapshot()
    r = api.client.get("/api/v1/namespaces/dev/serviceaccounts", params=params,
                       headers=api.headers)  # fmt: skip
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert body["message"].startswith(message)
    assert api.snapshot() == before


def test_kubernetes_client_pages_a_live_server(issuer_factory: Any) -> None:
    proc = issuer_factory.start()
    cfg = k8s.Configuration(
        host=proc.url,
        api_key={"authorization": proc.admin_token},
        api_key_prefix={"authorization": "Bearer"},
    )
    with k8s.ApiClient(cfg) as client:
        core = k8s.CoreV1Api(client)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="dev")))
        for i in range(7):
            core.create_namespaced_service_account(
                "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(
                    name=f"sa{i}", labels={"team": "a" if i < 4 else "b"}))
            )  # fmt: skip
        names: list[str] = []
        cont = None
        while True:
            page = core.list_namespaced_service_account("dev", limit=3, _continue=cont)
            names += [sa.metadata.name for sa in page.items]
            cont = page.metadata._continue
            if not cont:
                break
        assert names == ["default", *[f"sa{i}" for i in range(7)]]
        team_b = core.list_namespaced_service_account("dev", label_selector="team=b")
        assert [sa.metadata.name for sa in team_b.items] == ["sa4", "sa5", "sa6"]
