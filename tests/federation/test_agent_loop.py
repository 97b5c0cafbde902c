"""The agent loop on a fake clock against a REAL issuer over https: kubelet's refresh schedule,
an issuer outage, definite refusals (account / bound pod deleted, credential revoked)."""

from __future__ import annotations

import base64
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from _fakeclock import FakeClock
from _fed import RBAC, RBAC_GROUP, Cluster, start_issuer
from _tls import Pki

from issuer.agent.client import EXIT_CREDENTIAL, EXIT_GONE, TokenRequester
from issuer.agent.loop import MAX_WAIT_SECONDS, Agent, AgentSettings, Output
from verifier.credentials import BearerTokenFile


def claims(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))  # type: ignore[no-any-return]


class Recorder:
    """Wraps a requester: remembers when (fake time) each request was made and its outcome."""

    def __init__(self, requester: TokenRequester, clock: FakeClock) -> None:
        self.requester, self.clock = requester, clock
        self.calls: list[float] = []
        self.tokens: list[str] = []

    def __call__(self, audiences: tuple[str, ...]) -> Any:
        self.calls.append(self.clock.time())
        issued = self.requester.request(audiences)
        self.tokens.append(issued.token)
        return issued


def make_agent(
    cluster: Cluster,
    ns: str,
    sa: str,
    tmp: Path,
    clock: FakeClock,
    *,
    seconds: int = 3600,
    bound: tuple[str, str] | None = None,
    rng: Any = lambda: 0.5,
    **settings: Any,
) -> tuple[Agent, Recorder, Path]:
    cred = cluster.agent_credential(ns, sa, tmp / "cred")
    requester = TokenRequester(
        cluster.url,
        BearerTokenFile(cred, refresh=0),
        ns,
        sa,
        expiration_seconds=seconds,
        bound=bound,
        ca_bundle=str(cluster.ca),
    )
    out = tmp / "token"
    recorder = Recorder(requester, clock)
    agent = Agent(
        AgentSettings(outputs=(Output(out, ("sts.amazonaws.com",)),), **settings),
        recorder,
        clock,
        rng=rng,
    )
    return agent, recorder, out


def test_refresh_at_80_percent_with_jitter(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    clock = FakeClock()
    t0 = clock.t
    agent, rec, out = make_agent(
        fed_cluster, ns, "app", tmp_path, clock, rng=random.Random(7).random,
        status_file=tmp_path / "status.json",
    )  # fmt: skip
    clock.stop_at(t0 + 4 * 2880)
    assert agent.run() == 0
    # kubelet: refresh once older than 80% of 3600 s, minus a jitter in [0, 10) s.
    intervals = [b - a for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert len(intervals) == 4
    assert all(2870 < i <= 2880 for i in intervals), intervals
    assert len(set(intervals)) > 1  # jittered, not lock-step
    assert len(set(rec.tokens)) == 5
    assert out.read_text() == rec.tokens[-1]
    assert out.stat().st_mode & 0o777 == 0o600
    for token in rec.tokens:
        c = claims(token)
        assert c["exp"] - c["iat"] == 3600 and c["aud"] == ["sts.amazonaws.com"]
        assert c["sub"] == f"system:serviceaccount:{ns}:app"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "stopped"
    assert status["outputs"][0]["refreshes"] == 5
    assert status["outputs"][0]["refreshReason"] == "80% of lifetime"
    assert rec.tokens[-1] not in (tmp_path / "status.json").read_text()


def test_refresh_after_24h_for_long_lifetimes(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    clock = FakeClock()
    t0 = clock.t
    agent, rec, _ = make_agent(fed_cluster, ns, "app", tmp_path, clock, seconds=48 * 3600)
    clock.stop_at(t0 + 2 * 86400)
    assert agent.run() == 0
    assert [c - t0 for c in rec.calls] == [0, 86400 - 5, 2 * (86400 - 5)]
    c = claims(rec.tokens[0])
    assert c["exp"] - c["iat"] == 48 * 3600


def test_outage_keeps_the_last_good_token(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    factory, proc = start_issuer(tmp_path / "iss", pki)
    try:
        cluster = Cluster(proc, pki.ca)
        ns = cluster.fresh_namespace()
        cluster.service_account(ns, "app")
        clock = FakeClock()
        t0 = clock.t
        agent, rec, out = make_agent(
            cluster, ns, "app", tmp_path, clock, status_file=tmp_path / "status.json"
        )
        refresh = t0 + 2880 - 5
        seen: dict[str, Any] = {}

        def during() -> None:
            seen["token"] = out.read_text()
            seen["status"] = json.loads((tmp_path / "status.json").read_text())

        clock.at(refresh - 1, proc.stop)  # the issuer goes away before the refresh is due ...
        clock.at(refresh + 299, during)
        clock.at(refresh + 300, proc.restart)  # ... and comes back five minutes later
        clock.stop_at(refresh + 400)
        with caplog.at_level(logging.INFO, logger="sa_issuer.agent"):
            assert agent.run() == 0
    finally:
        factory.close()
    first = rec.tokens[0]
    assert seen["token"] == first  # kept through the outage, never emptied
    out_status = seen["status"]["outputs"][0]
    assert seen["status"]["state"] == "degraded"
    assert out_status["consecutiveFailures"] >= 8
    assert "cannot reach the issuer" in out_status["lastError"]
    # capped backoff: the first success comes within one cap (60 s, +10% jitter) of the restart
    assert len(rec.tokens) == 2 and out.read_text() == rec.tokens[1] != first
    assert refresh + 300 < rec.calls[-1] <= refresh + 300 + 66
    gaps = [b - a for a, b in zip(rec.calls[1:], rec.calls[2:], strict=False)]
    assert max(gaps) <= 66
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("keeping the last good token (expires in" in w for w in warnings), warnings
    assert any("answered again after" in r.getMessage() for r in caplog.records)
    assert claims(first)["exp"] > claims(first)["iat"] + 2880 + 300  # was valid all along


@pytest.mark.parametrize(
    ("gone", "on_refusal"),
    [("serviceaccounts", "remove"), ("serviceaccounts", "keep"), ("pods", "remove"),
     ("nodes", "remove")],
)  # fmt: skip
def test_deleted_account_or_bound_object_stops_cleanly(
    fed_cluster: Cluster,
    tmp_path: Path,
    gone: str,
    on_refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    if gone == "nodes":
        name, bound = f"{ns}-node", ("Node", f"{ns}-node")
        fed_cluster.call("POST", "/api/v1/nodes", {"metadata": {"name": name}})
        delete = lambda: fed_cluster.call("DELETE", f"/api/v1/nodes/{name}")  # noqa: E731
    else:
        fed_cluster.pod(ns, "web", "app")
        name = "app" if gone == "serviceaccounts" else "web"
        bound = ("Pod", "web")
        delete = lambda: fed_cluster.delete(ns, gone, name)  # noqa: E731
    clock = FakeClock()
    t0 = clock.t
    agent, rec, out = make_agent(
        fed_cluster, ns, "app", tmp_path, clock, bound=bound, on_refusal=on_refusal,
        status_file=tmp_path / "status.json",
    )  # fmt: skip
    clock.at(t0 + 600, delete)
    clock.stop_at(t0 + 86400)
    with caplog.at_level(logging.INFO, logger="sa_issuer.agent"):
        assert agent.run() == EXIT_GONE
    assert len(rec.calls) == 2 and rec.calls[1] == t0 + 2875  # refused at the next refresh
    assert clock.t < t0 + 86400  # stopped by the refusal, not by the clock
    assert out.exists() == (on_refusal == "keep")
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "refused"
    assert f'{gone} "{name}" not found' in status["message"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f'{gone} "{name}" not found' in e for e in errors), errors


def test_revoked_credential_exits_with_its_own_code(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    clock = FakeClock()
    t0 = clock.t
    agent, _, out = make_agent(fed_cluster, ns, "app", tmp_path, clock, on_refusal="keep")
    # the agent's own account goes away: its credential no longer authenticates
    clock.at(t0 + 60, lambda: fed_cluster.delete(ns, "serviceaccounts", "agent"))
    clock.stop_at(t0 + 86400)
    assert agent.run() == EXIT_CREDENTIAL
    assert out.exists()
    assert agent.state == "refused" and "401 Unauthorized" in agent.message


def test_credential_kept_fresh_by_the_agent_itself(fed_cluster: Cluster, tmp_path: Path) -> None:
    """CRED may be one of the agent's own outputs: the account may mint its own tokens (Role with
    resourceNames [itself]); the agent re-reads the file on every request, so revoking the
    credential it started with does not stop it."""
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    cred = fed_cluster.agent_credential(ns, "app", tmp_path / "cred", agent="app-self")
    # the same grant for "app" itself, then its own API token as the starting credential
    fed_cluster.call(
        "POST",
        f"{RBAC}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "app-mints-itself"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "app-self-mint"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
        },
    )
    first = fed_cluster.mint(ns, "app", seconds=86400)
    cred.write_text(first)
    requester = TokenRequester(
        fed_cluster.url, BearerTokenFile(cred, refresh=0), ns, "app",
        expiration_seconds=3600, ca_bundle=str(fed_cluster.ca),
    )  # fmt: skip
    out = tmp_path / "token"
    settings = AgentSettings(outputs=(Output(cred, ()), Output(out, ("sts.amazonaws.com",))))
    clock = FakeClock()
    t0 = clock.t
    revoked: list[int] = []

    def revoke_first() -> None:
        body = {
            "apiVersion": "sa-oidc.dev/v1",
            "kind": "TokenRevocation",
            "spec": {"jti": claims(first)["jti"]},
        }
        fed_cluster.call("POST", "/apis/sa-oidc.dev/v1/tokenrevocations", body)
        revoked.append(fed_cluster.raw("GET", "/api/v1/namespaces", token=first).status_code)

    clock.at(t0 + 100, revoke_first)
    clock.stop_at(t0 + 3 * 2880)
    agent = Agent(settings, requester.request, clock, rng=lambda: 0.5)
    try:
        assert agent.run() == 0
    finally:
        requester.close()
    assert revoked == [401]  # the starting credential is dead ...
    own = cred.read_text()
    assert own != first and claims(own)["aud"] == [fed_cluster.issuer]
    assert claims(own)["sub"] == f"system:serviceaccount:{ns}:app"
    # ... yet both outputs were refreshed three more times (2875, 5750, 8625 s), each request
    # made with the credential the agent had written itself
    assert [st.refreshes for st in agent.states] == [4, 4]
    assert [st.failures for st in agent.states] == [0, 0]


def test_a_suspended_host_refreshes_within_a_minute_of_waking(
    fed_cluster: Cluster, tmp_path: Path
) -> None:
    """The host sleeps 2 h in the middle of a wait: the agent's waits are capped at 60 s of
    monotonic time, so it sees the wall clock jump and refreshes the (now expired) token within
    a minute instead of after the remaining wait."""
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    clock = FakeClock()
    t0 = clock.t
    agent, rec, _ = make_agent(fed_cluster, ns, "app", tmp_path, clock)
    clock.at(t0 + 100, lambda: clock.suspend(7200))
    clock.stop_at(t0 + 400)
    assert agent.run() == 0
    assert len(rec.calls) == 2
    assert t0 + 7300 < rec.calls[1] <= t0 + 7300 + MAX_WAIT_SECONDS
    assert max(clock.waits) <= MAX_WAIT_SECONDS
