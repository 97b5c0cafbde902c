"""The refresh schedule and backoff (pure): kubelet's 80% / 24 h rule with jitter, and the SDK
cache margin (pkg/kubelet/token/token_manager.go ``requiresRefresh``; azure-identity's 600 s)."""

from __future__ import annotations

import pytest

from issuer.agent.schedule import (
    BACKOFF_CAP_SECONDS,
    MIN_EXPIRATION_SECONDS,
    MIN_REMAINING_SECONDS,
    SDK_REREAD_SECONDS,
    backoff_delay,
    check_expiration,
    plan_refresh,
)

T0 = 1_800_000_000.0


def test_default_lifetime_refreshes_at_80_percent_minus_jitter() -> None:
    for jitter in (0.0, 3.0, 9.99):
        plan = plan_refresh(T0, 3600, jitter)
        assert plan.at == T0 + 2880 - jitter
        assert plan.reason == "80% of lifetime"
        # ... which leaves more than the longest SDK re-read interval.
        assert T0 + 3600 - plan.at > SDK_REREAD_SECONDS["azure-identity"]


def test_lifetimes_over_30h_refresh_after_24h() -> None:
    plan = plan_refresh(T0, 48 * 3600, 4.0)
    assert plan.at == T0 + 24 * 3600 - 4.0
    assert plan.reason == "24 h maximum age"


def test_short_lifetimes_keep_the_sdk_margin() -> None:
    # 80% of 1800 s leaves 360 s: an SDK that read the old file just before could use it 600 s.
    plan = plan_refresh(T0, 1800, 2.0)
    assert plan.at == T0 + 1800 - MIN_REMAINING_SECONDS - 2.0
    assert plan.reason == "minimum remaining lifetime"
    assert T0 + 1800 - plan.at > 600


def test_lifetimes_below_the_minimum_refresh_at_half() -> None:
    # The issuer may shorten a request (its maximum): never refresh in a tight loop.
    plan = plan_refresh(T0, 600, 5.0)
    assert plan.at == T0 + 300
    assert plan.reason.startswith("half")


def test_minimum_expiration_follows_from_the_margin() -> None:
    assert MIN_REMAINING_SECONDS == 660
    assert MIN_EXPIRATION_SECONDS == 1320
    assert check_expiration(1320) is None
    why = check_expiration(1319)
    assert why is not None and "azure-identity" in why and "600 s" in why
    assert check_expiration(2**32 + 1) is not None


def test_jitter_and_lifetime_are_checked() -> None:
    with pytest.raises(ValueError):
        plan_refresh(T0, 3600, 10.0)
    with pytest.raises(ValueError):
        plan_refresh(T0, 3600, -1.0)
    with pytest.raises(ValueError):
        plan_refresh(T0, 0, 1.0)


def test_backoff_doubles_to_a_cap() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(10_000) == BACKOFF_CAP_SECONDS
    with pytest.raises(ValueError):
        backoff_delay(0)
