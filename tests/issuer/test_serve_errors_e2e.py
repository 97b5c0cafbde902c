"""Issue 9 item 14: clear one-line errors instead of tracebacks, on the real ``sa-issuer serve``.

- a data dir that exists but cannot be written (chmod as a normal user; ``chattr +i`` as root,
  whom permission bits do not stop);
- a port already in use fails before anything is written to the data dir;
- ``--tls-cert`` pointing nowhere names the path;
- a client that disconnects mid-body is neither an ERROR with a traceback nor a 500 in the metrics;
- a store outage logs one line when it starts and one when it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _services import RedisServer, free_port

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerFactory


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[str]:
    """Make ``path`` unwritable for the issuer process: ``chattr +i`` as root (root ignores mode
    bits), ``chmod a-w`` otherwise. Yields the mechanism's name; always undone."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        assert chattr, "chattr is missing (apt-get install e2fsprogs)"
        subprocess.run([chattr, "+i", str(path)], check=True)
        try:
            yield "immutable"
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "read-only"
        finally:
            path.chmod(mode)


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sa-issuer: error: "), stderr
    return lines[0]


def test_unwritable_data_dir_is_one_clear_line(issuer_factory: IssuerFactory) -> None:
    # An empty data dir, and one that a previous run filled (database, KEK, token, audit log).
    empty = issuer_factory.tmp_path / "empty"
    empty.mkdir(mode=0o700)
    used = issuer_factory.start()
    used.stop()
    for data_dir in (empty, used.data_dir):
        with unwritable(data_dir):
            r = issuer_factory.cli(
                "serve",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{free_port()}",
                timeout=30,
            )
        assert r.returncode == 1, r.stderr
        line = _one_error_line(r.stderr)
        assert str(data_dir) in line and "not writable" in line, line
    assert sorted(p.name for p in empty.iterdir()) == []


def test_port_in_use_fails_before_anything_is_written(issuer_factory: IssuerFactory) -> None:
    data_dir = issuer_factory.tmp_path / "never-written"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = issuer_factory.cli(
            "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", timeout=30
        )
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in line, line
    assert not data_dir.exists(), sorted(p.name for p in data_dir.iterdir())


def test_missing_tls_file_is_named(issuer_factory: IssuerFactory) -> None:
    missing = issuer_factory.tmp_path / "nowhere" / "tls.crt"
    key = issuer_factory.tmp_path / "tls.key"
    key.write_text("not used\n")
    data_dir = issuer_factory.tmp_path / "d"
    r = issuer_factory.cli(
        "serve",
        *("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}"),
        *("--tls-cert", str(missing), "--tls-key", str(key)),
        timeout=30,
    )
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert f"--tls-cert: no such file: {missing}" in line, line
    assert not data_dir.exists()


def test_client_disconnect_mid_body_is_not_an_error(issuer_factory: IssuerFactory) -> None:
    proc = issuer_factory.start()
    token = proc.admin_token
    head = (
        "POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as s:
            s.sendall(head.encode() + b'{"metadata": ')
            time.sleep(0.3)  # the handler is now waiting for the rest of the body
    time.sleep(0.5)
    with proc.client(headers={"Authorization": f"Bearer {token}"}) as c:
        metrics = c.get("/metrics").text
    assert 'code="500"' not in metrics, [ln for ln in metrics.splitlines() if "500" in ln]
    assert 'code="499"' in metrics  # counted as "client closed request"
    err = proc.stderr()
    assert "Traceback" not in err and "ERROR" not in err, err


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start (the session's is shared)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_store_outage_logs_one_line_down_and_one_up(
    issuer_factory: IssuerFactory, own_redis: RedisServer
) -> None:
    proc = issuer_factory.start(
        store=own_redis.url,
        config={"rotation_check_interval": 0.3},
        env={"SA_ISSUER_LOG_LEVEL": "info"},
    )
    own_redis.stop()
    with proc.client(headers={"Authorization": f"Bearer {proc.admin_token}"}) as c:
        for _ in range(5):  # requests during the outage: 503, no extra log lines
            assert c.get("/api/v1/namespaces").status_code == 503
    time.sleep(3)  # about ten rotation checks against the dead store
    own_redis.start()
    deadline = time.monotonic() + 15
    while "store reachable again" not in proc.stderr():
        assert time.monotonic() < deadline, proc.stderr()
        time.sleep(0.2)
    err = proc.stderr()
    assert "Traceback" not in err, err
    down = [ln for ln in err.splitlines() if "store unavailable" in ln]
    up = [ln for ln in err.splitlines() if "store reachable again" in ln]
    assert len(down) == 1 and len(up) == 1, err
    assert "WARNING" in down[0] and "redis" in down[0], down
