"""Selector watches, live and resumed, and the deprecated ``/watch/`` paths, over a real issuer
on a real socket, on SQLite and on Redis.

kube's watch cache decides each event of a watch with label/field selectors on the object's new
state and on its previous one (k8s.io/apiserver pkg/storage/cacher/cache_watcher.go,
``(*cacheWatcher).convertToWatchEvent``): the new state matches and the old did not -> ADDED;
both -> MODIFIED; the old matched and the new does not (or the object is gone) -> DELETED with
"the previous object content, but with the event's resource version"; neither -> nothing. The
watch cache keeps each event's ``PrevObject``, so a watch resumed from a resourceVersion is told
exactly what a live one is; here the change log keeps it (``Change.prev``).

kube-apiserver still serves ``/api/v1/watch/...`` and ``/apis/GROUP/VERSION/watch/...``
(k8s.io/apiserver pkg/endpoints/installer.go): the collection's watch, and for a path naming an
object a watch with ``fieldSelector metadata.name=NAME`` (handlers/get.go ListResource),
authorized as verb ``watch`` (endpoints/request/requestinfo.go: the ``watch`` prefix is the verb).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _watch_support import Served, serve, summary

from issuer.api.watch import selector_event
from issuer.store import Change

SA = "/api/v1/namespaces/dev/serviceaccounts"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
MERGE = {"Content-Type": "application/merge-patch+json"}
#: Created last in every scenario, matching the selector: a stream has everything once it has it.
END = "zz-end"


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[Served]:
    with serve(tmp_path, store_url) as s:
        yield s


# --- the rule itself (pure) ----------------------------------------------------------------------


def _obj(team: str | None, rv: int) -> dict[str, Any]:
    labels = {} if team is None else {"team": team}
    return {"metadata": {"name": "a", "labels": labels, "resourceVersion": str(rv)}}


def _team_x(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("labels", {}).get("team") == "x"


#: (case, change type, previous team or "-" for no previous state, new team, expected event
#: type or None, team of the object sent).
RULE = [
    ("enters", "MODIFIED", "y", "x", "ADDED", "x"),
    ("stays", "MODIFIED", "x", "x", "MODIFIED", "x"),
    ("leaves", "MODIFIED", "x", "y", "DELETED", "x"),
    ("label removed", "MODIFIED", "x", None, "DELETED", "x"),
    ("never matches", "MODIFIED", "y", "y", None, None),
    ("created matching", "ADDED", "-", "x", "ADDED", "x"),
    ("created elsewhere", "ADDED", "-", "y", None, None),
    ("deleted while matching", "DELETED", "x", "x", "DELETED", "x"),
    ("deleted elsewhere", "DELETED", "y", "y", None, None),
    # An entry logged before the log kept previous states: taken to have stayed.
    ("old entry, matching", "MODIFIED", "-", "x", "MODIFIED", "x"),
    ("old entry, elsewhere", "MODIFIED", "-", "y", None, None),
]


@pytest.mark.parametrize(
    ("change_type", "before", "after", "event_type", "sent_team"),
    [case[1:] for case in RULE],
    ids=[case[0] for case in RULE],
)
def test_kube_convert_to_watch_event_rule(
    change_type: Any, before: str | None, after: str | None, event_type: Any, sent_team: Any
) -> None:
    new = _obj(after, 7)
    if change_type == "DELETED":
        prev: dict[str, Any] | None = new  # a delete's previous state is its last (load_change)
    elif before == "-":
        prev = None
    else:
        prev = _obj(before, 5)
        del prev["metadata"]["resourceVersion"]  # stored without it
    change = Change(7, change_type, "ServiceAccount", "dev", "a", new, prev)
    got = selector_event(change, _team_x)
    if event_type is None:
        assert got is None
        return
    assert got is not None
    assert got[0] == event_type
    assert got[1]["metadata"]["labels"].get("team") == sent_team
    # Every event, DELETED with the previous content included, carries the change's version.
    assert got[1]["metadata"]["resourceVersion"] == "7"


# --- live and resumed streams agree (real socket) ------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """An object ``a`` (absent when ``before`` is None), then ``steps``: ("patch", labels) merges
    labels (None removes one), ("create", labels), ("delete", {})."""

    before: dict[str, str] | None
    steps: list[tuple[str, dict[str, Any]]]
    #: Events for ``a`` a watch with labelSelector team=x sees: (type, labels of the object).
    expected: list[tuple[str, dict[str, str]]]


X, Y = {"team": "x"}, {"team": "y"}
SCENARIOS = {
    "enters": Scenario(Y, [("patch", X)], [("ADDED", X)]),
    "stays": Scenario(X, [("patch", {"v": "2"})], [("MODIFIED", {"team": "x", "v": "2"})]),
    "leaves": Scenario(X, [("patch", Y)], [("DELETED", X)]),
    "label removed": Scenario(X, [("patch", {"team": None})], [("DELETED", X)]),
    "never matches": Scenario(Y, [("patch", {"v": "2"})], []),
    "created matching": Scenario(None, [("create", X)], [("ADDED", X)]),
    "created elsewhere": Scenario(None, [("create", Y)], []),
    "deleted while matching": Scenario(X, [("delete", {})], [("DELETED", X)]),
    "deleted elsewhere": Scenario(Y, [("delete", {})], []),
    "leaves, then returns": Scenario(
        X, [("patch", Y), ("patch", X)], [("DELETED", X), ("ADDED", X)]
    ),
    "enters, then deleted": Scenario(
        Y, [("patch", X), ("delete", {})], [("ADDED", X), ("DELETED", X)]
    ),
    "leaves, then deleted": Scenario(X, [("patch", Y), ("delete", {})], [("DELETED", X)]),
}


def _create(served: Served, name: str, labels: dict[str, str]) -> dict[str, Any]:
    body = {"metadata": {"name": name, "labels": labels}}
    r = served.http.post(SA, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _until(served: Served, path: str, last: str, timeout: float = 10, **params: str) -> Any:
    """The events of a watch up to and including the one for object ``last``."""
    out: list[dict[str, Any]] = []
    with served.http.stream("GET", path, params={"watch": "true", **params}, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line:
                continue
            out.append(json.loads(line))
            if out[-1]["object"]["metadata"].get("name") == last:
                break
    return out


def _in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    return t, box


@pytest.mark.parametrize("case", list(SCENARIOS), ids=list(SCENARIOS))
def test_a_resumed_selector_watch_reports_what_a_live_one_does(served: Served, case: str) -> None:
    """Three watches with labelSelector team=x: one from the selector list's resourceVersion,
    subscribed before the changes (live); one from no version (the current state, then live);
    one from the same resourceVersion opened after everything (replayed from the change log).
    The resumed ones are identical, event for event; all of them follow kube's rule."""
    sc = SCENARIOS[case]
    if sc.before is not None:
        _create(served, "a", sc.before)
    listed = served.http.get(SA, params={"labelSelector": "team=x"}).json()
    rv0 = listed["metadata"]["resourceVersion"]
    sel = {"labelSelector": "team=x"}
    t_live, live = _in_background(lambda: _until(served, SA, END, resourceVersion=rv0, **sel))
    t_now, now = _in_background(lambda: _until(served, SA, END, **sel))
    served.wait_watchers(2)
    step_rvs = []
    for action, labels in sc.steps:
        if action == "patch":
            r = served.http.patch(f"{SA}/a", json={"metadata": {"labels": labels}}, headers=MERGE)
            assert r.status_code == 200, r.text
            step_rvs.append(r.json()["metadata"]["resourceVersion"])
        elif action == "create":
            step_rvs.append(_create(served, "a", labels)["metadata"]["resourceVersion"])
        else:
            assert served.http.delete(f"{SA}/a").status_code == 200
            step_rvs.append(None)  # a delete's own version is not in its response
    _create(served, END, X)
    t_live.join(15)
    t_now.join(15)
    replayed = _until(served, SA, END, resourceVersion=rv0, **sel)

    def for_a(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
        return [
            (e["type"], e["object"]["metadata"].get("labels", {}))
            for e in events
            if e["object"]["metadata"]["name"] == "a"
        ]

    assert for_a(replayed) == sc.expected
    assert live == [replayed]
    initial = [("ADDED", sc.before)] if sc.before == X else []
    assert len(now) == 1 and for_a(now[0]) == initial + sc.expected
    assert now[0][len(initial) :] == replayed
    # Each event carries the version of the change that made it: a write's (DELETED by leaving
    # the selector too), or a delete's own.
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in replayed]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs) and rvs[0] > int(rv0)
    for e in replayed:
        if e["object"]["metadata"]["name"] == "a":
            assert e["object"]["metadata"]["resourceVersion"] in step_rvs or (
                e["type"] == "DELETED" and ("delete", {}) in sc.steps
            )


