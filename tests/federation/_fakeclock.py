"""A fake clock for :class:`issuer.agent.loop.Agent`: waits return at once, time jumps ahead,
and actions scheduled at fake times (stop the issuer, delete an account ...) run on the way."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable


class FakeClock:
    """``time()`` / ``wait(seconds)`` like :class:`issuer.agent.loop.RealClock`."""

    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start
        self.start = self.t
        #: wall-clock time that passed outside the waits (a suspended host): see :meth:`suspend`
        self.skew = 0.0
        self.stopped = False
        self.waits: list[float] = []
        self._events: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        """The fake wall-clock now."""
        return self.t + self.skew

    def suspend(self, seconds: float) -> None:
        """The host sleeps ``seconds``: wall time jumps, the wait in progress does not notice
        (monotonic clocks do not count suspend time on Linux)."""
        self.skew += seconds

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Run ``action`` when the waits have advanced the (monotonic) time to ``when``."""
        heapq.heappush(self._events, (when, next(self._seq), action))

    def stop_at(self, when: float) -> None:
        """Request the agent's stop at ``when`` (as SIGTERM would)."""
        self.at(when, self._stop)

    def _stop(self) -> None:
        self.stopped = True

    def wait(self, seconds: float) -> bool:
        """Jump ``seconds`` ahead, running due actions; True once a stop was requested."""
        self.waits.append(seconds)
        target = self.t + seconds
        while self._events and self._events[0][0] <= target and not self.stopped:
            when, _, action = heapq.heappop(self._events)
            self.t = max(self.t, when)
            action()
        if not self.stopped:
            self.t = target
        return self.stopped
