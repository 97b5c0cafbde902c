"""More of kubectl against a real ``sa-issuer serve`` (issue 10 follow-ups), on SQLite and Redis:

- ``kubectl delete`` with every ``--cascade`` (background, foreground, orphan), ``--grace-period``,
  ``--now``, ``--force`` and ``--dry-run=server``; the invalid DeleteOptions combinations (which
  kubectl itself never sends) over raw HTTPS to the same server;
- ``kubectl get clusterroles``: the built-in roles have an age;
- ``kubectl get invalidations`` as a table, ``-o json``, ``-o yaml``, ``-o name``, ``-w``; one
  event by name; ``kubectl describe invalidations``.

Expected outputs are kubectl's own and kube-apiserver's texts.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:  # the fixture's type (tests/kubectl/conftest.py)
    from conftest import Cluster

pytestmark = pytest.mark.slow

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: dev
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: busybox
"""


def _pod(cluster: Cluster, name: str) -> None:
    cluster.ok("apply", "-f", "-", stdin=POD.format(name=name))


def _gone(cluster: Cluster, *what: str) -> bool:
    r = cluster.run("get", *what, "-n", "dev")
    return r.returncode != 0 and "NotFound" in r.stderr


def test_kubectl_delete_options(cluster: Cluster) -> None:
    cluster.ok("create", "namespace", "dev")
    cluster.ok("create", "serviceaccount", "app", "-n", "dev")

    # --dry-run=server: dryRun=All in the body; nothing deleted.
    out = cluster.ok("delete", "sa", "app", "-n", "dev", "--dry-run=server")
    assert out.strip() == 'serviceaccount "app" deleted (server dry run)'
    assert not _gone(cluster, "sa", "app")

    # Every cascade and grace period kubectl offers: the object goes at once (kubectl waits
    # for it to be gone, as it does by default).
    for i, flags in enumerate(
        (
            [],  # propagationPolicy=Background
            ["--cascade=foreground"],
            ["--cascade=orphan"],
            ["--now"],  # gracePeriodSeconds=1
            ["--grace-period=5"],
            ["--grace-period=0", "--force"],
        )
    ):
        name = f"web{i}"
        _pod(cluster, name)
        r = cluster.run("delete", "pod", name, "-n", "dev", "--timeout=20s", *flags)
        assert r.returncode == 0, f"{flags}: {r.stderr}"
        word = "force deleted" if "--force" in flags else "deleted"
        assert r.stdout.strip() == f'pod "{name}" {word}', flags
        if "--force" in flags:
            assert "Immediate deletion does not wait for confirmation" in r.stderr
        assert _gone(cluster, "pod", name), flags

    # A service account deleted with --cascade=orphan; its namespace with --cascade=foreground
    # (contents deleted whatever the policy, as kube's namespace controller does).
    cluster.ok("create", "serviceaccount", "other", "-n", "dev")
    out = cluster.ok("delete", "sa", "other", "-n", "dev", "--cascade=orphan")
    assert out.strip() == 'serviceaccount "other" deleted'
    _pod(cluster, "last")
    out = cluster.ok("delete", "namespace", "dev", "--cascade=foreground", "--timeout=30s")
    assert out.strip() == 'namespace "dev" deleted'
    cluster.ok("create", "namespace", "dev")
    assert _gone(cluster, "pod", "last") and _gone(cluster, "sa", "app")


def test_invalid_delete_options_over_https(cluster: Cluster) -> None:
    cluster.ok("create", "namespace", "dev")
    cluster.ok("create", "serviceaccount", "app", "-n", "dev")
    path = "/api/v1/namespaces/dev/serviceaccounts/app"
    auth = {"Authorization": f"Bearer {cluster.issuer.admin_token}"}
    with cluster.issuer.client(headers=auth) as c:
        both = c.request(
            "DELETE",
            path,
            json={
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "orphanDependents": True,
                "propagationPolicy": "Background",
            },
        )
        assert both.status_code == 422, both.text
        assert both.json()["message"] == (
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
            '"Background": orphanDependents and deletionPropagation cannot be both set'
        )
        bad = c.request("DELETE", path, params={"propagationPolicy": "Always"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["message"] == (
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
            '"Always": supported values: "Foreground", "Background", "Orphan", "nil"'
        )
        grace = c.request("DELETE", path, json={"gracePeriodSeconds": "soon"})
        assert grace.status_code == 400 and grace.json()["reason"] == "BadRequest"
        dry = c.request("DELETE", path, params={"dryRun": "Yes"})
        assert dry.status_code == 422 and "dryRun: Unsupported value" in dry.json()["message"]
        # None of them deleted anything; a valid negative grace period does.
        assert c.get(path).status_code == 200
        ok = c.request("DELETE", path, params={"gracePeriodSeconds": "-1"})
        assert ok.status_code == 200, ok.text
        assert c.get(path).status_code == 404


def test_kubectl_get_builtin_rbac_shows_its_age(cluster: Cluster) -> None:
    lines = cluster.ok("get", "clusterroles").splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "AT"]
    rows = dict(line.split() for line in lines[1:])
    assert {"admin", "edit", "view", "cluster-admin", "system:auth-delegator"} <= set(rows)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in rows.values())
    out = cluster.ok("get", "clusterrolebindings", "cluster-admin")
    assert "<unknown>" not in out and re.search(r"\s\d+[smhd]\S*\s*$", out), out
    meta = json.loads(cluster.ok("get", "clusterrole", "view", "-o", "json"))["metadata"]
    assert meta["creationTimestamp"] == rows["view"]
    assert meta["resourceVersion"] == "1" and meta["uid"]


