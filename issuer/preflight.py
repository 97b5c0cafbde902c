"""Checks ``sa-issuer serve`` makes before it writes anything, each failing with one clear line.

Issue 9 item 14: a read-only or immutable data dir gave a traceback, a port already in use was
found only after the KEK, admin token, database and first key had been written, and a missing
``--tls-cert`` was reported as "no such file: None". ``serve`` now runs, in this order:

1. :func:`check_tls` — both PEM files exist and load (the message names the missing path);
2. :func:`bind_listener` — the listening socket is bound (and then handed to uvicorn), so "address
   already in use" is reported before the data dir is touched;
3. :func:`check_data_dir` — the data dir, if it exists, accepts a new file, and the files ``serve``
   writes in it (database, journal, audit log) are writable.

Each raises :class:`PreflightError` (or :class:`issuer.config.ConfigError` for TLS settings).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from pathlib import Path
from typing import Final

from issuer.config import Config, ConfigError

__all__ = ["PreflightError", "bind_listener", "check_data_dir", "check_tls"]

#: Files in the data dir that ``serve`` opens for writing when they exist (SQLite's database, its
#: WAL and shared-memory files, the audit log).
_WRITTEN: Final = ("issuer.db", "issuer.db-wal", "issuer.db-shm", "audit.log")


class PreflightError(Exception):
    """``serve`` cannot start; ``str(err)`` is one line for ``sa-issuer: error: ...``."""


def check_tls(config: Config) -> None:
    """Both TLS files exist and load as a certificate chain and its key (ConfigError if not)."""
    if config.tls_cert is None or config.tls_key is None:
        return
    for path, flag in ((config.tls_cert, "--tls-cert"), (config.tls_key, "--tls-key")):
        if not path.is_file():
            what = "is not a file" if path.exists() else "no such file"
            raise ConfigError(flag, f"{what}: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(
            "--tls-cert/--tls-key",
            f"cannot load certificate {config.tls_cert} and key {config.tls_key}: "
            f"{e.strerror or e}",
        ) from None


def bind_listener(config: Config) -> socket.socket:
    """The bound (not yet listening) TCP socket for ``config.listen``, inheritable by uvicorn's
    worker processes, with the options uvicorn itself would set (``SO_REUSEADDR``)."""
    host = config.listen_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, config.listen_port))
    except OSError as e:
        sock.close()
        why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise PreflightError(f"cannot listen on {config.listen}: {why}") from None
    sock.set_inheritable(True)
    return sock


def check_data_dir(config: Config) -> None:
    """The data dir, if it exists, must take a new file, and the files ``serve`` writes in it
    must be writable; a directory still to be created must have a writable parent."""
    path = config.data_dir
    if not path.exists():
        parent = _existing_ancestor(path)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PreflightError(f"cannot create the data dir {path}: {parent} is not writable")
        return
    if not path.is_dir():
        raise PreflightError(f"the data dir {path} is not a directory")
    probe = path / f".sa-issuer-write-test.{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as e:
        raise PreflightError(
            f"the data dir {path} is not writable ({e.strerror}): make it writable for this "
            "user (is it read-only, or immutable: lsattr -d)?"
        ) from None
    for name in _WRITTEN:
        file = path / name
        if file.exists() and not os.access(file, os.W_OK):
            raise PreflightError(
                f"{file} in the data dir is not writable: make it writable for this user "
                "(is it read-only, or immutable: lsattr)?"
            )


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")