def test_a_field_selector_watch_sees_nodes_cordoned_and_uncordoned(served: Served) -> None:
    """``fieldSelector=spec.unschedulable=true`` (kube's Node field label): cordoning adds the
    node to the watch, uncordoning removes it with its cordoned content; live = resumed."""
    r = served.http.post("/api/v1/nodes", json={"metadata": {"name": "n1"}})
    assert r.status_code == 201
    rv0 = r.json()["metadata"]["resourceVersion"]
    sel = {"fieldSelector": "spec.unschedulable=true", "resourceVersion": rv0}
    t, live = _in_background(lambda: served.events("/api/v1/nodes", 2, **sel))
    served.wait_watchers(1)
    for flag in (True, False):
        r = served.http.patch(
            "/api/v1/nodes/n1", json={"spec": {"unschedulable": flag}}, headers=MERGE
        )
        assert r.status_code == 200, r.text
    t.join(10)
    replayed = served.events("/api/v1/nodes", 2, **sel)
    assert summary(replayed) == [("ADDED", "n1"), ("DELETED", "n1")]
    assert replayed[1]["object"]["spec"]["unschedulable"] is True
    assert (
        replayed[1]["object"]["metadata"]["resourceVersion"]
        == r.json()["metadata"]["resourceVersion"]
    )
    assert live == [replayed]


