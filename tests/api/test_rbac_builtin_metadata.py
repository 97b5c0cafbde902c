"""The built-in ClusterRoles and ClusterRoleBindings carry the metadata stored objects have
(``kubectl get clusterroles`` shows their CREATED AT, ``clusterrolebindings`` their AGE): a
``creationTimestamp`` (when the serving process started: kube-apiserver creates them at start),
a name-derived ``uid`` and ``resourceVersion`` "1" (issuer/api/rbac.py)."""

from __future__ import annotations

from _api_support import Api, ApiFactory

from issuer.timefmt import rfc3339

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def test_builtins_have_creation_uid_and_version(api: Api) -> None:
    started = rfc3339(api.ctx.started_at)
    for resource, name in (("clusterroles", "admin"), ("clusterrolebindings", "cluster-admin")):
        listed = api.ok(api.get(f"{RBAC}/{resource}"), 200)["items"]
        builtins = [i for i in listed if i["metadata"]["labels"].get("kubernetes.io/bootstrapping")]
        assert builtins and all(
            i["metadata"]["creationTimestamp"] == started
            and i["metadata"]["resourceVersion"] == "1"
            and i["metadata"]["uid"]
            for i in builtins
        )
        got = api.ok(api.get(f"{RBAC}/{resource}/{name}"), 200)
        assert got == next(i for i in listed if i["metadata"]["name"] == name)


def test_a_later_process_shows_its_own_start_and_the_same_uid(make_api: ApiFactory) -> None:
    first = make_api()
    # Another replica on the same store (same KEK), started after it.
    second = make_api(kek=str(first.ctx.config.data_dir / "kek"))
    a = first.ok(first.get(f"{RBAC}/clusterroles/view"), 200)["metadata"]
    b = second.ok(second.get(f"{RBAC}/clusterroles/view"), 200)["metadata"]
    assert a["uid"] == b["uid"] and a["resourceVersion"] == b["resourceVersion"] == "1"
    assert a["creationTimestamp"] == rfc3339(first.ctx.started_at)
    assert b["creationTimestamp"] == rfc3339(second.ctx.started_at)


def test_stored_roles_are_unchanged(api: Api) -> None:
    r = api.post(f"{RBAC}/clusterroles", {"metadata": {"name": "mine"}, "rules": []})
    mine = api.ok(r)["metadata"]
    assert "kubernetes.io/bootstrapping" not in (mine.get("labels") or {})
    got = api.ok(api.get(f"{RBAC}/clusterroles/mine"), 200)["metadata"]
    assert got["creationTimestamp"] == mine["creationTimestamp"]
    assert got["resourceVersion"] == mine["resourceVersion"]
