"""What the remote verifier's cache layer costs, and what a random-kid flood does to valid tokens.

Run: ``python bench/bench_remote.py [--quick]``

Anchor: the pure core ``verifier.verify(token, keys, policy)`` on the same token and keys — the
least any offline verifier must do. Reported as ratios against it, all measured in this run:

- ``OIDCVerifier.verify`` (warm cache, known kid): the cache layer's overhead. Goal <= 1.05x.
- ``OIDCVerifier.verify_cached`` (what the middleware calls inline). Goal <= 1.05x.
- ``AsyncOIDCVerifier.verify`` awaited in a loop. Goal <= 1.2x (includes coroutine overhead).
- median known-kid latency while 4 threads send 10,000 random-kid tokens, one of which triggers a
  (slow, 0.5 s) refetch, versus without the flood. Goal <= 1.5x, and the worst call far below the
  refetch time (no known-kid call waits for a fetch).

The issuer is a real loopback server (tests/verifier/jwks_server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "verifier")]

from jwks_server import AUDIENCE, JWKSServer, rsa_key, token_for  # noqa: E402

from verifier import AsyncOIDCVerifier, InvalidToken, OIDCVerifier, verify  # noqa: E402


def best_per_call(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def with_kid(token: str, kid: str) -> str:
    _, payload, sig = token.split(".")
    head = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode())
    return f"{head.rstrip(b'=').decode()}.{payload}.{sig}"


def latencies(v: OIDCVerifier, token: str, stop: threading.Event, minimum: int) -> list[float]:
    out: list[float] = []
    while not stop.is_set() or len(out) < minimum:
        t0 = time.perf_counter()
        v.verify(token)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    n = 2000 if ap.parse_args().quick else 20000

    with JWKSServer() as srv:
        srv.keys = [rsa_key()]
        token = token_for(srv, rsa_key())
        clock_now = [time.time()]
        with OIDCVerifier(
            srv.issuer, [AUDIENCE], insecure_allow_http=True, clock=lambda: clock_now[0]
        ) as v:
            v.verify(token)
            entry = v._cache.entry
            assert entry is not None
            keys, policy = entry.keys, v.policy

            anchor = best_per_call(lambda: verify(token, keys, policy, now=clock_now[0]), n)
            sync = best_per_call(lambda: v.verify(token), n)
            cached = best_per_call(lambda: v.verify_cached(token), n)

            async def run_async() -> float:
                async with AsyncOIDCVerifier(srv.issuer, [AUDIENCE], insecure_allow_http=True) as a:
                    await a.verify(token)
                    best = float("inf")
                    for _ in range(5):
                        t0 = time.perf_counter()
                        for _ in range(n):
                            await a.verify(token)
                        best = min(best, (time.perf_counter() - t0) / n)
                    return best

            async_per = asyncio.run(run_async())

            before = srv.counts["jwks"]
            done = threading.Event()
            done.set()
            base = latencies(v, token, done, n // 2)
            clock_now[0] += 31  # past the cooldown: the flood may refetch once
            srv.jwks_delay = 0.5
            flood = [with_kid(token, f"random-{i}") for i in range(10_000)]

            def attack(chunk: list[str]) -> None:
                for t in chunk:
                    with contextlib.suppress(InvalidToken):
                        v.verify(t)

            stop = threading.Event()
            under: list[float] = []
            meas = threading.Thread(target=lambda: under.extend(latencies(v, token, stop, n // 2)))
            attackers = [threading.Thread(target=attack, args=(flood[i::4],)) for i in range(4)]
            meas.start()
            for t in attackers:
                t.start()
            for t in attackers:
                t.join()
            stop.set()
            meas.join()
            fetches = srv.counts["jwks"] - before

    print(f"anchor  core verify (RS256, known kid)      {anchor * 1e6:8.1f} us/token")
    print(f"OIDCVerifier.verify (warm)                {sync / anchor:8.2f}x   (goal <= 1.05x)")
    print(f"OIDCVerifier.verify_cached (warm)         {cached / anchor:8.2f}x   (goal <= 1.05x)")
    print(f"AsyncOIDCVerifier.verify (warm)           {async_per / anchor:8.2f}x   (goal <= 1.2x)")
    ratio = statistics.median(under) / statistics.median(base)
    print(f"known-kid median under random-kid flood   {ratio:8.2f}x   (goal <= 1.5x)")
    print(f"known-kid worst call under the flood      {max(under) * 1e3:8.1f} ms (refetch: 500 ms)")
    print(f"JWKS fetches caused by the flood          {fetches:8d}     (goal: 1)")


if __name__ == "__main__":
    main()
