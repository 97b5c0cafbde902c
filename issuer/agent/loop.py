"""The agent's loop: keep every output file holding a fresh token (clock and waits injectable).

For each output (a path and its audiences) the agent requests a token, writes it atomically and
plans the next refresh with :func:`issuer.agent.schedule.plan_refresh`. After a transient failure
it keeps the last good token in place, logs what happened and when it retries (capped backoff with
jitter); after a definite refusal it stops with the refusal's exit code and removes or keeps the
output files (``on_refusal``). A status file (JSON, no secrets) records the state after every
change. The loop never sleeps itself: ``clock.wait(seconds)`` does, and returns True when a stop
(SIGTERM) was requested, so tests drive it on a fake clock and a real issuer.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from issuer.agent.client import (
    EXIT_UNAVAILABLE,
    Issued,
    Refused,
    Transient,
)
from issuer.agent.schedule import (
    MAX_JITTER_SECONDS,
    MIN_EXPIRATION_SECONDS,
    backoff_delay,
    plan_refresh,
)
from issuer.agent.writer import remove_file, remove_stale_temporaries, write_atomic

__all__ = ["Agent", "AgentSettings", "Clock", "Output", "OutputState", "RealClock"]

log = logging.getLogger("sa_issuer.agent")

OnRefusal = Literal["remove", "keep"]

#: The longest single wait. Waits run on a monotonic clock, which on Linux does not count time
#: the host was suspended, and the wall clock may be stepped: re-reading the wall clock at least
#: once a minute notices either within a minute (a suspended VM resumes with an expired token
#: otherwise, for as long as the suspension lasted).
MAX_WAIT_SECONDS = 60.0


class Clock(Protocol):
    """Time source and interruptible wait."""

    def time(self) -> float:
        """Seconds since the epoch."""

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (or until stopped); True if a stop was requested."""


class RealClock:
    """Wall clock; :meth:`stop` (e.g. from a SIGTERM handler) ends the current and every later
    wait at once."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if stopped."""
        return self._stop.wait(max(0.0, seconds))

    def stop(self) -> None:
        """Request a stop."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()


@dataclass(frozen=True, slots=True)
class Output:
    """One token file and the audiences of the token written to it."""

    path: Path
    audiences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What the agent writes and how (see ``sa-issuer agent --help``)."""

    outputs: tuple[Output, ...]
    mode: int = 0o600
    uid: int | None = None
    gid: int | None = None
    on_refusal: OnRefusal = "remove"
    status_file: Path | None = None
    once: bool = False
    once_timeout: float = 30.0


