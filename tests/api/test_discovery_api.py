"""API discovery (issuer/api/discovery.py): kube's shapes, who may read them, and a table that
matches the routes in both directions; then the official ``kubernetes`` client against a LIVE
``sa-issuer serve``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _api_support import Api
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from starlette.routing import Route

import issuer
from issuer.api import _NAMESPACED, discovery, openapi, routes

ROUTE_NOT_FOUND = "the server could not find the requested resource"
DISCOVERY_PATHS = ("/version", "/api", "/api/v1", "/apis", "/apis/rbac.authorization.k8s.io/v1")


def _listed() -> dict[str, dict[str, set[str]]]:
    """groupVersion -> resource name -> verbs, from the discovery documents."""
    out: dict[str, dict[str, set[str]]] = {}
    for gv in discovery.GROUP_VERSIONS:
        doc = discovery.api_resource_list(gv)
        assert doc is not None
        out[gv] = {r["name"]: set(r["verbs"]) for r in doc["resources"]}
    return out


# --- shapes ---------------------------------------------------------------------------------------


def test_version_is_kube_version_info(api: Api) -> None:
    r = api.client.get("/version")  # anonymous
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["major"] == "1" and info["minor"] == discovery.KUBE_MINOR
    assert info["gitVersion"] == f"v1.{discovery.KUBE_MINOR}.0-sa-oidc.{issuer.__version__}"
    assert set(info) == {
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    }
    assert "/" in info["platform"]


def test_api_versions(api: Api) -> None:
    body = api.ok(api.get("/api"), 200)
    assert body == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "testserver"}],
    }


def test_api_group_list(api: Api) -> None:
    body = api.ok(api.get("/apis"), 200)
    assert body["kind"] == "APIGroupList" and body["apiVersion"] == "v1"
    groups = {g["name"]: g for g in body["groups"]}
    assert {n: [v["version"] for v in g["versions"]] for n, g in groups.items()} == {
        "authentication.k8s.io": ["v1", "v1beta1"],
        "authorization.k8s.io": ["v1", "v1beta1"],
        "rbac.authorization.k8s.io": ["v1"],
        "sa-oidc.dev": ["v1"],
    }
    for name, g in groups.items():
        assert g["preferredVersion"] == {"groupVersion": f"{name}/v1", "version": "v1"}


def test_core_resource_list(api: Api) -> None:
    body = api.ok(api.get("/api/v1"), 200)
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in body["resources"]}
    assert set(by_name) == {
        "namespaces",
        "nodes",
        "pods",
        "secrets",
        "serviceaccounts",
        "serviceaccounts/token",
    }
    assert by_name["pods"] == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"],
        "categories": ["all"],
    }
    assert by_name["namespaces"]["namespaced"] is False
    # kubectl's short names (kube: pkg/registry/core/*/storage/storage.go ShortNames).
    assert {n: by_name[n].get("shortNames") for n in by_name} == {
        "namespaces": ["ns"],
        "nodes": ["no"],
        "pods": ["po"],
        "secrets": None,
        "serviceaccounts": ["sa"],
        "serviceaccounts/token": None,
    }
    assert by_name["serviceaccounts/token"] == {
        "name": "serviceaccounts/token",
        "singularName": "",
        "namespaced": True,
        "group": "authentication.k8s.io",
        "version": "v1",
        "kind": "TokenRequest",
        "verbs": ["create"],
    }


def test_group_resource_lists(api: Api) -> None:
    for gv, names in {
        "authentication.k8s.io/v1": {"tokenreviews": ["create"], "selfsubjectreviews": ["create"]},
        "authentication.k8s.io/v1beta1": {"tokenreviews": ["create"]},
        "authorization.k8s.io/v1": {
            "selfsubjectaccessreviews": ["create"],
            "selfsubjectrulesreviews": ["create"],
            "subjectaccessreviews": ["create"],
        },
        "rbac.authorization.k8s.io/v1": {
            r: ["create", "delete", "get", "list", "patch", "update", "watch"]
            for r in ("clusterrolebindings", "clusterroles", "rolebindings", "roles")
        },
        "sa-oidc.dev/v1": {
            "invalidations": ["get", "list", "watch"],
            "tokenrevocations": ["create"],
        },
    }.items():
        body = api.ok(api.get(f"/apis/{gv}"), 200)
        assert body["kind"] == "APIResourceList" and body["groupVersion"] == gv
        assert {r["name"]: r["verbs"] for r in body["resources"]} == names


def test_unknown_group_version_is_not_found(api: Api) -> None:
    for path in ("/apis/apps/v1", "/apis/rbac.authorization.k8s.io/v2", "/api/v2"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json()["reason"] == "NotFound"


# --- who may read, methods ----------------------------------------------------------------------


def test_anonymous_reads_only_version(api: Api) -> None:
    assert api.client.get("/version").status_code == 200
    for path in DISCOVERY_PATHS[1:]:
        r = api.client.get(path)
        assert r.status_code == 401, path
        assert r.json()["reason"] == "Unauthorized"


def test_bad_token_is_unauthorized_even_for_version(api: Api) -> None:
    for path in DISCOVERY_PATHS:
        r = api.client.get(path, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401, path


def test_service_account_without_grants_discovers(api: Api) -> None:
    """kube's system:discovery is bound to system:authenticated: no RoleBinding needed."""
    api.ns("dev")
    api.sa("dev", "app")
    token = api.token("dev", "app")
    headers = {"Authorization": f"Bearer {token}"}
    for path in DISCOVERY_PATHS:
        assert api.client.get(path, headers=headers).status_code == 200, path
    # ... which reveals what exists, not a right to use it.
    assert api.client.get("/api/v1/namespaces", headers=headers).status_code == 403


