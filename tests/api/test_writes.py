"""PUT, PATCH, server-side apply and DELETE options over HTTP on the real app and both stores,
checked against the Kubernetes API concepts documentation
(https://kubernetes.io/docs/reference/using-api/api-concepts/) and kube-apiserver's answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from _api_support import Api

from issuer.api import update
from issuer.api.auth import Caller

SA_PATH = "/api/v1/namespaces/dev/serviceaccounts"
JSONP = "application/json-patch+json"
MERGE = "application/merge-patch+json"
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def _put(api: Api, path: str, body: Any, **params: str) -> httpx.Response:
    return api.client.put(path, json=body, headers=api.headers, params=params)


def _patch(api: Api, path: str, body: Any, ctype: str, **params: str) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else httpx.Request("P", "/", json=body).content
    return api.client.patch(
        path, content=content, headers={**api.headers, "Content-Type": ctype}, params=params
    )


@pytest.fixture
def dev(api: Api) -> Api:
    api.ns("dev")
    api.sa("dev", "app", metadata={"name": "app", "labels": {"team": "a"}})
    return api


def _app(api: Api) -> dict[str, Any]:
    return api.ok(api.get(f"{SA_PATH}/app"), 200)


# --- PUT -----------------------------------------------------------------------------------------


def test_put_with_current_version_replaces_and_bumps_it(dev: Api) -> None:
    cur = _app(dev)
    cur["automountServiceAccountToken"] = False
    out = dev.ok(_put(dev, f"{SA_PATH}/app", cur), 200)
    assert out["automountServiceAccountToken"] is False
    assert int(out["metadata"]["resourceVersion"]) > int(cur["metadata"]["resourceVersion"])
    assert out["metadata"]["uid"] == cur["metadata"]["uid"]
    assert out["metadata"]["creationTimestamp"] == cur["metadata"]["creationTimestamp"]


def test_put_with_a_stale_version_is_409_and_changes_nothing(dev: Api) -> None:
    stale = _app(dev)
    dev.ok(_put(dev, f"{SA_PATH}/app", {**stale, "secrets": [{"name": "x"}]}), 200)
    r = _put(dev, f"{SA_PATH}/app", {**stale, "automountServiceAccountToken": False})
    assert r.status_code == 409
    body = r.json()
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on serviceaccounts "app": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert "automountServiceAccountToken" not in _app(dev)


def test_put_without_a_version_is_unconditional(dev: Api) -> None:
    body = {"metadata": {"name": "app"}, "automountServiceAccountToken": True}
    out = dev.ok(_put(dev, f"{SA_PATH}/app", body), 200)
    assert out["automountServiceAccountToken"] is True
    assert "labels" not in out["metadata"]  # a PUT replaces


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (
            {"metadata": {"name": "other"}},
            400,
            "the name of the object (other) does not match the name on the URL (app)",
        ),
        (
            {"metadata": {"name": "app", "uid": "not-it"}},
            409,
            "Precondition failed: UID in precondition",
        ),
        ({"metadata": {"name": "app"}, "bogus": 1}, 400, 'unknown field "bogus"'),
        ({"metadata": {"name": "app", "namespace": "prod"}}, 400, "does not match the namespace"),
        ({"metadata": {"name": "app"}, "secrets": [{}]}, 422, "secrets[0].name: Required value"),
    ],
)
def test_put_refusals_change_nothing(dev: Api, body: Any, code: int, text: str) -> None:
    before = _app(dev)
    r = _put(dev, f"{SA_PATH}/app", body)
    assert r.status_code == code, r.text
    assert text in r.json()["message"]
    assert _app(dev) == before


def test_put_of_a_missing_core_object_is_404(dev: Api) -> None:
    r = _put(dev, f"{SA_PATH}/nope", {"metadata": {"name": "nope"}})
    assert r.status_code == 404
    assert r.json()["message"] == 'serviceaccounts "nope" not found'


def test_put_keeps_status_and_forbids_pod_spec_changes(dev: Api) -> None:
    pod = dev.pod("dev", "p", sa="app")
    pod["status"] = {"phase": "Running"}
    pod["spec"]["containers"][0]["image"] = "busybox:2"  # allowed
    out = dev.ok(_put(dev, "/api/v1/namespaces/dev/pods/p", pod), 200)
    assert out["status"] == {"phase": "Pending"}
    assert out["spec"]["containers"][0]["image"] == "busybox:2"
    out["spec"]["serviceAccountName"] = "default"
    r = _put(dev, "/api/v1/namespaces/dev/pods/p", out)
    assert r.status_code == 422
    assert "pod updates may not change fields other than" in r.json()["message"]


def test_immutable_secret_data_cannot_change(dev: Api) -> None:
    s = dev.secret("dev", "s", stringData={"k": "v"}, immutable=True)
    s["data"] = {"k": "eA=="}
    r = _put(dev, "/api/v1/namespaces/dev/secrets/s", s)
    assert r.status_code == 422
    assert "data: Forbidden: field is immutable when `immutable` is set" in r.json()["message"]


def test_put_dry_run_stores_nothing(dev: Api) -> None:
    before = _app(dev)
    out = dev.ok(
        _put(dev, f"{SA_PATH}/app", {**before, "secrets": [{"name": "x"}]}, dryRun="All"), 200
    )
    assert out["secrets"] == [{"name": "x"}]
    assert _app(dev) == before
    assert _put(dev, f"{SA_PATH}/app", before, dryRun="Some").status_code == 422


def test_put_creates_missing_rbac_objects(dev: Api) -> None:
    role = {
        "metadata": {"name": "r"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
    }
    path = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles/r"
    assert _put(dev, path, role).status_code == 201
    role["rules"][0]["verbs"] = ["get", "list"]
    assert dev.ok(_put(dev, path, role), 200)["rules"][0]["verbs"] == ["get", "list"]
    binding = {
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [],
    }
    bpath = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings/b"
    assert _put(dev, bpath, binding).status_code == 201
    binding["roleRef"]["name"] = "other"
    r = _put(dev, bpath, binding)
    assert r.status_code == 422 and "cannot change roleRef" in r.json()["message"]
    builtin = "/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin"
    assert _put(dev, builtin, {"metadata": {"name": "cluster-admin"}}).status_code == 403


# --- PATCH ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "patch", "labels"),
    [
        (
            JSONP,
            [{"op": "add", "path": "/metadata/labels/x", "value": "1"}],
            {"team": "a", "x": "1"},
        ),
        (MERGE, {"metadata": {"labels": {"team": None, "x": "1"}}}, {"x": "1"}),
        (SMP, {"metadata": {"labels": {"x": "1"}}}, {"team": "a", "x": "1"}),
    ],
)
def test_patch_types(dev: Api, ctype: str, patch: Any, labels: dict[str, str]) -> None:
    out = dev.ok(_patch(dev, f"{SA_PATH}/app", patch, ctype), 200)
    assert out["metadata"]["labels"] == labels


def test_kubectl_patch_image_pull_secrets(dev: Api) -> None:
    """The seed's ``kubectl patch sa app -p '{"imagePullSecrets":[{"name":"regcred"}]}'``."""
    dev.ok(_patch(dev, f"{SA_PATH}/app", {"imagePullSecrets": [{"name": "old"}]}, SMP), 200)
    out = dev.ok(
        _patch(dev, f"{SA_PATH}/app", {"imagePullSecrets": [{"name": "regcred"}]}, SMP), 200
    )
    assert out["imagePullSecrets"] == [{"name": "regcred"}]  # atomic list: replaced
    dev.ok(_patch(dev, f"{SA_PATH}/app", {"secrets": [{"name": "a"}]}, SMP), 200)
    out = dev.ok(_patch(dev, f"{SA_PATH}/app", {"secrets": [{"name": "b"}]}, SMP), 200)
    assert out["secrets"] == [{"name": "a"}, {"name": "b"}]  # merge key name: merged