@dataclass
class OutputState:
    """What the agent knows about one output."""

    output: Output
    due: float = 0.0
    issued_at: float | None = None
    lifetime: int | None = None
    refresh_reason: str = ""
    failures: int = 0
    last_error: str = ""
    refreshes: int = 0

    @property
    def expires_at(self) -> float | None:
        """When the token in the file expires (agent clock), if one was written."""
        if self.issued_at is None or self.lifetime is None:
            return None
        return self.issued_at + self.lifetime


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(int(t), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Agent:
    """Runs the outputs of ``settings`` against ``request`` (normally
    :meth:`issuer.agent.client.TokenRequester.request`).

    ``rng`` draws jitter (``random.random``-like); :meth:`run` returns the exit code.
    """

    settings: AgentSettings
    request: Callable[[tuple[str, ...]], Issued]
    clock: Clock
    rng: Callable[[], float] = random.random
    states: list[OutputState] = field(init=False)
    state: str = field(init=False, default="starting")
    message: str = field(init=False, default="")
    _last_status: dict[str, Any] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.states = [OutputState(o) for o in self.settings.outputs]

    # --- one attempt --------------------------------------------------------------------------
    def _attempt(self, st: OutputState) -> None:
        now = self.clock.time()
        path = st.output.path
        try:
            issued = self.request(st.output.audiences)
            write_atomic(
                path,
                issued.token.encode("ascii"),
                mode=self.settings.mode,
                uid=self.settings.uid,
                gid=self.settings.gid,
            )
        except (Transient, OSError) as e:
            st.failures += 1
            why = str(e) if isinstance(e, Transient) else f"cannot write {path}: {e.strerror or e}"
            st.last_error = why
            delay = backoff_delay(st.failures) * (1 + 0.1 * self.rng())
            st.due = now + delay
            expires = st.expires_at
            if expires is None:
                keeping = "no token written yet"
            elif expires > now:
                keeping = f"keeping the last good token (expires in {int(expires - now)} s)"
            else:
                keeping = f"the last token expired {int(now - expires)} s ago"
            log.warning(
                "cannot refresh %s (failure %d): %s; %s; retrying in %.0f s",
                path,
                st.failures,
                why,
                keeping,
                delay,
            )
            return
        for w in issued.warnings:
            log.warning("issuer warning for %s: %s", path, w)
        if issued.lifetime < MIN_EXPIRATION_SECONDS:
            log.warning(
                "the issuer granted %s only %d s (< %d s): an SDK that caches the file may present "
                "it after it expired; raise the issuer's maximum token lifetime",
                path,
                issued.lifetime,
                MIN_EXPIRATION_SECONDS,
            )
        plan = plan_refresh(now, issued.lifetime, self.rng() * MAX_JITTER_SECONDS)
        if st.failures:
            log.info("%s: the issuer answered again after %d failures", path, st.failures)
        st.issued_at, st.lifetime, st.due = now, issued.lifetime, plan.at
        st.refresh_reason, st.failures, st.last_error = plan.reason, 0, ""
        st.refreshes += 1
        log.info(
            "wrote a token for %s (audiences %s, %d s); next refresh in %.0f s (%s)",
            path,
            ",".join(st.output.audiences) or "the issuer's API audiences",
            issued.lifetime,
            plan.at - now,
            plan.reason,
        )

    # --- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The status document (what :attr:`AgentSettings.status_file` holds)."""
        return {
            "state": self.state,
            "message": self.message,
            "pid": os.getpid(),
            "updated": _iso(self.clock.time()),
            "outputs": [
                {
                    "path": str(st.output.path),
                    "audiences": list(st.output.audiences),
                    "lastRefresh": _iso(st.issued_at),
                    "expiresAt": _iso(st.expires_at),
                    "nextAttempt": _iso(st.due),
                    "refreshReason": st.refresh_reason,
                    "refreshes": st.refreshes,
                    "consecutiveFailures": st.failures,
                    "lastError": st.last_error,
                }
                for st in self.states
            ],
        }

    def _write_status(self) -> None:
        """Rewrite the status file if anything but its ``updated`` time changed."""
        path = self.settings.status_file
        if path is None:
            return
        status = self.status()
        content = {k: v for k, v in status.items() if k != "updated"}
        if content == self._last_status:
            return
        self._last_status = content
        try:
            # never partial; not fsynced (it is rewritten on every change, and holds no secret)
            doc = orjson.dumps(status, option=orjson.OPT_INDENT_2)
            write_atomic(path, doc, mode=0o644, durable=False)
        except OSError as e:
            log.warning("cannot write the status file %s: %s", path, e.strerror or e)

    def _set_state(self, now: float) -> None:
        if all(st.failures == 0 and st.issued_at is not None for st in self.states):
            self.state, self.message = "ok", ""
            return
        self.state = "degraded"
        failing = [st for st in self.states if st.failures]
        self.message = "; ".join(f"{st.output.path}: {st.last_error}" for st in failing)

    # --- the loop -----------------------------------------------------------------------------
    def _refused(self, e: Refused) -> int:
        self.state, self.message = "refused", str(e)
        log.error("stopping: %s", e)
        if self.settings.on_refusal == "remove":
            for st in self.states:
                try:
                    if remove_file(st.output.path):
                        log.error("removed %s (--on-refusal remove)", st.output.path)
                except OSError as err:
                    log.error("cannot remove %s: %s", st.output.path, err.strerror or err)
        else:
            log.error("left the output files in place (--on-refusal keep)")
        self._write_status()
        return e.exit_code

    def run(self) -> int:
        """Run until stopped (0), refused (its exit code) or, with ``once``, done (0) or out of
        time (:data:`~issuer.agent.client.EXIT_UNAVAILABLE`)."""
        start = self.clock.time()
        for st in self.states:
            for stale in remove_stale_temporaries(st.output.path):
                log.info("removed %s, left by an earlier writer that was killed", stale)
            st.due = start
        while True:
            now = self.clock.time()
            for st in self.states:
                if st.due <= now:
                    try:
                        self._attempt(st)
                    except Refused as e:
                        return self._refused(e)
            self._set_state(now)
            if self.settings.once and self.state == "ok":
                self._write_status()
                return 0
            if self.settings.once and now - start >= self.settings.once_timeout:
                self.state = "unavailable"
                self.message = f"no token after {self.settings.once_timeout:.0f} s: " + self.message
                log.error("giving up: %s", self.message)
                self._write_status()
                return EXIT_UNAVAILABLE
            self._write_status()
            wake = min(st.due for st in self.states)
            if self.settings.once:
                wake = min(wake, start + self.settings.once_timeout)
            if self.clock.wait(min(MAX_WAIT_SECONDS, max(0.0, wake - self.clock.time()))):
                self.state, self.message = "stopped", "stopped by signal"
                log.info("stopping on request; the output files stay in place")
                self._write_status()
                return 0


def outputs_from(
    paths_and_audiences: Sequence[tuple[str, Sequence[str]]],
) -> tuple[Output, ...]:
    """Outputs from (path, audiences) pairs, paths made absolute."""
    return tuple(Output(Path(os.path.abspath(p)), tuple(a)) for p, a in paths_and_audiences)
