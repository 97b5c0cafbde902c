"""Outside review (issue 9), item 7: the stream sees a store that was replaced or went back.

Real Redis servers and a real stream server on a socket. The follower keeps a seq; a store that
lost its events (flushed, replaced) or was restored to an older copy of itself (what a failover
to a lagging replica looks like) numbers new events with seqs the follower already saw. Before the
fix the follower asked for "after its seq", got only the newest of them, and stayed fresh while
missing the others forever.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from _services import RedisServer

from issuer.store.redis_store import RedisStore
from verifier._stream import StreamFollower
from verifier.identity import ServiceAccountIdentity

from ._helpers import ServerThread, pod_deleted, wait_until
from .conftest import ADMIN, make_app

PATH = "/apis/sa-oidc.dev/v1/invalidations"


def _invalid(f: StreamFollower, uid: str) -> bool:
    return f.why_invalid(ServiceAccountIdentity("ns", "sa", pod_uid=uid)) is not None


def _follower(url: str) -> StreamFollower:
    f = StreamFollower(url, ADMIN, heartbeat=0.2, backoff_max=0.2)
    f.start()
    assert f.wait_synced(10)
    return f


def _holds_all(f: StreamFollower, uids: list[str]) -> bool:
    return all(_invalid(f, u) for u in uids)


@pytest.fixture
def redis_dir(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server whose ``dump.rdb`` survives a restart (``SAVE`` = a snapshot)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_flushed_redis_under_a_live_follower_is_resynced(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    other = RedisStore.from_url(redis_url)  # another replica: writes the follower never saw
    server = ServerThread(make_app(store)).start()
    f = _follower(server.url)
    try:
        for i in range(5):
            store.append_event(pod_deleted(f"old-{i}"))
        assert wait_until(lambda: _holds_all(f, [f"old-{i}" for i in range(5)]), 5)
        assert f.status().last_seq == 5
        # The store loses everything (FLUSHDB: a replaced Redis) and another replica appends six
        # new events at once: seqs 1..6, past the follower's 5.
        with redis.Redis.from_url(redis_url) as r:
            r.flushdb()
        new = [f"new-{i}" for i in range(6)]
        for uid in new:
            other.append_event(pod_deleted(uid))
        assert wait_until(lambda: _holds_all(f, new), 5), "events of the new history were lost"
        assert not _invalid(f, "old-0")  # the state is the new store's, not a mix
        status = f.status()
        assert status.resyncs >= 1 and status.epoch == other.read_events(0).epoch != ""
    finally:
        f.close()
        server.stop()
        store.close()
        other.close()


def test_redis_restored_to_an_older_snapshot_is_detected(redis_dir: RedisServer) -> None:
    """A failover to a lagging replica, made real: the same Redis restarted from an older
    ``dump.rdb``. Its epoch is the same (it was in the snapshot); only the events differ."""
    store = RedisStore.from_url(redis_dir.url)
    server = ServerThread(make_app(store)).start()
    f = _follower(server.url)
    try:
        for i in range(3):
            store.append_event(pod_deleted(f"kept-{i}"))
        # Once read, the store has its epoch (the first read after the first seq makes it).
        assert wait_until(lambda: _holds_all(f, ["kept-2"]), 5)
        with redis_dir.client() as r:
            r.save()  # the "replica" stops here, at seq 3
        for i in range(3):
            store.append_event(pod_deleted(f"lost-{i}"))
        assert wait_until(lambda: _holds_all(f, ["kept-2", "lost-2"]), 5)
        before = store.read_events(0)
        # The follower is away while the store is rolled back and overtakes its seq (6): the
        # issuer restarts too, so nothing in any process remembers the lost events.
        server.stop()
        redis_dir.stop()
        redis_dir.start()  # loads the snapshot: seq 3, same epoch
        writer = RedisStore.from_url(redis_dir.url)
        try:
            new = [f"new-{i}" for i in range(4)]  # seqs 4..7
            for uid in new:
                writer.append_event(pod_deleted(uid))
            assert writer.read_events(0).last_seq == 7
        finally:
            writer.close()
        server.start()
        assert wait_until(lambda: _holds_all(f, new), 8), "events 4..6 of the new history lost"
        assert f.status().resyncs >= 1
        assert not _invalid(f, "lost-0")  # what the store lost is gone from the state too
        assert store.read_events(0).epoch == before.epoch  # the snapshot's: epochs cannot tell
    finally:
        f.close()
        server.stop()
        store.close()


def test_a_live_watch_ends_when_its_last_event_is_replaced(tmp_path: Path) -> None:
    """The issuer and the follower's connection stay up; Redis goes back to an older snapshot in
    place (DEBUG RELOAD NOSAVE, no connection drops: what clients of a replica promoted behind a
    proxy see) and another replica overtakes the watch's position at once."""
    redis_server = RedisServer(tmp_path / "redis", extra_args=["--enable-debug-command", "yes"])
    redis_server.start()
    store = RedisStore.from_url(redis_server.url)
    server = ServerThread(make_app(store, heartbeat=0.5)).start()
    f = _follower(server.url)
    writer = RedisStore.from_url(redis_server.url)
    try:
        store.append_event(pod_deleted("kept"))
        assert wait_until(lambda: _holds_all(f, ["kept"]), 5)
        with redis_server.client() as r:
            r.save()
        store.append_event(pod_deleted("lost"))
        assert wait_until(lambda: _holds_all(f, ["kept", "lost"]), 5)
        with redis_server.client() as r:
            r.execute_command("DEBUG", "RELOAD", "NOSAVE")  # back to seq 1, same epoch
        for uid in ("new-a", "new-b"):  # seqs 2 and 3: the watch has sent 2 ("lost")
            writer.append_event(pod_deleted(uid))
        assert wait_until(lambda: _holds_all(f, ["new-a", "new-b"]), 8), "new-a was lost"
        assert not _invalid(f, "lost")
        assert f.status().resyncs >= 1
    finally:
        f.close()
        server.stop()
        store.close()
        writer.close()
        redis_server.stop()


class _SilentWatch(http.server.BaseHTTPRequestHandler):
    """Lists fine; answers every watch with 200 and headers, then never a line."""

    def do_GET(self) -> None:
        if "watch=true" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            time.sleep(3)
            return
        body = json.dumps(
            {
                "kind": "InvalidationList",
                "apiVersion": "sa-oidc.dev/v1",
                "metadata": {"lastSeq": 0, "oldestSeq": 0},
                "items": [],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_follower_is_not_fresh_while_no_line_arrives() -> None:
    """A watch answered 200 proves nothing: freshness comes from lines only. Before the fix each
    (re)connection counted as contact, so a server that answers and then stays silent kept the
    follower fresh forever."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SilentWatch)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    f = StreamFollower(f"http://127.0.0.1:{server.server_address[1]}", ADMIN, heartbeat=0.2)
    try:
        f.start()
        assert f.wait_synced(5)
        time.sleep(2.5)  # a few watch connections answered 200, never a line
        assert f.status().reconnects >= 1
        age = f.age()
        assert age is not None and age >= 2.4, age  # last contact: the list, 2.5 s ago
    finally:
        f.close(timeout=1)
        server.shutdown()
        server.server_close()


def test_watch_and_list_name_the_epoch_and_the_retention_leeway(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    server = ServerThread(make_app(store)).start()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    try:
        seq = store.append_event(pod_deleted("x"))
        page = store.read_events(0)
        with httpx.Client(base_url=server.url, headers=headers, timeout=5) as c:
            meta = c.get(PATH).json()["metadata"]
            assert meta["epoch"] == page.epoch and meta["retentionLeeway"] == 600.0
            # Another epoch, or another event at our seq: 410 before any line.
            gone = c.get(PATH, params={"after": seq, "watch": "true", "epoch": "0123abcd"})
            assert gone.status_code == 410 and "event history changed" in gone.json()["message"]
            params = {"after": seq, "watch": "true", "afterTime": "12345.5"}
            gone = c.get(PATH, params=params)
            assert gone.status_code == 410 and "not the one the client holds" in gone.text
            # The next page of a list, likewise.
            gone = c.get(PATH, params={"after": seq, "afterTime": "12345.5"})
            assert gone.status_code == 410 and "not the one the client holds" in gone.text
            held = repr(page.events[0].data["time"])
            assert c.get(PATH, params={"after": seq, "afterTime": held}).status_code == 200
            bad = c.get(PATH, params={"after": seq, "watch": "true", "epoch": "a b"})
            assert bad.status_code == 400
            params = {
                "after": seq,
                "watch": "true",
                "epoch": page.epoch,
                "afterTime": repr(page.events[0].data["time"]),
                "timeoutSeconds": "1",
            }
            lines = [line for line in c.get(PATH, params=params).text.splitlines() if line]
        beat = json.loads(lines[0])
        assert beat["type"] == "HEARTBEAT" and beat["lastSeq"] == seq and beat["seq"] == seq
        assert beat["epoch"] == page.epoch and beat["retentionLeeway"] == 600.0
    finally:
        server.stop()
        store.close()
