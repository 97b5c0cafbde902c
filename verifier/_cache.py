"""Sans-I/O key-set cache for the remote verifiers: *what to do now*, never *how to fetch*.

``OIDCVerifier`` (threads) and ``AsyncOIDCVerifier`` (asyncio) share this state machine and differ
only in their transport and in what a "flight" (one in-progress fetch) is: a ``threading.Event`` or
an ``asyncio.Task``. Every decision takes ``now`` as a parameter (STYLE.md §1), so the rules below
are testable on a fake clock.

Rules, and where they come from:

- **Fresh**: a key set is used without any fetch until ``fresh_until``, which is the response's
  ``Cache-Control: max-age`` minus ``Age`` (RFC 9111 §4.2.1, §4.2.3), clamped to
  ``[min_cache, max_cache]`` (panva/jose caps the cache at 10 minutes). ``no-store`` / ``no-cache``
  or no usable ``max-age`` give ``min_cache``.
- **Stale**: after ``fresh_until`` the old set is still served while ONE background refresh runs
  (stale-while-revalidate, RFC 5861 in spirit). Known-kid verification never waits for it.
- **Unknown kid**: one refetch at most per ``refetch_cooldown`` (panva/jose: 30 s), one flight
  shared by every concurrent caller (go-oidc ``jwks.go`` ``RemoteKeySet.keysFromRemote``). Without
  the cooldown random-kid tokens each cost an upstream fetch — go-oidc's known DoS.
- **Failure**: a failed fetch never replaces the last good key set (PyJWT's ``PyJWKClient`` used to
  wipe it: a total outage for a blip). Only with no key set at all is a failure fatal, and then the
  next attempt waits ``cold_retry`` seconds so an outage does not turn into a fetch per request.

The *fast path* (fresh set, known kid) reads one attribute and takes no lock: ``entry`` is an
immutable snapshot replaced atomically under ``_lock``, and ``_lock`` is never held across I/O.
"""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar

if TYPE_CHECKING:
    from verifier.jwk import KeySet

F = TypeVar("F")

_NEVER: Final = float("-inf")
_DELTA_SECONDS_RE: Final = re.compile(r"[0-9]+")


def freshness_lifetime(headers: Mapping[str, str], *, floor: float, ceiling: float) -> float:
    """Seconds a response may be used without refetching, clamped to ``[floor, ceiling]``.

    ``max-age`` minus ``Age`` (RFC 9111 §4.2.1, §4.2.3). ``no-store`` / ``no-cache`` (§5.2.2.4-5),
    a missing, malformed or repeated ``max-age`` (§4.2.1: "invalid ... SHOULD be considered stale")
    all give ``floor``: the verifier still keeps keys briefly instead of fetching per request.
    ``s-maxage`` is for shared caches (§5.2.2.10) and is ignored here; so is ``Expires`` (max-age
    takes precedence when present, and issuers of this project always send it).
    """
    value = headers.get("cache-control", "")
    max_ages: list[str] = []
    for part in value.split(","):
        # RFC 9111 §5.2: names are case-insensitive; an argument may be a token or quoted string.
        name, _, arg = part.partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return floor
        if name == "max-age":
            max_ages.append(arg.strip().strip('"'))
    if len(max_ages) != 1 or not _DELTA_SECONDS_RE.fullmatch(max_ages[0]):
        return floor
    lifetime = float(int(max_ages[0]))
    age = headers.get("age", "").strip()
    if _DELTA_SECONDS_RE.fullmatch(age):
        lifetime -= int(age)
    return min(max(lifetime, floor), ceiling)


@dataclass(frozen=True, slots=True)
class Entry:
    """One good key set and how long it is fresh. Immutable: replaced, never mutated."""

    keys: KeySet
    fresh_until: float
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetch returned a new key set (``200``)."""

    keys: KeySet
    lifetime: float
    etag: str | None


@dataclass(frozen=True, slots=True)
class NotModified:
    """A conditional fetch returned ``304``: the current key set is still the issuer's."""

    lifetime: float


@dataclass(frozen=True, slots=True)
class Failed:
    """A fetch failed. ``reason`` is safe to log and to put in ``VerifierUnavailable``."""

    reason: str


FetchResult = Fetched | NotModified | Failed


class Do(enum.Enum):
    """What a caller must do after asking the cache."""

    USE = "use"  # use Decision.keys (maybe newer than the set the caller tried)
    FETCH = "fetch"  # the caller now owns Decision.flight and must run it, then call complete()
    WAIT = "wait"  # another caller's Decision.flight is in progress: wait for it
    GIVE_UP = "give_up"  # nothing newer to be had now (cooldown / backoff)


