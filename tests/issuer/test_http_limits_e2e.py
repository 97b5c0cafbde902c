"""Request and connection bounds (issuer.http.limits) over real sockets against ``sa-issuer serve``.

Issue 9 items 2 and 8: in-process clients never split or merge reads the way a kernel does, so
these tests talk raw HTTP/1.1 to a real server process.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
from _rawhttp import read_response

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerFactory, IssuerProcess

SA_PATH = "/api/v1/namespaces/limits/serviceaccounts"


def _with_namespace(proc: IssuerProcess) -> IssuerProcess:
    with proc.client(headers={"Authorization": f"Bearer {proc.admin_token}"}) as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": "limits"}})
        assert r.status_code == 201, r.text
    return proc


def _post_head(path: str, length: int, token: str | None, close: bool = False) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _sa_body(name: str, size: int) -> bytes:
    """A ServiceAccount create of about ``size`` bytes (padding in an unknown field)."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    base = len(json.dumps(doc)) + len(', "padding": ""')
    doc["padding"] = "x" * max(0, size - base)
    return json.dumps(doc).encode()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the peer closes ``sock`` within ``seconds`` (any bytes before that are read)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


# --- item 8: only head bytes count against the head limit; over-cap bodies are 413 ------------


def test_body_in_the_same_read_as_the_head_is_not_431(issuer_process: IssuerProcess) -> None:
    """Bodies between 64 KiB and 1 MiB sent in one write with their head are accepted."""
    token = _with_namespace(issuer_process).admin_token
    path = SA_PATH + "?fieldValidation=Ignore"
    for i, size in enumerate((70_000, 200_000, 600_000, 1_000_000)):
        body = _sa_body(f"big-{i}", size)
        with socket.create_connection(("127.0.0.1", issuer_process.port), timeout=10) as s:
            s.sendall(_post_head(path, len(body), token) + body)
            status, _, data = read_response(s)
            assert status == 201, (size, status, data[:200])
            # ... and the keep-alive connection serves the next request.
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200


def test_over_cap_body_gets_413_with_a_status(issuer_process: IssuerProcess) -> None:
    token = _with_namespace(issuer_process).admin_token
    body = _sa_body("too-big", 2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", issuer_process.port), timeout=10) as s:
        s.sendall(_post_head(SA_PATH, len(body), token) + body)
        status, headers, data = read_response(s)
    assert status == 413
    assert headers["content-type"] == "application/json"
    st = json.loads(data)
    assert (st["kind"], st["reason"], st["code"]) == ("Status", "RequestEntityTooLarge", 413)
    # A real client sees the same.
    with issuer_process.client() as c:
        r = c.post(SA_PATH, content=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"


# --- item 2: slow bodies and too many connections ----------------------------------------------


def test_trickled_body_is_cut_off(issuer_factory: IssuerFactory) -> None:
    """A body trickled at 1 byte per 0.5 s is cut off at ``body_timeout`` — whether or not the
    app already answered (401 before the body is read; the JWKS fast lane) — and the rest of the
    server is fine."""
    proc = _with_namespace(issuer_factory.start(config={"body_timeout": 2}))
    token = proc.admin_token
    jwks_with_body = b"GET /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    for head in (
        _post_head(SA_PATH, 1000, None) + b"{",
        _post_head(SA_PATH, 1000, token) + b"{",
        jwks_with_body,
    ):
        s = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        try:
            s.sendall(head)
            started = time.monotonic()
            closed = False
            for _ in range(12):  # 6 s of trickling at most
                time.sleep(0.5)
                try:
                    s.sendall(b" ")
                except OSError:
                    closed = True
                    break
            elapsed = time.monotonic() - started
            assert closed and elapsed < 5.0, f"connection not cut off: {head[:60]!r}"
        finally:
            s.close()
    # The authenticated trickler, whose body the app was waiting for, gets a 408 Status.
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        s.sendall(_post_head(SA_PATH, 1000, token) + b"{")
        status, _, data = read_response(s, timeout=6)
        assert status == 408
        st = json.loads(data)
        assert (st["kind"], st["reason"], st["code"]) == ("Status", "Timeout", 408)
        assert "2 s" in st["message"]
        assert _closed_within(s, 2)
    with proc.client() as c:
        assert c.get("/readyz").status_code == 200
    assert "Traceback" not in proc.stderr()


def test_body_below_the_minimum_rate_is_cut_off(issuer_factory: IssuerFactory) -> None:
    """After the 5 s grace a body must average ``body_min_rate`` bytes/s; a body that keeps to
    the rate is accepted however long it takes (within ``body_timeout``)."""
    proc = _with_namespace(issuer_factory.start(config={"body_min_rate": 1000}))
    token = proc.admin_token
    slow = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    try:
        slow.sendall(_post_head(SA_PATH, 100_000, token))
        started = time.monotonic()
        status = None
        while time.monotonic() - started < 12:
            try:
                slow.sendall(b" " * 50)  # 250 B/s, well below 1000
            except OSError:
                break
            slow.settimeout(0.2)
            try:
                status = read_response(slow, timeout=0.2)[0]
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
        assert status == 408, status
        assert 5.0 <= elapsed < 9.0, elapsed
    finally:
        slow.close()
    # 2.5 KiB/s for 2 s: slower than a LAN, faster than the minimum: accepted.
    body = _sa_body("steady", 5000)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        s.sendall(_post_head(SA_PATH + "?fieldValidation=Ignore", len(body), token))
        for i in range(0, len(body), 500):
            s.sendall(body[i : i + 500])
            time.sleep(0.2)
        assert read_response(s)[0] == 201


def test_connections_beyond_the_cap_are_refused_fast(issuer_factory: IssuerFactory) -> None:
    proc = issuer_factory.start(extra_args=["--max-connections", "8"])
    time.sleep(0.2)  # the readiness poll's connection is closed on the server's side too
    idle = [socket.create_connection(("127.0.0.1", proc.port), timeout=5) for _ in range(8)]
    try:
        for s in idle:  # each answered once: the server has accepted all eight (kept alive)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
        with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as extra:
            started = time.monotonic()
            status, headers, data = read_response(extra, timeout=3)
            assert time.monotonic() - started < 1.0
            assert status == 503
            assert headers["retry-after"] == "1"
            st = json.loads(data)
            assert (st["kind"], st["reason"], st["code"]) == ("Status", "ServiceUnavailable", 503)
            assert _closed_within(extra, 1)
    finally:
        for s in idle:
            s.close()
    # Once the idle ones are gone, requests are served again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with httpx.Client(base_url=proc.url, timeout=5) as c:
                if c.get("/openid/v1/jwks").status_code == 200:
                    break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not recover after the idle connections left"
        time.sleep(0.1)


def test_limit_settings_are_validated(issuer_factory: IssuerFactory) -> None:
    data_dir = str(issuer_factory.tmp_path / "d")
    r = issuer_factory.cli("serve", "--data-dir", data_dir, "--max-connections", "0")
    assert r.returncode != 0 and "--max-connections: must be >= 1" in r.stderr, r.stderr
    for line, where in (
        ("body_timeout = 0", "body_timeout"),
        ("body_min_rate = -1", "body_min_rate"),
    ):
        cfg = issuer_factory.tmp_path / "bad.toml"
        cfg.write_text(line + "\n")
        r = issuer_factory.cli("serve", "--data-dir", data_dir, "--config", str(cfg))
        assert r.returncode != 0 and where in r.stderr and "Traceback" not in r.stderr, r.stderr