# --- the deprecated /watch/ paths ----------------------------------------------------------------


def _churn(served: Served) -> str:
    """Writes in dev and prod, to SAs, roles and a node; returns the version before them."""
    rv0 = str(served.ctx.store.read_changes(0).last_rv)
    assert served.http.post("/api/v1/namespaces", json={"metadata": {"name": "prod"}}).is_success
    for ns, name in (("dev", "a"), ("dev", "b"), ("prod", "a")):
        served.create_sa(name, ns)
    served.http.patch(f"{SA}/a", json={"metadata": {"labels": {"v": "2"}}}, headers=MERGE)
    assert served.http.delete(f"{SA}/b").status_code == 200
    role = {"metadata": {"name": "r"}, "rules": []}
    for ns in ("dev", "prod"):
        assert served.http.post(f"{RBAC}/namespaces/{ns}/roles", json=role).status_code == 201
    assert served.http.post(f"{RBAC}/clusterroles", json={"metadata": {"name": "c"}}).is_success
    assert served.http.post("/api/v1/nodes", json={"metadata": {"name": "n1"}}).is_success
    served.create_sa(END)  # the end marker, in dev
    return rv0


#: (legacy path, the equivalent ?watch=true path and parameters, events expected before the end)
LEGACY = [
    ("/api/v1/watch/namespaces/dev/serviceaccounts", SA, {}),
    ("/api/v1/watch/serviceaccounts", "/api/v1/serviceaccounts", {}),
    ("/api/v1/watch/namespaces/dev/serviceaccounts/a", SA, {"fieldSelector": "metadata.name=a"}),
    ("/api/v1/watch/namespaces", "/api/v1/namespaces", {}),
    (
        "/api/v1/watch/namespaces/prod",
        "/api/v1/namespaces",
        {"fieldSelector": "metadata.name=prod"},
    ),
    ("/api/v1/watch/nodes", "/api/v1/nodes", {}),
    ("/api/v1/watch/nodes/n1", "/api/v1/nodes", {"fieldSelector": "metadata.name=n1"}),
    (f"{RBAC}/watch/namespaces/dev/roles", f"{RBAC}/namespaces/dev/roles", {}),
    (
        f"{RBAC}/watch/namespaces/prod/roles/r",
        f"{RBAC}/namespaces/prod/roles",
        {"fieldSelector": "metadata.name=r"},
    ),
    (f"{RBAC}/watch/roles", f"{RBAC}/roles", {}),
    (f"{RBAC}/watch/clusterroles", f"{RBAC}/clusterroles", {}),
    (f"{RBAC}/watch/clusterroles/c", f"{RBAC}/clusterroles", {"fieldSelector": "metadata.name=c"}),
]


