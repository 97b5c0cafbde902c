"""Redis SIGTERM, SIGKILL and SIGSTOP during a write load against a real issuer (issue 9,
reliability suite): while Redis is away every request is answered 503 or 504 within the store
timeout (never a hang, a 500 or a dropped connection), service is back within 1 s of Redis, and
with AOF (``appendfsync always``) no acknowledged write is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _kube import account_names, admin, create_account, setup_account
from _load import Load, Outcome
from _services import RedisServer

from issuer.store.redis_store import DEFAULT_TIMEOUT

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py, re-exported here)
    from conftest import IssuerFactory

pytestmark = pytest.mark.reliability

#: A request may make one store call that hangs for the full timeout; add scheduling slack for
#: two busy cores.
ANSWER_BOUND = DEFAULT_TIMEOUT + 1.0
#: Service must be back this soon after Redis answers again.
RECOVERY_BOUND = 1.0


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own with an append-only file fsynced on every write."""
    server = RedisServer(
        tmp_path / "redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fault(redis: RedisServer, sig: signal.Signals) -> float:
    """Inject ``sig`` for about 2.5 s (longer than the store timeout); return when Redis
    answers again (monotonic)."""
    if sig == signal.SIGSTOP:
        redis.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        redis.send_signal(signal.SIGCONT)
        return time.monotonic()
    redis.send_signal(sig)
    redis.wait_exit()
    time.sleep(2.5)
    redis.start()  # same port and directory: reloads the AOF
    return time.monotonic()


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP], ids=lambda s: s.name
)
def test_redis_fault_during_load(
    issuer_factory: IssuerFactory, aof_redis: RedisServer, sig: signal.Signals
) -> None:
    proc = issuer_factory.start(store=aof_redis.url)
    headers = admin(proc.admin_token)
    with proc.client(headers=headers) as c:
        setup_account(c)
    with Load(proc.url, create_account, threads=3, headers=headers, pause=0.005) as load:
        time.sleep(0.8)
        fault_at = time.monotonic()
        back_at = _fault(aof_redis, sig)
        time.sleep(1.5)
    outcomes = load.outcomes
    failed = [o for o in outcomes if o.status != 201]
    assert failed, "the fault was not noticed"
    # Failures are 503 (nothing changed) or 504 (outcome unknown), answered in time.
    assert {o.status for o in failed} <= {503, 504}, _describe(failed)
    slow = [o for o in failed if o.latency > ANSWER_BOUND]
    assert not slow, _describe(slow)
    # No failure once Redis has been back a moment, and the first success comes quickly.
    late = [o for o in failed if o.start > back_at + RECOVERY_BOUND]
    assert not late, _describe(late)
    first_ok = min(o.end for o in outcomes if o.status == 201 and o.start >= back_at)
    assert first_ok - back_at < RECOVERY_BOUND, first_ok - back_at
    assert any(o.status == 201 for o in outcomes if o.end < fault_at)
    # Every acknowledged create survived (AOF, fsync always), whatever the signal.
    acked = {o.value for o in outcomes if o.status == 201}
    with proc.client(headers=headers) as c:
        lost = acked - account_names(c)
    slowest = max(o.latency for o in failed)
    print(
        f"{sig.name}: {len(acked)} acknowledged, {len(failed)} failed "
        f"({sorted({o.status for o in failed})}), slowest failure {slowest:.2f}s, "
        f"first success {first_ok - back_at:.3f}s after Redis was back, lost {len(lost)}"
    )
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged creates lost: {sorted(lost)[:5]}"


def _describe(outcomes: list[Outcome]) -> str:
    return "; ".join(
        f"{o.status or o.error} after {o.latency:.2f}s"
        for o in sorted(outcomes, key=lambda o: o.start)[:8]
    )
