"""kubectl against selector watches and the deprecated watch paths, on SQLite and on Redis.

``kubectl get -l SELECTOR -w`` lists with the selector, then watches from the list's
resourceVersion: a resumed watch. An object that leaves the selector is DELETED and one that
enters it ADDED (kube's cacher, cache_watcher.go convertToWatchEvent). ``kubectl get --raw`` reads
the deprecated ``/api/v1/watch/...`` paths, authorized as verb ``watch``.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's type (tests/kubectl/conftest.py)
    from conftest import Cluster

pytestmark = pytest.mark.slow


def _lines(k: Cluster, *args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = k.popen(*args)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True
    ).start()
    return proc, lines


def _next(lines: queue.Queue[str], want: str, timeout: float = 20) -> list[str]:
    """The next line whose first two columns are ``want`` (EVENT NAME), skipping none."""
    line = lines.get(timeout=timeout)
    assert " ".join(line.split()[:2]) == want, line
    return line.split()


def test_get_with_a_label_selector_watch_sees_objects_enter_and_leave(cluster: Cluster) -> None:
    k = cluster
    k.ok("create", "namespace", "dev")
    for name, team in (("a", "x"), ("b", "y")):
        k.ok("create", "serviceaccount", name, "-n", "dev")
        k.ok("label", "serviceaccount", name, "-n", "dev", f"team={team}")
    proc, lines = _lines(k, "get", "sa", "-n", "dev", "-l", "team=x", "-w", "--output-watch-events")
    try:
        _next(lines, "EVENT NAME")
        _next(lines, "ADDED a")
        k.ok("label", "serviceaccount", "a", "-n", "dev", "team=y", "--overwrite")
        _next(lines, "DELETED a")
        k.ok("label", "serviceaccount", "b", "-n", "dev", "team=x", "--overwrite")
        _next(lines, "ADDED b")
        k.ok("annotate", "serviceaccount", "b", "-n", "dev", "note=1")
        _next(lines, "MODIFIED b")
        k.ok("annotate", "serviceaccount", "a", "-n", "dev", "note=1")  # not in the selector
        k.ok("delete", "serviceaccount", "b", "-n", "dev")
        _next(lines, "DELETED b")
    finally:
        proc.kill()
        proc.wait(10)


def test_get_raw_reads_the_deprecated_watch_paths(cluster: Cluster) -> None:
    k = cluster
    k.ok("create", "namespace", "dev")
    k.ok("create", "serviceaccount", "app", "-n", "dev")
    t0 = time.monotonic()
    out = k.ok("get", "--raw", "/api/v1/watch/namespaces/dev/serviceaccounts/app?timeoutSeconds=1")
    assert time.monotonic() - t0 < 30
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "app")]
    out = k.ok("get", "--raw", "/api/v1/watch/namespaces/dev/serviceaccounts?timeoutSeconds=1")
    names = sorted(json.loads(line)["object"]["metadata"]["name"] for line in out.splitlines())
    assert names == ["app", "default"]
    # The account itself may list but not watch: the deprecated path is a watch (403).
    token = k.ok("create", "token", "app", "-n", "dev").strip()
    k.ok("create", "role", "lister", "-n", "dev", "--verb=get,list", "--resource=serviceaccounts")
    k.ok(
        "create",
        "rolebinding",
        "lister",
        "-n",
        "dev",
        "--role=lister",
        "--serviceaccount=dev:app",
    )
    as_sa = f"--kubeconfig={k.kubeconfig_for(token)}"
    assert "app" in k.ok(as_sa, "get", "sa", "-n", "dev", "-o", "name")
    r = k.run(as_sa, "get", "--raw", "/api/v1/watch/namespaces/dev/serviceaccounts")
    assert r.returncode != 0
    assert 'cannot watch resource "serviceaccounts"' in r.stderr, r.stderr
