"""Helpers and fixtures for the agent and cloud federation tests (tests/federation/).

Imported by name (``from _fed import ...``), never as ``conftest``: ``conftest`` in sys.modules is
whichever conftest pytest loaded last, so such imports broke with other test folders collected
first. tests/federation/conftest.py re-exports the fixtures.

- ``pki`` (session): a throwaway CA and a loopback serving certificate (:mod:`_tls`).
- ``fed_issuer`` (module): a REAL ``sa-issuer serve`` over https (explicit ``--tls-cert`` /
  ``--tls-key``, RS256 like the clouds expect), SQLite in a tmp dir; ``fed_cluster`` (function)
  wraps it in a :class:`Cluster` for admin calls (namespaces, accounts, pods, RBAC, tokens).
- ``serve`` (module): tests/issuer/conftest.py, loaded by path (IssuerFactory, clean_env ...).

Each test uses its own namespace (``fed_cluster.fresh_namespace()``), so module-scoped issuers
are shared safely.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import _serve_fixtures
import httpx
import pytest
from _tls import Pki, make_pki

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC = f"/apis/{RBAC_GROUP}/v1"
#: least-privilege rule of the agent's credential (docs/FEDERATION.md)
MINT_RULE = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}


serve = _serve_fixtures.load()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test CA and the loopback serving certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


_namespaces = itertools.count(1)


class Cluster:
    """Admin calls against a running issuer (``proc``: a tests/issuer IssuerProcess)."""

    def __init__(self, proc: Any, ca: Path) -> None:
        self.proc = proc
        self.ca = ca
        self.url: str = proc.url
        self.issuer: str = proc.issuer

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One API call (admin credential unless ``token``); the JSON answer, asserting 2xx."""
        r = self.raw(method, path, body, token)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def raw(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        """One API call, any status."""
        headers = {"Authorization": f"Bearer {token or self.proc.admin_token}"}
        with self.proc.client(headers=headers) as c:
            return c.request(method, path, json=body)

    def fresh_namespace(self) -> str:
        """A new namespace, unique in this issuer."""
        ns = f"fed{next(_namespaces)}"
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        return ns

    def service_account(self, ns: str, name: str) -> dict[str, Any]:
        """Create a ServiceAccount."""
        return self.call(  # type: ignore[no-any-return]
            "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}}
        )

    def pod(self, ns: str, name: str, sa: str) -> dict[str, Any]:
        """Create a Pod running as ``sa``."""
        body = {
            "metadata": {"name": name},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]},
        }
        return self.call("POST", f"/api/v1/namespaces/{ns}/pods", body)  # type: ignore[no-any-return]

    def delete(self, ns: str, resource: str, name: str) -> None:
        """Delete a namespaced object."""
        self.call("DELETE", f"/api/v1/namespaces/{ns}/{resource}/{name}")

    def mint(
        self,
        ns: str,
        sa: str,
        audiences: Sequence[str] = (),
        seconds: int = 3600,
        pod: str | None = None,
    ) -> str:
        """A token from TokenRequest (admin credential)."""
        spec: dict[str, Any] = {"audiences": list(audiences), "expirationSeconds": seconds}
        if pod:
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod}
        out = self.call(
            "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", {"spec": spec}
        )
        return str(out["status"]["token"])

    def agent_credential(self, ns: str, target: str, path: Path, agent: str = "agent") -> Path:
        """Account ``agent`` allowed ONLY to mint tokens for ``target`` (Role with
        ``resourceNames``); its own token (API audience) written to ``path``."""
        self.service_account(ns, agent)
        self.call(
            "POST",
            f"{RBAC}/namespaces/{ns}/roles",
            {
                "metadata": {"name": f"{agent}-mint"},
                "rules": [{**MINT_RULE, "resourceNames": [target]}],
            },
        )
        self.call(
            "POST",
            f"{RBAC}/namespaces/{ns}/rolebindings",
            {
                "metadata": {"name": f"{agent}-mint"},
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": f"{agent}-mint"},
                "subjects": [{"kind": "ServiceAccount", "name": agent, "namespace": ns}],
            },
        )
        path.write_text(self.mint(ns, agent, seconds=86400) + "\n")
        path.chmod(0o600)
        return path