@pytest.mark.parametrize(
    ("ctype", "body", "code"),
    [
        ("application/xml", b"<x/>", 415),
        (SMP, b"{not json", 400),
        (JSONP, b'[{"op": "test", "path": "/metadata/name", "value": "x"}]', 422),
        (MERGE, b'{"metadata": {"resourceVersion": "1"}}', 409),
        (SMP, b'{"automountServiceAccountToken": "yes"}', 400),
    ],
)
def test_patch_refusals_change_nothing(dev: Api, ctype: str, body: bytes, code: int) -> None:
    before = _app(dev)
    r = _patch(dev, f"{SA_PATH}/app", body, ctype)
    assert r.status_code == code, r.text
    assert r.json()["kind"] == "Status"
    assert _app(dev) == before


def test_patch_of_a_missing_object_is_404(dev: Api) -> None:
    assert _patch(dev, f"{SA_PATH}/nope", {"metadata": {}}, MERGE).status_code == 404


# --- server-side apply ---------------------------------------------------------------------------

#: A "billion laughs" YAML: a few hundred bytes that expand to ~60k nodes x 9.
_LAUGHS = (
    "a: &a [1]\nb: &b [" + ", ".join(["*a"] * 9) + "]\nc: &c [" + ", ".join(["*b"] * 9) + "]\n"
    "d: &d [" + ", ".join(["*c"] * 9) + "]\ne: [" + ", ".join(["*d"] * 200) + "]\n"
)

