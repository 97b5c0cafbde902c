"""kill -9 of one of two Redis-backed replicas under load: the survivor fails no request, and
every token either replica acknowledged still reviews (issue 9, reliability suite)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest
from _kube import admin, mint, reviews, setup_account
from _load import Load

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py, re-exported here)
    from conftest import IssuerFactory

pytestmark = pytest.mark.reliability


def test_kill_one_of_two_replicas_under_load(issuer_factory: IssuerFactory, redis_url: str) -> None:
    kek = issuer_factory.make_kek()
    a = issuer_factory.start(store=redis_url, kek=kek)
    # Replicas of one issuer: same store, KEK and issuer URL (only the listen ports differ).
    b = issuer_factory.start(store=redis_url, kek=kek, issuer=a.issuer)
    with a.client(headers=admin(a.admin_token)) as c:
        setup_account(c)
    load_a = Load(a.url, mint, threads=3, headers=admin(a.admin_token))
    load_b = Load(b.url, mint, threads=2, headers=admin(b.admin_token), timeout=3)
    with load_a, load_b:
        time.sleep(1.5)
        b.kill()  # kill -9 mid-load
        killed_at = time.monotonic()
        time.sleep(1.5)
    on_a, on_b = load_a.outcomes, load_b.outcomes
    failed_a = [o for o in on_a if o.status != 201]
    assert not failed_a, failed_a[:5]
    assert sum(1 for o in on_a if o.start > killed_at) > 10, "the survivor was not under load"
    acked = [o.value for o in on_a + on_b if o.status == 201]
    from_b = sum(1 for o in on_b if o.status == 201)
    assert from_b > 10, "the killed replica acknowledged too little to test"

    def check(tokens: list[str]) -> list[str]:
        with httpx.Client(base_url=a.url, headers=admin(a.admin_token), timeout=10) as c:
            return [t for t in tokens if not reviews(c, t)]

    with ThreadPoolExecutor(4) as pool:
        bad = [t for part in pool.map(check, [acked[i::4] for i in range(4)]) for t in part]
    assert not bad, f"{len(bad)} of {len(acked)} acknowledged tokens do not review"
