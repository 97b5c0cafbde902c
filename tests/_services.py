"""Real services for tests (no mocks): a private ``redis-server`` on a free port.

Used by the fixtures in ``tests/conftest.py``; importable on its own for benchmarks or scripts.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A throwaway ``redis-server`` (no persistence) owned by the test session.

    ``.url`` is ``redis://127.0.0.1:PORT/0``; ``.restart()`` kills and restarts it on the same port
    (data is lost: there is no persistence), e.g. to test reconnects.
    """

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "redis-server is not installed (apt-get install redis-server): the Redis store "
                "tests need a real server and must not be skipped"
            )
        self.binary = found
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        log = (self.workdir / "redis.log").open("ab")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no", "--dir", str(self.workdir)]
        self._proc = subprocess.Popen([self.binary, *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"redis-server exited with {code}; see {self.workdir}/redis.log")
            if _pong(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {timeout}s")

    def stop(self) -> None:
        """Kill the server (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port (all data is lost)."""
        self.stop()
        with contextlib.suppress(OSError):
            (self.workdir / "dump.rdb").unlink()
        self.start()
