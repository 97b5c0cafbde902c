"""``?watch=true`` over a real socket (uvicorn in-process) on both stores, against the
Kubernetes API concepts documentation ("Efficient detection of changes", "Watch bookmarks",
"410 Gone responses": https://kubernetes.io/docs/reference/using-api/api-concepts/) — and the
official Python client's ``watch.Watch()``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _watch_support import Served, serve, summary
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

SA = "/api/v1/namespaces/dev/serviceaccounts"


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[Served]:
    with serve(tmp_path, store_url) as s:
        yield s


def test_initial_state_then_live_changes(served: Served) -> None:
    served.create_sa("a")
    t, got = served.watch_in_background(SA, until=5)
    served.wait_watchers(1)
    served.create_sa("b")
    assert (
        served.http.patch(
            f"{SA}/b",
            json={"metadata": {"labels": {"x": "1"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ).status_code
        == 200
    )
    assert served.http.delete(f"{SA}/b").status_code == 200
    t.join(10)
    assert summary(got) == [
        ("ADDED", "a"),
        ("ADDED", "default"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("DELETED", "b"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in got[2:]]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    assert got[3]["object"]["metadata"]["labels"] == {"x": "1"}


def test_resume_from_a_resource_version_replays_exactly_what_followed(served: Served) -> None:
    a = served.create_sa("a")
    rv = a["metadata"]["resourceVersion"]
    served.create_sa("b")
    served.http.delete(f"{SA}/a")
    got = served.events(SA, until=2, resourceVersion=rv)
    assert summary(got) == [("ADDED", "b"), ("DELETED", "a")]
    assert int(got[1]["object"]["metadata"]["resourceVersion"]) > int(rv)


def test_too_old_resource_version_is_410_expired(served: Served) -> None:
    a = served.create_sa("a")
    served.create_sa("b")
    served.ctx.store.trim_changes(time.time() + 1)
    floor = served.ctx.store.read_changes(0).floor
    got = served.events(SA, until=5, resourceVersion=a["metadata"]["resourceVersion"])
    assert len(got) == 1 and got[0]["type"] == "ERROR"
    status = got[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert (
        status["message"]
        == f"too old resource version: {a['metadata']['resourceVersion']} ({floor})"
    )


def test_bookmarks_carry_the_newest_version(served: Served) -> None:
    served.create_sa("a")
    b = served.create_sa("b")
    got = served.events(
        SA, until=2, resourceVersion=b["metadata"]["resourceVersion"], allowWatchBookmarks="true"
    )
    assert [e["type"] for e in got] == ["BOOKMARK", "BOOKMARK"]
    mark = got[0]["object"]
    assert mark["kind"] == "ServiceAccount" and mark["apiVersion"] == "v1"
    assert int(mark["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])


def test_timeout_seconds_ends_the_stream(served: Served) -> None:
    t0 = time.monotonic()
    got = served.events(SA, until=100, timeoutSeconds="1")
    assert 0.9 <= time.monotonic() - t0 < 5
    assert summary(got) == [("ADDED", "default")]


def test_namespace_and_field_selector_filters(served: Served) -> None:
    assert (
        served.http.post("/api/v1/namespaces", json={"metadata": {"name": "prod"}}).status_code
        == 201
    )
    now = str(served.ctx.store.read_changes(0).last_rv)
    t_all, got_all = served.watch_in_background(
        "/api/v1/serviceaccounts", until=3, resourceVersion=now
    )
    t_one, got_one = served.watch_in_background(
        SA, until=1, fieldSelector="metadata.name=y", resourceVersion=now
    )
    served.wait_watchers(2)
    served.create_sa("x", "prod")
    served.create_sa("x")
    served.create_sa("y")
    t_all.join(10)
    t_one.join(10)
    names = [
        (e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"]) for e in got_all
    ]
    assert names == [("prod", "x"), ("dev", "x"), ("dev", "y")]
    assert summary(got_one) == [("ADDED", "y")]


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"resourceVersion": "abc"}, "invalid resource version"),
        ({"fieldSelector": "spec.x=1"}, "field label not supported: spec.x"),
        ({"labelSelector": "a in (b"}, "unable to parse requirement"),
        ({"timeoutSeconds": "soon"}, "invalid timeoutSeconds"),
    ],
)
def test_bad_watch_parameters_are_400(served: Served, params: dict[str, str], text: str) -> None:
    r = served.http.get(SA, params={"watch": "true", **params})
    assert r.status_code == 400 and text in r.json()["message"]


def test_rbac_collections_watch_too(served: Served) -> None:
    t, got = served.watch_in_background(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles", until=1, resourceVersion="1"
    )
    served.wait_watchers(1)
    role = {"metadata": {"name": "r"}, "rules": []}
    r = served.http.post("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles", json=role)
    assert r.status_code == 201
    t.join(10)
    assert summary(got) == [("ADDED", "r")]
    assert got[0]["object"]["kind"] == "Role"


def test_official_python_client_watch(served: Served) -> None:
    """``kubernetes.watch.Watch().stream(list_namespaced_pod, ...)`` sees a pod come and go."""
    conf = k8s.Configuration()
    conf.host = served.url
    conf.api_key = {"authorization": served.headers["Authorization"]}
    api = k8s.CoreV1Api(k8s.ApiClient(conf))
    api.create_namespaced_service_account("dev", {"metadata": {"name": "app"}})

    def churn() -> None:
        time.sleep(0.7)
        body = {
            "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "app",
                "containers": [{"name": "c", "image": "busybox"}],
            },
        }
        api.create_namespaced_pod("dev", body)
        api.delete_namespaced_pod("p", "dev")

    threading.Thread(target=churn, daemon=True).start()
    seen: list[tuple[str, str]] = []
    w = k8s_watch.Watch()
    for event in w.stream(api.list_namespaced_pod, "dev", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "p"), ("DELETED", "p")]
    # Resuming from a trimmed version: the client raises ApiException(410) (its documented path).
    served.ctx.store.trim_changes(time.time() + 1)
    with pytest.raises(k8s.exceptions.ApiException) as e:
        for _ in k8s_watch.Watch().stream(
            api.list_namespaced_pod, "dev", resource_version="1", timeout_seconds=2
        ):
            pass
    assert e.value.status == 410


def test_label_selector_watch_adds_and_deletes_as_objects_enter_and_leave_it(
    served: Served,
) -> None:
    """kube's cacher: an object that starts matching is ADDED, one that stops is DELETED with
    "the previous object content, but with the event's resource version" (cache_watcher.go
    convertToWatchEvent)."""
    served.create_sa("a")
    merge = {"Content-Type": "application/merge-patch+json"}
    t, got = served.watch_in_background(SA, until=4, labelSelector="team=x")
    served.wait_watchers(1)
    for labels in ({"team": "x"}, {"team": "x", "v": "2"}, {"team": "y"}):
        r = served.http.patch(f"{SA}/a", json={"metadata": {"labels": labels}}, headers=merge)
        assert r.status_code == 200
    left_at = r.json()["metadata"]["resourceVersion"]
    served.create_sa("b")  # never matches: never mentioned
    served.http.patch(f"{SA}/b", json={"metadata": {"labels": {"team": "x"}}}, headers=merge)
    t.join(10)
    assert summary(got) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    assert got[2]["object"]["metadata"]["labels"] == {"team": "x", "v": "2"}
    assert got[2]["object"]["metadata"]["resourceVersion"] == left_at


def test_send_initial_events_ends_with_an_annotated_bookmark(served: Served) -> None:
    """KEP-3157 streaming list: ADDED for the current state, then BOOKMARK
    ``k8s.io/initial-events-end``, whatever resourceVersion was given (NotOlderThan)."""
    served.create_sa("a")
    got = served.events(
        SA,
        until=3,
        sendInitialEvents="true",
        allowWatchBookmarks="true",
        resourceVersionMatch="NotOlderThan",
        resourceVersion="1",
    )
    assert summary(got)[:2] == [("ADDED", "a"), ("ADDED", "default")]
    mark = got[2]
    assert mark["type"] == "BOOKMARK"
    assert mark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    r = served.http.get(SA, params={"watch": "true", "sendInitialEvents": "true"})
    assert r.status_code == 422
    assert r.json()["message"] == (
        'ListOptions.meta.k8s.io "" is invalid: [resourceVersionMatch: Forbidden: '
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, "
        "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks "
        "to true]"
    )


def test_an_idle_hub_catches_up_before_the_next_watcher(served: Served) -> None:
    """With no watchers the hub stops reading; the next watcher still sees every change after
    its resourceVersion (served from the log) and live ones."""
    first = served.events(SA, until=1)  # start the hub, then leave
    assert summary(first) == [("ADDED", "default")]
    a = served.create_sa("a")
    served.create_sa("b")
    time.sleep(0.5)  # idle polls pass
    t, got = served.watch_in_background(
        SA, until=2, resourceVersion=a["metadata"]["resourceVersion"]
    )
    served.wait_watchers(1)
    served.create_sa("c")
    t.join(10)
    assert summary(got) == [("ADDED", "b"), ("ADDED", "c")]


def test_list_then_watch_from_its_resource_version_sees_exactly_what_follows(
    served: Served,
) -> None:
    """kubectl get -w and informers: list, then watch from the list's resourceVersion. A delete
    before the list is not replayed (the list's version is the store's, not the newest item's)."""
    served.create_sa("a")
    served.create_sa("b")
    assert served.http.delete(f"{SA}/b").status_code == 200
    listed = served.http.get(SA).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "default"]
    rv = listed["metadata"]["resourceVersion"]
    t, got = served.watch_in_background(SA, until=1, resourceVersion=rv)
    served.wait_watchers(1)
    served.create_sa("c")
    t.join(10)
    assert summary(got) == [("ADDED", "c")]


