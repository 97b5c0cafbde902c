"""Raw HTTP/1.1 over a plain socket, for tests of what only a real socket shows (how reads split
and merge, whether a keep-alive connection survives, when the server closes)."""

from __future__ import annotations

import socket


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length framed response from ``sock``: (status, lower-cased headers, body).
    AssertionError if the server closes the connection before the response is complete."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head (got {buf!r})"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]
