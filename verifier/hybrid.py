"""Hybrid verification: offline OIDC checks plus the issuer's invalidation stream.

Offline verification (:class:`verifier.remote.OIDCVerifier`) is fast and needs no issuer call per
token, but cannot know that a bound pod was deleted or a token revoked; TokenReview knows, at the
cost of a round trip per check. :class:`HybridVerifier` closes the gap: a background
:class:`~verifier._stream.StreamFollower` keeps the set of invalidated object uids, service-account
uids, key ids and token ids, and every check is::

    ident = offline.verify(token)                     # signature, iss, aud, exp ... (no I/O)
        (offline cannot check — no key set and JWKS unreachable: the on_stale path below)
    if state says ident's pod/secret/node/SA uid, kid or jti was invalidated:
        raise InvalidToken("revoked")                 # even when stale: the state only grows
    if the stream is fresh (synced, heard from within ``staleness`` s):
        return ident
    on_stale == "tokenreview": return TokenReview(token)   # one issuer call, exact answer
    on_stale == "fail_closed": raise VerifierUnavailable   # never trust stale state silently

The TokenReview fallback keeps the offline policy: a legacy Secret token (which the issuer's
TokenReview accepts) is refused as ``issuer_mismatch`` unless the offline policy allows legacy
tokens, exactly as offline verification would refuse it.

Leeway and retention: a revoked token must stay revoked for as long as the offline check could
accept it, i.e. until exp + this verifier's ``leeway``. The follower keeps revoked jtis that long,
and the issuer keeps revocations and deletion events until exp + its published
``retentionLeeway`` (600 s by default, the largest leeway ``Policy`` allows). Against an issuer
whose retention leeway is shorter than this verifier's leeway (or that publishes none: older
issuers kept 60 s) the stream alone cannot be trusted, so the state never counts as fresh and every
check takes the ``on_stale`` path, and a warning is logged once (issue 9, item 4).

Startup and resync: the follower first lists every retained event (``after=0``) — tokens minted
before this process started may be bound to objects already deleted — and only then counts as
fresh; until then (and while rebuilding after a "410 Gone" resync) checks take the ``on_stale``
path. A dropped connection is resumed from the last seq with backoff, losing nothing.

``calls`` counts issuer requests made on behalf of checks (TokenReview fallbacks); the stream's
own requests are in ``stream_requests`` (one long-lived connection, not per check).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import httpx

from ._stream import MAX_LEEWAY, UNPUBLISHED_RETENTION_LEEWAY, FollowerStatus, StreamFollower
from .credentials import BearerToken, as_bearer_token
from .deadline import total_deadline
from .errors import InvalidToken, VerifierUnavailable
from .identity import ServiceAccountIdentity
from .tokenreview import TokenReviewVerifier

__all__ = ["HybridVerifier", "OnStale"]

OnStale = Literal["tokenreview", "fail_closed"]

log = logging.getLogger("verifier.hybrid")


class _SyncVerifier(Protocol):
    def verify(self, token: str) -> ServiceAccountIdentity: ...


class HybridVerifier:
    """Offline verification plus an invalidation-stream follower (see module docstring).

    - ``issuer``: the issuer URL (exact ``iss``); discovery and JWKS are fetched from it.
    - ``audiences``: accepted audiences.
    - ``bearer_token``: credential for the stream and TokenReview (allowed to review tokens): a
      ``str``, or a :class:`~verifier.credentials.BearerTokenFile` for a token that rotates.
    - ``review_url``: base URL of the issuer's API (stream + TokenReview); defaults to ``issuer``.
    - ``staleness``: seconds without an event or heartbeat after which local state is not trusted.
    - ``on_stale``: ``"tokenreview"`` (ask the issuer) or ``"fail_closed"`` (VerifierUnavailable).
    - ``heartbeat``: heartbeat interval requested from the issuer (default ``staleness / 5``,
      clamped to 0.25-2 s), so a dead connection is noticed well within ``staleness``.
    - ``offline`` / ``review``: inject ready verifiers (anything with ``.verify(token)``);
      by default an ``OIDCVerifier`` and a ``TokenReviewVerifier`` are built.
    - ``client``: an ``httpx.Client`` to use for the stream (and the default TokenReview verifier).
    - ``insecure_allow_http``: allow http URLs — tokens then travel in clear text; tests only.
    - ``start``: start following at once (default); else call :meth:`start`.
    - ``clock`` (monotonic, staleness) and ``wall_clock`` (POSIX time, jti expiry): injectable.

    Offline options (``leeway``, ``algorithms`` ...) go to the default ``OIDCVerifier``.
    """

    def __init__(
        self,
        issuer: str,
        audiences: Iterable[str],
        *,
        bearer_token: str | BearerToken,
        review_url: str | None = None,
        staleness: float = 5.0,
        on_stale: OnStale = "tokenreview",
        heartbeat: float | None = None,
        offline: _SyncVerifier | None = None,
        review: _SyncVerifier | None = None,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        insecure_allow_http: bool = False,
        start: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        **offline_kwargs: Any,
    ) -> None:
        if on_stale not in ("tokenreview", "fail_closed"):
            raise ValueError("on_stale must be 'tokenreview' or 'fail_closed'")
        if staleness <= 0:
            raise ValueError("staleness must be positive")
        if isinstance(audiences, str):
            audiences = (audiences,)
        self.audiences = tuple(audiences)
        self.issuer = issuer
        self.review_url = (review_url or issuer).rstrip("/")
        parsed = httpx.URL(self.review_url)
        if parsed.scheme == "http" and not insecure_allow_http:
            raise ValueError(
                "review_url must be https (a credential is sent to it); "
                "pass insecure_allow_http=True only for loopback tests"
            )
        self.timeout = float(timeout)
        self.staleness = float(staleness)
        self.on_stale: OnStale = on_stale
        hb = heartbeat if heartbeat is not None else min(2.0, max(0.25, staleness / 5.0))
        self._clock = clock
        self._lock = threading.Lock()
        if offline is None:
            from .remote import OIDCVerifier  # lazy: keeps this module importable on its own

            if ca_bundle and "client" not in offline_kwargs:
                offline_kwargs["ca_bundle"] = os.fspath(ca_bundle)
            offline_kwargs.setdefault("timeout", timeout)
            offline = OIDCVerifier(
                issuer,
                audiences=list(self.audiences),
                insecure_allow_http=insecure_allow_http,
                **offline_kwargs,
            )
        self.offline: _SyncVerifier = offline
        policy = getattr(offline, "policy", None)
        # The offline path's legacy policy, applied to TokenReview answers too (issue 9, item 5).
        self.allow_legacy = bool(getattr(policy, "allow_legacy", False))
        # How long past exp the offline check accepts a token: revocations must outlive it
        # (issue 9, item 4). An injected verifier without a Policy is assumed to use the most.
        policy_leeway = getattr(policy, "leeway", None)
        self.leeway = (
            float(policy_leeway)
            if isinstance(policy_leeway, int | float) and not isinstance(policy_leeway, bool)
            else MAX_LEEWAY
        )
        self._retention_warned = False
        self._owned_review: TokenReviewVerifier | None = None
        bearer = as_bearer_token(bearer_token)  # one credential for the stream and TokenReview
        if review is None:
            self._owned_review = TokenReviewVerifier(
                self.review_url,
                bearer,
                self.audiences,
                client=client,
                timeout=timeout,
                ca_bundle=ca_bundle,
                insecure_allow_http=insecure_allow_http,
            )
            review = self._owned_review
        self.review: _SyncVerifier = review
        verify: Any = True
        if ca_bundle:
            import ssl

            verify = ssl.create_default_context(cafile=os.fspath(ca_bundle))
        self.follower = StreamFollower(
            self.review_url,
            bearer,
            heartbeat=hb,
            client=client,
            verify=verify,
            clock=clock,
            wall_clock=wall_clock,
            leeway=self.leeway,
        )
        #: Issuer requests made by checks (TokenReview fallbacks).
        self.calls = 0
        #: Checks answered from fresh local state / by fallback / refused as stale.
        self.fresh_checks = 0
        self.fallback_checks = 0
        self.stale_refusals = 0
        if start:
            self.start()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start following the invalidation stream (idempotent)."""
        self.follower.start()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Block until the first full list of events has been applied; True if it has."""
        return self.follower.wait_synced(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the follower (waiting up to ``timeout`` s for its thread) and close owned clients.

        The follower thread is a daemon: a process about to exit may pass ``timeout=0``.
        """
        self.follower.close(timeout)
        if self._owned_review is not None:
            self._owned_review.close()
        closer = getattr(self.offline, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> HybridVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- state ---------------------------------------------------------------------------------
    def status(self) -> FollowerStatus:
        """The follower's health (synced, last seq, last contact, reconnects, resyncs)."""
        return self.follower.status()

    def is_fresh(self) -> bool:
        """True when local state may be trusted: synced, heard from within ``staleness`` s, and
        kept by the issuer for at least this verifier's leeway past exp (see the module
        docstring)."""
        age = self.follower.age()
        return age is not None and age <= self.staleness and self.retention_covers_leeway()

    def retention_covers_leeway(self) -> bool:
        """True when the issuer's published retention leeway is at least this verifier's."""
        published = self.follower.retention_leeway
        retention = UNPUBLISHED_RETENTION_LEEWAY if published is None else published
        if retention >= self.leeway:
            return True
        if not self._retention_warned:
            self._retention_warned = True
            log.warning(
                "the issuer keeps revocations %g s past expiry, less than this verifier's leeway "
                "(%g s): the invalidation stream is not trusted, every check takes on_stale=%s",
                retention,
                self.leeway,
                self.on_stale,
            )
        return False

    @property
    def stream_requests(self) -> int:
        """HTTP requests made by the stream follower (list pages and watch connections)."""
        return self.follower.requests

    # --- the check -----------------------------------------------------------------------------
    def verify(self, token: str) -> ServiceAccountIdentity:
        """Verify offline, then against the invalidation state (see the module docstring).

        One ``timeout`` bounds the whole check, fallback included: against a silent issuer the
        key fetch and the TokenReview fallback share it rather than taking it twice each
        (issue 9, item 15; enforced by :func:`verifier.deadline.total_deadline`).
        """
        with total_deadline(self.timeout):
            return self._verify(token)

    def _verify(self, token: str) -> ServiceAccountIdentity:
        try:
            ident = self.offline.verify(token)
        except VerifierUnavailable:
            # No usable key set (discovery/JWKS unreachable, nothing cached): offline cannot
            # check at all, which is "stale" in the extreme. Same rule: ask the issuer's
            # TokenReview (it may well be up) or stay unavailable — never guess.
            if self.on_stale == "fail_closed":
                with self._lock:
                    self.stale_refusals += 1
                raise
            return self._fallback(token)
        why = self.follower.why_invalid(ident)
        if why is not None:
            raise InvalidToken("revoked", why)
        if self.is_fresh():
            with self._lock:
                self.fresh_checks += 1
            return ident
        if self.on_stale == "fail_closed":
            with self._lock:
                self.stale_refusals += 1
            raise VerifierUnavailable("invalidation stream is stale; refusing to trust local state")
        return self._fallback(token)

    def _fallback(self, token: str) -> ServiceAccountIdentity:
        """TokenReview, under the offline path's policy: a legacy Secret token, which the
        issuer's TokenReview accepts, is refused unless the offline policy allows legacy
        tokens, with the reason the offline check gives (issue 9, item 5)."""
        with self._lock:
            self.calls += 1
            self.fallback_checks += 1
        ident = self.review.verify(token)
        if ident.legacy and not self.allow_legacy:
            raise InvalidToken(
                "issuer_mismatch",
                "iss is not the expected issuer (a legacy Secret token; this verifier's policy "
                "does not accept them)",
            )
        return ident
