"""Bearer credentials for the calls a verifier makes to the issuer (TokenReview, the stream).

A long-running verifier should not hold a token string: least-privilege credentials are
themselves expiring service-account tokens (a projected volume the kubelet rewrites, or a file a
job re-mints). :class:`BearerTokenFile` re-reads its file the way client-go's cached file token
source does (staging/src/k8s.io/client-go/transport/token_source.go ``NewCachedFileTokenSource``:
at most once a period, one minute), and at once after the issuer answered 401. A failed or empty
read keeps the last good value (the kubelet swaps projected files atomically, but a half-written
file from another writer must not become the credential).

Anything with ``value()`` and ``invalidate()`` is a :class:`BearerToken`; a plain ``str`` is
wrapped in :class:`StaticBearerToken`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["BearerToken", "BearerTokenFile", "StaticBearerToken", "as_bearer_token"]

log = logging.getLogger("sa_verifier.credentials")

#: A credential is a token: the core refuses tokens over 16 KiB; leave room, refuse the absurd.
MAX_CREDENTIAL_BYTES = 64 * 1024


@runtime_checkable
class BearerToken(Protocol):
    """A source of the ``Authorization: Bearer`` credential."""

    def value(self) -> str:
        """The credential to send now."""

    def invalidate(self) -> None:
        """The issuer refused the credential (401): fetch a fresh one before the next use."""


class StaticBearerToken:
    """A fixed credential (``invalidate`` does nothing: there is nothing to re-read)."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise ValueError("the bearer token is empty")
        self._token = token

    def value(self) -> str:
        """The credential."""
        return self._token

    def invalidate(self) -> None:
        """Nothing to re-read."""

    def __repr__(self) -> str:
        return "StaticBearerToken(<redacted>)"


class BearerTokenFile:
    """A credential read from ``path``, re-read at most every ``refresh`` seconds and at once
    after :meth:`invalidate`. The file must be readable and non-empty when this is created."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        refresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh < 0:
            raise ValueError("refresh must be >= 0 seconds")
        self.path = Path(path)
        self.refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        token = self._read()  # fail at construction: a wrong path is a configuration error
        if token is None:
            raise ValueError(f"bearer token file {self.path} is empty or unreadable")
        self._token: str = token
        self._read_at = clock()
        #: How many times the file was read (observability; tests).
        self.reads = 1

    def _read(self) -> str | None:
        try:
            with self.path.open("rb") as f:
                raw = f.read(MAX_CREDENTIAL_BYTES + 1)
        except OSError as e:
            log.warning("cannot read bearer token file %s: %s", self.path, e.strerror or e)
            return None
        if len(raw) > MAX_CREDENTIAL_BYTES:
            log.warning("bearer token file %s is larger than %d bytes", self.path, len(raw) - 1)
            return None
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            log.warning("bearer token file %s is not UTF-8 text", self.path)
            return None
        return token or None

    def value(self) -> str:
        """The current credential (re-read when the period has passed or after a 401)."""
        with self._lock:
            now = self._clock()
            if now - self._read_at >= self.refresh:
                fresh = self._read()
                self._read_at = now
                self.reads += 1
                if fresh is not None:
                    self._token = fresh
            return self._token

    def invalidate(self) -> None:
        """Re-read before the next use."""
        with self._lock:
            self._read_at = float("-inf")

    def __repr__(self) -> str:
        return f"BearerTokenFile({str(self.path)!r})"


def as_bearer_token(token: str | BearerToken) -> BearerToken:
    """``token`` as a :class:`BearerToken` (a ``str`` becomes a :class:`StaticBearerToken`)."""
    if isinstance(token, str):
        return StaticBearerToken(token)
    if isinstance(token, BearerToken):
        return token
    raise TypeError("bearer_token must be a str or a BearerToken (e.g. BearerTokenFile(path))")
