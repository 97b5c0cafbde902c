"""Scale: how each hot path's cost grows with the data, as ratios to the smallest size, same run.

    python bench/bench_scale.py [--scales 1,100,1000] [--stores sqlite,redis] [--requests 300]
                                [--redis-url redis://127.0.0.1:6391/3]

For each store (SQLite; Redis — a throwaway ``redis-server`` on a free port unless
``--redis-url``) and each scale, one real ``sa-issuer serve`` (1 worker) on its own store (file,
or Redis prefix), seeded in bulk through the store API (bench/_seed.py). At 1x: 100 pods, 20
service accounts, 10 RBAC bindings, 100 revoked token ids, 100 deleted objects (so 1000x =
100,000 pods, 20,000 service accounts, 10,000 bindings, 100,000 + 100,000 invalidation events).
The paths:

- **rbac** — TokenRequest *made by a service account*, allowed by a RoleBinding: authentication
  (the TokenReview checks) + the RBAC decision + minting. The issue's 36x at 4,000 bindings.
- **tokenrequest** — pod-bound TokenRequest by the admin token (no RBAC store read).
- **tokenreview** — TokenReview of a valid pod-bound token (every online check).
- **list page** — ``GET /api/v1/pods?limit=25&continue=...``: a page from the middle.
- **selector page** — ``labelSelector=app=a3`` (a tenth match), ``limit=10``: the first page;
  a pair that common is scanned for (``issuer.api.listing.INDEX_RATIO``).
- **rare selector** — ``labelSelector=shard=s7`` (a thousandth match), ``limit=1`` (the 1x
  collection holds one such pod): served by the label index (issuer/label_index.py), which reads
  only the pods carrying ``shard=s7``; the first query of a process with a selector requiring a
  value builds the index for the kind (printed separately).
- **rare, no required value** — ``shard in (s7,s7x)``, ``limit=10``: the same pods, but no
  single value is required, so no index: the scan is bounded by
  ``issuer.api.listing.SCAN_BUDGET`` objects per request, grows until that bound, then stays
  flat (short pages with a continue token).
- **hybrid check** — ``HybridVerifier.verify`` of a valid token while its follower holds every
  event (in process; ``OIDCVerifier.verify`` on the same token is printed as the anchor).
- **follower resync** — a new follower listing every retained event, seconds (goal: 100,000 in
  under 5 s); on the largest store also the **watch catch-up** of ``100 x scale`` events
  appended at once to a connected follower, and the follower's memory per entry (tracemalloc).

The scales are measured in interleaved rounds, so machine load drifts alike for all of them.
HTTP paths: median over ``--rounds`` of the p50 of ``--requests`` sequential requests on one
keep-alive connection (pages: a third of that; the rare selector a thirtieth). Pages hold as
many items at every scale (a 1x collection fills them too). The result is each path's cost as a
ratio to the smallest scale; the goal is <= 1.2x (hybrid per-check <= 1.1x). Not a test; exits 0
(1 if a goal is missed).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _issuer import AUD, NS, SA, Issuer, free_port, pct
from _seed import Sizes, grow, pod

from issuer.api.listing import SCAN_BUDGET, encode_continue
from issuer.store import Store, open_store
from verifier._stream import InvalidationState, StreamFollower
from verifier.hybrid import HybridVerifier
from verifier.remote import OIDCVerifier

PATHS = (
    "rbac (TokenRequest by an SA)",
    "tokenrequest (admin)",
    "tokenreview",
    "list page (limit=25)",
    "selector page (1/10, limit=10)",
    "rare selector (1/1000, lim 1)",
    "rare, no required value",
    "hybrid check",
    "follower resync",
)
RARE = "rare selector (1/1000, lim 1)"
RARE_SCAN = "rare, no required value"
RESYNC = "follower resync"
HYBRID = "hybrid check"


def http_p50(call: Callable[[], httpx.Response], requests: int, rounds: int) -> float:
    """Median over rounds of the p50 latency (ms), after 10 warm-up calls."""
    for _ in range(10):
        r = call()
        if r.status_code >= 300:
            raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
    p50s = []
    for _ in range(rounds):
        lat = []
        for _ in range(requests):
            t0 = time.perf_counter()
            call()
            lat.append(time.perf_counter() - t0)
        p50s.append(pct(lat, 50) * 1e3)
    return statistics.median(p50s)


def per_check_us(verify: Callable[[str], Any], token: str, n: int, rounds: int) -> float:
    for _ in range(200):
        verify(token)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            verify(token)
        out.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(out)


class Redis:
    """A throwaway redis-server (no persistence) on a free port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (or pass --redis-url)")
        self.dir = tempfile.TemporaryDirectory(prefix="sa-bench-redis-")
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", self.dir.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        import redis

        while True:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.dir.cleanup()


