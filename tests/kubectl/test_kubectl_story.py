"""The seed's service-account workflows, end to end, driven by the real kubectl (issue 10).

One story per store (SQLite, Redis): namespaces; a ServiceAccount applied from a manifest with
validation on (automount off, mountable secrets enforced); re-apply after a change; label,
annotate, patch, replace, edit, server-side apply; a docker-registry secret; a Pod using the account
(the seed's admission rules enforced); a token bound to the pod; a Role from a manifest (jobs,
which the issuer does not serve, can still be authorized) and ``kubectl create rolebinding``
across namespaces; ``auth can-i`` with ``--as`` (yes / no / ``--list``); ``auth whoami`` as the
admin and as the service account; ``get pods -w`` sees the delete; ``delete namespace``. Plus
the official Python client's ``watch.Watch()`` on pods.

Expected outputs are kubectl's and Kubernetes' own (kubectl's printers and messages, kube's
admission texts).
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixture's type (tests/kubectl/conftest.py)
    from conftest import Cluster

pytestmark = pytest.mark.slow

SA_MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: dev
  annotations:
    kubernetes.io/enforce-mountable-secrets: "true"
automountServiceAccountToken: false
"""

ROLE_MANIFEST = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: job-runner
  namespace: maintenance
rules:
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create"]
"""

POD_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: dev
spec:
  serviceAccountName: app
  containers:
  - name: app
    image: busybox
{volumes}"""

SECRET_VOLUME = """\
    volumeMounts:
    - name: creds
      mountPath: /creds
  volumes:
  - name: creds
    secret:
      secretName: regcred
"""


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _sa(k: Cluster) -> dict[str, Any]:
    return json.loads(k.ok("get", "sa", "app", "-n", "dev", "-o", "json"))  # type: ignore[no-any-return]


