"""Real services for tests (no mocks), each on free ports, owned by the test session:

- :class:`RedisServer`: one ``redis-server`` (no persistence).
- :class:`RedisClusterDeployment`: a Redis Cluster of three masters, no replicas.
- :class:`RedisSentinelDeployment`: a master, one replica and one Sentinel (service ``sa-oidc``).

Used by the fixtures in ``tests/conftest.py``; importable on its own for benchmarks or scripts.
A missing binary raises RuntimeError (the fixtures turn it into a failure, never a skip).
Needs Redis 7.0+ (``--cluster-port``; Debian bookworm's redis-server and redis-tools).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(name: str, binary: str | None = None) -> str:
    found = binary or shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed (apt-get install redis-server redis-tools): the Redis "
            "store tests need real servers and must not be skipped"
        )
    return found


def _wait(what: str, check: object, timeout: float) -> None:
    """Poll ``check()`` (ignoring Redis/OS errors) until it is truthy; RuntimeError on timeout."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


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

    def __init__(
        self, workdir: Path, binary: str | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = _need("redis-server", binary)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no", "--dir", str(self.workdir), *self.extra_args]
        self._proc = subprocess.Popen([self.binary, *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the spawned server answers PING (RuntimeError if it exits or times out)."""
        assert self._proc is not None, "spawn() first"
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

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.spawn()
        self.wait_ready(timeout)

    def client(self) -> redis.Redis:
        """A plain client to this server (close it after use)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

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

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the running server (SIGSTOP/SIGCONT to freeze it, SIGKILL ...)."""
        assert self._proc is not None, "not running"
        self._proc.send_signal(sig)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the server to exit (after a signal) and forget it; returns its exit code.
        :meth:`start` may then run it again on the same port and directory (with
        ``--appendonly yes`` in ``extra_args`` it reloads its data)."""
        proc, self._proc = self._proc, None
        assert proc is not None, "not running"
        return proc.wait(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port (all data is lost)."""
        self.stop()
        with contextlib.suppress(OSError):
            (self.workdir / "dump.rdb").unlink()
        self.start()


def _link_up(c: redis.Redis) -> bool:
    return bool(c.info("replication").get("master_link_status") == "up")


def _cluster_ok(c: redis.Redis) -> bool:
    """``cluster_state:ok``, and this node maps all 16384 slots (else a client could be sent
    MOVED around while gossip settles)."""
    if c.cluster("info")["cluster_state"] != "ok":
        return False
    return sum(e[1] - e[0] + 1 for e in c.execute_command("CLUSTER SLOTS")) == 16384


class RedisClusterDeployment:
    """A Redis Cluster of ``masters`` nodes, no replicas, no persistence, created with
    ``redis-cli --cluster create`` (https://redis.io/docs/latest/operate/oss_and_stack/management/
    scaling/#create-a-redis-cluster).

    ``.url`` is the ``open_store`` URL (``redis+cluster://`` with every node as a seed),
    ``.nodes`` the :class:`RedisServer` of each master, ``.flushall()`` empties every master.
    """

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.cli = _need("redis-cli")
        self.workdir = workdir
        self.nodes = [
            RedisServer(
                workdir / f"node-{i}",
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(workdir / f"node-{i}" / f"nodes-{i}.conf"),
                    "--cluster-node-timeout", "2000",
                    # The bus defaults to port + 10000, which may be taken or above 65535.
                    "--cluster-port", str(free_port()),
                ],
            )
            for i in range(masters)
        ]  # fmt: skip
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.url = f"redis+cluster://{seeds}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the nodes, assign all 16384 slots, wait for ``cluster_state:ok`` everywhere."""
        for n in self.nodes:
            n.spawn()
        for n in self.nodes:
            n.wait_ready()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        out = subprocess.run(
            [self.cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
        clients = [n.client() for n in self.nodes]
        try:
            for c in clients:
                _wait("cluster_state:ok", lambda c=c: _cluster_ok(c), timeout)
        finally:
            for c in clients:
                c.close()

    def flushall(self) -> None:
        """FLUSHALL on every master."""
        for n in self.nodes:
            with contextlib.closing(n.client()) as c:
                c.flushall()

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for n in self.nodes:
            n.stop()


SENTINEL_SERVICE = "sa-oidc"


class RedisSentinelDeployment:
    """A master, one replica and one Sentinel watching them as service ``sa-oidc``
    (https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/).

    ``.url`` is the ``open_store`` URL (``redis+sentinel://127.0.0.1:PORT/sa-oidc``). The
    Sentinel reacts fast (down after 500 ms), so :meth:`kill_master` leads to a failover within
    a few seconds; :meth:`master_port` asks the Sentinel where the master is now.
    """

    def __init__(self, workdir: Path) -> None:
        self.binary = _need("redis-server")
        self.workdir = workdir
        # No diskless-sync delay: the replica's first full sync (and the fixture) would wait 5 s.
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self.master = RedisServer(workdir / "master", extra_args=fast_sync)
        self.replica = RedisServer(
            workdir / "replica",
            extra_args=[*fast_sync, "--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.sentinel_port = free_port()
        self.url = f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SENTINEL_SERVICE}"
        self._sentinel: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start master, replica and Sentinel; wait until the Sentinel knows a synced replica."""
        self.master.spawn()
        self.replica.spawn()
        self.master.wait_ready()
        self.replica.wait_ready()
        # Synced before the Sentinel first looks (it re-reads a replica's INFO only every 10 s).
        with contextlib.closing(self.replica.client()) as c:
            _wait("the replica to sync", lambda: _link_up(c), timeout)
        sdir = self.workdir / "sentinel"
        sdir.mkdir(parents=True, exist_ok=True)
        conf = sdir / "sentinel.conf"  # Sentinel rewrites its config: it must be writable
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {sdir}\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 500\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
        )
        log = (sdir / "sentinel.log").open("ab")
        self._sentinel = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            _wait("Sentinel PONG", lambda: _pong(self.sentinel_port), timeout)
            with contextlib.closing(self.sentinel_client()) as s:
                _wait("a replica known to Sentinel", lambda: self._replica_ok(s), timeout)
        except RuntimeError:
            self.stop()
            raise

    def _replica_ok(self, s: redis.Redis) -> bool:
        """The Sentinel sees a connected replica whose link to the master is up."""
        replicas = s.execute_command("SENTINEL", "REPLICAS", SENTINEL_SERVICE)
        for info in replicas:  # redis-py returns one dict per replica
            if info[b"master-link-status"] == b"ok" and b"disconnected" not in info[b"flags"]:
                return True
        return False

    def sentinel_client(self) -> redis.Redis:
        """A client to the Sentinel itself."""
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=5)

    def master_port(self) -> int:
        """The master's port, as the Sentinel reports it to clients now.

        ``SENTINEL MASTER`` (what redis-py reads), not ``GET-MASTER-ADDR-BY-NAME``: the latter
        names the promoted replica as soon as it is promoted, before the failover has ended.
        """
        with contextlib.closing(self.sentinel_client()) as s:
            state = s.execute_command("SENTINEL", "MASTER", SENTINEL_SERVICE)
        return int(state[b"port"])

    def server(self, port: int) -> RedisServer:
        """The master or replica listening on ``port``."""
        return next(n for n in (self.master, self.replica) if n.port == port)

    def flushall(self) -> None:
        """FLUSHALL on the current master (replicated to the replica)."""
        with contextlib.closing(self.server(self.master_port()).client()) as c:
            c.flushall()

    def kill_master(self, timeout: float = 20.0) -> int:
        """Stop the current master and wait until the Sentinel has promoted the other server and
        it answers as master. Returns the new master's port."""
        old = self.master_port()
        self.server(old).stop()
        _wait("Sentinel to promote the replica", lambda: self.master_port() != old, timeout)
        new = self.master_port()
        with contextlib.closing(self.server(new).client()) as c:
            _wait("the new master", lambda: c.info("replication")["role"] == "master", timeout)
        return new

    def stop(self) -> None:
        """Stop the Sentinel and both servers (idempotent)."""
        proc, self._sentinel = self._sentinel, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.replica.stop()
        self.master.stop()
