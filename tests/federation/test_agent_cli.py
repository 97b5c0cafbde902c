"""``sa-issuer agent`` as a process against a REAL https issuer: --once, several outputs, the
least-privilege credential, SIGTERM, usage errors; the atomic writer under ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from _fed import Cluster, run_cli, serve

from issuer.agent.client import EXIT_CREDENTIAL, EXIT_UNAVAILABLE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def agent_args(cluster: Cluster, ns: str, sa: str, cred: Path, *extra: str) -> list[str]:
    return [
        "agent", "--server", cluster.url, "--token-file", str(cred), "--namespace", ns,
        "--service-account", sa, "--ca-bundle", str(cluster.ca), *extra,
    ]  # fmt: skip


def verify(cluster: Cluster, token: str, audience: str) -> dict[str, Any]:
    """Independent check: PyJWT with the issuer's live JWKS."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(cluster.ca))
    jwks = jwt.PyJWKClient(cluster.url + "/openid/v1/jwks", ssl_context=ctx)
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(  # type: ignore[no-any-return]
        token, key, algorithms=["RS256", "ES256"], audience=audience, issuer=cluster.issuer
    )


def test_once_writes_every_output_with_mode_0600(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    cred = fed_cluster.agent_credential(ns, "app", tmp_path / "cred")
    stale = tmp_path / ".aws-token.123abc.tmp"  # left by a writer killed earlier
    stale.write_text("half")
    r = run_cli(
        *agent_args(fed_cluster, ns, "app", cred),
        "--path", str(tmp_path / "aws-token"), "--audience", "sts.amazonaws.com",
        "--output", f"api://AzureADTokenExchange={tmp_path / 'azure-token'}",
        "--output", f"a1,a2={tmp_path / 'both'}", "--once",
        "--status-file", str(tmp_path / "status.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not stale.exists()
    for name, aud in [
        ("aws-token", "sts.amazonaws.com"),
        ("azure-token", "api://AzureADTokenExchange"),
    ]:
        path = tmp_path / name
        assert path.stat().st_mode & 0o777 == 0o600
        claims = verify(fed_cluster, path.read_text(), aud)
        assert claims["aud"] == [aud] and claims["exp"] - claims["iat"] == 3600
    assert verify(fed_cluster, (tmp_path / "both").read_text(), "a2")["aud"] == ["a1", "a2"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "ok" and len(status["outputs"]) == 3
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_least_privilege_role_allows_only_its_account(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    fed_cluster.service_account(ns, "other")
    cred = fed_cluster.agent_credential(ns, "app", tmp_path / "cred")
    out = tmp_path / "token"
    r = run_cli(*agent_args(fed_cluster, ns, "other", cred), "--path", str(out), "--once")
    assert r.returncode == EXIT_CREDENTIAL, r.stderr
    assert "403 Forbidden" in r.stderr
    assert f'User "system:serviceaccount:{ns}:agent" cannot create resource' in r.stderr
    assert not out.exists()
    # the same credential for its own account works (and is re-read: rewritten in place)
    cred.write_text(fed_cluster.mint(ns, "agent", seconds=86400))
    r = run_cli(*agent_args(fed_cluster, ns, "app", cred), "--path", str(out), "--once")
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_sigterm_stops_cleanly_and_keeps_the_file(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    cred = fed_cluster.agent_credential(ns, "app", tmp_path / "cred")
    out, status = tmp_path / "token", tmp_path / "status.json"
    proc = subprocess.Popen(
        [*serve.ISSUER_CMD, *agent_args(fed_cluster, ns, "app", cred), "--path", str(out),
         "--audience", "x", "--status-file", str(status)],
        env=serve.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (status.exists() and json.loads(status.read_text())["state"] == "ok"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "Traceback" not in err
    assert "wrote a token for" in err and "HTTP Request:" not in err  # its own lines, not httpx's
    assert json.loads(status.read_text())["state"] == "stopped"
    assert out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--server", "http://issuer.example:8080"],
            "plain http would send the agent's credential",
        ),
        (["--expiration-seconds", "600"], "must be at least 1320 s"),
        (["--mode", "0666"], "world-writable"),
        (["--output", "no-path"], "expected AUD[,AUD...]=PATH"),
        (["--audience", "x"], "--audience applies to --path"),
        (["--namespace", "Bad_NS"], "--namespace 'Bad_NS'"),
        (["--token-file", "/nonexistent/cred"], "--token-file /nonexistent/cred: no such"),
    ],
)
def test_bad_flags_are_refused_before_any_request(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    cred = tmp_path / "cred"
    cred.write_text("a.b.c")
    args = ["agent", "--server", "https://127.0.0.1:1", "--token-file", str(cred), "-n", "ns",
            "--service-account", "app"]  # fmt: skip
    if "--audience" not in extra and "--output" not in extra:
        args += ["--path", str(tmp_path / "token")]
    r = run_cli(*args, *extra)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr
    assert r.stderr.startswith("sa-issuer: error: ")
    assert not (tmp_path / "token").exists()


# --- kill -9 mid-write ------------------------------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
from issuer.agent.writer import write_atomic
path = Path(sys.argv[1])
blobs = [bytes([65 + i]) * (4 << 20) for i in range(4)]  # 4 MiB each: writes take a while
print("ready", flush=True)
i = 0
while True:
    write_atomic(path, blobs[i % 4])
    i += 1
"""


def test_no_partial_file_under_kill_9(tmp_path: Path) -> None:
    """SIGKILL the writer at random points: the file is always one whole token, and the
    temporaries it leaves are cleaned by the next start (the agent's ``run``)."""
    from issuer.agent.writer import remove_stale_temporaries, write_atomic

    path = tmp_path / "token"
    write_atomic(path, b"Z" * (4 << 20))
    wholes = {bytes([c]) * (4 << 20) for c in b"ABCDZ"}
    mid_write = 0
    for i in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            stdout=subprocess.PIPE,
            env=serve.clean_env(),
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.01 + 0.013 * i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert path.read_bytes() in wholes
        assert path.stat().st_mode & 0o777 == 0o600
        mid_write += bool(remove_stale_temporaries(path))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]
    assert mid_write >= 1  # some kills did land between the temporary's creation and the rename


def test_documented_least_privilege_role(fed_cluster: Cluster, tmp_path: Path) -> None:
    """deploy/agent/rbac.yaml, created as written: the agent mints for "app" only."""
    import yaml

    docs = list(yaml.safe_load_all((DEPLOY / "agent" / "rbac.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    ns = docs[0]["metadata"]["namespace"]
    fed_cluster.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    for sa in ("app", "other"):
        fed_cluster.service_account(ns, sa)
    paths = {
        "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
        "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    }
    for doc in docs:
        fed_cluster.call("POST", paths[doc["kind"]], doc)
    agent = docs[0]["metadata"]["name"]
    cred = tmp_path / "cred"
    cred.write_text(fed_cluster.mint(ns, agent))
    out = tmp_path / "token"
    ok = run_cli(*agent_args(fed_cluster, ns, "app", cred), "--path", str(out), "--once")
    assert ok.returncode == 0, ok.stderr
    refused = run_cli(*agent_args(fed_cluster, ns, "other", cred), "--path", str(out), "--once")
    assert refused.returncode == EXIT_CREDENTIAL
    assert "403 Forbidden" in refused.stderr


def test_once_gives_up_with_its_own_code_when_the_issuer_is_down(tmp_path: Path) -> None:
    cred = tmp_path / "cred"
    cred.write_text("a.b.c")
    port = serve.free_port()  # nothing listens there
    r = run_cli("agent", "--server", f"http://127.0.0.1:{port}", "--token-file", str(cred),
                "-n", "ns", "--service-account", "app", "--path", str(tmp_path / "token"),
                "--once", "--once-timeout", "2")  # fmt: skip
    assert r.returncode == EXIT_UNAVAILABLE, r.stderr
    assert "cannot reach the issuer" in r.stderr and "no token written yet" in r.stderr
    assert "giving up: no token after 2 s" in r.stderr
    assert not (tmp_path / "token").exists()


def test_mode_and_owner(fed_cluster: Cluster, tmp_path: Path) -> None:
    ns = fed_cluster.fresh_namespace()
    fed_cluster.service_account(ns, "app")
    cred = fed_cluster.agent_credential(ns, "app", tmp_path / "cred")
    out = tmp_path / "token"
    owner = f"{os.getuid()}:{os.getgid()}"
    r = run_cli(*agent_args(fed_cluster, ns, "app", cred), "--path", str(out), "--once",
                "--mode", "0640", "--owner", owner)  # fmt: skip
    assert r.returncode == 0, r.stderr
    st = out.stat()
    assert st.st_mode & 0o777 == 0o640
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    bad = run_cli(*agent_args(fed_cluster, ns, "app", cred), "--path", str(out), "--once",
                  "--owner", "no-such-user-xyz")  # fmt: skip
    assert bad.returncode == 1 and "--owner 'no-such-user-xyz': no such user" in bad.stderr
