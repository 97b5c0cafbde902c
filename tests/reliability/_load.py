"""A small closed-loop load generator: threads, each with its own keep-alive httpx client,
calling one function in a loop and recording every outcome with its start and end time."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Outcome:
    """One call: when it started and ended (monotonic), the HTTP status (None if no answer),
    the transport error if any, and what the call returned."""

    start: float
    end: float
    status: int | None
    error: str | None
    value: Any = None

    @property
    def latency(self) -> float:
        return self.end - self.start


#: fn(client, n) -> (status, value): one request; n is a process-wide unique counter.
Call = Callable[[httpx.Client, int], tuple[int, Any]]


class Load:
    """``threads`` threads calling ``fn`` against ``base_url`` until :meth:`stop`."""

    def __init__(
        self,
        base_url: str,
        fn: Call,
        *,
        threads: int = 4,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        pause: float = 0.0,
    ) -> None:
        self._base_url = base_url
        self._fn = fn
        self._headers = headers or {}
        self._timeout = timeout
        self._pause = pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self.outcomes: list[Outcome] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        """Stop the threads (each finishes its call in flight) and return every outcome."""
        self._stop.set()
        for t in self._threads:
            t.join(self._timeout + 5)
        with self._lock:
            return list(self.outcomes)

    def _run(self) -> None:
        client = httpx.Client(base_url=self._base_url, headers=self._headers, timeout=self._timeout)
        try:
            while not self._stop.is_set():
                n = next(self._counter)
                start = time.monotonic()
                try:
                    status, value = self._fn(client, n)
                    outcome = Outcome(start, time.monotonic(), status, None, value)
                except httpx.HTTPError as e:
                    outcome = Outcome(start, time.monotonic(), None, repr(e))
                    client.close()  # a broken connection: start afresh
                    client = httpx.Client(
                        base_url=self._base_url, headers=self._headers, timeout=self._timeout
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                if self._pause:
                    time.sleep(self._pause)
        finally:
            client.close()