def test_other_methods_are_405(api: Api) -> None:
    for path in DISCOVERY_PATHS:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = api.client.request(method, path, headers=api.headers)
            assert r.status_code == 405, (method, path)
            assert r.json()["reason"] == "MethodNotAllowed"
        assert api.client.head(path, headers=api.headers).status_code == 200


# --- the table matches the routes ---------------------------------------------------------------


def _paths(gv: str, resource: str, namespaced: bool) -> tuple[str, str]:
    """(collection, item) paths of ``resource`` (``res`` or ``res/sub``) in namespace ``dev``."""
    base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
    if namespaced:
        base += "/namespaces/dev"
    res, _, sub = resource.partition("/")
    if sub:
        return "", f"{base}/{res}/nope/{sub}"
    return f"{base}/{res}", f"{base}/{res}/nope"


def _call(api: Api, verb: str, collection: str, item: str) -> httpx.Response:
    if verb == "create":
        return api.post(collection or item, {})
    if verb == "list":
        return api.get(collection)
    if verb == "watch":
        return api.get(collection, params={"watch": "true", "timeoutSeconds": "1"})
    if verb == "get":
        return api.get(item)
    if verb == "update":
        return api.client.put(item, json={}, headers=api.headers)
    if verb == "patch":
        headers = {**api.headers, "Content-Type": "application/merge-patch+json"}
        return api.client.patch(item, content=b"{}", headers=headers)
    assert verb == "delete", verb
    return api.delete(item)


def test_every_listed_verb_is_served(api: Api) -> None:
    api.ns("dev")
    for gv in discovery.GROUP_VERSIONS:
        doc = discovery.api_resource_list(gv)
        assert doc is not None
        for res in doc["resources"]:
            collection, item = _paths(gv, res["name"], res["namespaced"])
            for verb in res["verbs"]:
                r = _call(api, verb, collection, item)
                where = (gv, res["name"], verb, r.status_code, r.text[:200])
                assert r.status_code != 405, where
                assert not (r.status_code == 404 and r.json()["message"] == ROUTE_NOT_FOUND), where
                assert r.status_code < 500, where


