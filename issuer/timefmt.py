"""Time rendering shared by the API, the stream and revocations (pure; no I/O)."""

from __future__ import annotations

import time

__all__ = ["rfc3339"]


def rfc3339(t: float) -> str:
    """``2006-01-02T15:04:05Z``: kube's metav1.Time (second precision, UTC; RFC 3339 §5.6)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))
