"""Outside review (issue 9), items 11 and 15.

Item 11: a write whose answer comes late is not "nothing changed".

With Redis, a write whose reply arrived after the 2 s command timeout was answered 503 "nothing
was changed, try again" though Redis had applied it; a retry then got 409 (with generateName, a
duplicate). Kubernetes answers an unknown outcome 504 Timeout ("may still be processing").

Item 15: sa-verifier's messages name the actual problem (the CLI against a live issuer).

A real Redis is made to answer late by a Lua script that keeps it busy for a few seconds (Redis
runs one command at a time: the write waits behind the script, is applied when it ends, and its
reply comes after the client gave up).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from issuer.store import StoreOutcomeUnknown, StoreUnavailable
from issuer.store.redis_store import DEFAULT_TIMEOUT, RedisStore

#: Keeps Redis busy (below lua-time-limit, 5 s, after which Redis would answer BUSY instead).
BUSY_SECONDS = DEFAULT_TIMEOUT + 1.5
_BUSY_SCRIPT = """
local start = redis.call('TIME')
local t0 = tonumber(start[1]) + tonumber(start[2]) / 1e6
while true do
  local now = redis.call('TIME')
  if tonumber(now[1]) + tonumber(now[2]) / 1e6 - t0 >= tonumber(ARGV[1]) then return 1 end
end
"""


def _keep_redis_busy(url: str) -> threading.Thread:
    """Start the busy script; returns once Redis is inside it."""
    client = redis.Redis.from_url(url, socket_timeout=BUSY_SECONDS + 5)

    def run() -> None:
        try:
            client.eval(_BUSY_SCRIPT, 0, BUSY_SECONDS)
        finally:
            client.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    probe = redis.Redis.from_url(url, socket_timeout=0.05)
    try:  # once a PING is not answered at once, the script is running
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                probe.ping()
            except redis.TimeoutError:
                return t
            time.sleep(0.01)
    finally:
        probe.close()
    raise AssertionError("the busy script did not start")


def _namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_store_write_answered_late_is_outcome_unknown_and_was_applied(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        # Load the write's Lua script first: a first EVALSHA would be answered NOSCRIPT.
        store.create_object("namespaces", "", "warm", _namespace("warm"))
        busy = _keep_redis_busy(redis_url)
        start = time.monotonic()
        with pytest.raises(StoreOutcomeUnknown):
            store.create_object("namespaces", "", "late", _namespace("late"))
        assert time.monotonic() - start < DEFAULT_TIMEOUT + 1
        busy.join(BUSY_SECONDS + 5)
        assert store.get_object("namespaces", "", "late")["metadata"]["name"] == "late"
    finally:
        store.close()


def test_store_unreachable_before_sending_is_still_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.create_object("namespaces", "", "never", _namespace("never"))
        assert not isinstance(info.value, StoreOutcomeUnknown)
    finally:
        store.close()


def test_late_write_over_http_is_504_timeout_not_503(issuer_factory: Any, redis_url: str) -> None:
    issuer = issuer_factory.start(store=redis_url)
    name = f"late-{uuid.uuid4().hex[:8]}"
    with issuer.client() as client:
        headers = {"Authorization": f"Bearer {issuer.admin_token}"}
        # A first create loads the write's Lua script (a first EVALSHA is answered NOSCRIPT).
        warm = client.post("/api/v1/namespaces", json=_namespace(name + "-w"), headers=headers)
        assert warm.status_code == 201, warm.text
        busy = _keep_redis_busy(redis_url)
        r = client.post("/api/v1/namespaces", json=_namespace(name), headers=headers, timeout=30)
        busy.join(BUSY_SECONDS + 5)
        assert r.status_code == 504, r.text
        body = r.json()
        assert body["kind"] == "Status"
        assert body["reason"] == "Timeout"
        assert body["code"] == 504
        assert "may still be processing" in body["message"]
        assert "nothing was changed" not in body["message"]
        # It was applied: a read finds it, and a blind retry is a conflict, as the message warns.
        assert client.get(f"/api/v1/namespaces/{name}", headers=headers).status_code == 200
        retry = client.post("/api/v1/namespaces", json=_namespace(name), headers=headers)
        assert retry.status_code == 409


def test_store_down_is_still_503_nothing_changed(
    issuer_factory: Any, redis_server: Any, redis_url: str
) -> None:
    """When Redis is not there at all, 503 stays right: the write was never sent."""
    issuer = issuer_factory.start(store=redis_url)
    headers = {"Authorization": f"Bearer {issuer.admin_token}"}
    redis_server.stop()
    try:
        with issuer.client() as client:
            r = client.post("/api/v1/namespaces", json=_namespace("down"), headers=headers)
        assert r.status_code == 503, r.text
        assert r.json()["reason"] == "ServiceUnavailable"
    finally:
        redis_server.start()


# -- item 15: sa-verifier says what is wrong ---------------------------------------------------


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier.cli", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


@pytest.fixture
def minted(issuer_factory: Any, tmp_path: Path) -> dict[str, Any]:
    """A live issuer, a service-account token for audience ``aud1``, and credential files."""
    issuer = issuer_factory.start()
    headers = {"Authorization": f"Bearer {issuer.admin_token}"}
    with issuer.client() as c:
        assert c.post("/api/v1/namespaces", json=_namespace("dev"), headers=headers).status_code
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}}
        c.post("/api/v1/namespaces/dev/serviceaccounts", json=sa, headers=headers)
        r = c.post(
            "/api/v1/namespaces/dev/serviceaccounts/app/token",
            json={"spec": {"audiences": ["aud1"], "expirationSeconds": 3600}},
            headers=headers,
        )
        assert r.status_code == 201, r.text
    token = tmp_path / "token"
    token.write_text(r.json()["status"]["token"])
    admin = tmp_path / "reviewer"
    admin.write_text(issuer.admin_token)
    wrong = tmp_path / "wrong-reviewer"
    wrong.write_text("not-a-credential-this-issuer-knows")
    return {"url": issuer.url, "token": token, "admin": admin, "wrong": wrong}


def _review_args(m: dict[str, Any], cred: Path, mode: str = "tokenreview") -> list[str]:
    return [
        "--mode", mode, "--issuer", m["url"], "--audience", "aud1",
        "--bearer-token-file", str(cred), "--insecure-allow-http",
    ]  # fmt: skip


def test_tokenreview_mode_shows_the_tokens_expiry(minted: dict[str, Any]) -> None:
    r = _cli("--token-file", str(minted["token"]), *_review_args(minted, minted["admin"]))
    assert r.returncode == 0, r.stderr
    assert "no expiry" not in r.stdout
    assert "expires in 59m" in r.stdout or "expires in 1h00m" in r.stdout, r.stdout


def test_tokenreview_mode_garbage_token_is_malformed_not_a_credential_problem(
    minted: dict[str, Any],
) -> None:
    r = _cli("garbage.x.y", *_review_args(minted, minted["admin"]))
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("invalid token: malformed:"), r.stderr
    assert "bearer" not in r.stderr


def test_refused_bearer_token_file_is_named(minted: dict[str, Any]) -> None:
    for mode in ("tokenreview", "hybrid"):
        r = _cli("--token-file", str(minted["token"]), *_review_args(minted, minted["wrong"], mode))
        assert r.returncode == 3, (mode, r.stderr)
        assert str(minted["wrong"]) in r.stderr, (mode, r.stderr)
        assert "HTTP 401" in r.stderr
