"""Bounds on every HTTP request and connection, enforced in uvicorn's httptools protocol.

uvicorn bounds nothing but idle keep-alive time: a request head may grow without limit, a body may
trickle in forever (uvicorn re-arms nothing while it waits), and every accepted connection costs a
file descriptor until the client goes away. :class:`GuardedHttpToolsProtocol` adds, per worker
process:

- **head size**: at most :data:`MAX_HEAD_BYTES` of request line + headers, else ``431`` and close.
  Only head bytes count: body bytes that arrive in the same read as the end of the head are
  handed to the parser as body (issue 9 item 8: bodies of 64 KiB-1 MiB sent in one write were
  intermittently refused with 431). Over-cap *bodies* are the app's business (``413`` with a
  ``Status`` body, :func:`issuer.http.status.read_json_body`).
- **head time**: the head must be complete within :data:`HEAD_TIMEOUT` of connecting or of the
  request's first byte, else close (slowloris; Go's ``http.Server.ReadHeaderTimeout``).
- **body time and rate** (issue 9 item 2): the body must be complete within ``body_timeout``
  seconds of the end of the head, and after a grace of :data:`BODY_RATE_GRACE` seconds it must
  have arrived at ``body_min_rate`` bytes/s or more on average (nginx ``client_body_timeout`` and
  Apache ``mod_reqtimeout`` ``body=...,MinRate=...`` are the models). Otherwise the client gets
  ``408`` with a ``Status`` body (or, if it already has its response, just the close). This holds
  whether or not the app reads the body: an unauthenticated client answered 401 before its body
  arrived cannot keep trickling it. Time during which *we* stopped reading (uvicorn's flow
  control, pipelining) is not held against the client.
- **connections**: at most ``max_connections`` open at once; one more is answered ``503`` with a
  ``Status`` body and ``Retry-After: 1`` and closed at once, so floods cannot exhaust file
  descriptors that JWKS fetches, the store and the audit log need.

The limits come from the :class:`issuer.app.IssuerApp` being served (``http_limits``, built from
the configuration by :meth:`HttpLimits.from_config`); without one (a bare ASGI app in tests) the
defaults below apply.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from issuer.http.status import status_body

if TYPE_CHECKING:
    from issuer.config import Config

__all__ = [
    "BODY_MIN_RATE",
    "BODY_RATE_GRACE",
    "BODY_TIMEOUT",
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "GuardedHttpToolsProtocol",
    "HttpLimits",
    "find_app_attr",
    "raise_open_file_limit",
]

log = logging.getLogger("sa_issuer.http")

#: Most bytes of a request line + headers one request may send (uvicorn's httptools protocol has
#: no limit at all: a 20 MB header was buffered whole). kube-apiserver (Go net/http) allows 1 MiB;
#: nothing this service accepts needs more than a few KiB.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Seconds a client may take from connecting (or starting a request) to the end of its headers,
#: so slowloris-style connections that trickle headers forever are closed (Go: ReadHeaderTimeout).
HEAD_TIMEOUT: Final = 10.0
#: Seconds a request body may take in all (``body_timeout``); kube-apiserver's default
#: ``--request-timeout`` is 60 s too. The API's bodies are at most 1 MiB (``max_body_bytes``).
BODY_TIMEOUT: Final = 60.0
#: Least average body rate in bytes/s once :data:`BODY_RATE_GRACE` has passed (``body_min_rate``;
#: Apache mod_reqtimeout's default MinRate is 500 too). 0 turns the rate check off.
BODY_MIN_RATE: Final = 500
#: Seconds of a body before its rate is checked (a slow start, a TCP window opening).
BODY_RATE_GRACE: Final = 5.0
#: Open connections one process serves at once (``max_connections``); one more gets 503.
MAX_CONNECTIONS: Final = 2048
#: File descriptors kept for everything but client connections (store, audit log, JWKS, logs).
_FD_RESERVE: Final = 128

_READ_PAUSED_RECHECK: Final = 1.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The per-process bounds :class:`GuardedHttpToolsProtocol` enforces."""

    max_head_bytes: int = MAX_HEAD_BYTES
    head_timeout: float = HEAD_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    body_min_rate: int = BODY_MIN_RATE
    body_rate_grace: float = BODY_RATE_GRACE
    max_connections: int = MAX_CONNECTIONS

    @classmethod
    def from_config(cls, config: Config) -> HttpLimits:
        """The configured bounds; ``max_connections`` is lowered (with a warning) to what the
        process's open-file limit leaves after a reserve for the store, logs and key fetches."""
        cap = config.max_connections
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and cap > soft - _FD_RESERVE:
            lowered = max(1, soft - _FD_RESERVE)
            log.warning(
                "max_connections %d does not fit the open-file limit %d (ulimit -n): using %d",
                cap,
                soft,
                lowered,
            )
            cap = lowered
        return cls(
            body_timeout=config.body_timeout,
            body_min_rate=config.body_min_rate,
            max_connections=cap,
        )


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (as Go's runtime does since
    1.19; worker processes inherit it) and return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            log.debug("could not raise the open-file limit", exc_info=True)
    return soft