def start_issuer(tmp: Path, pki: Pki, config: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """(factory, process): a real https issuer on a free loopback port."""
    factory = serve.IssuerFactory(tmp)
    proc = factory.start(tls=(pki.chain, pki.key), config=config)
    return factory, proc


@pytest.fixture(scope="module")
def fed_issuer(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Any]:
    """A real https ``sa-issuer serve`` for this module (tokens up to 48 h)."""
    factory, proc = start_issuer(
        tmp_path_factory.mktemp("fed-issuer"), pki, {"token_max_expiration": 172800}
    )
    try:
        yield proc
    finally:
        factory.close()


@pytest.fixture
def fed_cluster(fed_issuer: Any, pki: Pki) -> Cluster:
    """Admin helper on the module's issuer."""
    return Cluster(fed_issuer, pki.ca)


@pytest.fixture(scope="module")
def fed_cluster_module(fed_issuer: Any, pki: Pki) -> Cluster:
    """The same, for module-scoped fixtures."""
    return Cluster(fed_issuer, pki.ca)


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Any:
    """``sa-issuer ARGS`` to completion (text output)."""
    return subprocess.run(
        [*serve.ISSUER_CMD, *args],
        env=serve.clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_token(
    cluster: Cluster,
    ns: str,
    sa: str,
    cred: Path,
    path: Path,
    audience: str,
    *extra: str,
) -> str:
    """``sa-issuer agent --once``: one token for ``sa`` with ``audience`` written to ``path``."""
    r = run_cli(
        "agent", "--server", cluster.url, "--token-file", str(cred), "--namespace", ns,
        "--service-account", sa, "--ca-bundle", str(cluster.ca), "--audience", audience,
        "--path", str(path), "--once", *extra,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return path.read_text()


class Workload:
    """A namespace with account ``app`` (pod ``web``), account ``other``, and an agent
    credential allowed to mint for both (two Roles with resourceNames)."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.ns = cluster.fresh_namespace()
        for sa in ("app", "other"):
            cluster.service_account(self.ns, sa)
        cluster.pod(self.ns, "web", "app")
        self.cred = cluster.agent_credential(self.ns, "app", tmp / "cred-app", agent="agent-app")
        self.cred_other = cluster.agent_credential(
            self.ns, "other", tmp / "cred-other", agent="agent-other"
        )
        self.sub = f"system:serviceaccount:{self.ns}:app"

    def write(self, path: Path, audience: str, sa: str = "app", *extra: str) -> str:
        """Agent-written token (``--once``)."""
        cred = self.cred if sa == "app" else self.cred_other
        return write_token(self.cluster, self.ns, sa, cred, path, audience, *extra)


@pytest.fixture(scope="module")
def hybrid(fed_issuer: Any, pki: Pki) -> Iterator[Any]:
    """A HybridVerifier following the module issuer's invalidation stream (all audiences the
    stand-ins use), for stand-ins that must refuse tokens of deleted pods."""
    from verifier import HybridVerifier

    v = HybridVerifier(
        fed_issuer.issuer,
        ["sts.amazonaws.com", "api://AzureADTokenExchange", *GCP_AUDIENCES],
        bearer_token=fed_issuer.admin_token,
        ca_bundle=str(pki.ca),
    )
    try:
        assert v.wait_synced(15)
        yield v
    finally:
        v.close()


GCP_PROVIDER = (
    "//iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/sa-oidc-pool/providers/sa-oidc"
)
GCP_AUDIENCES = [GCP_PROVIDER, "https:" + GCP_PROVIDER]


def wait_revoked(hybrid: Any, token: str, timeout: float = 10.0) -> None:
    """Wait until the hybrid verifier has heard (invalidation stream) that ``token`` is dead."""
    from verifier import InvalidToken

    deadline = time.monotonic() + timeout
    while True:
        try:
            hybrid.verify(token)
        except InvalidToken:
            return
        assert time.monotonic() < deadline, "the hybrid verifier never refused the token"
        time.sleep(0.02)


def run_agent(
    workload: Workload,
    path: Path,
    audience: str,
    events: Mapping[float, Callable[[], object]],
    stop: float,
) -> Any:
    """Run the real agent in-process on a fake clock for ``workload``'s account (3600 s tokens,
    no jitter: refresh at 2880 s), running ``events`` at their offsets from the start; stopped at
    ``stop``. Returns the FakeClock."""
    from _fakeclock import FakeClock

    from issuer.agent.client import TokenRequester
    from issuer.agent.loop import Agent, AgentSettings, Output
    from verifier.credentials import BearerTokenFile

    cluster = workload.cluster
    requester = TokenRequester(
        cluster.url,
        BearerTokenFile(workload.cred, refresh=0),
        workload.ns,
        "app",
        expiration_seconds=3600,
        ca_bundle=str(cluster.ca),
    )
    clock = FakeClock()
    for offset, action in events.items():
        clock.at(clock.start + offset, action)
    clock.stop_at(clock.start + stop)
    settings = AgentSettings(outputs=(Output(path, (audience,)),))
    try:
        assert Agent(settings, requester.request, clock, rng=lambda: 0.0).run() == 0
    finally:
        requester.close()
    return clock


def delete_bound_pod(
    workload: Workload,
    hybrid: Any,
    path: Path,
    audience: str,
    pod: str,
    sdk_call: Callable[[], object],
) -> None:
    """A token bound to a new pod ``pod`` in ``path`` (agent-written); ``sdk_call`` succeeds with
    it while the pod lives; then the pod is deleted and the hybrid verifier has heard of it."""
    workload.cluster.pod(workload.ns, pod, "app")
    token = workload.write(path, audience, "app", "--bound-pod", pod)
    sdk_call()
    workload.cluster.delete(workload.ns, "pods", pod)
    wait_revoked(hybrid, token)