def _read(served: Served, path: str, params: dict[str, str]) -> Any:
    """The events a watch resumed after every write replays from the log: the ones before its
    first BOOKMARK (sent once the replay is out, after the bookmark interval)."""
    q = {**params, "allowWatchBookmarks": "true"}
    out: list[dict[str, Any]] = []
    with served.http.stream("GET", path, params=q, timeout=10) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/json")
        for line in r.iter_lines():
            if line:
                event = json.loads(line)
                if event["type"] == "BOOKMARK":
                    break
                out.append(event)
    return out


def test_the_deprecated_watch_paths_stream_what_watch_true_does(served: Served) -> None:
    rv0 = _churn(served)
    seen = 0
    for legacy, path, params in LEGACY:
        old = _read(served, legacy, {"resourceVersion": rv0})
        new = _read(served, path, {"watch": "true", "resourceVersion": rv0, **params})
        assert old == new, legacy
        assert old, legacy  # every path has something to show
        seen += len(old)
        if "/watch/namespaces/dev/serviceaccounts/a" in legacy:
            assert summary(old) == [("ADDED", "a"), ("MODIFIED", "a")]
    assert seen > len(LEGACY)


def test_the_deprecated_watch_paths_start_from_the_current_state(served: Served) -> None:
    """Without a resourceVersion: ADDED for what exists, then live changes, as ``?watch=true``."""
    served.create_sa("a")
    t, got = served.watch_in_background("/api/v1/watch/namespaces/dev/serviceaccounts/a", 3)
    served.wait_watchers(1)
    served.create_sa("b")  # another name: not in this watch
    served.http.patch(f"{SA}/a", json={"metadata": {"labels": {"v": "2"}}}, headers=MERGE)
    assert served.http.delete(f"{SA}/a").status_code == 200
    t.join(10)
    assert summary(got) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


@pytest.mark.parametrize(
    ("path", "params", "code", "text"),
    [
        # kube get.go ListResource: a selector on another name (or not on the name) is 400.
        (
            "/api/v1/watch/namespaces/dev/serviceaccounts/a",
            {"fieldSelector": "metadata.name=b"},
            400,
            "fieldSelector metadata.name doesn't match requested name",
        ),
        (
            "/api/v1/watch/namespaces/dev/serviceaccounts/a",
            {"fieldSelector": "metadata.namespace=dev"},
            400,
            "fieldSelector metadata.name doesn't match requested name",
        ),
        ("/api/v1/watch/namespaces/dev/widgets", {}, 404, "could not find the requested resource"),
        ("/api/v1/watch/widgets", {}, 404, "could not find the requested resource"),
        (
            "/api/v1/watch/namespaces/dev/serviceaccounts",
            {"resourceVersion": "x"},
            400,
            "invalid resource version",
        ),
    ],
)
def test_bad_deprecated_watch_requests(
    served: Served, path: str, params: dict[str, str], code: int, text: str
) -> None:
    r = served.http.get(path, params=params)
    assert r.status_code == code, r.text
    assert text in r.json()["message"]


def test_a_matching_name_selector_is_allowed_on_a_named_watch(served: Served) -> None:
    rv0 = str(served.ctx.store.read_changes(0).last_rv)
    served.create_sa("a")
    served.create_sa("b")
    got = _read(
        served,
        "/api/v1/watch/namespaces/dev/serviceaccounts/a",
        {"fieldSelector": "metadata.name=a", "resourceVersion": rv0},
    )
    assert summary(got) == [("ADDED", "a")]


# --- authorization: verb watch, on the named object ----------------------------------------------


