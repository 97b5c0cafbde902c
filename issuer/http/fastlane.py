"""A uvicorn HTTP protocol that answers discovery and JWKS GET/HEAD straight from the parser.

Why: every verifier polls these two anonymous, pre-rendered documents, and an ASGI round trip
(scope dict, request/response cycle object, asyncio Task, per-header validation in uvicorn's
``send``) costs several times more than the answer itself. nginx serving the same two files is
the yardstick (bench/bench_jwks.py). This subclass of uvicorn's httptools protocol writes the
pre-encoded response bytes (:meth:`issuer.http.discovery.DocumentEndpoint.raw_response`) from
``on_headers_complete`` when, and only when, all of these hold:

- the request target is exactly one of the documents' paths (no query, no percent-encoding);
- the method is GET or HEAD and the connection is not being upgraded;
- no earlier request on this connection is still being answered (pipelining stays ordered);
- keys are loaded (else the ASGI path answers 503 as usual).

Everything else — and every other path — goes through uvicorn and the Starlette app unchanged.
Responses are byte-for-byte those of the ASGI path (same headers, plus uvicorn's default ``date``
header and ``connection: close`` when the client asked for it); tests/issuer/test_serve_e2e.py
checks both paths over real sockets. The app is found by walking ``.app`` attributes from the
protocol's loaded app to the :class:`issuer.app.IssuerApp` (its ``fast_lane`` mapping).
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from issuer.http.discovery import DocumentEndpoint

__all__ = ["FastLaneHttpToolsProtocol", "GuardedHttpToolsProtocol", "find_fast_lane"]

#: Most bytes of a request line + headers one request may send (uvicorn's httptools protocol has
#: no limit at all: a 20 MB header was buffered whole). kube-apiserver (Go net/http) allows 1 MiB;
#: nothing this service accepts needs more than a few KiB.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Seconds a client may take from connecting (or starting a request) to the end of its headers,
#: so slowloris-style connections that trickle headers forever are closed (Go: ReadHeaderTimeout).
HEAD_TIMEOUT: Final = 10.0


class _NoEvent:
    def set(self) -> None:
        """Nothing waits on a fast-lane request."""


class _Done:
    """Stands in for a finished request cycle, so uvicorn's body/connection callbacks (which
    check ``response_complete`` and poke ``message_event``) treat the request as answered."""

    response_complete: Final = True
    disconnected = False
    keep_alive = True
    more_body = False
    body = b""
    message_event: Final = _NoEvent()


_DONE: Final = _Done()


def find_fast_lane(app: Any) -> dict[bytes, DocumentEndpoint] | None:
    """The ``fast_lane`` of the IssuerApp wrapped (via ``.app``) by uvicorn's middlewares."""
    for _ in range(8):
        lane = getattr(app, "fast_lane", None)
        if isinstance(lane, dict):
            return lane
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on request heads: at most
    :data:`MAX_HEAD_BYTES` bytes (else ``431`` and close) within :data:`HEAD_TIMEOUT` seconds of
    connecting or of the request's first byte (else the connection is closed)."""

    max_head_bytes: int = MAX_HEAD_BYTES
    head_timeout: float = HEAD_TIMEOUT
    _head_bytes: int
    _in_head: bool
    _head_timer: Any

    def connection_made(self, transport: Any) -> None:
        """Set up as usual and start the head timer (a silent connection is closed too)."""
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._head_timer = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head timer, then as usual."""
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes (from a request's first byte to its end of headers) before parsing."""
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        """A new request: its head is counted and timed from here."""
        super().on_message_begin()
        if not self._in_head:
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        """The head is complete: stop counting, then as usual."""
        self._head_done()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

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


class FastLaneHttpToolsProtocol(GuardedHttpToolsProtocol):
    """uvicorn's httptools protocol with a fast lane for the discovery and JWKS documents (and
    the head bounds of :class:`GuardedHttpToolsProtocol`)."""

    _lane: dict[bytes, DocumentEndpoint] | None
    _prefix_src: Any
    _prefix: bytes

    def connection_made(self, transport: Any) -> None:
        """Set up as usual, then look up the app's fast lane once per connection."""
        super().connection_made(transport)
        self._lane = find_fast_lane(self.app)
        self._prefix_src = None
        self._prefix = b""

    def on_headers_complete(self) -> None:
        """Answer the documents directly; defer to uvicorn for anything else."""
        self._head_done()
        lane = self._lane
        if lane is not None:
            endpoint = lane.get(self.url)
            if endpoint is not None and self._fast(endpoint):
                return
        super().on_headers_complete()

    def _fast(self, endpoint: DocumentEndpoint) -> bool:
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False
        parser = self.parser
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        if parser.should_upgrade():
            return False
        default_headers = self.server_state.default_headers
        if default_headers is not self._prefix_src:
            # uvicorn replaces this list once a second (the Date header): re-encode then only.
            self._prefix = b"".join(k + b": " + v + b"\r\n" for k, v in default_headers)
            self._prefix_src = default_headers
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        prefix = self._prefix if keep_alive else self._prefix + b"connection: close\r\n"
        data = endpoint.raw_response(method == b"HEAD", self.headers, prefix)
        if data is None:
            return False
        self.cycle = _DONE  # type: ignore[assignment]
        self.transport.write(data)
        if keep_alive:
            self.on_response_complete()
        else:
            self.server_state.total_requests += 1
            self.transport.close()
        return True