def test_watch_across_worker_processes(issuer_factory: Any, store_url: str) -> None:
    """``serve --workers 2``: each worker's hub follows the shared store, so a watch on one
    worker sees writes that other connections (landing on either worker) make."""
    s = issuer_factory.start(store=store_url, extra_args=["--workers", "2"])
    headers = {"Authorization": f"Bearer {s.admin_token}"}
    with httpx.Client(base_url=s.url, headers=headers, timeout=10, verify=s.verify) as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}}).status_code == 201
        rv = c.get(SA).json()["metadata"]["resourceVersion"]
        got: list[str] = []

        def watch() -> None:
            with c.stream("GET", SA, params={"watch": "true", "resourceVersion": rv}) as r:
                for line in r.iter_lines():
                    if line:
                        got.append(json.loads(line)["object"]["metadata"]["name"])
                    if len(got) == 10:
                        return

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        for i in range(10):
            # A new connection each time: the kernel spreads them over both workers.
            with httpx.Client(base_url=s.url, headers=headers, timeout=10, verify=s.verify) as w:
                assert w.post(SA, json={"metadata": {"name": f"sa{i}"}}).status_code == 201
        t.join(15)
    assert got == [f"sa{i}" for i in range(10)]


def test_closing_the_hub_ends_every_stream(served: Served) -> None:
    """At shutdown the app closes the hub: streams end (clients re-watch elsewhere) instead of
    holding the graceful-shutdown window."""
    threads = [served.watch_in_background(SA, until=100)[0] for _ in range(3)]
    served.wait_watchers(3)
    hub = served.app.state.watch_hub
    asyncio.run_coroutine_threadsafe(hub.close(), hub._loop).result(5)
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert hub.watchers == 0


def test_resumed_selector_watch_passes_matching_changes_with_their_type(served: Served) -> None:
    """kubectl get -l team=x -w: list with the selector, then watch from its resourceVersion."""
    merge = {"Content-Type": "application/merge-patch+json"}
    for name, team in (("a", "x"), ("b", "y")):
        served.create_sa(name)
        body = {"metadata": {"labels": {"team": team}}}
        assert served.http.patch(f"{SA}/{name}", json=body, headers=merge).status_code == 200
    listed = served.http.get(SA, params={"labelSelector": "team=x"}).json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    rv = listed["metadata"]["resourceVersion"]
    t, got = served.watch_in_background(SA, until=2, labelSelector="team=x", resourceVersion=rv)
    served.wait_watchers(1)
    served.http.patch(f"{SA}/b", json={"metadata": {"labels": {"v": "2"}}}, headers=merge)
    served.http.patch(f"{SA}/a", json={"metadata": {"labels": {"v": "2"}}}, headers=merge)
    served.http.delete(f"{SA}/b")
    served.http.delete(f"{SA}/a")
    t.join(10)
    assert summary(got) == [("MODIFIED", "a"), ("DELETED", "a")]