def _as_service_account(served: Served, rules: list[dict[str, Any]]) -> httpx.Client:
    """A client with a token of dev/app, bound (RoleBinding in dev) to a Role with ``rules``."""
    served.ctx.keys.start(rotate=False)  # a signing key (the app's lifecycle is not run here)
    served.create_sa("app")
    role = {"metadata": {"name": "app"}, "rules": rules}
    assert served.http.post(f"{RBAC}/namespaces/dev/roles", json=role).status_code == 201
    binding = {
        "metadata": {"name": "app"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "app"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}],
    }
    assert served.http.post(f"{RBAC}/namespaces/dev/rolebindings", json=binding).is_success
    r = served.http.post(f"{SA}/app/token", json={"spec": {}})
    assert r.status_code == 201, r.text
    token = r.json()["status"]["token"]
    return httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _status(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[int, str]:
    with client.stream("GET", path, params={**params, "timeoutSeconds": "1"}) as r:
        body = r.read()
        return r.status_code, (json.loads(body).get("message", "") if r.status_code != 200 else "")


SA_USER = "system:serviceaccount:dev:app"


@pytest.mark.parametrize(
    ("rules", "path", "params", "allowed", "why"),
    [
        # list and get, no watch: every watch form is 403, verb watch.
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}],
            "/api/v1/watch/namespaces/dev/serviceaccounts",
            {},
            False,
            'cannot watch resource "serviceaccounts" in API group "" in the namespace "dev"',
        ),
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}],
            SA,
            {"watch": "true"},
            False,
            'cannot watch resource "serviceaccounts" in API group "" in the namespace "dev"',
        ),
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}],
            "/api/v1/watch/namespaces/dev/serviceaccounts/app",
            {},
            False,
            'cannot watch resource "serviceaccounts" in API group "" in the namespace "dev"',
        ),
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}],
            SA,
            {},
            True,
            "",
        ),
        # watch: every form is allowed.
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["watch"]}],
            "/api/v1/watch/namespaces/dev/serviceaccounts",
            {},
            True,
            "",
        ),
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["watch"]}],
            "/api/v1/watch/namespaces/dev/serviceaccounts/app",
            {},
            True,
            "",
        ),
        # watch of one name (resourceNames): the named forms only (requestinfo.go takes the
        # name from the path, or from a fieldSelector metadata.name on a list or watch).
        (
            [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["watch"],
                    "resourceNames": ["app"],
                }
            ],
            "/api/v1/watch/namespaces/dev/serviceaccounts/app",
            {},
            True,
            "",
        ),
        (
            [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["watch"],
                    "resourceNames": ["app"],
                }
            ],
            SA,
            {"watch": "true", "fieldSelector": "metadata.name=app"},
            True,
            "",
        ),
        (
            [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["watch"],
                    "resourceNames": ["app"],
                }
            ],
            "/api/v1/watch/namespaces/dev/serviceaccounts/default",
            {},
            False,
            'cannot watch resource "serviceaccounts" in API group "" in the namespace "dev"',
        ),
        (
            [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["watch"],
                    "resourceNames": ["app"],
                }
            ],
            "/api/v1/watch/namespaces/dev/serviceaccounts",
            {},
            False,
            'cannot watch resource "serviceaccounts" in API group "" in the namespace "dev"',
        ),
        # Other namespaces and other kinds are not granted by a Role in dev.
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["watch"]}],
            "/api/v1/watch/serviceaccounts",
            {},
            False,
            'cannot watch resource "serviceaccounts" in API group "" at the cluster scope',
        ),
        (
            [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["watch"]}],
            f"{RBAC}/watch/namespaces/dev/roles",
            {},
            False,
            'cannot watch resource "roles" in API group "rbac.authorization.k8s.io" in the'
            ' namespace "dev"',
        ),
        (
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "verbs": ["watch"],
                }
            ],
            f"{RBAC}/watch/namespaces/dev/roles",
            {},
            True,
            "",
        ),
    ],
)
def test_deprecated_watch_paths_are_authorized_as_watch(
    served: Served,
    rules: list[dict[str, Any]],
    path: str,
    params: dict[str, str],
    allowed: bool,
    why: str,
) -> None:
    with _as_service_account(served, rules) as client:
        code, message = _status(client, path, params)
    if allowed:
        assert code == 200, message
    else:
        assert code == 403
        assert message.startswith(
            f"{'roles.rbac.authorization.k8s.io' if '/roles' in path else 'serviceaccounts'}"
        )
        assert f'User "{SA_USER}" {why}' in message
