"""TokenReview mode: per-check latency (p50/p99) and checks/s, with and without the success cache.

    python bench/bench_tokenreview.py [--checks 2000] [--threads 8] [--store redis://...]
                                      [--issuer URL --admin-token-file F]

Against a real ``sa-issuer serve`` on loopback (spawned, SQLite unless ``--store``), one valid
pod-bound token, ``TokenReviewVerifier.verify`` called:

- sequentially, ``--checks`` times: latency p50/p99 and checks/s;
- from ``--threads`` threads sharing one verifier (one ``httpx.Client``): aggregate checks/s;

each without the cache (every check is an issuer call) and with ``cache_ttl=10`` (kube-apiserver's
default: staging/src/k8s.io/apiserver/pkg/authentication/token/cache). The anchor is offline
``OIDCVerifier.verify`` on the same token in the same run; ratios are against it.
Not a test: prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _issuer import AUD, Issuer, pct

from verifier.remote import OIDCVerifier
from verifier.tokenreview import TokenReviewVerifier


def sequential(v: object, token: str, n: int) -> tuple[list[float], float]:
    verify = v.verify  # type: ignore[attr-defined]
    lat: list[float] = []
    t_start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        verify(token)
        lat.append(time.perf_counter() - t0)
    return lat, n / (time.perf_counter() - t_start)


def threaded(v: object, token: str, n_per_thread: int, threads: int) -> float:
    verify = v.verify  # type: ignore[attr-defined]
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(n_per_thread):
            verify(token)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return threads * n_per_thread / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--store", help="store URL for the spawned issuer (default: SQLite)")
    ap.add_argument("--issuer", help="use a running issuer instead of spawning one")
    ap.add_argument("--admin-token-file", type=Path)
    args = ap.parse_args()
    token_arg = args.admin_token_file.read_text().split()[0] if args.admin_token_file else None
    iss = Issuer(args.store, args.issuer, token_arg)
    print(f"issuer {iss.url} (store: {args.store or ('remote' if args.issuer else 'sqlite')})")
    token = iss.token(iss.pod(f"tr-{int(time.time())}"))
    oidc = OIDCVerifier(iss.issuer, [AUD], insecure_allow_http=True)
    plain = TokenReviewVerifier(iss.url, iss.admin_token, [AUD], insecure_allow_http=True)
    cached = TokenReviewVerifier(
        iss.url, iss.admin_token, [AUD], insecure_allow_http=True, cache_ttl=10
    )
    try:
        for v in (oidc, plain, cached):
            v.verify(token)  # warm up: connections, JWKS
        lat_o, rate_o = sequential(oidc, token, args.checks * 5)
        p50_o = pct(lat_o, 50)
        print()
        print(f"sequential, {args.checks} checks, one token:")
        print(
            f"  {'mode':<24} {'p50 ms':>8} {'p99 ms':>8} {'checks/s':>10} {'calls/check':>12}"
            f" {'p50 vs offline':>15}"
        )
        rows = [("oidc (offline anchor)", lat_o, rate_o, 0.0)]
        for label, v in (("tokenreview", plain), ("tokenreview, cache 10 s", cached)):
            before = v.calls
            lat, rate = sequential(v, token, args.checks)
            rows.append((label, lat, rate, (v.calls - before) / args.checks))
        for label, lat, rate, calls in rows:
            print(
                f"  {label:<24} {pct(lat, 50) * 1e3:8.3f} {pct(lat, 99) * 1e3:8.3f}"
                f" {rate:10.0f} {calls:12.3f} {pct(lat, 50) / p50_o:14.1f}x"
            )
        per_thread = max(1, args.checks // args.threads)
        print()
        print(f"{args.threads} threads sharing one verifier, {per_thread} checks each:")
        for label, v in (
            ("oidc (offline anchor)", oidc),
            ("tokenreview", plain),
            ("tokenreview, cache 10 s", cached),
        ):
            print(f"  {label:<24} {threaded(v, token, per_thread, args.threads):10.0f} checks/s")
    finally:
        for v in (plain, cached):
            v.close()
        oidc.close()
        iss.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