@dataclass(frozen=True, slots=True)
class Decision(Generic[F]):
    """The cache's answer: an action, and the keys or the flight it refers to."""

    do: Do
    keys: KeySet | None = None
    flight: F | None = None


class KeyCache(Generic[F]):
    """The shared state machine. ``F`` is the transport's flight type (Event or Task)."""

    def __init__(
        self, *, min_cache: float, max_cache: float, refetch_cooldown: float, cold_retry: float
    ) -> None:
        self.min_cache = min_cache
        self.max_cache = max_cache
        self.refetch_cooldown = refetch_cooldown
        self.cold_retry = cold_retry
        #: Read without the lock on the fast path; only ever replaced whole, under the lock.
        self.entry: Entry | None = None
        #: Where the JWKS lives, once discovery said so (``None``: discover first).
        self.jwks_uri: str | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._flight: F | None = None
        self._last_attempt = _NEVER
        self._last_failed = False
        self.fetches = 0  # attempts started (for tests and metrics)

    # -- decisions -------------------------------------------------------------------------------

    def on_cold(
        self, now: float, new_flight: Callable[[], F], *, claim: bool = True
    ) -> Decision[F]:
        """No key set yet: fetch (or wait for the fetch in progress), unless backing off."""
        with self._lock:
            if self.entry is not None:
                return Decision(Do.USE, keys=self.entry.keys)
            if self._flight is not None:
                return Decision(Do.WAIT, flight=self._flight)
            if self._last_failed and now - self._last_attempt < self.cold_retry:
                return Decision(Do.GIVE_UP)
            return self._claim(now, new_flight, claim)

    def on_stale(self, now: float, new_flight: Callable[[], F]) -> F | None:
        """The set is past ``fresh_until``: return a flight to run in the background, or None.

        None when a fetch is already in progress or a failed one was tried within the cooldown.
        Callers keep using the stale set either way.
        """
        with self._lock:
            entry = self.entry
            if entry is None or now < entry.fresh_until or self._flight is not None:
                return None
            if self._last_failed and now - self._last_attempt < self.refetch_cooldown:
                return None
            return self._claim(now, new_flight, True).flight

    def on_unknown_kid(
        self, now: float, tried: KeySet, new_flight: Callable[[], F], *, claim: bool = True
    ) -> Decision[F]:
        """A token's kid was not in ``tried``: retry with newer keys, wait, refetch or give up."""
        with self._lock:
            entry = self.entry
            if entry is not None and entry.keys is not tried:
                return Decision(Do.USE, keys=entry.keys)
            if self._flight is not None:
                return Decision(Do.WAIT, flight=self._flight)
            # panva/jose: at most one refetch per cooldown, whatever the outcome of the last one.
            if now - self._last_attempt < self.refetch_cooldown:
                return Decision(Do.GIVE_UP)
            return self._claim(now, new_flight, claim)

    def _claim(self, now: float, new_flight: Callable[[], F], claim: bool) -> Decision[F]:
        if not claim:  # a peek (verify_cached): say a fetch is needed without starting one
            return Decision(Do.FETCH)
        flight = new_flight()
        self._flight = flight
        self._last_attempt = now
        self.fetches += 1
        return Decision(Do.FETCH, flight=flight)

    # -- outcome ---------------------------------------------------------------------------------

    def complete(self, now: float, result: FetchResult) -> Entry | None:
        """Record the outcome of the flight in progress; return the entry now in force."""
        with self._lock:
            self._flight = None
            old = self.entry
            if isinstance(result, Fetched):
                self.entry = Entry(result.keys, now + result.lifetime, result.etag)
                self._last_failed = False
                self.last_error = None
            elif isinstance(result, NotModified) and old is not None:
                self.entry = Entry(old.keys, now + result.lifetime, old.etag)
                self._last_failed = False
                self.last_error = None
            else:
                # Keep the last good key set (the PyJWT wipe bug is the anti-pattern); forget the
                # discovered jwks_uri so the next attempt re-discovers in case it moved.
                self._last_failed = True
                self.last_error = (
                    result.reason if isinstance(result, Failed) else "304 without a cached key set"
                )
                self.jwks_uri = None
            return self.entry


__all__ = [
    "Decision",
    "Do",
    "Entry",
    "Failed",
    "FetchResult",
    "Fetched",
    "KeyCache",
    "NotModified",
    "freshness_lifetime",
]