APPLY_SA = """
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
  labels:
    team: {team}
automountServiceAccountToken: false
"""


def test_apply_creates_updates_and_records_managers(dev: Api) -> None:
    path = f"{SA_PATH}/ssa"
    r = _patch(dev, path, APPLY_SA.format(name="ssa", team="x"), APPLY, fieldManager="alice")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["automountServiceAccountToken"] is False
    [entry] = out["metadata"]["managedFields"]
    assert entry["manager"] == "alice" and entry["operation"] == "Apply"
    assert entry["fieldsV1"] == {
        "f:automountServiceAccountToken": {},
        "f:metadata": {"f:labels": {"f:team": {}}},
    }
    # bob applies a different label value: 409 naming alice and the field (the same
    # automountServiceAccountToken value is shared, not a conflict); nothing changes.
    r = _patch(dev, path, APPLY_SA.format(name="ssa", team="y"), APPLY, fieldManager="bob")
    assert r.status_code == 409
    assert r.json()["message"] == (
        'Apply failed with 1 conflict: conflict with "alice": .metadata.labels.team'
    )
    assert r.json()["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice"',
            "field": ".metadata.labels.team",
        }
    ]
    assert dev.ok(dev.get(path), 200)["metadata"]["labels"] == {"team": "x"}
    # force=true takes them over.
    r = _patch(
        dev,
        path,
        APPLY_SA.format(name="ssa", team="y").replace("false", "true"),
        APPLY,
        fieldManager="bob",
        force="true",
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"team": "y"}
    managers = {e["manager"] for e in r.json()["metadata"]["managedFields"]}
    assert managers == {"bob"}


def test_apply_conflicts_with_a_kubectl_label_update(dev: Api) -> None:
    # POST recorded the creator (User-Agent's product); label it as kubectl label would.
    r = _patch(
        dev,
        f"{SA_PATH}/app",
        {"metadata": {"labels": {"team": "b"}}},
        SMP,
        fieldManager="kubectl-label",
    )
    assert r.status_code == 200
    r = _patch(
        dev, f"{SA_PATH}/app", APPLY_SA.format(name="app", team="c"), APPLY, fieldManager="kubectl"
    )
    assert r.status_code == 409
    assert 'conflict with "kubectl-label" using v1 at ' in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "params", "code", "text"),
    [
        (APPLY_SA.format(name="app", team="z"), {}, 422, "fieldManager: Required value"),
        ("- a\n- b\n", {"fieldManager": "m"}, 400, "must be a YAML or JSON object"),
        (
            "kind: ServiceAccount\nmetadata: {name: app}\n",
            {"fieldManager": "m"},
            400,
            "apiVersion must be set",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: app}\n",
            {"fieldManager": "m"},
            400,
            "unrecognized",
        ),
        ("a: [unclosed\n", {"fieldManager": "m"}, 400, "error decoding YAML"),
        (
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app}\n"
            "automountServiceAccountToken: .nan\n",
            {"fieldManager": "m"},
            400,
            "error converting YAML to JSON",
        ),
        (
            _LAUGHS,
            {"fieldManager": "m"},
            400,
            "too large",
        ),
    ],
)
def test_apply_refusals(dev: Api, body: str, params: dict[str, str], code: int, text: str) -> None:
    before = _app(dev)
    r = _patch(dev, f"{SA_PATH}/app", body, APPLY, **params)
    assert r.status_code == code, r.text
    assert text in r.json()["message"]
    assert _app(dev) == before


