"""One log line when the store goes down and one when it comes back, not one per failure.

Issue 9 item 14: with Redis down, every rotation check (every 10 s) logged a 50-line traceback, and
every request a warning. The periodic chores (key rotation, key refresh, invalidation upkeep) and
the API report each store call's outcome to :data:`STORE_OUTAGE`; it logs a WARNING at the first
failure ("store unavailable ... (reason)"), an INFO when a chore next succeeds ("reachable again
after N s"), and anything in between at DEBUG. Thread-safe; one tracker per process, as there is
one store per process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["STORE_OUTAGE", "StoreOutage"]


class StoreOutage:
    """The store's up/down state as seen by this process, logged on each change only."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """True between a failure and the next success."""
        return self._down_since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """``what`` (e.g. "key rotation") failed because the store is unavailable."""
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = self._clock()
        if first:
            self._log.warning(
                "store unavailable (%s: %s); retrying, and logging again when it is back",
                what,
                _one_line(exc),
            )
        else:
            self._log.debug("store still unavailable (%s: %s)", what, _one_line(exc))

    def succeeded(self) -> None:
        """A store call succeeded: log the recovery if the store was down."""
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            self._log.info("store reachable again after %.1f s", self._clock() - since)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


#: The process's tracker (logger ``sa_issuer.store``).
STORE_OUTAGE = StoreOutage(logging.getLogger("sa_issuer.store"))
