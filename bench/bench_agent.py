"""Token agent: what one refresh costs, against the bare TokenRequest it wraps.

    python bench/bench_agent.py [--refreshes 300] [--dir DIR]

Against a real ``sa-issuer serve`` on loopback (spawned, SQLite), three things in one run:

- **anchor**: a bare ``POST .../serviceaccounts/app/token`` with httpx (the same body the agent
  sends), ``--refreshes`` times: latency p50/p99;
- **write**: ``write_atomic`` of a token-sized file alone (temp file + fsync + rename + directory
  fsync) in ``--dir`` (default: a temporary directory; pass the real token directory's file
  system, e.g. a tmpfs under /run, to measure that);
- **agent**: the real :class:`issuer.agent.loop.Agent` on a fake clock (no waiting), one output,
  1320 s tokens so every loop turn is a refresh, with and without a status file: wall time per
  refresh (request + credential re-read + atomic write + schedule [+ status file]).

Ratios are agent / anchor. The agent refreshes a token once per ~48 minutes by default, so the
point is not throughput but that its per-refresh work is the TokenRequest plus a small, bounded
file-system cost. Not a test: prints numbers and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "federation"))

from _fakeclock import FakeClock
from _issuer import NS, SA, Issuer, pct

from issuer.agent.client import TokenRequester
from issuer.agent.loop import Agent, AgentSettings, Output
from issuer.agent.schedule import MIN_EXPIRATION_SECONDS
from issuer.agent.writer import write_atomic
from verifier.credentials import BearerTokenFile

AUD = "sts.amazonaws.com"


class TimedFakeClock(FakeClock):
    """Stops after ``n`` refreshes; records the wall time between the agent's waits."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.marks: list[float] = [time.perf_counter()]

    def wait(self, seconds: float) -> bool:
        self.marks.append(time.perf_counter())
        if len(self.marks) > self.n:
            return True
        return super().wait(seconds)


def run_agent(iss: Issuer, cred: Path, out: Path, n: int, status: Path | None) -> list[float]:
    req = TokenRequester(iss.url, BearerTokenFile(cred, refresh=0), NS, SA,
                         expiration_seconds=MIN_EXPIRATION_SECONDS)  # fmt: skip
    clock = TimedFakeClock(n)
    settings = AgentSettings(outputs=(Output(out, (AUD,)),), status_file=status)
    try:
        Agent(settings, req.request, clock, rng=lambda: 0.0).run()
    finally:
        req.close()
    return [b - a for a, b in zip(clock.marks, clock.marks[1:], strict=False)]


def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refreshes", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    n = args.refreshes
    iss = Issuer()
    with tempfile.TemporaryDirectory(prefix="sa-bench-agent-", dir=args.dir) as d:
        work = Path(d)
        cred = work / "cred"
        cred.write_text(iss.admin_token)
        body = {"spec": {"audiences": [AUD], "expirationSeconds": MIN_EXPIRATION_SECONDS}}
        path = f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token"
        for _ in range(20):  # warm-up
            iss.c.post(path, json=body)
        bare: list[float] = []
        token = ""
        for _ in range(n):
            t0 = time.perf_counter()
            r = iss.c.post(path, json=body)
            bare.append(time.perf_counter() - t0)
            token = r.json()["status"]["token"]
        writes: list[float] = []
        for _ in range(n):
            t0 = time.perf_counter()
            write_atomic(work / "token-only", token.encode())
            writes.append(time.perf_counter() - t0)
        plain = run_agent(iss, cred, work / "token", n, None)
        with_status = run_agent(iss, cred, work / "token2", n, work / "status.json")
    iss.close()
    a50, a99 = pct(bare, 50), pct(bare, 99)
    print(f"token file directory: {args.dir or tempfile.gettempdir()}  refreshes: {n}")
    print(f"{'what':34} {'p50':>10} {'p99':>10} {'p50 / anchor':>13}")
    for name, vals in (
        ("anchor: bare TokenRequest (httpx)", bare),
        ("write_atomic alone (token size)", writes),
        ("agent refresh", plain),
        ("agent refresh + status file", with_status),
    ):
        p50, p99 = pct(vals, 50), pct(vals, 99)
        print(f"{name:34} {ms(p50):>10} {ms(p99):>10} {p50 / a50:>12.2f}x")
    print(f"(anchor p99 {ms(a99)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