def test_apply_yaml_reads_as_kube_reads_it(dev: Api) -> None:
    # sigs.k8s.io/yaml: non-string keys become strings, timestamp-like scalars stay strings.
    body = (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n"
        "  annotations:\n    1: one\n    since: 2001-12-14\n"
    )
    r = _patch(dev, f"{SA_PATH}/app", body, APPLY, fieldManager="m")
    assert r.status_code == 200, r.text
    annotations = r.json()["metadata"]["annotations"]
    assert annotations == {"1": "one", "since": "2001-12-14"}
    assert _app(dev)["metadata"]["annotations"] == annotations


def test_apply_dry_run_creates_nothing(dev: Api) -> None:
    r = _patch(
        dev,
        f"{SA_PATH}/ghost",
        APPLY_SA.format(name="ghost", team="x"),
        APPLY,
        fieldManager="m",
        dryRun="All",
    )
    assert r.status_code == 201
    assert dev.get(f"{SA_PATH}/ghost").status_code == 404


# --- DELETE options, generateName, namespace cascade ---------------------------------------------


@pytest.mark.parametrize(
    ("pre", "text"),
    [
        ({"uid": "wrong"}, "Precondition failed: UID in precondition: wrong, UID in object meta: "),
        ({"resourceVersion": "1"}, "Precondition failed: ResourceVersion in precondition: 1, "),
    ],
)
def test_delete_preconditions(dev: Api, pre: dict[str, str], text: str) -> None:
    r = dev.client.request(
        "DELETE", f"{SA_PATH}/app", headers=dev.headers, json={"preconditions": pre}
    )
    assert r.status_code == 409, r.text
    assert text in r.json()["message"]
    cur = _app(dev)
    good = {"uid": cur["metadata"]["uid"], "resourceVersion": cur["metadata"]["resourceVersion"]}
    dry = dev.client.request(
        "DELETE",
        f"{SA_PATH}/app",
        headers=dev.headers,
        json={"preconditions": good},
        params={"dryRun": "All"},
    )
    assert dry.status_code == 200 and _app(dev) == cur
    r = dev.client.request(
        "DELETE", f"{SA_PATH}/app", headers=dev.headers, json={"preconditions": good}
    )
    assert r.status_code == 200, r.text
    assert dev.get(f"{SA_PATH}/app").status_code == 404


def test_generate_name(dev: Api) -> None:
    out = dev.ok(dev.post(SA_PATH, {"metadata": {"generateName": "worker-"}}))
    assert out["metadata"]["name"].startswith("worker-") and len(out["metadata"]["name"]) == 12


def test_namespace_delete_logs_every_deletion(dev: Api) -> None:
    dev.pod("dev", "p", sa="app")
    since = dev.ctx.store.read_changes(0).last_rv
    dev.ok(dev.delete("/api/v1/namespaces/dev"), 200)
    page = dev.ctx.store.read_changes(since)
    deleted = {(c.kind, c.name) for c in page.changes if c.type == "DELETED"}
    assert {
        ("Pod", "p"),
        ("ServiceAccount", "app"),
        ("ServiceAccount", "default"),
        ("Namespace", "dev"),
    } <= deleted
    events = dev.ctx.store.read_events(0).events
    assert {(e.data["kind"], e.data["name"]) for e in events} >= {
        ("Pod", "p"),
        ("ServiceAccount", "app"),
    }


def test_create_dry_run_runs_every_check_and_stores_nothing(dev: Api) -> None:
    """``kubectl create|apply --dry-run=server``: POST ?dryRun=All."""
    out = dev.ok(dev.post(SA_PATH, {"metadata": {"name": "ghost"}}, params={"dryRun": "All"}))
    assert out["metadata"]["name"] == "ghost" and "resourceVersion" not in out["metadata"]
    assert dev.get(f"{SA_PATH}/ghost").status_code == 404
    taken = dev.post(SA_PATH, {"metadata": {"name": "app"}}, params={"dryRun": "All"})
    assert taken.status_code == 409 and taken.json()["reason"] == "AlreadyExists"
    spec = {"serviceAccountName": "nope", "containers": [{"name": "c", "image": "busybox"}]}
    pod = {"metadata": {"name": "p"}, "spec": spec}
    r = dev.post("/api/v1/namespaces/dev/pods", pod, params={"dryRun": "All"})
    assert r.status_code == 403  # admission still runs
    role = {"metadata": {"name": "r"}, "rules": []}
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles"
    assert dev.post(rbac, role, params={"dryRun": "All"}).status_code == 201
    assert dev.get(f"{rbac}/r").status_code == 404
    assert (
        dev.post(SA_PATH, {"metadata": {"name": "x"}}, params={"dryRun": "Yes"}).status_code == 422
    )


