"""Token and key revocations, and upkeep of the invalidation log.

Three things make an issued token invalid before its ``exp`` (docs/CONTRACTS.md "Beyond Kubernetes:
invalidations and revocations"): its bound object (or service account) is deleted — the API appends
``ObjectDeleted`` atomically with the delete —, its signing key is revoked
(:func:`record_key_revoked` appends ``KeyRevoked``), or the token itself is revoked by ``jti``
(:func:`revoke_token`).

A token revocation is two writes: a cluster-scoped object of kind ``TokenRevocation`` named by the
jti (what TokenReview consults, :func:`is_token_revoked`) and a ``TokenRevoked`` event (what hybrid
verifiers follow). The store has no atomic "create + append", so the object carries the event's seq
in ``status.seq`` once the event is written, and the sequence is made crash-safe:

1. create the object without ``status.seq`` (or find it already there: idempotent);
2. append the event;
3. record the seq in the object (compare-and-swap on resourceVersion).

A crash between 1 and 3 leaves an object without ``status.seq``: the token is already refused by
TokenReview, and the next :func:`revoke_token` for the jti — or :func:`repair_pending`, run by the
periodic :func:`upkeep` — appends the event then. A duplicate ``TokenRevoked`` event (two racing
repairs) is harmless: followers treat events as idempotent facts.

:func:`upkeep` is the periodic chore (under the ``event-trim`` lease, one replica at a time): trim
events older than the longest token lifetime (+ the retention leeway) — a follower needs no event
about a token that cannot be valid any more —, delete TokenRevocation objects past their token's
expiry + the retention leeway, and repair pending revocations.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from issuer.store import AlreadyExists, Conflict, NotFound, Store, StoreUnavailable
from issuer.store.outage import STORE_OUTAGE
from issuer.timefmt import rfc3339

__all__ = [
    "KIND",
    "LEASE_NAME",
    "UpkeepThread",
    "is_token_revoked",
    "prune_expired",
    "record_key_revoked",
    "repair_pending",
    "revoke_token",
    "upkeep",
    "valid_jti",
]

log = logging.getLogger("issuer.revocations")

#: Store kind of token revocations (cluster-scoped, named by jti).
KIND: Final = "TokenRevocation"
API_VERSION: Final = "sa-oidc.dev/v1"
#: The lease that makes one replica at a time run :func:`upkeep`.
LEASE_NAME: Final = "event-trim"
#: Pending revocations younger than this are assumed to be in flight, not crashed.
PENDING_GRACE: Final = 30.0
#: How long past a token's expiry its revocation (and an object deletion event) is kept, by
#: default (``Config.retention_leeway``). A token is still accepted until exp + the verifier's
#: leeway, up to 600 s (``verifier.Policy``), so forgetting earlier reopened the window between
#: exp+60 and exp+leeway (issue 9, item 4). Published to stream followers (``retentionLeeway``).
RETENTION_LEEWAY: Final = 600.0

# A jti is an opaque string (RFC 7519 §4.1.7); ours are uuid4. Accept what is safe as a name.
_JTI_RE: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,256}$")


def valid_jti(jti: object) -> bool:
    """True if ``jti`` is usable as a revocation key (1-256 of ``A-Za-z0-9._:-``)."""
    return isinstance(jti, str) and _JTI_RE.match(jti) is not None


def _seq_of(obj: Mapping[str, Any]) -> int | None:
    status = obj.get("status")
    seq = status.get("seq") if isinstance(status, Mapping) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _exp_of(obj: Mapping[str, Any]) -> float | None:
    spec = obj.get("spec")
    exp = spec.get("exp") if isinstance(spec, Mapping) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _event(jti: str, exp: float, now: float) -> dict[str, Any]:
    return {"type": "TokenRevoked", "jti": jti, "exp": int(exp), "time": now}


def revoke_token(store: Store, jti: str, exp: float, now: float) -> int:
    """Revoke the token ``jti`` (valid until ``exp``); return the seq of its TokenRevoked event.

    Idempotent: revoking a revoked jti returns the original seq (and completes a revocation a crash
    left half-done). Raises ValueError for an unusable jti; store errors propagate.
    """
    if not valid_jti(jti):
        raise ValueError("jti must be 1-256 characters of A-Za-z0-9._:-")
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": jti, "creationTimestamp": rfc3339(now)},
        "spec": {"jti": jti, "exp": int(exp), "expirationTimestamp": rfc3339(exp)},
        "status": {},
    }
    try:
        stored = store.create_object(KIND, "", jti, obj)
    except AlreadyExists:
        stored = store.get_object(KIND, "", jti)
        seq = _seq_of(stored)
        if seq is not None:
            return seq
        exp = _exp_of(stored) or exp
    return _complete(store, jti, stored, exp, now)


def _complete(store: Store, jti: str, stored: Mapping[str, Any], exp: float, now: float) -> int:
    """Steps 2 and 3: append the event, then record its seq in the object (CAS)."""
    seq = store.append_event(_event(jti, exp, now))
    rv = stored.get("metadata", {}).get("resourceVersion")
    updated = dict(stored)
    updated["status"] = {"seq": seq, "eventTime": now}
    try:
        store.update_object(KIND, "", jti, updated, resource_version=rv)
    except Conflict:
        # Someone else completed it concurrently; theirs is the recorded seq.
        other = _seq_of(store.get_object(KIND, "", jti))
        return other if other is not None else seq
    except NotFound:
        pass  # pruned meanwhile (token expired): the event stands on its own
    return seq


def is_token_revoked(store: Store, jti: str) -> bool:
    """True if a revocation for ``jti`` exists (pending or complete). Store errors propagate, so
    TokenReview fails closed when the store is unreachable."""
    if not valid_jti(jti):
        return False
    try:
        store.get_object(KIND, "", jti)
    except NotFound:
        return False
    return True


def record_key_revoked(store: Store, kid: str, now: float) -> int:
    """Append ``KeyRevoked {kid}``; call after the key set with the key revoked is stored.

    If the process dies between the two, the key is already out of the JWKS and refused by
    TokenReview; hybrid verifiers learn of it at their next JWKS refresh (an unknown kid) — calling
    this again (it is idempotent for followers) closes the gap at once.
    """
    return store.append_event({"type": "KeyRevoked", "kid": kid, "time": now})


def repair_pending(store: Store, now: float, grace: float = PENDING_GRACE) -> int:
    """Complete revocations left without an event by a crash; returns how many were repaired."""
    repaired = 0
    for obj in store.list_objects(KIND, None):
        if _seq_of(obj) is not None:
            continue
        created = obj.get("metadata", {}).get("creationTimestamp")
        try:
            created_t = datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            age = now - created_t.timestamp()
        except ValueError:
            age = grace + 1
        if age <= grace:
            continue  # probably still in flight in another request
        jti = obj.get("metadata", {}).get("name")
        exp = _exp_of(obj)
        if not isinstance(jti, str) or exp is None:
            continue
        _complete(store, jti, obj, exp, now)
        repaired += 1
    return repaired


def prune_expired(store: Store, now: float, leeway: float = RETENTION_LEEWAY) -> int:
    """Delete TokenRevocation objects whose token expired more than ``leeway`` s ago."""
    dropped = 0
    for obj in store.list_objects(KIND, None):
        exp = _exp_of(obj)
        name = obj.get("metadata", {}).get("name")
        if exp is None or exp + leeway >= now or not isinstance(name, str):
            continue
        if _seq_of(obj) is None:
            continue  # let repair_pending emit its event first
        try:
            store.delete_object(KIND, "", name)
            dropped += 1
        except NotFound:
            pass
    return dropped


#: How long the object change log serves watch resumption (s). kube-apiserver compacts etcd every
#: 5 minutes (``--etcd-compaction-interval``); a watcher reconnecting within that resumes, an
#: older resourceVersion is 410 Gone and the client re-lists.
CHANGE_RETENTION: Final = 600.0


def upkeep(
    store: Store,
    *,
    retention: float,
    holder: str,
    now: float | None = None,
    lease_ttl: float = 120.0,
    leeway: float = RETENTION_LEEWAY,
) -> dict[str, int] | None:
    """One round of invalidation-log upkeep if this ``holder`` gets the ``event-trim`` lease.

    ``retention`` must be at least the longest token lifetime (``Config.max_token_lifetime``);
    events older than ``retention`` + ``leeway`` are trimmed, revocations are pruned at their
    token's exp + ``leeway`` (``Config.retention_leeway``), object changes (the watch log) older
    than :data:`CHANGE_RETENTION`. Returns counts, or None if another replica holds the lease.
    """
    t = time.time() if now is None else now
    if not store.acquire_lease(LEASE_NAME, holder, lease_ttl):
        return None
    repaired = repair_pending(store, t)
    pruned = prune_expired(store, t, leeway)
    trimmed = store.trim_events(t - retention - leeway)
    changes = store.trim_changes(t - CHANGE_RETENTION)
    if trimmed or repaired or pruned or changes:
        log.info(
            "invalidation upkeep: trimmed %d events, pruned %d revocations, repaired %d, "
            "trimmed %d object changes",
            trimmed,
            pruned,
            repaired,
            changes,
        )
    return {"trimmed": trimmed, "pruned": pruned, "repaired": repaired, "changes": changes}


class UpkeepThread:
    """Run :func:`upkeep` every ``interval`` seconds in a daemon thread (every replica starts one;
    the lease makes one of them do the work). Wire into the app's lifespan::

        upkeep = UpkeepThread(ctx.store, retention=ctx.config.max_token_lifetime).start()
        ...
        upkeep.stop()

    Store failures are logged and retried at the next round.
    """

    def __init__(
        self,
        store: Store,
        *,
        retention: float,
        interval: float = 60.0,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        leeway: float = RETENTION_LEEWAY,
    ) -> None:
        self.store = store
        self.retention = retention
        self.leeway = leeway
        self.interval = interval
        self.holder = holder or f"upkeep-{uuid.uuid4()}"
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invalidation-upkeep", daemon=True)

    def start(self) -> UpkeepThread:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and give the lease up (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            self.store.release_lease(LEASE_NAME, self.holder)
        except Exception:  # best effort at shutdown; the lease expires anyway
            log.debug("could not release the %s lease", LEASE_NAME)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                upkeep(
                    self.store,
                    retention=self.retention,
                    holder=self.holder,
                    now=self._clock(),
                    lease_ttl=max(3 * self.interval, 30.0),
                    leeway=self.leeway,
                )
                STORE_OUTAGE.succeeded()
            except StoreUnavailable as e:  # one line per outage (issuer.store.outage)
                STORE_OUTAGE.failed("invalidation upkeep", e)
            except Exception:  # keep the chore alive through anything else
                log.warning("invalidation upkeep failed; retrying later", exc_info=True)