def setup_caller(iss: Issuer) -> str:
    """A service account ``caller`` allowed to mint tokens for ``app`` by a RoleBinding; its
    API token."""
    role = {
        "metadata": {"name": "minter"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}],
    }
    binding = {
        "metadata": {"name": "caller-mints"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "minter"},
        "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": NS}],
    }  # fmt: skip
    for path, body in (
        (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "caller"}}),
        (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles", role),
        (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings", binding),
    ):
        r = iss.c.post(path, json=body)
        if r.status_code != 201:
            raise SystemExit(f"setup {path}: {r.status_code} {r.text}")
    r = iss.c.post(f"/api/v1/namespaces/{NS}/serviceaccounts/caller/token", json={})
    tok: str = r.json()["status"]["token"]
    return tok


def last_seq(store: Store) -> int:
    return store.read_events(0, limit=0).last_seq


def follower_resync(iss: Issuer) -> tuple[float, int]:
    """Seconds for a new follower to list every retained event; entries held."""
    f = StreamFollower(iss.url, iss.admin_token, heartbeat=1.0)
    t0 = time.perf_counter()
    f.start()
    try:
        if not f.wait_synced(120):
            raise SystemExit("follower did not sync in 120 s")
        return time.perf_counter() - t0, f.status().entries
    finally:
        f.close()


def follower_memory(iss: Issuer) -> tuple[float, int]:
    """Bytes per entry a synced follower holds (tracemalloc, whole process)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    f = StreamFollower(iss.url, iss.admin_token, heartbeat=1.0)
    f.start()
    try:
        f.wait_synced(600)
        entries = f.status().entries
        held = tracemalloc.get_traced_memory()[0] - base
        return held / max(1, entries), entries
    finally:
        f.close()
        tracemalloc.stop()


class Reconnecting(StreamFollower):
    """A follower that was in sync (``state``) and comes back after missing everything since: it
    resumes the watch from ``state.last_seq`` (the backlog first), as a StreamFollower does after
    a dropped connection, instead of listing from scratch."""

    def __init__(self, base_url: str, token: str, state: InvalidationState) -> None:
        super().__init__(base_url, token, heartbeat=1.0)
        self._resume_state = state

    def _resync(self) -> None:
        with self._lock:
            self._state = self._resume_state
            self._synced = True
            self._touch()
        self._synced_event.set()


def reconnect_catch_up(iss: Issuer, state: InvalidationState, target: int) -> float:
    """Seconds for a follower resuming from ``state`` to hold every event up to ``target``."""
    f = Reconnecting(iss.url, iss.admin_token, state)
    t0 = time.perf_counter()
    f.start()
    try:
        while f.status().last_seq < target:
            if time.perf_counter() - t0 > 120:
                raise SystemExit("reconnecting follower did not catch up in 120 s")
            time.sleep(0.005)
        return time.perf_counter() - t0
    finally:
        f.close()


def watch_catch_up(iss: Issuer, store: Store, n: int) -> tuple[float, float, float]:
    """(seconds the bulk append of ``n`` events took, seconds from its end until a connected
    follower had them all — it receives them over its watch while they are written —, seconds
    a follower that missed them all takes to catch up when it reconnects)."""
    f = StreamFollower(iss.url, iss.admin_token, heartbeat=1.0)
    f.start()
    try:
        f.wait_synced(120)
        with f._lock:
            before = copy.deepcopy(f._state)  # what a follower in sync now would hold
        exp = int(time.time()) + 86400
        t_append = time.perf_counter()
        for lo in range(0, n, 5000):
            store.append_events(
                [{"type": "TokenRevoked", "jti": f"catchup-{i}", "exp": exp}
                 for i in range(lo, min(n, lo + 5000))]
            )  # fmt: skip
        target = last_seq(store)
        t0 = time.perf_counter()
        appended = t0 - t_append
        while f.status().last_seq < target:
            if time.perf_counter() - t0 > 120:
                raise SystemExit("follower did not catch up in 120 s")
            time.sleep(0.005)
        connected = time.perf_counter() - t0
    finally:
        f.close()
    return appended, connected, reconnect_catch_up(iss, before, target)


class Site:
    """One issuer and its store, seeded to one scale; the handles the measurements use."""

    def __init__(self, url: str, scale: int, sizes: Sizes) -> None:
        self.scale = scale
        self.iss = Issuer(url)
        self._dir = tempfile.TemporaryDirectory(prefix="sa-bench-scale-")
        self.store = open_store(url, Path(self._dir.name))
        caller = setup_caller(self.iss)
        probe = self.iss.pod("probe")
        self.probe_token = self.iss.token(probe)
        ref = {"kind": "Pod", "apiVersion": "v1", "name": "probe",
               "uid": probe["metadata"]["uid"]}  # fmt: skip
        self.as_caller = {"Authorization": f"Bearer {caller}"}
        self.mint_body = {"spec": {"audiences": [AUD], "expirationSeconds": 600}}
        self.bound_body = {"spec": {**self.mint_body["spec"], "boundObjectRef": ref}}
        self.review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": self.probe_token, "audiences": [AUD]}}  # fmt: skip
        self.seeded = grow(self.store, sizes, 0, scale, NS)
        mid = pod(sizes.pods * scale // 2)
        self.cont = encode_continue((mid[0], mid[1]), True, 1)
        self.hybrid: HybridVerifier | None = None

    def calls(self) -> dict[str, tuple[Callable[[], httpx.Response], int]]:
        """Each HTTP path's call, and the share of --requests it gets."""
        c = self.iss.c
        mint = f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token"
        review = "/apis/authentication.k8s.io/v1/tokenreviews"
        return {
            PATHS[0]: (lambda: c.post(mint, json=self.mint_body, headers=self.as_caller), 1),
            PATHS[1]: (lambda: c.post(mint, json=self.bound_body), 1),
            PATHS[2]: (lambda: c.post(review, json=self.review), 1),
            PATHS[3]: (
                lambda: c.get("/api/v1/pods", params=LIST_PAGE | {"continue": self.cont}),
                3,
            ),
            PATHS[4]: (lambda: c.get("/api/v1/pods", params=SELECTOR_PAGE), 3),
            RARE: (lambda: c.get("/api/v1/pods", params=RARE_PAGE), 3),
            RARE_SCAN: (lambda: c.get("/api/v1/pods", params=RARE_SCAN_PAGE), 30),
        }

    def close(self) -> None:
        if self.hybrid is not None:
            self.hybrid.close()
        self.store.close()
        self.iss.close()
        self._dir.cleanup()


#: Page sizes a 1x collection (100 pods, 10 with app=a3) fills too, so every scale returns the same
#: number of items.
LIST_PAGE = {"limit": "25"}
SELECTOR_PAGE = {"limit": "10", "labelSelector": "app=a3"}
#: One item: the 1x collection has one pod with shard=s7.
RARE_PAGE = {"limit": "1", "labelSelector": "shard=s7"}
#: The same pods, but a selector with no single required value: no index, the bounded scan.
RARE_SCAN_PAGE = {"limit": "10", "labelSelector": "shard in (s7,s7x)"}


def run_store(kind: str, urls: list[str], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """Seed one site per scale, then measure them in interleaved rounds (machine load drifts
    alike for every scale)."""
    sizes = Sizes()
    results: dict[str, dict[int, float]] = {p: {} for p in PATHS}
    extra: dict[str, float] = {}
    sites: list[Site] = []
    try:
        for scale, url in zip(args.scales, urls, strict=True):
            site = Site(url, scale, sizes)
            sites.append(site)
            print(
                f"  {kind} {scale}x: seeded in {site.seeded:.1f} s ({sizes.pods * scale} pods,"
                f" {sizes.service_accounts * scale} SAs, {sizes.bindings * scale} bindings,"
                f" {(sizes.revoked + sizes.deleted) * scale} events)",
                flush=True,
            )
        samples: dict[str, dict[int, list[float]]] = {
            p: {s: [] for s in args.scales} for p in PATHS
        }
        for site in sites:
            # The first selective query of a process builds its label index for the kind.
            t0 = time.perf_counter()
            site.iss.c.get("/api/v1/pods", params=RARE_PAGE)
            extra[f"index build {site.scale}x"] = time.perf_counter() - t0
            samples[RESYNC][site.scale].append(follower_resync(site.iss)[0])
            site.hybrid = HybridVerifier(
                site.iss.issuer, [AUD], bearer_token=site.iss.admin_token, insecure_allow_http=True
            )
            if not site.hybrid.wait_synced(120):
                raise SystemExit("hybrid verifier did not sync")
            extra[f"follower entries {site.scale}x"] = site.hybrid.status().entries
        oidc = OIDCVerifier(sites[0].iss.issuer, [AUD], insecure_allow_http=True)
        offline: list[float] = []
        for _ in range(args.rounds):
            for site in sites:
                for path, (call, share) in site.calls().items():
                    samples[path][site.scale].append(
                        http_p50(call, max(10, args.requests // share), 1)
                    )
                assert site.hybrid is not None
                samples[HYBRID][site.scale].append(
                    per_check_us(site.hybrid.verify, site.probe_token, 4000, 1)
                )
                offline.append(per_check_us(oidc.verify, sites[0].probe_token, 4000, 1))
        oidc.close()
        for path in PATHS:
            for scale in args.scales:
                results[path][scale] = statistics.median(samples[path][scale])
        extra["offline check"] = statistics.median(offline)
        big = sites[-1]
        extra["append s"], extra["watch catch-up s"], extra["reconnect s"] = watch_catch_up(
            big.iss, big.store, sizes.revoked * big.scale
        )
        extra["watch catch-up events"] = sizes.revoked * big.scale
        extra["bytes per entry"], extra["memory entries"] = follower_memory(big.iss)
    finally:
        for site in sites:
            site.close()
    report(kind, args.scales, results, extra)
    return results


def report(
    kind: str, scales: list[int], results: dict[str, dict[int, float]], extra: dict[str, float]
) -> None:
    small = scales[0]
    head = "".join(f"{f'{s}x':>11}" for s in scales)
    ratios = "".join(f"{f'{s}x/{small}x':>10}" for s in scales[1:])
    print(f"\n{kind}: cost per call at each scale, and ratios to {small}x")
    print(f"  {'path':<30}{head}{ratios}")
    for path in PATHS:
        row = results[path]
        unit = "s" if path == RESYNC else ("us" if path == HYBRID else "ms")
        vals = "".join(f"{row[s]:>8.3f} {unit:<2}" for s in scales)
        rats = "".join(f"{row[s] / row[small]:>9.2f}x" for s in scales[1:])
        print(f"  {path:<30}{vals}{rats}")
    print(f"  anchor: OIDCVerifier.verify (offline, same rounds) {extra['offline check']:.1f} us")
    entries = "  ".join(f"{s}x {int(extra[f'follower entries {s}x'])}" for s in scales)
    print(f"  follower entries: {entries}")
    print(
        f"  watch catch-up: {int(extra['watch catch-up events'])} events appended in bulk"
        f" ({extra['append s']:.2f} s) were all at a connected follower"
        f" {extra['watch catch-up s']:.2f} s after the append ended; a follower that missed them"
        f" caught up in {extra['reconnect s']:.2f} s when it reconnected (goal < 5 s)"
    )
    print(
        f"  follower memory: {extra['bytes per entry']:.0f} bytes per entry"
        f" ({int(extra['memory entries'])} entries, tracemalloc)"
    )
    builds = "  ".join(f"{s}x {extra[f'index build {s}x']:.2f} s" for s in scales)
    print(f"  first selective query (builds the label index): {builds}")
    print(f"  (no required value: at most SCAN_BUDGET = {SCAN_BUDGET} objects read per request)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,100,1000")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis-url", help="an empty Redis database to use (default: spawn one)")
    args = ap.parse_args()
    args.scales = [int(s) for s in args.scales.split(",")]
    missed: list[str] = []
    for kind in args.stores.split(","):
        tmp = tempfile.TemporaryDirectory(prefix="sa-bench-sqlite-")
        server = None
        if kind == "sqlite":
            urls = [f"sqlite:///{tmp.name}/issuer-{s}x.db" for s in args.scales]
        else:
            server = None if args.redis_url else Redis()
            base = args.redis_url or (server.url if server else "")
            sep = "&" if "?" in base else "?"
            urls = [f"{base}{sep}prefix=scale{s}x-{int(time.time())}" for s in args.scales]
        try:
            results = run_store(kind, urls, args)
        finally:
            if server is not None:
                server.close()
            tmp.cleanup()
        small, big = args.scales[0], args.scales[-1]
        for path in PATHS:
            if path in (RESYNC, RARE_SCAN):
                continue
            goal = 1.1 if path == HYBRID else 1.2
            ratio = results[path][big] / results[path][small]
            if ratio > goal:
                missed.append(f"{kind} {path}: {ratio:.2f}x > {goal}x")
    print()
    print("RESULT:", "goals met" if not missed else "GOALS MISSED: " + "; ".join(missed))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
