"""A hard deadline for a whole synchronous HTTP exchange: connect, TLS, request, headers, body.

httpx's ``Timeout`` bounds each socket operation, not the exchange: a server that trickles its
response headers one byte at a time resets the read timeout with every byte and keeps a caller
waiting for as long as it likes (issue 9, item 3: 72 s with ``timeout=1``). The async verifiers
bound the whole exchange with ``asyncio.timeout``; threads have no such cancellation, so the sync
verifiers bound it at the socket instead:

- :func:`total_deadline` sets a deadline for the calling thread (nestable; the earlier one wins);
- :class:`DeadlineTransport` is an ``httpx.HTTPTransport`` whose connections clamp every socket
  wait (connect, TLS handshake, each read and write) to the time left before that deadline, and
  fail with the matching httpx timeout once none is left. Outside a deadline it behaves exactly
  as ``httpx.HTTPTransport``.

The verifiers build their own clients on this transport. A caller who passes its own
``httpx.Client`` to a sync verifier gets the hard bound by building that client with
``transport=DeadlineTransport(...)``; otherwise the deadline is checked only between body
chunks, as before.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx

__all__ = ["DeadlineTransport", "total_deadline"]

_local = threading.local()

#: httpx's own defaults (``httpx.HTTPTransport``).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@contextmanager
def total_deadline(seconds: float) -> Iterator[None]:
    """Bound every :class:`DeadlineTransport` exchange this thread makes inside the block."""
    previous: float | None = getattr(_local, "deadline", None)
    mine = time.monotonic() + seconds
    _local.deadline = mine if previous is None else min(previous, mine)
    try:
        yield
    finally:
        _local.deadline = previous


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's deadline; ``error`` when none is."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the total deadline for this exchange has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A connection whose every wait is clamped to the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's sync socket backend, handing out deadline-clamped streams."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _clamp(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` (no proxy) whose exchanges obey :func:`total_deadline`.

    Takes ``verify`` (a bool or an ``ssl.SSLContext``), ``limits`` and ``trust_env`` as
    ``httpx.HTTPTransport`` does. httpx offers no public hook for a network backend, so the
    transport's connection pool is rebuilt with one; ``tests/verifier/test_total_deadline.py``
    fails loudly if an httpx upgrade changes that seam.
    """

    def __init__(
        self,
        verify: ssl.SSLContext | bool = True,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        trust_env: bool = True,
    ) -> None:
        # Not super().__init__(): it would build a second SSL context (loading the trust store
        # twice) and a pool that is thrown away; HTTPTransport keeps nothing else.
        context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )
