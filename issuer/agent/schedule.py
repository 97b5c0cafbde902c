"""When to refresh a token, and how long to wait after a failure (pure; no I/O, no clock).

The refresh rule is kubelet's (pkg/kubelet/token/token_manager.go ``requiresRefresh``): a token
needs refreshing once it is older than 80% of its lifetime or older than 24 hours (``maxTTL``),
each threshold pulled earlier by a jitter of up to ``maxJitter`` (10 s, drawn per check, whole
seconds) so that many agents started together do not call the issuer in the same second.

One rule is added: cloud SDKs cache the token file. azure-identity 1.27 re-reads it at most every
600 s (``TokenFileMixin._get_service_account_token``), so a token the agent replaces may still be
presented up to 600 s later. The agent therefore refreshes no later than
:data:`MIN_REMAINING_SECONDS` before expiry, which is the longest re-read interval of the supported
SDKs (:data:`SDK_REREAD_SECONDS`) plus :data:`CLOCK_SLACK_SECONDS` for clock skew and the
exchange's own round trip. For kubelet's default lifetime (3600 s) the 80% rule already leaves
720 s, so the two rules agree; a shorter lifetime is refreshed earlier than 80%, and a lifetime
below :data:`MIN_EXPIRATION_SECONDS` is refused (no schedule could satisfy both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BACKOFF_CAP_SECONDS",
    "BACKOFF_INITIAL_SECONDS",
    "CLOCK_SLACK_SECONDS",
    "DEFAULT_EXPIRATION_SECONDS",
    "MAX_JITTER_SECONDS",
    "MAX_TTL_SECONDS",
    "MIN_EXPIRATION_SECONDS",
    "MIN_REMAINING_SECONDS",
    "SDK_REREAD_SECONDS",
    "Refresh",
    "backoff_delay",
    "check_expiration",
    "plan_refresh",
]

#: kubelet: ``maxTTL = 24 * time.Hour``.
MAX_TTL_SECONDS: Final = 24 * 3600
#: kubelet: ``maxJitter = 10 * time.Second``.
MAX_JITTER_SECONDS: Final = 10
#: kubelet's projected-token default (``expirationSeconds`` defaults to 1 hour).
DEFAULT_EXPIRATION_SECONDS: Final = 3600

#: How long each supported SDK may keep using a token file it has read, at most (seconds).
#: boto3/botocore and google-auth read the file on every credential refresh (no cache);
#: azure-identity caches it for 600 s (measured with 1.27: ``now - _last_read_time > 600``).
SDK_REREAD_SECONDS: Final = {"boto3": 0, "google-auth": 0, "azure-identity": 600}
#: Skew between this host, the issuer and the cloud, plus the token exchange's round trip.
CLOCK_SLACK_SECONDS: Final = 60
#: A token is replaced while it still has at least this long to live (660 s).
MIN_REMAINING_SECONDS: Final = max(SDK_REREAD_SECONDS.values()) + CLOCK_SLACK_SECONDS
#: Shortest lifetime the agent asks for: half of it must still be left at the refresh (1320 s).
MIN_EXPIRATION_SECONDS: Final = 2 * MIN_REMAINING_SECONDS

#: Retry delays after a transient failure: 1 s, 2 s, 4 s ... capped.
BACKOFF_INITIAL_SECONDS: Final = 1.0
BACKOFF_CAP_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True)
class Refresh:
    """The plan for one token: refresh ``at`` (same clock as the inputs), and why."""

    at: float
    reason: str  # "80% of lifetime" | "24 h maximum age" | "minimum remaining lifetime"


def check_expiration(seconds: int) -> str | None:
    """Why ``--expiration-seconds`` cannot be honoured (None when it can)."""
    if seconds < MIN_EXPIRATION_SECONDS:
        return (
            f"must be at least {MIN_EXPIRATION_SECONDS} s: the agent replaces a token while it "
            f"has more than {MIN_REMAINING_SECONDS} s left (azure-identity re-reads the file at "
            f"most every {SDK_REREAD_SECONDS['azure-identity']} s), and no earlier than half "
            "its lifetime"
        )
    if seconds > 2**32:
        return "must be at most 2^32 (TokenRequest's limit)"
    return None


def plan_refresh(issued_at: float, lifetime: float, jitter: float) -> Refresh:
    """When to refresh a token obtained at ``issued_at`` that lives ``lifetime`` seconds.

    ``jitter`` in [0, :data:`MAX_JITTER_SECONDS`) pulls both of kubelet's thresholds earlier.
    The result is never later than ``MIN_REMAINING_SECONDS`` before expiry and never earlier than
    half the lifetime (so a short-lived token the issuer shortened below
    :data:`MIN_EXPIRATION_SECONDS` is still refreshed at a sane pace; that case is logged by the
    caller).
    """
    if not 0 <= jitter < MAX_JITTER_SECONDS:
        raise ValueError(f"jitter must be in [0, {MAX_JITTER_SECONDS})")
    if lifetime <= 0 or not math.isfinite(lifetime):
        raise ValueError("lifetime must be a positive number of seconds")
    # kubelet: "Require a refresh if within 20% of the TTL plus a jitter from the expiration time"
    # i.e. at iat + 0.8 * ttl - jitter; and "if the token is older than 24 hours" - jitter.
    margin = issued_at + lifetime - MIN_REMAINING_SECONDS - jitter
    floor = issued_at + lifetime / 2
    candidates = [
        (issued_at + lifetime - (lifetime * 20) // 100 - jitter, "80% of lifetime"),
        (issued_at + MAX_TTL_SECONDS - jitter, "24 h maximum age"),
        (margin, "minimum remaining lifetime")
        if margin >= floor
        else (floor, "half of a lifetime shorter than the minimum"),
    ]
    at, reason = min(candidates)
    return Refresh(at, reason)


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive transient failures (>= 1): capped doubling.

    The caller adds jitter; the cap keeps an outage's recovery noticed within a minute.
    """
    if failures < 1:
        raise ValueError("failures must be >= 1")
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** min(failures - 1, 16)))
