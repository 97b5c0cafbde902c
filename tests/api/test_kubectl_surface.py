"""What kubectl reads besides the objects: Tables, aggregated discovery, OpenAPI v2 (JSON and
gnostic protobuf) and v3, on the real app.

Expected values are kube's: printer columns (pkg/printers/internalversion/printers.go),
HumanDuration (apimachinery pkg/util/duration), the apidiscovery.k8s.io/v2 shapes, kube-openapi's
v3 index (``serverRelativeURL`` with ``hash``) and gnostic's field numbers
(openapiv2/OpenAPIv2.proto).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from _api_support import Api

from issuer.api import openapi
from issuer.api.discovery import GROUP_VERSIONS
from issuer.api.tables import human_duration, table, wants_table

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
KUBECTL_GET = f"{TABLE},application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (KUBECTL_GET, "v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "v1beta1"),
        ("application/json", None),
        ("application/json,application/json;as=Table;v=v1;g=meta.k8s.io", None),
        ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
        ("", None),
    ],
)
def test_wants_table(accept: str, version: str | None) -> None:
    assert wants_table(accept) == version


NOW = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)
CREATED = {"creationTimestamp": "2026-01-01T11:00:00Z"}

# (kind, object, column names, cells) — kube's printers for each served kind.
ROWS = [
    (
        "ServiceAccount",
        {"metadata": {"name": "app", **CREATED}, "secrets": [{"name": "s"}]},
        ["Name", "Secrets", "Age"],
        ["app", 1, "60m"],
    ),
    (
        "Secret",
        {"metadata": {"name": "db", **CREATED}, "type": "Opaque", "data": {"a": "", "b": ""}},
        ["Name", "Type", "Data", "Age"],
        ["db", "Opaque", 2, "60m"],
    ),
    (
        "Namespace",
        {"metadata": {"name": "dev", **CREATED}, "status": {"phase": "Terminating"}},
        ["Name", "Status", "Age"],
        ["dev", "Terminating", "60m"],
    ),
    (
        "Pod",
        {
            "metadata": {"name": "web", **CREATED},
            "spec": {"containers": [{}, {}], "nodeName": "n1"},
        },
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates",
        ],
        ["web", "0/2", "", "0", "60m", "<none>", "n1", "<none>", "<none>"],
    ),
    (
        "Node",
        {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}}},
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime",
        ],
        [
            "n1",
            "Unknown",
            "worker",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>",
        ],
    ),
    (
        "RoleBinding",
        {
            "metadata": {"name": "rb", **CREATED},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "app", "namespace": "dev"},
                {"kind": "User", "name": "alice"},
            ],
        },
        ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"],
        ["rb", "ClusterRole/view", "60m", "alice", "", "dev/app"],
    ),
    (
        "Role",
        {"metadata": {"name": "r", **CREATED}},
        ["Name", "Created At"],
        ["r", "2026-01-01T11:00:00Z"],
    ),
]


def test_invalidation_rows() -> None:
    """sa-oidc.dev's stream events as kubectl get invalidations shows them."""
    at = NOW.timestamp() - 90
    events = [
        {
            "seq": 7,
            "type": "ObjectDeleted",
            "kind": "Pod",
            "namespace": "dev",
            "name": "web",
            "time": at,
        },
        {"seq": 8, "type": "KeyRevoked", "kid": "k1", "time": at},
        {"seq": 9, "type": "TokenRevoked", "jti": "j1", "exp": 1},
    ]
    t = table("Invalidation", events, NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Seq", "Type", "Object", "Age"]
    assert [r["cells"] for r in t["rows"]] == [
        [7, "ObjectDeleted", "Pod/dev/web", "90s"],
        [8, "KeyRevoked", "k1", "90s"],
        [9, "TokenRevoked", "j1", "<unknown>"],
    ]


@pytest.mark.parametrize(("kind", "obj", "columns", "cells"), ROWS)
def test_table_columns(
    kind: str, obj: dict[str, Any], columns: list[str], cells: list[Any]
) -> None:
    t = table(kind, [obj], NOW)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in t["columnDefinitions"]] == columns
    assert t["columnDefinitions"][0]["format"] == "name"
    assert t["rows"][0]["cells"] == cells
    assert t["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def test_get_as_table_over_http(api: Api) -> None:
    api.ns("dev")
    api.sa("dev", "app")
    t = api.ok(
        api.get("/api/v1/namespaces/dev/serviceaccounts", headers={"Accept": KUBECTL_GET}), 200
    )
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Secrets", "Age"]
    assert sorted(r["cells"][0] for r in t["rows"]) == ["app", "default"]
    assert t["metadata"]["resourceVersion"]
    one = api.ok(
        api.get(
            "/api/v1/namespaces/dev/serviceaccounts/app",
            headers={"Accept": TABLE, "X": "y"},
            params={"includeObject": "Object"},
        ),
        200,
    )
    assert one["rows"][0]["object"]["kind"] == "ServiceAccount"
    crbs = api.ok(
        api.get(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", headers={"Accept": TABLE}
        ),
        200,
    )
    assert crbs["rows"][0]["cells"][:2] == ["cluster-admin", "ClusterRole/cluster-admin"]
    # Plain JSON when not asked; errors stay Status objects.
    assert (
        api.ok(api.get("/api/v1/namespaces/dev/serviceaccounts"), 200)["kind"]
        == "ServiceAccountList"
    )
    r = api.get("/api/v1/namespaces/dev/serviceaccounts/nope", headers={"Accept": TABLE})
    assert r.status_code == 404 and r.json()["kind"] == "Status"
    r = api.get("/api/v1/namespaces", headers={"Accept": TABLE}, params={"includeObject": "All"})
    assert r.status_code == 400 and "includeObject" in r.json()["message"]


def test_aggregated_discovery(api: Api) -> None:
    r = api.get("/api", headers={"Accept": AGGREGATED})
    assert r.status_code == 200
    assert r.headers["content-type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    body = r.json()
    assert (
        body["kind"] == "APIGroupDiscoveryList" and body["apiVersion"] == "apidiscovery.k8s.io/v2"
    )
    [core] = body["items"]
    assert "name" not in core["metadata"]
    resources = {r["resource"]: r for r in core["versions"][0]["resources"]}
    assert resources["serviceaccounts"]["shortNames"] == ["sa"]
    assert resources["serviceaccounts"]["scope"] == "Namespaced"
    assert resources["serviceaccounts"]["subresources"] == [
        {
            "subresource": "token",
            "responseKind": {
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
            },
            "verbs": ["create"],
        }
    ]
    assert resources["pods"]["categories"] == ["all"]
    groups = api.get("/apis", headers={"Accept": AGGREGATED}).json()
    names = [g["metadata"]["name"] for g in groups["items"]]
    assert "rbac.authorization.k8s.io" in names and "sa-oidc.dev" in names
    # The legacy documents when the client does not ask.
    assert api.ok(api.get("/api"), 200)["kind"] == "APIVersions"
    assert api.ok(api.get("/apis"), 200)["kind"] == "APIGroupList"


# --- OpenAPI ------------------------------------------------------------------------------------


def test_openapi_v3_index_and_documents(api: Api) -> None:
    index = api.ok(api.get("/openapi/v3"), 200)["paths"]
    assert set(index) == {
        "api/v1",
        "apis/authentication.k8s.io/v1",
        "apis/authorization.k8s.io/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "apis/sa-oidc.dev/v1",  # described by issuer/api/openapi_sa_oidc.py
    }
    url = index["api/v1"]["serverRelativeURL"]
    r = api.get(url)
    assert r.status_code == 200 and r.headers["cache-control"] == "public, immutable"
    doc = r.json()
    assert doc["openapi"] == "3.0.0"
    sa = doc["components"]["schemas"]["io.k8s.api.core.v1.ServiceAccount"]
    assert sa["properties"]["automountServiceAccountToken"]["type"] == "boolean"
    assert sa["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ServiceAccount", "version": "v1"}
    ]
    # Only served verbs: the operations' x-kubernetes-action map onto the discovery verbs.
    served = {r["name"]: set(r["verbs"]) for r in api.ok(api.get("/api/v1"), 200)["resources"]}
    item = doc["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts/{name}"]
    verbs = {"get": "get", "put": "update", "patch": "patch", "delete": "delete"}
    assert {verbs[m] for m in item if m in verbs} == served["serviceaccounts"] & set(verbs.values())
    post = doc["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts"]["post"]
    assert "fieldValidation" in {p["name"] for p in post["parameters"]}
    assert post["requestBody"]["content"]["*/*"]["schema"] == {
        "$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceAccount"
    }
    r = api.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert r.status_code == 304
    assert api.get("/openapi/v3/apis/apps/v1").status_code == 404
    assert api.client.get("/openapi/v3").status_code == 401  # anonymous


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """A protobuf wire-format reader (field number, wire type, value) for the test."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            out.append((num, wire, varint()))
        elif wire == 2:
            size = varint()
            out.append((num, wire, buf[i : i + size]))
            i += size
        elif wire == 1:
            out.append((num, wire, buf[i : i + 8]))
            i += 8
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def test_openapi_v2_json_and_protobuf(api: Api) -> None:
    doc = api.ok(api.get("/openapi/v2", headers={"Accept": "application/json"}), 200)
    assert doc["swagger"] == "2.0" and "io.k8s.api.core.v1.ServiceAccount" in doc["definitions"]
    r = api.get("/openapi/v2", headers={"Accept": openapi.V2_PROTOBUF})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    top = {num: value for num, _w, value in _fields(r.content)}
    assert top[1] == b"2.0"  # Document.swagger
    # Document.definitions (9) -> NamedSchema (1) {name 1, value 2}: ServiceAccount's schema.
    named = {
        dict((n, v) for n, _w, v in _fields(entry))[1]: dict((n, v) for n, _w, v in _fields(entry))[
            2
        ]
        for _n, _w, entry in _fields(top[9])
    }
    schema = named[b"io.k8s.api.core.v1.ServiceAccount"]
    fields = _fields(schema)
    assert (
        4,
        2,
        doc["definitions"]["io.k8s.api.core.v1.ServiceAccount"]["description"].encode(),
    ) in fields
    props = dict((n, v) for n, _w, v in fields)[25]  # Schema.properties
    prop_names = [dict((n, v) for n, _w, v in _fields(e))[1] for _n, _w, e in _fields(props)]
    assert b"automountServiceAccountToken" in prop_names
    assert api.get("/openapi/v2", headers={"Accept": "application/yaml"}).status_code == 406


# --- unknown fields at any depth (kube's strict decoding; fieldValidation) -----------------------

POD_TYPO = {
    "metadata": {"name": "web"},
    "spec": {
        "containers": [{"name": "app", "image": "busybox", "imagee": "typo"}],
        "nodeSelector": {"disk": "ssd"},
        "bogus": {"x": 1},
    },
}


def test_unknown_nested_fields_strict(api: Api) -> None:
    api.ns("dev")
    r = api.post("/api/v1/namespaces/dev/pods", POD_TYPO)
    assert r.status_code == 400
    assert r.json()["message"] == (
        'strict decoding error: unknown field "spec.containers[0].imagee", '
        'unknown field "spec.bogus"'
    )
    assert api.get("/api/v1/namespaces/dev/pods/web").status_code == 404


@pytest.mark.parametrize(("mode", "warned"), [("Warn", True), ("Ignore", False)])
def test_unknown_nested_fields_warn_and_ignore(api: Api, mode: str, warned: bool) -> None:
    api.ns("dev")
    r = api.post("/api/v1/namespaces/dev/pods", POD_TYPO, params={"fieldValidation": mode})
    assert r.status_code == 201, r.text
    warnings = r.headers.get_list("warning")
    expected = [
        '299 - "unknown field \\"spec.containers[0].imagee\\""',
        '299 - "unknown field \\"spec.bogus\\""',
    ]
    assert warnings == (expected if warned else [])
    spec = r.json()["spec"]
    assert "bogus" not in spec and "imagee" not in spec["containers"][0]
    assert spec["nodeSelector"] == {"disk": "ssd"}  # maps of strings are not "unknown fields"


def test_openapi_describes_every_served_verb() -> None:
    """Discovery and OpenAPI agree: each verb a kube-defined resource serves (watch aside: kube
    describes it on /watch/ paths, sa-oidc serves ?watch=true) is an operation in v3."""
    docs = openapi.documents()
    actions = {"post": "create", "put": "update"}
    described: dict[tuple[str, str], set[str]] = {}
    for key, (body, _digest) in docs.v3.items():
        for path, item in json.loads(body)["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                gvk = op.get("x-kubernetes-group-version-kind") or {}
                verb = op["x-kubernetes-action"]
                resource = openapi.served_paths()[path]
                described.setdefault((key, resource.name), set()).add(actions.get(verb, verb))
                assert gvk == {} or gvk["version"] == key.rsplit("/", 1)[1], (path, gvk)
    for gv, resources in GROUP_VERSIONS.items():
        key = "api/v1" if gv == "v1" else f"apis/{gv}"
        if key not in docs.v3:
            continue  # the v1beta1 reviews (gone from kube's OpenAPI)
        for r in resources:
            assert described.get((key, r.name), set()) == set(r.verbs) - {"watch"}, (key, r.name)
