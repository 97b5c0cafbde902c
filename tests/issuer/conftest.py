"""Fixtures that run the REAL ``sa-issuer serve`` in a subprocess on a free loopback port.

Reuse them from any test under ``tests/``::

    def test_something(issuer_process):            # default: SQLite in a tmp data dir
        r = httpx.get(issuer_process.url + "/openid/v1/jwks")
        headers = {"Authorization": f"Bearer {issuer_process.admin_token}"}

    def test_replicas(issuer_factory, redis_url):
        kek = issuer_factory.make_kek()
        a = issuer_factory.start(store=redis_url, kek=kek)
        b = issuer_factory.start(store=redis_url, kek=kek, config={"rotation_period": "6s"})

``issuer_factory.start(...)`` parameters (all optional): ``store`` (a store URL; default sqlite in
the data dir), ``data_dir``, ``issuer`` (default ``http://127.0.0.1:PORT``), ``port``, ``kek``
(path), ``config`` (dict written as the TOML config file), ``extra_args`` (more ``serve`` flags),
``env`` (extra environment), ``tls`` ((cert, key) paths: serves https), ``self_signed`` (https
with the CA ``serve`` creates in the data dir; an https ``issuer`` without either is served as
plain http, ``--tls off``, as behind a TLS proxy), ``wait`` (wait for
``/readyz`` = 200; default True). It returns an :class:`IssuerProcess` with ``url`` (base URL),
``issuer``, ``port``, ``data_dir``, ``admin_token``, ``proc``, ``stop()``, ``kill()`` (SIGKILL),
``restart()``, ``stdout()``/``stderr()`` and ``client()`` (an httpx.Client on ``url``).
``issuer_factory.cli(*args)`` runs any other ``sa-issuer`` command and returns the CompletedProcess.
Every process started is stopped at teardown. The environment is scrubbed of ``SA_ISSUER_*``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_TIMEOUT = 30.0

#: Run the CLI through the interpreter running the tests (same environment as the `sa-issuer`
#: console script, which test_serve_e2e checks separately).
ISSUER_CMD: tuple[str, ...] = (sys.executable, "-m", "issuer")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without SA_ISSUER_* (so a developer's settings never leak in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def toml_text(settings: Mapping[str, Any]) -> str:
    """A flat TOML document for ``settings`` (str, int, float, bool, list of str)."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool):
            v = "true" if value else "false"
        elif isinstance(value, int | float):
            v = repr(value)
        elif isinstance(value, str):
            v = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(value, list | tuple):
            v = "[" + ", ".join('"' + str(x) + '"' for x in value) + "]"
        else:
            raise TypeError(f"cannot write {key}={value!r} as TOML")
        lines.append(f"{key} = {v}")
    return "\n".join(lines) + "\n"


