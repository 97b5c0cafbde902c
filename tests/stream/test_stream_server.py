"""The invalidation stream and token-revocation endpoints over real sockets (SQLite, Redis)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from issuer import revocations
from issuer.store import Store

from ._helpers import ServerThread, pod_deleted
from .conftest import ADMIN

PATH = "/apis/sa-oidc.dev/v1/invalidations"
REVOKE = "/apis/sa-oidc.dev/v1/tokenrevocations"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_list_page_shape(store: Store, stream_server: ServerThread) -> None:
    s1 = store.append_event(pod_deleted("a"))
    s2 = store.append_event({"type": "KeyRevoked", "kid": "k1", "time": 1.0})
    r = httpx.get(stream_server.url + PATH, params={"after": 0}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "InvalidationList" and body["apiVersion"] == "sa-oidc.dev/v1"
    assert body["metadata"]["lastSeq"] == s2 and body["metadata"]["oldestSeq"] == s1
    assert [i["seq"] for i in body["items"]] == [s1, s2]
    assert body["items"][0]["kind"] == "Pod" and body["items"][0]["uid"] == "a"
    assert body["items"][1] == {"seq": s2, "type": "KeyRevoked", "kid": "k1", "time": 1.0}
    r = httpx.get(stream_server.url + PATH, params={"after": s1, "limit": 1}, headers=AUTH)
    assert [i["seq"] for i in r.json()["items"]] == [s2]


def test_paging_continue(store: Store, stream_server: ServerThread) -> None:
    seqs = [store.append_event(pod_deleted(f"p{i}")) for i in range(5)]
    r = httpx.get(stream_server.url + PATH, params={"after": 0, "limit": 2}, headers=AUTH).json()
    assert [i["seq"] for i in r["items"]] == seqs[:2]
    assert r["metadata"]["continue"] == str(seqs[1])


@pytest.mark.parametrize(
    ("headers", "code", "reason"),
    [({}, 401, "Unauthorized"), ({"Authorization": "Bearer nope"}, 401, "Unauthorized")],
)
def test_auth_required(
    stream_server: ServerThread, headers: dict[str, str], code: int, reason: str
) -> None:
    for method, path in (("GET", PATH), ("POST", REVOKE)):
        r = httpx.request(method, stream_server.url + path, headers=headers, json={})
        assert r.status_code == code
        assert r.json()["kind"] == "Status" and r.json()["reason"] == reason


@pytest.mark.parametrize("after", ["-1", "x", "1.5"])
def test_bad_after(stream_server: ServerThread, after: str) -> None:
    r = httpx.get(stream_server.url + PATH, params={"after": after}, headers=AUTH)
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"


def test_410_after_trim_and_for_future_positions(store: Store, stream_server: ServerThread) -> None:
    first = store.append_event(pod_deleted("a"))
    store.append_event(pod_deleted("b"))
    time.sleep(0.02)
    last = store.append_event(pod_deleted("c"))
    store.trim_events(time.time() + 1)  # keeps only the newest
    page = httpx.get(stream_server.url + PATH, params={"after": 0}, headers=AUTH).json()
    assert page["metadata"]["oldestSeq"] == last
    for watch in ("false", "true"):
        r = httpx.get(
            stream_server.url + PATH, params={"after": first, "watch": watch}, headers=AUTH
        )
        assert r.status_code == 410, watch
        st = r.json()
        assert st["kind"] == "Status" and st["reason"] == "Expired" and st["code"] == 410
        assert "resync" in st["message"]
    # after = oldest - 1 is still served: nothing was missed.
    ok = httpx.get(stream_server.url + PATH, params={"after": last - 1}, headers=AUTH)
    assert ok.status_code == 200 and [i["seq"] for i in ok.json()["items"]] == [last]
    # A position beyond anything this store assigned: the client followed another store.
    r = httpx.get(stream_server.url + PATH, params={"after": last + 100}, headers=AUTH)
    assert r.status_code == 410 and r.json()["reason"] == "Expired"


def _read_lines(resp: httpx.Response, out: list[dict[str, Any]], stop: threading.Event) -> None:
    try:
        for line in resp.iter_lines():
            if line:
                out.append(json.loads(line))
            if stop.is_set():
                return
    except httpx.HTTPError:
        pass


def test_watch_backlog_live_and_heartbeat(store: Store, stream_server: ServerThread) -> None:
    s1 = store.append_event(pod_deleted("a"))
    lines: list[dict[str, Any]] = []
    stop = threading.Event()
    with (
        httpx.Client(timeout=5) as c,
        c.stream(
            "GET",
            stream_server.url + PATH,
            params={"after": 0, "watch": "true", "heartbeatSeconds": "0.2"},
            headers=AUTH,
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        assert resp.headers.get("transfer-encoding") == "chunked"
        t = threading.Thread(target=_read_lines, args=(resp, lines, stop), daemon=True)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        s2 = store.append_event({"type": "TokenRevoked", "jti": "j", "exp": 5, "time": 1.0})
        while time.monotonic() - t0 < 3 and not any(
            x.get("seq") == s2 and x["type"] == "EVENT" for x in lines
        ):
            time.sleep(0.005)
        latency = time.monotonic() - t0
        time.sleep(0.5)
        stop.set()
    events = [x for x in lines if x["type"] == "EVENT"]
    assert [e["seq"] for e in events] == [s1, s2]
    assert events[0]["event"]["uid"] == "a"
    assert events[1]["event"] == {"type": "TokenRevoked", "jti": "j", "exp": 5, "time": 1.0}
    beats = [x for x in lines if x["type"] == "HEARTBEAT"]
    assert len(beats) >= 3
    assert beats[-1]["seq"] == s2 and beats[-1]["oldestSeq"] == s1
    assert isinstance(beats[-1]["time"], float)
    assert latency < 1.0


def test_watch_resumes_from_after(store: Store, stream_server: ServerThread) -> None:
    s1 = store.append_event(pod_deleted("a"))
    s2 = store.append_event(pod_deleted("b"))
    with (
        httpx.Client(timeout=5) as c,
        c.stream(
            "GET", stream_server.url + PATH, params={"after": s1, "watch": "true"}, headers=AUTH
        ) as resp,
    ):
        first = json.loads(next(resp.iter_lines()))
    epoch = store.read_events(0).epoch
    assert epoch  # every line names the store's event history (issue 9, item 7)
    assert first == {"type": "EVENT", "seq": s2, "epoch": epoch, "event": first["event"]}
    assert first["event"]["uid"] == "b"


def test_watch_timeout_ends_stream(store: Store, stream_server: ServerThread) -> None:
    t0 = time.monotonic()
    r = httpx.get(
        stream_server.url + PATH,
        params={"watch": "true", "timeoutSeconds": "1", "heartbeatSeconds": "0.5"},
        headers=AUTH,
        timeout=5,
    )
    assert r.status_code == 200 and 0.9 < time.monotonic() - t0 < 3
    kinds = {json.loads(x)["type"] for x in r.text.splitlines()}
    assert kinds == {"HEARTBEAT"}


def _revocation(jti: Any, exp: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"jti": jti}
    if exp:
        spec["expirationTimestamp"] = exp
    return {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": spec}


def test_token_revocation_call(store: Store, stream_server: ServerThread) -> None:
    url = stream_server.url + REVOKE
    r = httpx.post(url, json=_revocation("jti-1", "2030-01-01T00:00:00Z"), headers=AUTH)
    assert r.status_code == 201, r.text
    obj = r.json()
    assert obj["kind"] == "TokenRevocation" and obj["metadata"]["name"] == "jti-1"
    seq = obj["status"]["seq"]
    assert revocations.is_token_revoked(store, "jti-1")
    page = store.read_events(0)
    assert [(e.seq, e.data["type"], e.data["jti"], e.data["exp"]) for e in page.events] == [
        (seq, "TokenRevoked", "jti-1", 1893456000)
    ]
    again = httpx.post(url, json=_revocation("jti-1"), headers=AUTH)
    assert again.status_code == 200 and again.json()["status"]["seq"] == seq
    assert len(store.read_events(0).events) == 1  # idempotent: no second event


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"apiVersion": "v1", "kind": "TokenRevocation", "spec": {"jti": "a"}}, 400),
        ({"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation"}, 422),
        (_revocation(""), 422),
        (_revocation("has space"), 422),
        (_revocation(7), 422),
        (_revocation("x" * 300), 422),
        (_revocation("ok", "yesterday"), 422),
        (_revocation("ok", "2001-01-01T00:00:00Z"), 422),  # in the past (issue 9, item 6)
    ],
)
def test_token_revocation_bad_input(
    store: Store, stream_server: ServerThread, body: dict[str, Any], code: int
) -> None:
    r = httpx.post(stream_server.url + REVOKE, json=body, headers=AUTH)
    assert r.status_code == code and r.json()["kind"] == "Status"
    assert store.read_events(0).events == ()