def test_kubectl_get_invalidations_in_every_output(cluster: Cluster) -> None:
    cluster.ok("create", "namespace", "dev")
    for name in ("a", "b", "c"):
        cluster.ok("create", "serviceaccount", name, "-n", "dev")
        cluster.ok("delete", "serviceaccount", name, "-n", "dev")

    table = cluster.ok("get", "invalidations").splitlines()
    assert table[0].split() == ["SEQ", "TYPE", "OBJECT", "AGE"]
    objects = [line.split()[2] for line in table[1:]]
    assert objects == ["ServiceAccount/dev/a", "ServiceAccount/dev/b", "ServiceAccount/dev/c"]
    seqs = [line.split()[0] for line in table[1:]]

    doc = json.loads(cluster.ok("get", "invalidations", "-o", "json"))
    assert doc["kind"] == "List"
    assert [i["metadata"]["name"] for i in doc["items"]] == seqs
    for item, name in zip(doc["items"], "abc", strict=True):
        assert item["apiVersion"] == "sa-oidc.dev/v1" and item["kind"] == "Invalidation"
        assert item["type"] == "ObjectDeleted"
        assert item["object"]["kind"] == "ServiceAccount" and item["object"]["name"] == name
        assert item["metadata"]["creationTimestamp"]

    as_yaml = yaml.safe_load(cluster.ok("get", "invalidations", "-o", "yaml"))
    assert as_yaml["items"] == doc["items"]

    names = cluster.ok("get", "invalidations", "-o", "name").split()
    assert names == [f"invalidation.sa-oidc.dev/{s}" for s in seqs]
    # kubectl pages with limit and continue: one event a page gives the same list.
    paged = cluster.ok("get", "invalidations", "--chunk-size=1", "-o", "name").split()
    assert paged == names
    uids = cluster.ok("get", "invalidations", "-o", "jsonpath={.items[*].object.uid}").split()
    assert len(uids) == 3 and all(uids)

    # One event by name, as -o name gave it; describe reads each one that way.
    one = json.loads(cluster.ok("get", names[1], "-o", "json"))
    assert one == doc["items"][1]
    row = cluster.ok("get", "invalidation", seqs[2]).splitlines()
    assert row[1].split()[:3] == [seqs[2], "ObjectDeleted", "ServiceAccount/dev/c"]
    described = cluster.ok("describe", "invalidations")
    assert described.count("Kind:         Invalidation") == 3
    err = cluster.fails("get", "invalidation", "999")
    assert 'invalidations.sa-oidc.dev "999" not found' in err

    # Selectors: by name, by type; items have no labels.
    picked = cluster.ok("get", "invalidations", f"--field-selector=metadata.name={seqs[0]}")
    assert [line.split()[0] for line in picked.splitlines()[1:]] == [seqs[0]]
    r = cluster.run("get", "invalidations", "--field-selector=type=KeyRevoked")
    assert r.returncode == 0 and "No resources found" in r.stderr, r.stderr
    r = cluster.run("get", "invalidations", "-l", "team=a")
    assert r.returncode == 0 and "No resources found" in r.stderr, r.stderr


def test_kubectl_get_invalidations_watch(cluster: Cluster) -> None:
    cluster.ok("create", "namespace", "dev")
    cluster.ok("create", "serviceaccount", "a", "-n", "dev")
    cluster.ok("delete", "serviceaccount", "a", "-n", "dev")
    watch = cluster.popen("get", "invalidations", "-w")
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(line) for line in watch.stdout or ()], daemon=True
    ).start()
    try:
        assert lines.get(timeout=20).split() == ["SEQ", "TYPE", "OBJECT", "AGE"]
        assert lines.get(timeout=20).split()[1:3] == ["ObjectDeleted", "ServiceAccount/dev/a"]
        cluster.ok("create", "serviceaccount", "b", "-n", "dev")
        cluster.ok("delete", "serviceaccount", "b", "-n", "dev")
        # The new event arrives on the watch (not from a re-list: a is not printed again).
        assert lines.get(timeout=20).split()[1:3] == ["ObjectDeleted", "ServiceAccount/dev/b"]
    except (AssertionError, queue.Empty):
        watch.kill()
        stderr = watch.stderr.read() if watch.stderr else ""
        raise AssertionError(f"kubectl get invalidations -w: {stderr}") from None
    finally:
        watch.kill()
        watch.wait(10)