def test_writes_record_who_wrote_what(dev: Api) -> None:
    """POST, PUT and PATCH all keep managedFields (kube records every write's manager)."""
    body = {"metadata": {"name": "m", "labels": {"a": "1"}}}
    created = dev.ok(dev.post(SA_PATH, body, params={"fieldManager": "tool"}))
    [entry] = created["metadata"]["managedFields"]
    assert entry["manager"] == "tool" and entry["operation"] == "Update"
    assert entry["fieldsV1"] == {"f:metadata": {"f:labels": {"f:a": {}}}}
    patch = {"automountServiceAccountToken": False}
    r = _patch(dev, f"{SA_PATH}/m", patch, SMP, fieldManager="kubectl-patch")
    entries = {e["manager"]: e for e in r.json()["metadata"]["managedFields"]}
    assert entries["kubectl-patch"]["fieldsV1"] == {"f:automountServiceAccountToken": {}}
    assert entries["kubectl-patch"]["operation"] == "Update"


def test_concurrent_patches_are_all_applied(dev: Api) -> None:
    """Unconditional writes retry on the store's compare-and-swap: 16 concurrent patches, each
    adding its own label, all land (none is lost to a read-modify-write race)."""
    opts = update.WriteOptions(caller=Caller("admin", ("system:masters",), "t"), manager="t")

    def add(i: int) -> None:
        body = b'{"metadata":{"labels":{"l%d":"v"}}}' % i
        update.patch_object(dev.ctx, "ServiceAccount", "dev", "app", SMP, body, opts)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(16)))
    labels = _app(dev)["metadata"]["labels"]
    assert labels == {"team": "a", **{f"l{i}": "v" for i in range(16)}}
    # And every one of them is in the change log, in order, once.
    mods = [c for c in dev.ctx.store.read_changes(0).changes if c.type == "MODIFIED"]
    assert len(mods) == 16


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        (MERGE, b'{"metadata": {"resourceVersion": "%s", "labels": {"x": "1"}}}'),
        (SMP, b'{"metadata": {"resourceVersion": "%s", "labels": {"x": "1"}}}'),
        (JSONP, b'[{"op": "replace", "path": "/metadata/resourceVersion", "value": "%s"}]'),
        (
            APPLY,
            b"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, resourceVersion: '%s'}\n",
        ),
    ],
)
def test_a_patch_that_names_a_resource_version_is_conditional(
    dev: Api, ctype: str, body: bytes
) -> None:
    """kube: a patch carrying metadata.resourceVersion is a precondition (409 when stale); one
    that does not is applied to whatever is current."""
    stale = _app(dev)["metadata"]["resourceVersion"]
    dev.ok(_patch(dev, f"{SA_PATH}/app", {"metadata": {"labels": {"y": "1"}}}, MERGE), 200)
    r = _patch(dev, f"{SA_PATH}/app", body % stale.encode(), ctype, fieldManager="m")
    assert r.status_code == 409, r.text
    fresh = _app(dev)["metadata"]["resourceVersion"]
    r = _patch(dev, f"{SA_PATH}/app", body % fresh.encode(), ctype, fieldManager="m")
    assert r.status_code == 200, r.text


def test_managed_fields_can_be_rewritten_or_reset_but_not_dropped(dev: Api) -> None:
    """kube (server-side apply docs, "Clearing managedFields"; decodeLiveOrNew): a request may
    rewrite managedFields — kubectl does when it moves an object from client-side to server-side
    apply — and ``[{}]`` resets them; a body without them keeps the live ones."""
    path = f"{SA_PATH}/app"
    r = _patch(
        dev, path, {"metadata": {"labels": {"team": "b"}}}, SMP, fieldManager="kubectl-label"
    )
    assert r.status_code == 200
    owned_by_apply = [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}},
        }
    ]
    ops = [{"op": "replace", "path": "/metadata/managedFields", "value": owned_by_apply}]
    r = _patch(dev, path, ops, JSONP, fieldManager="kubectl")
    assert r.status_code == 200, r.text
    assert [e["manager"] for e in r.json()["metadata"]["managedFields"]] == ["kubectl"]
    # Now kubectl's apply owns the label: changing it is no conflict.
    r = _patch(dev, path, APPLY_SA.format(name="app", team="c"), APPLY, fieldManager="kubectl")
    assert r.status_code == 200, r.text
    # A PUT without managedFields keeps them.
    cur = _app(dev)
    cur["metadata"].pop("managedFields")
    out = dev.ok(_put(dev, path, cur, fieldManager="kubectl-replace"), 200)
    assert "kubectl" in {e["manager"] for e in out["metadata"]["managedFields"]}
    # [{}] resets them.
    r = _patch(dev, path, {"metadata": {"managedFields": [{}]}}, MERGE)
    assert r.status_code == 200 and "managedFields" not in r.json()["metadata"]


# --- updates start from this process's last write (issuer.lastwritten) ---------------------------


def _write_behind(api: Api, label: str) -> None:
    """Change the account the way another replica would: straight in the shared store."""
    cur = api.ctx.store.get_object("ServiceAccount", "dev", "app")
    cur["metadata"].setdefault("labels", {})["team"] = label
    api.ctx.store.update_object(
        "ServiceAccount", "dev", "app", cur, resource_version=cur["metadata"]["resourceVersion"]
    )


@pytest.mark.parametrize(
    ("ctype", "patch", "expect_team"),
    [
        # A merge patch from the stale start would silently drop the other writer's change.
        (MERGE, {"metadata": {"annotations": {"a": "1"}}}, "other"),
        # A JSON patch "test" that fails on the stale start but holds on the fresh state.
        (JSONP, [{"op": "test", "path": "/metadata/labels/team", "value": "other"}], "other"),
        (SMP, {"metadata": {"labels": {"team": "mine"}}}, "mine"),
    ],
)
def test_an_update_from_a_stale_start_is_redone_from_the_fresh_state(
    dev: Api, ctype: str, patch: Any, expect_team: str
) -> None:
    path = f"{SA_PATH}/app"
    assert _patch(dev, path, {"metadata": {"labels": {"k": "v"}}}, MERGE).status_code == 200
    assert dev.ctx.last_written.get(("ServiceAccount", "dev", "app")) is not None
    _write_behind(dev, "other")  # this process's remembered copy is now stale
    r = _patch(dev, path, patch, ctype)
    assert r.status_code == 200, r.text
    stored = _app(dev)
    assert stored["metadata"]["labels"]["team"] == expect_team
    assert stored["metadata"]["labels"]["k"] == "v"
    assert r.json()["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_a_refusal_is_never_decided_on_a_stale_start(dev: Api) -> None:
    path = f"{SA_PATH}/app"
    assert _patch(dev, path, {"metadata": {"labels": {"k": "v"}}}, MERGE).status_code == 200
    _write_behind(dev, "other")
    stale_test = [{"op": "test", "path": "/metadata/labels/team", "value": "a"}]
    r = _patch(dev, path, stale_test, JSONP)
    assert r.status_code == 422, r.text  # decided on the fresh state, where team is "other"
    put = _app(dev)
    put["metadata"]["labels"]["team"] = "put"
    assert _put(dev, path, put).status_code == 200  # its resourceVersion is the fresh one


def test_dry_run_never_starts_from_the_remembered_copy(dev: Api) -> None:
    path = f"{SA_PATH}/app"
    assert _patch(dev, path, {"metadata": {"labels": {"k": "v"}}}, MERGE).status_code == 200
    _write_behind(dev, "other")
    r = _patch(dev, path, {"metadata": {"annotations": {"a": "1"}}}, MERGE, dryRun="All")
    assert r.status_code == 200
    assert r.json()["metadata"]["labels"]["team"] == "other"