def test_seed_story(cluster: Cluster) -> None:
    k = cluster
    assert k.ok("create", "namespace", "dev") == "namespace/dev created\n"
    assert k.ok("create", "ns", "maintenance") == "namespace/maintenance created\n"

    # A ServiceAccount from a manifest, validated (an unknown field is refused), then re-applied.
    err = k.fails("apply", "-f", "-", stdin=SA_MANIFEST + "bogus: 1\n")
    assert 'unknown field "bogus"' in err
    assert k.ok("apply", "-f", "-", stdin=SA_MANIFEST) == "serviceaccount/app created\n"
    sa = _sa(k)
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["annotations"]["kubernetes.io/enforce-mountable-secrets"] == "true"
    assert k.ok("apply", "-f", "-", stdin=SA_MANIFEST) == "serviceaccount/app unchanged\n"
    changed = SA_MANIFEST + "secrets:\n- name: app-token\n"
    assert k.ok("apply", "-f", "-", stdin=changed) == "serviceaccount/app configured\n"
    assert _sa(k)["secrets"] == [{"name": "app-token"}]

    # label, annotate, patch, replace, server-side apply.
    assert k.ok("label", "sa", "app", "-n", "dev", "team=payments") == (
        "serviceaccount/app labeled\n"
    )
    assert k.ok("annotate", "sa", "app", "-n", "dev", "owner=ops") == (
        "serviceaccount/app annotated\n"
    )
    patch = '{"imagePullSecrets":[{"name":"regcred"}]}'
    assert k.ok("patch", "sa", "app", "-n", "dev", "-p", patch) == "serviceaccount/app patched\n"
    sa = _sa(k)
    assert sa["metadata"]["labels"] == {"team": "payments"}
    assert sa["metadata"]["annotations"]["owner"] == "ops"
    assert sa["imagePullSecrets"] == [{"name": "regcred"}]
    sa["metadata"]["labels"]["tier"] = "backend"
    assert k.ok("replace", "-f", "-", stdin=json.dumps(sa)) == "serviceaccount/app replaced\n"
    # kubectl edit: the "editor" turns automounting on in the YAML kubectl hands it.
    editor = k.home / "editor.sh"
    editor.write_text(
        '#!/bin/sh\nsed -i "s/automountServiceAccountToken: false/'
        'automountServiceAccountToken: true/" "$1"\n'
    )
    editor.chmod(0o755)
    edited = k.ok("edit", "sa", "app", "-n", "dev", env={"KUBE_EDITOR": str(editor)})
    assert edited == "serviceaccount/app edited\n"
    assert _sa(k)["automountServiceAccountToken"] is True
    stale = {**sa, "metadata": {**sa["metadata"], "labels": {"tier": "stale"}}}
    assert "the object has been modified" in k.fails("replace", "-f", "-", stdin=json.dumps(stale))
    ssa = SA_MANIFEST.replace("  annotations:", "  labels:\n    managed: ssa\n  annotations:")
    out = k.ok(
        "apply",
        "--server-side",
        "--field-manager",
        "story",
        "--force-conflicts",
        "-f",
        "-",
        stdin=ssa,
    )
    assert out == "serviceaccount/app serverside-applied\n"
    sa = json.loads(k.ok("get", "sa", "app", "-n", "dev", "-o", "json", "--show-managed-fields"))
    assert sa["metadata"]["labels"]["managed"] == "ssa"
    assert "story" in {m["manager"] for m in sa["metadata"]["managedFields"]}

    # Secrets kubectl creates.
    k.ok(
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "-n",
        "dev",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    )
    k.ok("create", "secret", "generic", "db", "-n", "dev", "--from-literal=password=s3cret")
    secrets = k.ok("get", "secrets", "-n", "dev")
    assert secrets.splitlines()[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert "kubernetes.io/dockerconfigjson" in secrets

    # A Pod using the account: mountable secrets enforced (regcred is not in sa.secrets), no
    # token automounted.
    err = k.fails("apply", "-f", "-", stdin=POD_MANIFEST.format(volumes=SECRET_VOLUME))
    assert (
        'pods "web" is forbidden: volume with secret.secretName="regcred" is not allowed '
        "because service account app does not reference that secret"
    ) in err
    typo = POD_MANIFEST.format(volumes="").replace("    image: busybox", "    imagee: busybox")
    assert 'unknown field "spec.containers[0].imagee"' in k.fails("apply", "-f", "-", stdin=typo)
    assert k.ok("apply", "-f", "-", stdin=POD_MANIFEST.format(volumes="")) == "pod/web created\n"
    pod = json.loads(k.ok("get", "pod", "web", "-n", "dev", "-o", "json"))
    assert not any(v["name"].startswith("kube-api-access-") for v in pod["spec"].get("volumes", []))
    header = k.ok("get", "pods", "-n", "dev").splitlines()[0].split()
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    sas = k.ok("get", "sa", "-A").splitlines()
    assert sas[0].split() == ["NAMESPACE", "NAME", "SECRETS", "AGE"]

    # A token bound to the pod.
    token = k.ok(
        "create",
        "token",
        "app",
        "-n",
        "dev",
        "--audience",
        "vault",
        "--duration",
        "15m",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ).strip()
    claims = _claims(token)
    assert claims["sub"] == "system:serviceaccount:dev:app" and claims["aud"] == ["vault"]
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": pod["metadata"]["uid"]}
    assert claims["exp"] - claims["iat"] == 900
    bound = k.ok(
        "create",
        "token",
        "app",
        "-n",
        "dev",
        "--bound-object-kind",
        "Secret",
        "--bound-object-name",
        "db",
    )
    assert _claims(bound.strip())["kubernetes.io"]["secret"]["name"] == "db"
    err = k.fails(
        "create",
        "token",
        "app",
        "-n",
        "dev",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "nope",
    )
    assert 'pods "nope" not found' in err

    # Cross-namespace RBAC on a resource the issuer does not serve.
    assert (
        k.ok("apply", "-f", "-", stdin=ROLE_MANIFEST)
        == "role.rbac.authorization.k8s.io/job-runner created\n"
    )
    k.ok(
        "create",
        "rolebinding",
        "app-jobs",
        "-n",
        "maintenance",
        "--role=job-runner",
        "--serviceaccount=dev:app",
    )
    as_app = "--as=system:serviceaccount:dev:app"
    assert k.ok("auth", "can-i", "list", "jobs.batch", "-n", "maintenance", as_app) == "yes\n"
    assert (
        k.run("auth", "can-i", "delete", "jobs.batch", "-n", "maintenance", as_app).stdout == "no\n"
    )
    assert k.run("auth", "can-i", "list", "jobs.batch", "-n", "dev", as_app).stdout == "no\n"
    listed = k.ok("auth", "can-i", "--list", "-n", "maintenance", as_app)
    assert any(
        line.split()[:1] == ["jobs.batch"] and "[get list create]" in line
        for line in listed.splitlines()
    ), listed

    # Who am I: the admin, and the service account with its own token.
    whoami = k.ok("auth", "whoami", "-o", "json")
    assert json.loads(whoami)["status"]["userInfo"]["username"] == "sa-oidc:admin"
    own = k.ok("create", "token", "app", "-n", "dev").strip()
    as_sa = f"--kubeconfig={k.kubeconfig_for(own)}"
    me = json.loads(k.ok(as_sa, "auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert me["username"] == "system:serviceaccount:dev:app"
    assert "system:serviceaccounts:dev" in me["groups"]
    # The account itself may not impersonate: --as is refused, never ignored.
    err = k.fails(as_sa, "get", "sa", "-n", "dev", "--as=alice")
    assert 'cannot impersonate resource "users"' in err

    # get pods -w sees the delete.
    watch = k.popen("get", "pods", "-n", "dev", "-w", "--output-watch-events")
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(line) for line in watch.stdout or ()], daemon=True
    ).start()
    try:
        first = lines.get(timeout=20)
        assert first.split()[:2] == ["EVENT", "NAME"], first
        assert lines.get(timeout=20).split()[:2] == ["ADDED", "web"]
        k.ok("delete", "pod", "web", "-n", "dev", "--wait=false")
        deadline = time.monotonic() + 20
        seen = ""
        while "DELETED" not in seen and time.monotonic() < deadline:
            seen = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert seen.split()[:2] == ["DELETED", "web"], seen
    except (AssertionError, queue.Empty):
        watch.kill()
        stderr = watch.stderr.read() if watch.stderr else ""
        raise AssertionError(f"kubectl get -w: {stderr}") from None
    finally:
        watch.kill()
        watch.wait(10)

    # Deleting a namespace deletes what it holds.
    k.ok("delete", "namespace", "dev")
    assert "NotFound" in k.fails("get", "sa", "app", "-n", "dev")
    assert "dev " not in k.ok("get", "ns")


def test_python_client_watch_on_pods(cluster: Cluster) -> None:
    """The official client's watch.Watch() streams pod events from the issuer."""
    from kubernetes import client, watch

    k = cluster
    k.ok("create", "namespace", "dev")
    # The server and CA from the kubeconfig; the token read here: the Python client sends a
    # tokenFile's trailing newline as part of the header (client-go trims it).
    kubeconfig = json.loads(k.kubeconfig.read_text())
    cluster_entry = kubeconfig["clusters"][0]["cluster"]
    token_file = kubeconfig["users"][0]["user"]["tokenFile"]
    configuration = client.Configuration()
    configuration.host = cluster_entry["server"]
    configuration.ssl_ca_cert = cluster_entry["certificate-authority"]
    token = Path(token_file).read_text().split()[0]
    configuration.api_key = {"authorization": "Bearer " + token}
    api_client = client.ApiClient(configuration)
    core = client.CoreV1Api(api_client)
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    w = watch.Watch()

    def follow() -> None:
        for event in w.stream(core.list_namespaced_pod, "dev", timeout_seconds=30):
            events.put((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()  # the stream ends after this event and closes its response

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        k.ok("run", "web", "-n", "dev", "--image=busybox", "--restart=Never")
        assert events.get(timeout=20) == ("ADDED", "web")
        k.ok("delete", "pod", "web", "-n", "dev", "--wait=false")
        kinds = set()
        while "DELETED" not in kinds:
            kinds.add(events.get(timeout=20)[0])
        t.join(20)
        assert not t.is_alive()
    finally:
        w.stop()
        t.join(20)
        api_client.close()


def test_explain_and_discovery(cluster: Cluster) -> None:
    """kubectl explain reads the OpenAPI v3 document; short names and categories resolve."""
    k = cluster
    out = k.ok("explain", "serviceaccount.automountServiceAccountToken")
    assert "FIELD: automountServiceAccountToken <boolean>" in out
    assert "AutomountServiceAccountToken indicates whether pods running as this service" in out
    # The same from the OpenAPI v2 document, which client-go reads as gnostic protobuf.
    v2 = k.ok("explain", "pods.spec.containers.name", "--output=plaintext-openapiv2")
    assert "FIELD:    name <string>" in v2 and "KIND:     Pod" in v2
    # sa-oidc's own group is described too.
    assert "jti\t<string> -required-" in k.ok("explain", "tokenrevocations.spec")
    k.ok("create", "ns", "dev")
    for short in ("sa", "ns", "po", "no"):
        k.ok("get", short, *(["-A"] if short in ("sa", "po") else []))
    assert k.ok("get", "all", "-n", "dev") == ""
    names = k.ok("api-resources", "--api-group=", "-o", "name").split()
    assert {"serviceaccounts", "pods", "secrets", "namespaces", "nodes"} <= set(names)
    roles = k.ok("get", "clusterroles", "-o", "name").split()
    assert {f"clusterrole.rbac.authorization.k8s.io/{n}" for n in ("admin", "edit", "view")} <= set(
        roles
    )
    k.ok(
        "create",
        "secret",
        "tls",
        "web-tls",
        "-n",
        "dev",
        f"--cert={k.issuer.data_dir / 'tls.crt'}",
        f"--key={k.issuer.data_dir / 'tls.key'}",
    )
    assert (
        k.ok("get", "secret", "web-tls", "-n", "dev", "-o", "jsonpath={.type}")
        == "kubernetes.io/tls"
    )
