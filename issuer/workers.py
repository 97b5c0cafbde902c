"""Worker processes (``serve --workers N``) end when their supervisor does.

Issue 9 item 12: uvicorn's supervisor spawns the workers and hands them the listening socket; after
``kill -9`` of the supervisor the orphaned workers kept serving the port, so a restart failed with
"address already in use" and clients reached workers nobody managed. Each worker therefore calls
:func:`die_with_parent` when it starts (from :func:`issuer.app.app_from_env`):

- on Linux it asks the kernel for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
  prctl(2)); SIGTERM makes uvicorn shut the worker down gracefully (at most
  ``timeout_graceful_shutdown`` seconds), which closes its copy of the listening socket;
- everywhere, a daemon thread compares ``os.getppid()`` with the parent's pid once a second
  (:data:`PARENT_CHECK_INTERVAL`) and sends the worker SIGTERM when it changes, which also covers
  the window before prctl took effect and systems without prctl.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Final

__all__ = ["PARENT_CHECK_INTERVAL", "die_with_parent"]

log = logging.getLogger("sa_issuer.workers")

#: linux/prctl.h
_PR_SET_PDEATHSIG: Final = 1
#: Seconds between two looks at the parent's pid.
PARENT_CHECK_INTERVAL: Final = 1.0


def _set_pdeathsig(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    while not stop.wait(PARENT_CHECK_INTERVAL):
        if os.getppid() != parent_pid:
            _orphaned(parent_pid)
            return


def _orphaned(parent_pid: int) -> None:
    log.warning("the supervisor (pid %d) is gone: this worker stops", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def die_with_parent(parent_pid: int | None = None) -> threading.Event | None:
    """Make this process end (SIGTERM) when the process ``parent_pid`` ends.

    ``parent_pid`` defaults to the multiprocessing parent (uvicorn's supervisor); outside a
    multiprocessing child with no ``parent_pid`` nothing is done and None is returned. Otherwise
    returns the Event that stops the watching thread (for tests).
    """
    if parent_pid is None:
        parent = multiprocessing.parent_process()
        if parent is None or parent.pid is None:
            return None
        parent_pid = parent.pid
    _set_pdeathsig(signal.SIGTERM)
    stop = threading.Event()
    if os.getppid() != parent_pid:  # it died before prctl took effect
        _orphaned(parent_pid)
        return stop
    threading.Thread(
        target=_watch_parent, args=(parent_pid, stop), name="sa-issuer-parent-watch", daemon=True
    ).start()
    return stop
