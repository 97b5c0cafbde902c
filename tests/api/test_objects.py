"""Core objects over the real app and a real store (SQLite and Redis): CRUD, namespace lifecycle,
invalidation events, pod admission, and every bad request refused with nothing stored."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from _api_support import Api

NS_PATH = "/api/v1/namespaces"


def events(api: Api) -> list[dict[str, Any]]:
    return [dict(e.data) for e in api.ctx.store.read_events(0).events]


# --- CRUD and lifecycle ---------------------------------------------------------------------------


def test_namespace_create_get_list_and_default_sa(api: Api) -> None:
    ns = api.ns("dev")
    assert ns["kind"] == "Namespace" and ns["apiVersion"] == "v1"
    meta = ns["metadata"]
    assert meta["name"] == "dev" and "namespace" not in meta
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["resourceVersion"]
    assert ns["status"] == {"phase": "Active"}
    assert api.ok(api.get(f"{NS_PATH}/dev"), 200) == ns
    lst = api.ok(api.get(NS_PATH), 200)
    assert lst["kind"] == "NamespaceList" and lst["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["dev"]
    assert lst["metadata"]["resourceVersion"]
    sas = api.ok(api.get(f"{NS_PATH}/dev/serviceaccounts"), 200)
    assert [i["metadata"]["name"] for i in sas["items"]] == ["default"]


def test_deleting_default_sa_brings_a_new_one(api: Api) -> None:
    api.ns("dev")
    old = api.ok(api.get(f"{NS_PATH}/dev/serviceaccounts/default"), 200)
    deleted = api.ok(api.delete(f"{NS_PATH}/dev/serviceaccounts/default"), 200)
    assert deleted["metadata"]["uid"] == old["metadata"]["uid"]
    new = api.ok(api.get(f"{NS_PATH}/dev/serviceaccounts/default"), 200)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]


def test_every_kind_roundtrips(api: Api) -> None:
    api.ns("dev")
    sa = api.sa(
        "dev",
        "app",
        secrets=[{"name": "s"}],
        imagePullSecrets=[{"name": "reg"}],
        automountServiceAccountToken=False,
        metadata={"name": "app", "annotations": {"a": "b"}, "labels": {"l": "v"}},
    )
    assert sa["secrets"] == [{"name": "s"}] and sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["annotations"] == {"a": "b"}
    secret = api.secret("dev", "s", data={"k": "dmFsdWU="}, stringData={"plain": "text"})
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"k": "dmFsdWU=", "plain": "dGV4dA=="}
    assert "stringData" not in secret
    node = api.node("n1.example.com")
    assert "namespace" not in node["metadata"]
    pod = api.pod("dev", "p", sa="app", node="n1.example.com")
    assert pod["spec"]["nodeName"] == "n1.example.com"
    for path, obj in [
        (f"{NS_PATH}/dev/serviceaccounts/app", sa),
        (f"{NS_PATH}/dev/secrets/s", secret),
        ("/api/v1/nodes/n1.example.com", node),
        (f"{NS_PATH}/dev/pods/p", pod),
    ]:
        assert api.ok(api.get(path), 200) == obj
    assert [p["metadata"]["name"] for p in api.ok(api.get("/api/v1/pods"), 200)["items"]] == ["p"]
    assert api.ok(api.get("/api/v1/nodes"), 200)["kind"] == "NodeList"
    # Deletes return the object and record one event each, with its uid.
    for path, obj in [
        (f"{NS_PATH}/dev/pods/p", pod),
        (f"{NS_PATH}/dev/secrets/s", secret),
        ("/api/v1/nodes/n1.example.com", node),
        (f"{NS_PATH}/dev/serviceaccounts/app", sa),
    ]:
        assert api.ok(api.delete(path), 200)["metadata"]["uid"] == obj["metadata"]["uid"]
        r = api.get(path)
        assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    evs = events(api)
    assert [(e["kind"], e["namespace"], e["name"], e["uid"]) for e in evs] == [
        ("Pod", "dev", "p", pod["metadata"]["uid"]),
        ("Secret", "dev", "s", secret["metadata"]["uid"]),
        ("Node", "", "n1.example.com", node["metadata"]["uid"]),
        ("ServiceAccount", "dev", "app", sa["metadata"]["uid"]),
    ]
    assert all(e["type"] == "ObjectDeleted" and isinstance(e["time"], float) for e in evs)


def test_namespace_delete_cascades_with_events(api: Api) -> None:
    api.ns("dev")
    api.ns("keep")
    pod = api.pod("dev", "p")
    secret = api.secret("dev", "s")
    api.pod("keep", "p")
    out = api.ok(api.delete(f"{NS_PATH}/dev"), 200)
    assert out["kind"] == "Namespace" and out["status"]["phase"] == "Terminating"
    assert api.get(f"{NS_PATH}/dev").status_code == 404
    for kind in ("pods", "secrets", "serviceaccounts"):
        assert api.ok(api.get(f"{NS_PATH}/dev/{kind}"), 200)["items"] == []
    kept = api.ok(api.get("/api/v1/pods"), 200)["items"]
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in kept] == [("keep", "p")]
    deleted = {(e["kind"], e["name"], e["uid"]) for e in events(api)}
    assert ("Pod", "p", pod["metadata"]["uid"]) in deleted
    assert ("Secret", "s", secret["metadata"]["uid"]) in deleted
    assert any(k == "ServiceAccount" and n == "default" for k, n, _ in deleted)
    # Not recreated after the namespace is gone; the namespace can be created afresh.
    api.ns("dev")
    assert len(api.ok(api.get(f"{NS_PATH}/dev/serviceaccounts"), 200)["items"]) == 1


def test_generate_name(api: Api) -> None:
    api.ns("dev")
    r = api.post(f"{NS_PATH}/dev/secrets", {"metadata": {"generateName": "tok-"}})
    name = api.ok(r)["metadata"]["name"]
    assert re.fullmatch(r"tok-[bcdfghjklmnpqrstvwxz2456789]{5}", name)


# --- refusals: one row per rule, nothing stored ---------------------------------------------------

BAD: list[tuple[str, str, Any, int, str, str]] = [
    # (id, path, body (bytes = raw), code, reason, message fragment)
    (
        "malformed-json",
        f"{NS_PATH}/dev/pods",
        b'{"metadata": {',
        400,
        "BadRequest",
        "not valid JSON",
    ),
    ("json-array", f"{NS_PATH}/dev/pods", b"[]", 400, "BadRequest", "must be a JSON object"),
    (
        "wrong-kind",
        f"{NS_PATH}/dev/serviceaccounts",
        {"kind": "Secret", "metadata": {"name": "x"}},
        400,
        "BadRequest",
        "the object provided is unrecognized (must be of type ServiceAccount)",
    ),
    (
        "wrong-api-version",
        f"{NS_PATH}/dev/serviceaccounts",
        {"apiVersion": "v2", "metadata": {"name": "x"}},
        400,
        "BadRequest",
        "the API version in the data (v2) does not match the expected API version (v1)",
    ),
    (
        "unknown-top-level-field",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "x"}, "speck": {}},
        400,
        "BadRequest",
        'strict decoding error: unknown field "speck"',
    ),
    (
        "unknown-metadata-field",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "x", "nmae": "y"}},
        400,
        "BadRequest",
        'unknown field "metadata.nmae"',
    ),
    (
        "wrong-json-type",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "x"}, "automountServiceAccountToken": "yes"},
        400,
        "BadRequest",
        "json: cannot unmarshal string into Go struct field",
    ),
    (
        "namespace-mismatch",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "x", "namespace": "other"}},
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    ),
    (
        "bad-base64",
        f"{NS_PATH}/dev/secrets",
        {"metadata": {"name": "x"}, "data": {"k": "not base64!"}},
        400,
        "BadRequest",
        "illegal base64 data",
    ),
    (
        "namespace-name-not-label",
        NS_PATH,
        {"metadata": {"name": "a.b"}},
        422,
        "Invalid",
        'Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": a lowercase RFC 1123 '
        "label",
    ),
    (
        "namespace-name-too-long",
        NS_PATH,
        {"metadata": {"name": "a" * 64}},
        422,
        "Invalid",
        "must be no more than 63 characters",
    ),
    (
        "sa-name-not-subdomain",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "Bad_Name"}},
        422,
        "Invalid",
        'ServiceAccount "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a '
        "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
        "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
        "used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    ),
    (
        "name-missing",
        f"{NS_PATH}/dev/secrets",
        {"metadata": {}},
        422,
        "Invalid",
        "metadata.name: Required value: name or generateName is required",
    ),
    (
        "node-name-invalid",
        "/api/v1/nodes",
        {"metadata": {"name": "-node"}},
        422,
        "Invalid",
        'Node "-node" is invalid',
    ),
    (
        "pod-without-containers",
        f"{NS_PATH}/dev/pods",
        {"metadata": {"name": "p"}, "spec": {}},
        422,
        "Invalid",
        'Pod "p" is invalid: spec.containers: Required value',
    ),
    (
        "pod-container-without-image",
        f"{NS_PATH}/dev/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}},
        422,
        "Invalid",
        "spec.containers[0].image: Required value",
    ),
    (
        "secret-key-invalid",
        f"{NS_PATH}/dev/secrets",
        {"metadata": {"name": "x"}, "data": {"a/b": "dg=="}},
        422,
        "Invalid",
        'data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric',
    ),
    (
        "namespace-missing",
        f"{NS_PATH}/ghost/serviceaccounts",
        {"metadata": {"name": "x"}},
        404,
        "NotFound",
        'namespaces "ghost" not found',
    ),
    (
        "duplicate-sa",
        f"{NS_PATH}/dev/serviceaccounts",
        {"metadata": {"name": "default"}},
        409,
        "AlreadyExists",
        'serviceaccounts "default" already exists',
    ),
    (
        "duplicate-namespace",
        NS_PATH,
        {"metadata": {"name": "dev"}},
        409,
        "AlreadyExists",
        'namespaces "dev" already exists',
    ),
    (
        "pod-sa-missing",
        f"{NS_PATH}/dev/pods",
        {
            "metadata": {"name": "p"},
            "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c", "image": "i"}]},
        },
        403,
        "Forbidden",
        'pods "p" is forbidden: error looking up service account dev/ghost: serviceaccount "ghost" '
        "not found",
    ),
    (
        "unknown-resource",
        f"{NS_PATH}/dev/configmaps",
        {"metadata": {"name": "x"}},
        404,
        "NotFound",
        "the server could not find the requested resource",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "code", "reason", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_creates_store_nothing(
    api: Api, path: str, body: Any, code: int, reason: str, message: str
) -> None:
    api.ns("dev")
    before = api.snapshot()
    events_before = events(api)
    if isinstance(body, bytes):
        r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = api.post(path, body)
    assert r.status_code == code, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure" and status["reason"] == reason and status["code"] == code
    assert message in status["message"], status["message"]
    assert api.snapshot() == before
    assert events(api) == events_before


def test_oversize_body_is_413_and_stores_nothing(api: Api) -> None:
    api.ns("dev")
    before = api.snapshot()
    body = json.dumps({"metadata": {"name": "big"}, "data": {"k": "QUFB" * (300 * 1024)}})
    r = api.post(
        f"{NS_PATH}/dev/secrets",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"
    assert api.snapshot() == before


def test_field_validation_ignore_and_warn(api: Api) -> None:
    api.ns("dev")
    body = {"metadata": {"name": "x", "bogus": 1}, "extra": True}
    r = api.post(f"{NS_PATH}/dev/serviceaccounts?fieldValidation=Ignore", body)
    assert api.ok(r)["metadata"]["name"] == "x" and "Warning" not in r.headers
    body["metadata"]["name"] = "y"
    r = api.post(f"{NS_PATH}/dev/serviceaccounts?fieldValidation=Warn", body)
    assert "extra" not in api.ok(r)
    assert r.headers.get_list("Warning") == [
        '299 - "unknown field \\"extra\\""',
        '299 - "unknown field \\"metadata.bogus\\""',
    ]
    r = api.post(f"{NS_PATH}/dev/serviceaccounts?fieldValidation=Maybe", body)
    assert r.status_code == 400


def test_terminating_namespace_refuses_content(api: Api) -> None:
    ns = api.ns("dev")
    ns["status"]["phase"] = "Terminating"
    api.ctx.store.update_object("Namespace", "", "dev", ns)
    r = api.post(f"{NS_PATH}/dev/secrets", {"metadata": {"name": "s"}})
    assert r.status_code == 403
    assert r.json()["message"] == (
        'secrets "s" is forbidden: unable to create new content in namespace dev because it is '
        "being terminated"
    )


def test_server_fields_in_body_are_ignored(api: Api) -> None:
    api.ns("dev")
    sa = api.sa(
        "dev",
        "x",
        metadata={"name": "x", "uid": "chosen", "resourceVersion": "5", "creationTimestamp": "t"},
    )
    assert sa["metadata"]["uid"] != "chosen" and sa["metadata"]["creationTimestamp"] != "t"


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", NS_PATH, 401),
        ("POST", f"{NS_PATH}/dev/pods", 401),
        ("DELETE", f"{NS_PATH}/dev", 401),
        ("POST", "/api/v1/namespaces/dev/serviceaccounts/default/token", 401),
    ],
)
def test_anonymous_and_wrong_tokens_are_401(api: Api, method: str, path: str, code: int) -> None:
    api.ns("dev")
    before = api.snapshot()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {api.ctx.admin_tokens[0]}x"},
        {"Authorization": f"Basic {api.ctx.admin_tokens[0]}"},
    ):
        r = api.client.request(method, path, headers=headers, json={"metadata": {"name": "z"}})
        assert r.status_code == code
        assert r.json()["reason"] == "Unauthorized"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert api.snapshot() == before
    # Discovery stays anonymous.
    assert api.client.get("/openid/v1/jwks").status_code == 200


def test_head_reads_and_never_deletes(api: Api) -> None:
    api.ns("dev")
    api.pod("dev", "p")
    before = api.snapshot()
    for path in (f"{NS_PATH}/dev", f"{NS_PATH}/dev/pods/p", f"{NS_PATH}/dev/pods", NS_PATH):
        assert api.client.head(path, headers=api.headers).status_code == 200
    assert api.snapshot() == before


def test_method_not_allowed(api: Api) -> None:
    r = api.client.put(NS_PATH, headers=api.headers, json={})
    assert r.status_code == 405 and r.json()["reason"] == "MethodNotAllowed"


# --- pod admission (kube: plugin/pkg/admission/serviceaccount/admission.go) -----------------------

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_admission_defaults_and_projected_volume(api: Api) -> None:
    api.ns("dev")
    pod = api.pod(
        "dev",
        "p",
        initContainers=[{"name": "init", "image": "i"}],
        containers=[
            {"name": "a", "image": "i"},
            {"name": "b", "image": "i", "volumeMounts": [{"name": "own", "mountPath": MOUNT}]},
        ],
        volumes=[{"name": "own", "emptyDir": {}}],
    )
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    vols = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vols) == 1
    name = vols[0]["name"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    assert vols[0]["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    mount = {"name": name, "readOnly": True, "mountPath": MOUNT}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]
    # A container that already mounts something there keeps its own mount.
    assert spec["containers"][1]["volumeMounts"] == [{"name": "own", "mountPath": MOUNT}]


@pytest.mark.parametrize(
    ("sa_automount", "pod_automount", "mounted"),
    [
        (None, None, True),
        (False, None, False),
        (True, None, True),
        (False, True, True),
        (True, False, False),
        (None, False, False),
    ],
)
def test_automount_precedence(
    api: Api, sa_automount: bool | None, pod_automount: bool | None, mounted: bool
) -> None:
    api.ns("dev")
    fields = {} if sa_automount is None else {"automountServiceAccountToken": sa_automount}
    api.sa("dev", "app", **fields)
    extra = {} if pod_automount is None else {"automountServiceAccountToken": pod_automount}
    spec = api.pod("dev", "p", sa="app", **extra)["spec"]
    has_volume = any(v["name"].startswith("kube-api-access-") for v in spec.get("volumes", []))
    has_mount = bool(spec["containers"][0].get("volumeMounts"))
    assert has_volume is mounted and has_mount is mounted


def _pod_spec(**kw: Any) -> dict[str, Any]:
    ctr = {"name": "c", "image": "i", **kw.pop("container", {})}
    return {"serviceAccountName": "locked", "containers": [ctr], **kw}


ENFORCE: list[tuple[str, dict[str, Any], str | None]] = [
    ("allowed-everything", _pod_spec(
        volumes=[{"name": "v", "secret": {"secretName": "ok"}}],
        container={
            "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "ok", "key": "k"}}}],
            "envFrom": [{"secretRef": {"name": "ok"}}],
        },
        imagePullSecrets=[{"name": "pull"}],
    ), None),
    ("secret-volume", _pod_spec(volumes=[{"name": "v", "secret": {"secretName": "nope"}}]),
     'volume with secret.secretName="nope" is not allowed because service account locked does '
     "not reference that secret"),
    ("env-secret-key-ref", _pod_spec(container={
        "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}),
     'container c with envVar E referencing secret.secretName="nope" is not allowed because '
     "service account locked does not reference that secret"),
    ("env-from-secret-ref", _pod_spec(container={"envFrom": [{"secretRef": {"name": "nope"}}]}),
     'container c with envFrom referencing secret.secretName="nope" is not allowed because '
     "service account locked does not reference that secret"),
    ("init-container-env", {**_pod_spec(), "initContainers": [{"name": "i0", "image": "i", "env": [
        {"name": "E", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]},
     'init container i0 with envVar E referencing secret.secretName="nope" is not allowed'),
    ("image-pull-secret", _pod_spec(imagePullSecrets=[{"name": "pull"}, {"name": "nope"}]),
     'imagePullSecrets[1].name="nope" is not allowed because service account locked does not '
     "reference that imagePullSecret"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "error"), [e[1:] for e in ENFORCE], ids=[e[0] for e in ENFORCE])
def test_enforce_mountable_secrets(api: Api, spec: dict[str, Any], error: str | None) -> None:
    api.ns("dev")
    api.sa(
        "dev",
        "locked",
        metadata={
            "name": "locked",
            "annotations": {"kubernetes.io/enforce-mountable-secrets": "true"},
        },
        secrets=[{"name": "ok"}],
        imagePullSecrets=[{"name": "pull"}],
    )
    before = api.snapshot()
    r = api.post(f"{NS_PATH}/dev/pods", {"metadata": {"name": "p"}, "spec": spec})
    if error is None:
        api.ok(r)
        return
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "Forbidden"
    assert r.json()["message"].startswith(f'pods "p" is forbidden: {error}')
    assert api.snapshot() == before


def test_pod_inherits_sa_image_pull_secrets(api: Api) -> None:
    api.ns("dev")
    api.sa("dev", "app", imagePullSecrets=[{"name": "reg"}])
    assert api.pod("dev", "p", sa="app")["spec"]["imagePullSecrets"] == [{"name": "reg"}]