def find_app_attr(app: Any, name: str, kind: type[Any]) -> Any:
    """The attribute ``name`` of type ``kind`` on ``app`` or on an app it wraps via ``.app``
    (uvicorn's proxy-headers and message-logger middlewares wrap the IssuerApp); None if none."""
    for _ in range(8):
        value = getattr(app, name, None)
        if isinstance(value, kind):
            return value
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _status_response(code: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    # A whole HTTP response with a Kubernetes Status body, written straight to the socket.
    body = status_body(code, reason, message)
    phrase = {408: b"Request Timeout", 503: b"Service Unavailable"}[code]
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s"
        b"connection: close\r\n\r\n" % (code, phrase, len(body), extra)
    ) + body


_TOO_MANY: Final = _status_response(
    503,
    "ServiceUnavailable",
    "too many open connections; try again",
    b"retry-after: 1\r\n",
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of :class:`HttpLimits` (module docstring)."""

    #: Used when the app carries no ``http_limits`` (tests subclass and override).
    limits: HttpLimits = HttpLimits()
    _head_bytes: int
    _in_head: bool
    _head_timer: Any
    _in_body: bool
    _body_bytes: int
    _body_start: float
    _body_timer: Any
    _heads: int

    def connection_made(self, transport: Any) -> None:
        """Set up as usual, refuse one connection too many, and start the head timer (a silent
        connection is closed too)."""
        super().connection_made(transport)
        app_limits = find_app_attr(self.app, "http_limits", HttpLimits)
        if app_limits is not None:
            self.limits = app_limits
        self._head_bytes = 0
        self._in_head = True
        self._head_timer = None
        self._in_body = False
        self._body_bytes = 0
        self._body_start = 0.0
        self._body_timer = None
        self._heads = 0
        if len(self.connections) > self.limits.max_connections:
            self._in_head = False
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timers, then as usual."""
        self._head_done()
        self._body_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes (from a request's first byte to its end of headers) before parsing;
        time the body once its head is parsed."""
        if self._in_head:
            room = self.limits.max_head_bytes - self._head_bytes
            if len(data) > room:
                # Parse only what may still be head; if the head ends within it, the rest of
                # this read is body (or the next request) and is not head bytes.
                self._head_bytes = self.limits.max_head_bytes
                heads = self._heads
                if room > 0:
                    super().data_received(data[:room])
                if self.transport.is_closing():  # refused by the parser (400) meanwhile
                    return
                if self._heads == heads:
                    self._refuse_head()
                    return
                self.data_received(data[room:])
                return
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_body and self._body_timer is None and not self.transport.is_closing():
            # A body is still to come after this read: start its clock (requests whose body,
            # if any, came with the head never get here, so the hot path arms no timer).
            self._body_start = self.loop.time()
            self._arm_body_timer(min(self.limits.body_rate_grace, self.limits.body_timeout))

    def on_message_begin(self) -> None:
        """A new request: its head is counted and timed from here."""
        super().on_message_begin()
        if not self._in_head:
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        """The head is complete: stop counting, then as usual."""
        self._head_complete()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Count body bytes (for the rate), then as usual."""
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The body is complete: stop its clock, then as usual."""
        self._body_done()
        super().on_message_complete()

    # --- head -----------------------------------------------------------------------------

    def _head_complete(self) -> None:
        self._head_done()
        self._heads += 1
        self._in_body = True
        self._body_bytes = 0

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _head_done(self) -> None:
        self._in_head = False
        timer, self._head_timer = getattr(self, "_head_timer", None), None
        if timer is not None:
            timer.cancel()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        self._head_done()
        msg = b"Request Header Fields Too Large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + msg
        )
        self.transport.close()

    # --- body -----------------------------------------------------------------------------

    def _arm_body_timer(self, delay: float) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(max(delay, 0.01), self._check_body)

    def _body_done(self) -> None:
        self._in_body = False
        timer, self._body_timer = getattr(self, "_body_timer", None), None
        if timer is not None:
            timer.cancel()

    def _check_body(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        flow = self.flow
        if flow is not None and flow.read_paused:
            # We stopped reading (the app is behind, or a pipelined request waits): not the
            # client's doing. Look again later, and restart the clock when reading resumes.
            self._body_start += _READ_PAUSED_RECHECK
            self._arm_body_timer(_READ_PAUSED_RECHECK)
            return
        limits = self.limits
        now = self.loop.time()
        elapsed = now - self._body_start
        if elapsed >= limits.body_timeout:
            self._body_too_slow(f"within {limits.body_timeout:g} s")
            return
        grace = limits.body_rate_grace
        rate = limits.body_min_rate
        if rate > 0 and elapsed >= grace and self._body_bytes < rate * (elapsed - grace):
            self._body_too_slow(f"at {rate} bytes/s or more")
            return
        # Next look: when the rate would fail if nothing more arrived, or at the deadline.
        due = limits.body_timeout
        if rate > 0:
            due = min(due, grace + self._body_bytes / rate + 0.001)
        self._arm_body_timer(due - elapsed)

    def _body_too_slow(self, how: str) -> None:
        self._body_done()
        cycle = self.cycle
        # (the fast lane's stand-in cycle has always answered: no response_started)
        if cycle is not None and not getattr(cycle, "response_started", True):
            # The app is still waiting for the body: it sees a disconnect, the client a 408.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(
                _status_response(
                    408,
                    "Timeout",
                    f"the request body did not arrive {how}; send it faster or smaller",
                )
            )
        self.transport.close()
