"""What ``sa-issuer demo`` measured: samples, markers and the per-mode summary (pure; no I/O).

Shared by the runner (:mod:`issuer.demo`), which fills a :class:`DemoResult`, and the HTML report
(:mod:`issuer.demo_report`), which draws one; neither imports the other's side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["MODES", "TOKENS", "DemoResult", "Outcome", "Sample"]

#: The verification modes the demo compares, in report order.
MODES: Final = ("oidc", "tokenreview", "hybrid")
#: The two tokens checked: bound to the pod that gets deleted; signed by the key that gets revoked.
TOKENS: Final = ("pod", "key")

Outcome = Literal["accepted", "rejected", "unavailable"]


@dataclass(slots=True)
class Sample:
    """One check: seconds since the start, which token, the outcome, latency (ms), reason."""

    t: float
    token: str
    outcome: Outcome
    latency_ms: float
    reason: str | None = None


@dataclass
class DemoResult:
    """Everything the demo measured; ``to_json()`` is the ``--json`` document."""

    issuer: str
    store: str
    duration_s: float
    rate_hz: float
    embedded: bool
    markers: dict[str, float] = field(default_factory=dict)  # label -> seconds since start
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def first_rejection(self, mode: str, token: str, after: str) -> float | None:
        """Seconds from marker ``after`` to the first rejection of ``token`` in ``mode``."""
        t0 = self.markers.get(after)
        if t0 is None:
            return None
        for s in self.samples.get(mode, []):
            if s.token == token and s.t >= t0 and s.outcome == "rejected":
                return round(s.t - t0, 3)
        return None

    def mode_summary(self, mode: str) -> dict[str, Any]:
        """The per-mode numbers of the report."""
        samples = self.samples.get(mode, [])
        lat = sorted(s.latency_ms for s in samples)
        checks = len(samples)
        return {
            "revoked_after_s": self.first_rejection(mode, "pod", "pod deleted"),
            "key_revoked_after_s": self.first_rejection(mode, "key", "key revoked"),
            "check_p50_ms": round(_percentile(lat, 50), 3) if lat else None,
            "check_p99_ms": round(_percentile(lat, 99), 3) if lat else None,
            "issuer_calls_per_check": round(self.calls.get(mode, 0) / checks, 4)
            if checks
            else None,
            "checks": checks,
            "issuer_calls": self.calls.get(mode, 0),
            "accepted": sum(1 for s in samples if s.outcome == "accepted"),
            "rejected": sum(1 for s in samples if s.outcome == "rejected"),
            "unavailable": sum(1 for s in samples if s.outcome == "unavailable"),
        }

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (no tokens, no samples)."""
        return {
            "modes": {m: self.mode_summary(m) for m in MODES},
            "markers": {k: round(v, 3) for k, v in self.markers.items()},
            "issuer": self.issuer,
            "store": self.store,
            "embedded": self.embedded,
            "duration_s": round(self.duration_s, 3),
            "rate_hz": self.rate_hz,
            "notes": list(self.notes),
        }


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]
