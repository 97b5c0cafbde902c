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

from issuer.http.discovery import DocumentEndpoint
from issuer.http.limits import GuardedHttpToolsProtocol, find_app_attr

__all__ = ["FastLaneHttpToolsProtocol", "GuardedHttpToolsProtocol", "find_fast_lane"]


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
    lane: dict[bytes, DocumentEndpoint] | None = find_app_attr(app, "fast_lane", dict)
    return lane


class FastLaneHttpToolsProtocol(GuardedHttpToolsProtocol):
    """uvicorn's httptools protocol with a fast lane for the discovery and JWKS documents (and
    the request and connection bounds of :class:`issuer.http.limits.GuardedHttpToolsProtocol`)."""

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
        self._head_complete()
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
