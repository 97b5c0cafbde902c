"""The thread behind :meth:`Store.watch`, shared by the backends: each supplies only its loop."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import get_args

from issuer.store.base import ChangeKind

#: Every change kind, in ChangeKind's order (the order SQLiteStore._counters reports them in).
ALL_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)

__all__ = ["ALL_KINDS", "WatchThread"]


class WatchThread:
    """A daemon thread running :meth:`_run`; ``watch()`` returns once :meth:`_run` has set
    ``_ready`` (bounded by ``ready_timeout``), so every change committed after it is reported.

    :meth:`_notify` delivers one change kind — only the ``kinds`` subscribed to, never after
    :meth:`close`, and a failing callback never kills the thread. :meth:`close` is idempotent;
    :meth:`_wake` lets a backend interrupt a wait so closing is prompt.
    """

    def __init__(
        self,
        callback: Callable[[ChangeKind], None],
        *,
        name: str,
        ready_timeout: float,
        kinds: Iterable[ChangeKind] | None = None,
    ) -> None:
        self._callback = callback
        self._kinds: tuple[ChangeKind, ...] = ALL_KINDS if kinds is None else tuple(kinds)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=ready_timeout)

    def _run(self) -> None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def _notify(self, kind: ChangeKind) -> None:
        if self._stop.is_set() or kind not in self._kinds:
            return
        with contextlib.suppress(Exception):  # a failing callback must not kill the watcher
            self._callback(kind)

    def _wake(self) -> None:
        """Interrupt the backend's wait (default: nothing; waits are short)."""

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        self._stop.set()
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
