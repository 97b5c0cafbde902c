"""``GET /apis/sa-oidc.dev/v1/invalidations`` as a Kubernetes list (no ``after``: kubectl and
other Kubernetes clients) next to the followers' page (``after=SEQ``, unchanged), on the real
app and both stores (issuer/stream.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from _api_support import Api

from issuer.timefmt import rfc3339

PATH = "/apis/sa-oidc.dev/v1/invalidations"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
def events(api: Api) -> Api:
    """Three events of each type's shape: a deleted pod, a revoked key, a revoked token."""
    api.ns("dev")
    api.sa("dev", "app")
    pod = api.pod("dev", "web", sa="app")
    assert api.delete("/api/v1/namespaces/dev/pods/web").status_code == 200
    api.ctx.store.append_event({"type": "KeyRevoked", "kid": "k1", "time": api.clock()})
    r = api.post(
        "/apis/sa-oidc.dev/v1/tokenrevocations",
        {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": {"jti": "j1"}},
    )
    assert r.status_code == 201, r.text
    assert api.ctx.store.read_events(0).events[0].data["uid"] == pod["metadata"]["uid"]
    return api


def _pod_uid(api: Api) -> str:
    return str(api.ctx.store.read_events(0).events[0].data["uid"])


def test_kubernetes_list_items_are_objects_of_their_own(events: Api) -> None:
    body = events.ok(events.get(PATH), 200)
    assert body["kind"] == "InvalidationList" and body["apiVersion"] == "sa-oidc.dev/v1"
    assert {"lastSeq", "oldestSeq", "epoch", "retentionLeeway"} <= set(body["metadata"])
    deleted, key, token = body["items"]
    for item in body["items"]:
        assert item["apiVersion"] == "sa-oidc.dev/v1" and item["kind"] == "Invalidation"
        assert item["metadata"] == {
            "name": str(item["seq"]),
            "resourceVersion": str(item["seq"]),
            "creationTimestamp": rfc3339(item["time"]),
        }
    assert body["metadata"]["resourceVersion"] == str(body["metadata"]["lastSeq"])
    assert deleted["type"] == "ObjectDeleted"
    assert deleted["object"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "dev",
        "name": "web",
        "uid": _pod_uid(events),
    }
    assert not {"namespace", "name", "uid"} & set(deleted)
    assert key["type"] == "KeyRevoked" and key["kid"] == "k1" and "object" not in key
    assert token["type"] == "TokenRevoked" and token["jti"] == "j1" and "exp" in token
    assert [i["seq"] for i in body["items"]] == sorted(i["seq"] for i in body["items"])


def test_followers_page_is_unchanged(events: Api) -> None:
    body = events.ok(events.get(PATH, params={"after": "0"}), 200)
    deleted, key, token = body["items"]
    assert set(deleted) == {"seq", "type", "kind", "namespace", "name", "uid", "time"}
    assert deleted["kind"] == "Pod" and deleted["uid"] == _pod_uid(events)
    assert set(key) == {"seq", "type", "kid", "time"}
    assert "apiVersion" not in token and "metadata" not in token
    # Its continue is a bare seq, to send back as after.
    page = events.ok(events.get(PATH, params={"after": "0", "limit": "1"}), 200)
    assert page["metadata"]["continue"] == str(deleted["seq"])


def test_kubernetes_list_pages_with_continue(events: Api) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": "1"}
    for _ in range(10):
        body = events.ok(events.get(PATH, params=params), 200)
        seen += [i["seq"] for i in body["items"]]
        token = body["metadata"].get("continue")
        if not token:
            break
        assert not token.isdigit()  # opaque, as kube's
        params = {"limit": "1", "continue": token}
    everything = events.ok(events.get(PATH), 200)["items"]
    assert seen == [i["seq"] for i in everything] and len(seen) == 3


@pytest.mark.parametrize("token", ["%%%", "bm90IGpzb24", base64.urlsafe_b64encode(b"[1]").decode()])
def test_a_bad_continue_token_is_400(events: Api, token: str) -> None:
    r = events.get(PATH, params={"continue": token})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "invalid continue token: continue key is not valid"


def test_a_continue_token_from_another_history_is_410(events: Api) -> None:
    body = events.ok(events.get(PATH, params={"limit": "1"}), 200)
    doc = json.loads(base64.urlsafe_b64decode(body["metadata"]["continue"] + "=="))
    doc["epoch"] = "0123abcd"
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    r = events.get(PATH, params={"continue": forged})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"
    doc = json.loads(base64.urlsafe_b64decode(body["metadata"]["continue"] + "=="))
    doc["time"] = 12345.5  # another event at that seq: the store went back in time
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    r = events.get(PATH, params={"continue": forged})
    assert r.status_code == 410 and "not the one the client holds" in r.json()["message"]


def test_kubernetes_list_as_a_table(events: Api) -> None:
    body = events.ok(events.get(PATH, headers={"Accept": TABLE}), 200)
    assert body["kind"] == "Table"
    assert [r["cells"][1:3] for r in body["rows"]] == [
        ["ObjectDeleted", "Pod/dev/web"],
        ["KeyRevoked", "k1"],
        ["TokenRevoked", "j1"],
    ]
    assert body["rows"][0]["object"]["metadata"]["name"] == str(body["rows"][0]["cells"][0])


def _watch_lines(api: Api, params: dict[str, str], accept: str = "") -> list[dict[str, Any]]:
    headers = {**api.headers, **({"Accept": accept} if accept else {})}
    with api.client.stream(
        "GET", PATH, params={"watch": "true", "timeoutSeconds": "1", **params}, headers=headers
    ) as r:
        assert r.status_code == 200
        kind = r.headers["content-type"]
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert kind.startswith(
        "application/json" if params.get("resourceVersion") or accept else "application/x-ndjson"
    )
    return lines


def test_kubernetes_watch_from_a_resource_version(events: Api) -> None:
    listed = events.ok(events.get(PATH), 200)
    first = listed["items"][0]["metadata"]["resourceVersion"]
    lines = _watch_lines(events, {"resourceVersion": first})
    # Everything after the first event, as ADDED Invalidations; no heartbeats.
    assert [(e["type"], e["object"]["kind"]) for e in lines] == [("ADDED", "Invalidation")] * 2
    assert [e["object"] for e in lines] == listed["items"][1:]
    # From the list's resourceVersion: nothing has happened since.
    assert _watch_lines(events, {"resourceVersion": listed["metadata"]["resourceVersion"]}) == []
    # As one-row Tables when kubectl asks for them.
    tables = _watch_lines(events, {"resourceVersion": first}, TABLE)
    assert [e["object"]["kind"] for e in tables] == ["Table", "Table"]
    assert tables[0]["object"]["rows"][0]["cells"][1:3] == ["KeyRevoked", "k1"]


def test_kubernetes_watch_from_a_trimmed_or_future_version_is_410(events: Api) -> None:
    last = events.ok(events.get(PATH), 200)["metadata"]["lastSeq"]
    r = events.get(PATH, params={"watch": "true", "resourceVersion": str(last + 100)})
    assert r.status_code == 410 and r.json()["reason"] == "Expired"


def test_a_watch_without_after_or_kubernetes_parameters_is_the_followers(events: Api) -> None:
    lines = _watch_lines(events, {})
    assert lines[0]["type"] == "EVENT" and lines[0]["event"]["kind"] == "Pod"
    assert any(line["type"] == "HEARTBEAT" for line in lines)


def test_one_event_by_its_seq(events: Api) -> None:
    listed = events.ok(events.get(PATH), 200)["items"]
    for item in listed:
        assert events.ok(events.get(f"{PATH}/{item['metadata']['name']}"), 200) == item
    row = events.ok(events.get(f"{PATH}/{listed[1]['seq']}", headers={"Accept": TABLE}), 200)
    assert row["kind"] == "Table" and row["rows"][0]["cells"][1:3] == ["KeyRevoked", "k1"]
    for name in ("0", str(listed[-1]["seq"] + 1), "x", "-1", "9" * 30):
        r = events.get(f"{PATH}/{name}")
        assert r.status_code == 404, (name, r.text)
        assert r.json()["message"] == f'invalidations.sa-oidc.dev "{name}" not found'


def test_reading_one_event_needs_get_on_invalidations(events: Api) -> None:
    seq = events.ok(events.get(PATH), 200)["items"][0]["metadata"]["name"]
    events.sa("dev", "reader")
    token = events.token("dev", "reader")
    r = events.client.get(f"{PATH}/{seq}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        f'invalidations.sa-oidc.dev "{seq}" is forbidden: User '
        '"system:serviceaccount:dev:reader" cannot get resource "invalidations" in API group '
        '"sa-oidc.dev" at the cluster scope'
    )
    binding = {
        "metadata": {"name": "reader-delegator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "dev"}],
    }
    crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    assert events.post(crb, binding).status_code == 201
    r = events.client.get(f"{PATH}/{seq}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["metadata"]["name"] == seq


@pytest.mark.parametrize(
    ("params", "types"),
    [
        ({"fieldSelector": "type=KeyRevoked"}, ["KeyRevoked"]),
        ({"fieldSelector": "type!=KeyRevoked"}, ["ObjectDeleted", "TokenRevoked"]),
        ({"fieldSelector": "metadata.namespace="}, ["ObjectDeleted", "KeyRevoked", "TokenRevoked"]),
        ({"labelSelector": "team=a"}, []),  # items have no labels
        ({"labelSelector": "!team"}, ["ObjectDeleted", "KeyRevoked", "TokenRevoked"]),
    ],
)
def test_kubernetes_list_selectors(events: Api, params: dict[str, str], types: list[str]) -> None:
    body = events.ok(events.get(PATH, params=params), 200)
    assert [i["type"] for i in body["items"]] == types


def test_selector_by_name_and_across_pages(events: Api) -> None:
    items = events.ok(events.get(PATH), 200)["items"]
    name = items[1]["metadata"]["name"]
    got = events.ok(events.get(PATH, params={"fieldSelector": f"metadata.name={name}"}), 200)
    assert got["items"] == [items[1]]
    # One event a page: pages without a match still carry continue; the matches add up.
    seen: list[str] = []
    params = {"limit": "1", "fieldSelector": "type=TokenRevoked"}
    for _ in range(10):
        body = events.ok(events.get(PATH, params=params), 200)
        seen += [i["type"] for i in body["items"]]
        if not body["metadata"].get("continue"):
            break
        params = {**params, "continue": body["metadata"]["continue"]}
    assert seen == ["TokenRevoked"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fieldSelector": "spec.colour=red"}, "field label not supported: spec.colour"),
        ({"labelSelector": "a in b"}, "unable to parse requirement"),
        ({"fieldSelector": "type"}, "invalid selector"),
    ],
)
def test_bad_selectors_are_400(events: Api, params: dict[str, str], message: str) -> None:
    r = events.get(PATH, params=params)
    assert r.status_code == 400 and message in r.json()["message"], r.text
    r = events.get(PATH, params={"watch": "true", "resourceVersion": "0", **params})
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_kubernetes_watch_with_a_selector(events: Api) -> None:
    lines = _watch_lines(events, {"resourceVersion": "0", "fieldSelector": "type=TokenRevoked"})
    assert [(e["type"], e["object"]["type"]) for e in lines] == [("ADDED", "TokenRevoked")]