@dataclass
class IssuerProcess:
    """A running ``sa-issuer serve`` subprocess (see the module docstring)."""

    url: str
    issuer: str
    port: int
    data_dir: Path
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    verify: ssl.SSLContext | bool = True
    #: the self-signed CA ``serve`` creates (``self_signed=True``): trusted once it exists.
    ca_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    _admin_token: str | None = field(default=None, repr=False)

    # --- process control ---------------------------------------------------------------------
    def launch(self) -> None:
        """Start the process (stdout/stderr to files in ``log_dir``)."""
        self.runs += 1
        out = open(self.log_dir / f"stdout.{self.runs}", "wb")  # noqa: SIM115
        err = open(self.log_dir / f"stderr.{self.runs}", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.env)
        finally:
            out.close()
            err.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``/readyz`` until 200; fail with the process output if it dies or times out."""
        deadline = time.monotonic() + timeout
        last = ""
        while self.ca_file is not None and not self.ca_file.exists():
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {self.ca_file}\nstderr: {self.stderr()}", pytrace=False)
            time.sleep(0.05)
        if self.ca_file is not None:
            self.verify = ssl.create_default_context(cafile=str(self.ca_file))
        with httpx.Client(verify=self.verify, timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"sa-issuer exited with {self.proc.returncode} before ready\n"
                        f"stdout: {self.stdout()}\nstderr: {self.stderr()}",
                        pytrace=False,
                    )
                try:
                    r = client.get(self.url + "/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text}"
                except httpx.HTTPError as e:
                    last = repr(e)
                time.sleep(0.05)
        pytest.fail(
            f"sa-issuer not ready after {timeout}s (last: {last})\nstderr: {self.stderr()}",
            pytrace=False,
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def kill(self) -> None:
        """SIGKILL (``kill -9``) and reap."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)

    def restart(self, *, wait: bool = True) -> IssuerProcess:
        """Stop (if running) and start again with the same arguments, port and data dir."""
        self.stop()
        self.launch()
        if wait:
            self.wait_ready()
        return self

    # --- output ------------------------------------------------------------------------------
    def stdout(self, run: int | None = None) -> str:
        """What run ``run`` (default: the latest) printed on stdout."""
        return (self.log_dir / f"stdout.{run or self.runs}").read_text(errors="replace")

    def stderr(self, run: int | None = None) -> str:
        """What run ``run`` (default: the latest) printed on stderr."""
        return (self.log_dir / f"stderr.{run or self.runs}").read_text(errors="replace")

    @property
    def admin_token(self) -> str:
        """The bootstrap admin token (read from ``DATA_DIR/admin-token``)."""
        if self._admin_token is None:
            self._admin_token = (self.data_dir / "admin-token").read_text().strip().splitlines()[0]
        return self._admin_token

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client on ``url`` (TLS trust set up for ``tls=`` servers)."""
        kw.setdefault("verify", self.verify)
        kw.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kw)


class IssuerFactory:
    """Starts ``sa-issuer serve`` processes and runs other CLI commands; cleans up after."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[IssuerProcess] = []
        self._n = 0

    def make_kek(self, name: str = "shared.kek") -> Path:
        """A fresh KEK file (base64 of 32 random bytes, mode 0600) for several replicas."""
        path = self.tmp_path / name
        path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        path.chmod(0o600)
        return path

    def start(
        self,
        *,
        store: str | None = None,
        data_dir: Path | None = None,
        issuer: str | None = None,
        port: int | None = None,
        kek: Path | str | None = None,
        config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
        self_signed: bool = False,
        wait: bool = True,
    ) -> IssuerProcess:
        """Start one server; see the module docstring."""
        self._n += 1
        name = f"issuer{self._n}"
        port = port or free_port()
        data_dir = data_dir or self.tmp_path / name / "data"
        log_dir = self.tmp_path / name / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        scheme = "https" if tls or self_signed else "http"
        url = f"{scheme}://127.0.0.1:{port}"
        issuer = issuer or url
        argv = [
            *ISSUER_CMD,
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--issuer",
            issuer,
        ]
        if store is not None:
            argv += ["--store", store]
        if kek is not None:
            argv += ["--kek", str(kek)]
        if config:
            cfg = self.tmp_path / name / "issuer.toml"
            cfg.write_text(toml_text(config))
            argv += ["--config", str(cfg)]
        verify: ssl.SSLContext | bool = True
        if not tls and not self_signed and issuer.startswith("https://"):
            # An https issuer served as plain http: a TLS-terminating proxy in front.
            argv += ["--tls", "off"]
        if tls:
            argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            verify = ssl.create_default_context(cafile=str(tls[0]))
        argv += list(extra_args)
        proc = IssuerProcess(
            url=url,
            issuer=issuer,
            port=port,
            data_dir=data_dir,
            argv=argv,
            env=clean_env(env),
            log_dir=log_dir,
            verify=verify,
            ca_file=data_dir / "ca.crt" if self_signed else None,
        )
        self.processes.append(proc)
        proc.launch()
        if wait:
            proc.wait_ready()
        return proc

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sa-issuer ARGS...`` to completion (text output captured)."""
        return subprocess.run(
            [*ISSUER_CMD, *args],
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        """Stop every process started here."""
        for p in self.processes:
            with contextlib.suppress(Exception):
                p.stop(timeout=5)


@pytest.fixture
def issuer_factory(tmp_path: Path) -> Iterator[IssuerFactory]:
    """Starts real ``sa-issuer serve`` subprocesses; all stopped after the test."""
    factory = IssuerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def issuer_process(issuer_factory: IssuerFactory) -> IssuerProcess:
    """One ready ``sa-issuer serve`` on a free port, SQLite store in a tmp data dir."""
    return issuer_factory.start()
