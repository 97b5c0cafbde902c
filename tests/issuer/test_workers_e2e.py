"""Issue 9 item 12: ``serve --workers N`` workers end when their supervisor is killed (kill -9),
so the port is free again and a restart on it succeeds. Real processes, real port."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerFactory


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _workers(pid: int, n: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [
            c
            for c in _children(pid)
            if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        if len(workers) >= n:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"supervisor {pid} did not start {n} workers")


def test_workers_die_with_a_killed_supervisor(issuer_factory: IssuerFactory) -> None:
    proc = issuer_factory.start(extra_args=["--workers", "2"])
    assert proc.proc is not None
    workers = _workers(proc.proc.pid, 2)
    try:
        proc.kill()  # kill -9 of the supervisor: no chance to stop its workers itself
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
        # The port is free: a restart on the same port and data dir serves again.
        proc.restart()
        with proc.client() as c:
            assert c.get("/openid/v1/jwks").status_code == 200
    finally:
        for w in workers:  # never leave orphans behind, even when the test fails
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)
