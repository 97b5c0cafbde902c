"""Issue 9 item 3: the total ``timeout`` holds for the whole HTTP exchange, headers included.

httpx's timeouts are per socket operation, so a server that trickles its response *headers* one
byte at a time never trips the read timeout: the sync ``OIDCVerifier`` and ``TokenReviewVerifier``
hung for 72 s with ``timeout=1`` (the async twins stop at once: ``asyncio.timeout``). While hung,
the key fetch holds the verifier's single fetch slot. These tests run a real socket server that
answers every request with an endless trickle of header bytes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from jwks_server import JWKSServer

from verifier import AsyncOIDCVerifier, OIDCVerifier, TokenReviewVerifier, VerifierUnavailable
from verifier.deadline import DeadlineTransport, total_deadline
from verifier.tokenreview import AsyncTokenReviewVerifier

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJ4In0.c2ln"  # never reaches a check
TIMEOUT = 1.0
#: How long past ``TIMEOUT`` a call may take on a loaded 2-core CI machine (it took 72 s).
SLACK = 1.5


class TrickleServer:
    """Accepts connections, reads a request head, then sends one header byte every ``gap`` s."""

    def __init__(self, gap: float = 0.1) -> None:
        self.gap = gap
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
        try:
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(head)
            while not self._stop.is_set():
                conn.sendall(b"a")
                time.sleep(self.gap)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    server = TrickleServer()
    yield server
    server.close()


def _timed(call: object) -> float:
    start = time.monotonic()
    with pytest.raises(VerifierUnavailable):
        call()  # type: ignore[operator]
    return time.monotonic() - start


def test_sync_oidc_verifier_stops_at_its_timeout_while_headers_trickle(
    trickle: TrickleServer,
) -> None:
    v = OIDCVerifier(trickle.url, ["aud"], timeout=TIMEOUT, insecure_allow_http=True)
    try:
        assert _timed(lambda: v.verify(TOKEN)) < TIMEOUT + SLACK
    finally:
        v.close()


def test_sync_oidc_fetch_slot_is_free_again_after_the_timeout(trickle: TrickleServer) -> None:
    """A second verify after the first gave up starts its own fetch and also stops in time."""
    v = OIDCVerifier(
        trickle.url, ["aud"], timeout=TIMEOUT, insecure_allow_http=True, refetch_cooldown=0.0
    )
    try:
        assert _timed(lambda: v.verify(TOKEN)) < TIMEOUT + SLACK
        assert _timed(lambda: v.verify(TOKEN)) < TIMEOUT + SLACK
    finally:
        v.close()


def test_sync_tokenreview_verifier_stops_at_its_timeout_while_headers_trickle(
    trickle: TrickleServer,
) -> None:
    v = TokenReviewVerifier(
        trickle.url, "reviewer-token", ["aud"], timeout=TIMEOUT, insecure_allow_http=True
    )
    try:
        assert _timed(lambda: v.verify(TOKEN)) < TIMEOUT + SLACK
    finally:
        v.close()


def test_async_twins_stop_at_their_timeout_too(trickle: TrickleServer) -> None:
    async def run() -> tuple[float, float]:
        oidc = AsyncOIDCVerifier(trickle.url, ["aud"], timeout=TIMEOUT, insecure_allow_http=True)
        review = AsyncTokenReviewVerifier(
            trickle.url, "reviewer-token", ["aud"], timeout=TIMEOUT, insecure_allow_http=True
        )
        try:
            start = time.monotonic()
            with pytest.raises(VerifierUnavailable):
                await oidc.verify(TOKEN)
            mid = time.monotonic()
            with pytest.raises(VerifierUnavailable):
                await review.verify(TOKEN)
            return mid - start, time.monotonic() - mid
        finally:
            await oidc.aclose()
            await review.aclose()

    first, second = asyncio.run(run())
    assert first < TIMEOUT + SLACK
    assert second < TIMEOUT + SLACK


def test_deadline_transport_bounds_any_request(trickle: TrickleServer) -> None:
    """The seam for a caller's own client: ``httpx.Client(transport=DeadlineTransport())``."""
    with httpx.Client(transport=DeadlineTransport(), timeout=30) as client:
        start = time.monotonic()
        with pytest.raises(httpx.TimeoutException), total_deadline(TIMEOUT):
            client.get(trickle.url)
        assert time.monotonic() - start < TIMEOUT + SLACK
        # Outside a deadline the transport is an ordinary one: per-operation timeouts only.
        with pytest.raises(httpx.ReadTimeout):
            httpx.Client(transport=DeadlineTransport(), timeout=0.05).get(trickle.url)


def test_deadline_transport_is_transparent_for_ordinary_servers() -> None:
    """Keep-alive, bodies and status codes pass through unchanged (a real uvicorn server)."""
    server = JWKSServer()
    server.start()
    try:
        with httpx.Client(transport=DeadlineTransport()) as client:
            for _ in range(3):
                with total_deadline(5):
                    resp = client.get(f"{server.url}/.well-known/openid-configuration")
                assert resp.status_code == 200
                assert resp.json()["issuer"] == server.url
    finally:
        server.stop()


def test_hybrid_against_a_silent_issuer_gives_up_within_one_timeout(
    trickle: TrickleServer,
) -> None:
    """Key fetch and TokenReview fallback share one budget (issue 9 item 15: it took both)."""
    from verifier import HybridVerifier

    timeout = 2.0  # before: 2 s for the key fetch, then 2 s more for the fallback
    v = HybridVerifier(
        trickle.url, ["aud"], bearer_token="reviewer-token", timeout=timeout,
        insecure_allow_http=True,
    )  # fmt: skip
    try:
        assert _timed(lambda: v.verify(TOKEN)) < timeout + 1.2
    finally:
        v.close(timeout=0)
