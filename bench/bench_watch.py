"""kubectl paths: watch fan-out and the cost of a PATCH, against a real ``sa-issuer serve``.

    python bench/bench_watch.py [--watchers 1000] [--rounds 5] [--calls 400] [--store URL]

``--store`` takes any store URL (``redis://...``, ``sqlite?synchronous=normal``); default: the
embedded SQLite file in a temporary data dir (``TMPDIR=/dev/shm`` puts it on tmpfs).

1. **fan-out** — ``--watchers`` concurrent ``GET /api/v1/namespaces/bench/pods?watch=true``
   streams on one worker (raw asyncio sockets: the client must not be the bottleneck), then one
   ``DELETE`` of a pod; for each watcher the time from sending the DELETE to reading its
   ``DELETED`` event. ``--rounds`` deletes, p50/p99/max over every (watcher, round). The anchor,
   in the same run: the same with a single watcher. Goal: p99 <= 1 s with 1,000 watchers.
2. **PATCH vs GET** — sequential calls from one client over loopback, interleaved: ``GET`` of a
   ServiceAccount, then a ``PATCH`` (strategic merge patch, as ``kubectl label``/``patch`` send)
   of the same object changing one label, each a real write. p50 and mean of each, and the
   ratio. Goal: PATCH <= 1.5x GET.

   To show where a PATCH's time goes, the same loop also sends the PATCH with ``dryRun=All``
   (every step but the store write), and the run measures, on the SQLite file's own file
   system, the **device flush** a durable commit waits for (20 KB written, then ``fdatasync``:
   what WAL + ``synchronous=FULL`` does at each COMMIT). With our own issuer it also reads the
   server's CPU time over a block of GETs and one of PATCHes (CPU per request).

Not a test; exits 0. The issuer is 1 worker on SQLite (``--store`` for Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _issuer import NS, SA, Issuer, pct

DELETED = b'"type":"DELETED"'


async def _open_watch(
    host: str, port: int, token: str, rv: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    path = f"/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"watch refused: {head[:200]!r}")
    return reader, writer


async def _until_deleted(reader: asyncio.StreamReader, name: bytes) -> float:
    buf = b""
    needle = b'"name":"' + name + b'"'
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("watch ended early")
        buf += chunk
        # Events are one JSON line each; look for the DELETED line of this pod.
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if DELETED in line and needle in line:
                return time.perf_counter()


async def fan_out(iss: Issuer, watchers: int, rounds: int) -> list[float]:
    host, port = iss.url.removeprefix("http://").split(":")
    latencies: list[float] = []
    for r in range(rounds):
        name = f"fan-{watchers}-{r}"
        pod = await asyncio.to_thread(iss.pod, name)
        rv = pod["metadata"]["resourceVersion"]
        conns = []
        for i in range(0, watchers, 100):  # open in bursts: the accept queue is finite
            conns += await asyncio.gather(
                *(
                    _open_watch(host, int(port), iss.admin_token, rv)
                    for _ in range(min(100, watchers - i))
                )
            )
        await asyncio.sleep(0.5)  # every stream subscribed and idle
        waits = [asyncio.create_task(_until_deleted(rd, name.encode())) for rd, _ in conns]
        t0 = time.perf_counter()
        await asyncio.to_thread(iss.delete_pod, name)
        done = await asyncio.gather(*waits)
        latencies += [t - t0 for t in done]
        for _, w in conns:
            w.close()
        await asyncio.sleep(0.3)
    return latencies


def patch_vs_get(iss: Issuer, calls: int) -> dict[str, list[float]]:
    """Interleaved GET, PATCH with dryRun=All, PATCH: each one's latency."""
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}"
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    out: dict[str, list[float]] = {"get": [], "dry": [], "patch": []}
    for i in range(calls + 20):
        body = b'{"metadata":{"labels":{"bench":"%d"}}}' % i
        t0 = time.perf_counter()
        r = iss.c.get(path)
        t1 = time.perf_counter()
        d = iss.c.patch(
            path, content=body, headers=headers, params={"fieldManager": "bench", "dryRun": "All"}
        )
        t2 = time.perf_counter()
        p = iss.c.patch(path, content=body, headers=headers, params={"fieldManager": "bench"})
        t3 = time.perf_counter()
        if r.status_code != 200 or d.status_code != 200 or p.status_code != 200:
            raise SystemExit(f"GET {r.status_code} / PATCH {d.status_code} {p.status_code}")
        if i >= 20:  # warm-up
            out["get"].append(t1 - t0)
            out["dry"].append(t2 - t1)
            out["patch"].append(t3 - t2)
    return out


def cpu_per_request(iss: Issuer, calls: int) -> tuple[float, float] | None:
    """Server CPU (ms) per GET and per PATCH, over one block of each."""
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}"
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    per: list[float] = []
    for patch in (False, True):
        c0 = iss.cpu_seconds()
        if c0 is None:
            return None
        for i in range(calls):
            if patch:
                body = b'{"metadata":{"labels":{"cpu":"%d"}}}' % i
                iss.c.patch(path, content=body, headers=headers, params={"fieldManager": "bench"})
            else:
                iss.c.get(path)
        c1 = iss.cpu_seconds()
        assert c1 is not None
        per.append((c1 - c0) / calls * 1000)
    return per[0], per[1]


def device_flush(directory: Path, n: int = 400, pages: int = 5) -> list[float]:
    """``fdatasync`` after writing ``pages`` 4 KiB frames at advancing offsets of a 4 MiB file
    in ``directory``: the wait a WAL commit with synchronous=FULL adds, without SQLite."""
    path = directory / "flush-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 4 << 20
        os.pwrite(fd, b"\0" * size, 0)
        os.fsync(fd)
        frame, offset, out = os.urandom(4096 + 24), 0, []
        for _ in range(n):
            for _ in range(pages):
                os.pwrite(fd, frame, offset)
                offset = (offset + len(frame)) % (size - len(frame))
            t0 = time.perf_counter()
            os.fdatasync(fd)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        os.close(fd)
        path.unlink()


def _ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1000:7.2f} ms  p99 {pct(values, 99) * 1000:7.2f} ms  "
        f"max {max(values) * 1000:7.2f} ms  (n={len(values)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    iss = Issuer(store=args.store)
    try:
        print(f"store: {args.store or 'sqlite'}; 1 worker")
        one = asyncio.run(fan_out(iss, 1, args.rounds * 4))
        print(f"fan-out, 1 watcher (anchor):       {_ms(one)}")
        many = asyncio.run(fan_out(iss, args.watchers, args.rounds))
        print(f"fan-out, {args.watchers} watchers:          {_ms(many)}")
        print(f"  p99 goal <= 1 s: {'met' if pct(many, 99) <= 1.0 else 'NOT met'}")
        lat = patch_vs_get(iss, args.calls)
        gets, patches = lat["get"], lat["patch"]
        print(f"GET  ServiceAccount:                {_ms(gets)}")
        print(f"PATCH ServiceAccount, dryRun=All:   {_ms(lat['dry'])}")
        print(f"PATCH ServiceAccount (SMP label):   {_ms(patches)}")
        ratio50 = pct(patches, 50) / pct(gets, 50)
        ratio_mean = statistics.mean(patches) / statistics.mean(gets)
        print(
            f"PATCH / GET: p50 {ratio50:.2f}x, mean {ratio_mean:.2f}x "
            f"(goal <= 1.5x: {'met' if ratio50 <= 1.5 else 'NOT met'}); "
            f"dry-run PATCH / GET: p50 {pct(lat['dry'], 50) / pct(gets, 50):.2f}x"
        )
        if iss.data_dir is not None:
            flush = device_flush(iss.data_dir)
            print(
                f"device flush (20 KB + fdatasync in the data dir): {_ms(flush)}; "
                f"p50 = {pct(flush, 50) / pct(gets, 50):.2f}x a GET"
            )
        cpu = cpu_per_request(iss, args.calls)
        if cpu is not None:
            print(
                f"server CPU per request: GET {cpu[0]:.3f} ms, PATCH {cpu[1]:.3f} ms "
                f"({cpu[1] / cpu[0]:.2f}x)"
            )
    finally:
        iss.close()


if __name__ == "__main__":
    main()
