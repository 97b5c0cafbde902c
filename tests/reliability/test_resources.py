"""File descriptors and memory of a real issuer stay flat across five bursts of thread churn
(issue 9 item 9 at process level, reliability suite).

Each burst opens concurrent invalidation watches; each watch holds a worker thread (and so a
SQLite connection) while it waits. anyio retires a worker thread once it has been idle for
10 s, when the next burst starts, so the bursts are 10 s apart: every burst after the first runs
on new threads. Before the fix each retired thread leaked its connection (fds 24 -> 950 over three
bursts of 150 watches)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from _kube import admin

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py, re-exported here)
    from conftest import IssuerFactory

pytestmark = pytest.mark.reliability

BURSTS = 5
WATCHES = 40
#: anyio's worker-thread idle limit (anyio._backends._asyncio.WorkerThread.MAX_IDLE_TIME), plus
#: a margin.
IDLE_RETIRE = 10.5
WATCH = "/apis/sa-oidc.dev/v1/invalidations?watch=true&timeoutSeconds=1"


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _burst(url: str, headers: dict[str, str]) -> None:
    errors: list[str] = []

    def watch() -> None:
        try:
            with (
                httpx.Client(base_url=url, headers=headers, timeout=10) as c,
                c.stream("GET", WATCH) as r,
            ):
                if r.status_code != 200:
                    errors.append(f"{r.status_code}")
                for _ in r.iter_bytes():
                    pass
        except httpx.HTTPError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=watch) for _ in range(WATCHES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[:5]


def test_fds_and_rss_stay_flat_across_bursts_of_thread_churn(
    issuer_factory: IssuerFactory,
) -> None:
    proc = issuer_factory.start()
    assert proc.proc is not None
    pid = proc.proc.pid
    headers = admin(proc.admin_token)
    fds: list[int] = []
    rss: list[int] = []
    for i in range(BURSTS):
        if i:
            time.sleep(IDLE_RETIRE)  # the last burst's threads retire when this one starts
        _burst(proc.url, headers)
        time.sleep(0.3)
        fds.append(_fds(pid))
        rss.append(_rss_kib(pid))
    print(f"fds after each burst: {fds}; RSS (KiB): {rss}")
    # From the second burst on, every burst runs on fresh threads: nothing may accumulate (a
    # leak of one connection per thread adds about 70 fds and 4 MB per burst). The slack covers
    # a few more or fewer threads being alive at the end of a burst.
    assert fds[-1] - fds[1] <= 20, fds
    assert rss[-1] - rss[1] <= 8 * 1024, rss
