"""Hybrid verification: revocation-to-rejection latency and per-check cost vs pure offline.

    python bench/bench_hybrid.py [--deletions 50] [--checks 20000] [--store redis://...]
                                 [--issuer URL --admin-token-file F]

1. **Revocation to rejection.** N pods, one pod-bound token each, one HybridVerifier following the
   issuer's invalidation stream. For each pod: note the time, DELETE it, then call
   ``hybrid.verify(token)`` every 1 ms until it raises ``InvalidToken("revoked")``.
   The time includes the DELETE round trip, so it is an upper bound. Goal: p99 <= 1 s on loopback.
   TokenReview's equivalent (the DELETE round trip plus one review call) is the anchor.
2. **Per-check cost.** ``OIDCVerifier.verify`` (pure offline, the anchor) and
   ``HybridVerifier.verify`` on the same valid token, in alternating rounds in the same process;
   the ratio of medians. Goal: hybrid / offline <= 1.5.

Not a test: prints the numbers and the ratios and exits 0 (1 if a goal is missed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _issuer import AUD, Issuer, pct

from verifier.errors import InvalidToken
from verifier.hybrid import HybridVerifier
from verifier.remote import OIDCVerifier
from verifier.tokenreview import TokenReviewVerifier


def per_call_us(fn: object, token: str, n: int) -> float:
    verify = fn.verify  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(n):
        verify(token)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deletions", type=int, default=50)
    ap.add_argument("--checks", type=int, default=20000, help="checks per mode for the cost ratio")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--store", help="store URL for the spawned issuer (default: SQLite)")
    ap.add_argument("--issuer", help="use a running issuer instead of spawning one")
    ap.add_argument("--admin-token-file", type=Path)
    args = ap.parse_args()
    token_arg = args.admin_token_file.read_text().split()[0] if args.admin_token_file else None
    iss = Issuer(args.store, args.issuer, token_arg)
    print(f"issuer {iss.url} (store: {args.store or ('remote' if args.issuer else 'sqlite')})")
    run = str(int(time.time()))
    pods = [iss.pod(f"b{run}-{i}") for i in range(args.deletions)]
    tokens = [iss.token(p) for p in pods]
    hybrid = HybridVerifier(
        iss.issuer, [AUD], bearer_token=iss.admin_token, insecure_allow_http=True
    )
    review = TokenReviewVerifier(iss.url, iss.admin_token, [AUD], insecure_allow_http=True)
    oidc = OIDCVerifier(iss.issuer, [AUD], insecure_allow_http=True)
    ok = True
    try:
        if not hybrid.wait_synced(10):
            raise SystemExit("hybrid verifier did not sync")
        for t in tokens:
            hybrid.verify(t)
            oidc.verify(t)

        # --- 2. per-check cost (before the deletions, on a valid token) -----------------------
        spare = iss.pod(f"b{run}-probe")
        probe = iss.token(spare)
        per_check = args.checks // args.rounds
        offline_us: list[float] = []
        hybrid_us: list[float] = []
        for _ in range(args.rounds):
            offline_us.append(per_call_us(oidc, probe, per_check))
            hybrid_us.append(per_call_us(hybrid, probe, per_check))
        off, hyb = statistics.median(offline_us), statistics.median(hybrid_us)
        ratio = hyb / off
        calls_before = hybrid.calls

        # --- 1. revocation to rejection --------------------------------------------------------
        lat_h: list[float] = []
        lat_r: list[float] = []
        for pod, token in zip(pods, tokens, strict=True):
            name = pod["metadata"]["name"]
            t0 = time.perf_counter()
            iss.delete_pod(name)
            delete_s = time.perf_counter() - t0
            while True:
                try:
                    hybrid.verify(token)
                except InvalidToken as e:
                    if e.reason != "revoked":
                        raise
                    lat_h.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 10:
                    raise SystemExit("hybrid did not reject within 10 s")
                time.sleep(0.001)
            # TokenReview's equivalent: the DELETE round trip plus one review call.
            t1 = time.perf_counter()
            try:
                review.verify(token)
                raise SystemExit("TokenReview accepted the token of a deleted pod")
            except InvalidToken:
                lat_r.append(delete_s + time.perf_counter() - t1)
        print()
        print(f"revocation -> rejection over {len(lat_h)} pod deletions (incl. the DELETE call):")
        for label, lat, note in (
            ("hybrid", lat_h, "goal p99 <= 1000 ms"),
            ("tokenreview", lat_r, "anchor: asks the issuer"),
        ):
            print(
                f"  {label:<12} p50 {pct(lat, 50) * 1e3:7.1f} ms   p99 {pct(lat, 99) * 1e3:7.1f} ms"
                f"   max {max(lat) * 1e3:7.1f} ms   ({note})"
            )
        print("  oidc         never (offline: accepts until exp)")
        print()
        print(f"per-check cost, same valid token, {args.rounds} alternating rounds x {per_check}:")
        print(f"  OIDCVerifier.verify    {off:8.1f} us   (anchor, pure offline)")
        print(f"  HybridVerifier.verify  {hyb:8.1f} us   ratio {ratio:.2f}x   (goal <= 1.5x)")
        print(f"  issuer calls during the cost loop: {hybrid.calls - calls_before}")
        ok = pct(lat_h, 99) <= 1.0 and ratio <= 1.5
        print()
        print("RESULT:", "goals met" if ok else "GOAL MISSED")
    finally:
        hybrid.close()
        review.close()
        oidc.close()
        iss.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