def test_every_api_route_is_listed() -> None:
    listed = _listed()
    discovery_routes = {
        r.path for r in (*discovery.routes(), *openapi.routes()) if isinstance(r, Route)
    }  # the documents about the API (non-resource URLs)
    seen: set[tuple[str, str]] = set()
    for route in routes():
        assert isinstance(route, Route)
        path = route.path
        if path in discovery_routes:
            continue
        assert path.startswith(("/api/v1/", "/apis/")), path
        if path.startswith("/api/v1/"):
            gv, rest = "v1", path.removeprefix("/api/v1/")
        else:
            group, version, rest = path.removeprefix("/apis/").split("/", 2)
            gv = f"{group}/{version}"
        parts = rest.split("/")
        # kube's deprecated watch paths: "watch/" + a collection or item path, verb watch
        # (requestinfo.go: the prefix is the verb).
        legacy_watch = parts[0] == "watch"
        if legacy_watch:
            parts = parts[1:]
        if parts[0] == "namespaces" and len(parts) > 2:
            parts = parts[2:]
        names = sorted(_NAMESPACED) if parts[0] == "{resource}" else [parts[0]]
        is_item = len(parts) >= 2
        sub = parts[2] if len(parts) >= 3 else ""
        for name in names:
            resource = f"{name}/{sub}" if sub else name
            assert resource in listed.get(gv, {}), (path, gv, resource)
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                verb = {
                    "POST": "create",
                    "DELETE": "delete",
                    "PUT": "update",
                    "PATCH": "patch",
                }.get(method, "get" if is_item else "list")
                if legacy_watch:
                    assert method == "GET", (path, method)
                    verb = "watch"
                assert verb in listed[gv][resource], (path, method, verb)
            seen.add((gv, resource))
    # ... and every listed resource has at least one route.
    assert seen == {(gv, name) for gv, res in listed.items() for name in res}


# --- the official client against a live server --------------------------------------------------


@pytest.fixture
def kube(issuer_factory: Any) -> Iterator[tuple[k8s.ApiClient, Any]]:
    proc = issuer_factory.start(config={"key_alg": "ES256"})
    cfg = k8s.Configuration(
        host=proc.url,
        api_key={"authorization": proc.admin_token},
        api_key_prefix={"authorization": "Bearer"},
    )
    with k8s.ApiClient(cfg) as api_client:
        yield api_client, proc


def test_kubernetes_client_discovery(kube: tuple[k8s.ApiClient, Any]) -> None:
    api_client, proc = kube
    info = k8s.VersionApi(api_client).get_code()
    assert info.major == "1" and info.minor == discovery.KUBE_MINOR
    assert info.git_version.endswith(f"-sa-oidc.{issuer.__version__}")

    core = k8s.CoreApi(api_client).get_api_versions()
    assert core.versions == ["v1"]
    assert core.server_address_by_client_cidrs[0].server_address == proc.url.split("://")[1]

    groups = k8s.ApisApi(api_client).get_api_versions()
    assert {g.name: g.preferred_version.group_version for g in groups.groups} == {
        "authentication.k8s.io": "authentication.k8s.io/v1",
        "authorization.k8s.io": "authorization.k8s.io/v1",
        "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
        "sa-oidc.dev": "sa-oidc.dev/v1",
    }

    v1 = k8s.CoreV1Api(api_client).get_api_resources()
    by_name = {r.name: r for r in v1.resources}
    assert by_name["serviceaccounts"].kind == "ServiceAccount"
    assert by_name["serviceaccounts/token"].verbs == ["create"]

    authn = k8s.AuthenticationV1Api(api_client).get_api_resources()
    assert [(r.name, r.verbs) for r in authn.resources] == [
        ("tokenreviews", ["create"]),
        ("selfsubjectreviews", ["create"]),
    ]

    rbac = k8s.RbacAuthorizationV1Api(api_client).get_api_resources()
    assert sorted(r.name for r in rbac.resources) == [
        "clusterrolebindings",
        "clusterroles",
        "rolebindings",
        "roles",
    ]

    # Anonymous: /version yes, the rest no (401 as kube without --anonymous-auth grants).
    with k8s.ApiClient(k8s.Configuration(host=proc.url)) as anonymous:
        assert k8s.VersionApi(anonymous).get_code().major == "1"
        with pytest.raises(ApiException) as e:
            k8s.ApisApi(anonymous).get_api_versions()
        assert e.value.status == 401
