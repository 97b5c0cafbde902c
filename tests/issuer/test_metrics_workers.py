"""``/metrics`` reports the whole process group with ``--workers N`` (issuer/http/metrics.py,
"Several workers"): a real ``sa-issuer serve --workers 3``, scraped on fresh connections, and
registries sharing one directory."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from issuer.http.metrics import FLUSH_INTERVAL, Registry

HEALTHZ = re.compile(r'^sa_issuer_http_requests_total\{route="/healthz",code="200"\} (\d+)$', re.M)
STARTED = re.compile(r"^sa_issuer_start_time_seconds (\S+)$", re.M)


def _scrape(url: str) -> str:
    # A new connection each time: the kernel hands it to any worker.
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


def test_every_worker_reports_the_whole_group(issuer_factory: Any) -> None:
    s = issuer_factory.start(extra_args=["--workers", "3"])
    n = 60
    for _ in range(n):
        assert httpx.get(s.url + "/healthz", timeout=10).status_code == 200
    deadline = time.monotonic() + 10 * FLUSH_INTERVAL
    while True:
        m = HEALTHZ.search(_scrape(s.url))
        if m and int(m.group(1)) == n:
            break
        assert time.monotonic() < deadline, m and m.group(0)
        time.sleep(0.2)
    time.sleep(FLUSH_INTERVAL * 1.5)  # every worker has flushed what it served
    workers = set()
    for _ in range(40):
        text = _scrape(s.url)
        m = HEALTHZ.search(text)
        assert m is not None and int(m.group(1)) == n, m and m.group(0)
        started = STARTED.search(text)
        assert started is not None
        workers.add(started.group(1))
    assert len(workers) >= 2  # the answers came from several workers, all with the total


def test_registries_sharing_a_directory_sum_counters(tmp_path: Path) -> None:
    a, b = Registry(), Registry()
    for r, name in ((a, "a"), (b, "b")):
        r.counter("x_total", "X.", ("k",))
        r.share(tmp_path, name)
    a.counter("x_total", "X.", ("k",)).inc(k="1")
    b.counter("x_total", "X.", ("k",)).inc(2, k="1")
    b.counter("x_total", "X.", ("k",)).inc(k="2")
    b.flush()
    text = a.render().decode()  # a flushes itself when scraped
    assert 'x_total{k="1"} 3' in text and 'x_total{k="2"} 1' in text
    # A process that is gone keeps counting: its file stays.
    b.close()
    a.counter("x_total", "X.", ("k",)).inc(k="2")
    assert 'x_total{k="2"} 2' in a.render().decode()
    a.close()
