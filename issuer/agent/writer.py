"""Atomic token files: the reader sees the old token or the new one, never a part of either.

The kubelet's atomic writer (pkg/volume/util/atomic_writer.go) swaps a symlink to a fresh
directory; for a single file the same guarantee comes from POSIX ``rename(2)``: write a temporary
file in the same directory (same file system), ``fsync`` it, set its mode and owner, ``rename``
it over the target, then ``fsync`` the directory so the rename itself survives a crash. A process
killed mid-write leaves at most a ``.NAME.*.tmp`` file beside the target, which
:func:`remove_stale_temporaries` deletes at the next start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["TEMP_SUFFIX", "remove_file", "remove_stale_temporaries", "temp_prefix", "write_atomic"]

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """The name prefix of ``path``'s temporary files (hidden, in the same directory)."""
    return f".{path.name}."


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    uid: int | None = None,
    gid: int | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically, with ``mode`` (and owner ``uid``/``gid``).

    The temporary file is created 0600 (``mkstemp``) and only widened to ``mode`` once complete;
    on any error it is removed and ``path`` is left as it was. ``durable=False`` skips both
    fsyncs: still never partial for readers or after a killed process, but a power loss may undo
    the write (fine for the status file, not for tokens). Raises OSError.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


def remove_file(path: Path) -> bool:
    """Delete ``path`` if it exists (True if it did); the directory entry removal is synced."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files an earlier, killed writer left beside ``path``; return them."""
    removed: list[Path] = []
    prefix = temp_prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed
