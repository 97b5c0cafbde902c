"""KeyManager: the signing keys of one issuer replica, kept in step with the store.

I/O at the edges (STYLE.md §1, §8): the decisions are :mod:`issuer.keys.rotation` (pure); this
module loads, generates keys outside the write, and writes with ``Store.cas_keys`` — on
:class:`Conflict` it re-reads and re-decides, so with many replicas exactly one rotation happens
(docs/CONTRACTS.md invariant 3). The active signer only ever comes from a key set read back from, or
successfully written to, the store: the issuer never signs with a key that is not durably stored
and published (docs/CONTRACTS.md "Failure rules").

Readers (TokenRequest, TokenReview, discovery) take immutable :class:`PublishedKeys` snapshots and
the current :class:`Signer` without locks; writers swap them under a lock.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from issuer import crypto, revocations
from issuer.crypto import Kek, KekError, PrivateKey, Signer
from issuer.keys import rotation
from issuer.keys.rotation import KeyPolicy
from issuer.store.base import (
    Conflict,
    KeySetState,
    Store,
    StoredKey,
    StoreUnavailable,
    Subscription,
)
from issuer.store.outage import STORE_OUTAGE

if TYPE_CHECKING:
    from verifier.jwk import KeySet

__all__ = ["KeyManager", "NoActiveKey", "PublishedKeys"]

log = logging.getLogger(__name__)

#: CAS attempts per operation before giving up with Conflict (each loser re-reads and re-decides).
MAX_CAS_ATTEMPTS: Final = 8

#: The only JWK members ever rendered (RFC 7517/7518 public members; GCP's accepted list).
_PUBLIC_MEMBERS: Final = ("use", "kty", "kid", "crv", "alg", "n", "e", "x", "y")


class NoActiveKey(RuntimeError):
    """No active signing key is available (not started, or the store holds none)."""


def _public_only(jwk: Mapping[str, Any]) -> dict[str, Any]:
    # Defense in depth: even a tampered store cannot make us publish "d", "p", "q" ...
    return {m: jwk[m] for m in _PUBLIC_MEMBERS if m in jwk}


class PublishedKeys:
    """An immutable snapshot of the published key set.

    - ``version``: store version of the key set.
    - ``keys``: every stored key (``private_enc`` is ciphertext; no rendering here includes it).
    - ``jwks``: ``{"keys": [...]}`` public JWKs of next/active/retired keys by (created_at, kid);
      ``jwks_json``: the same as compact JSON bytes. Do not mutate ``jwks``.
    - ``algorithms``: sorted, deduplicated algs of published keys (discovery).
    - ``next_change``: when the published set next changes (None: nothing scheduled);
      :meth:`max_age` turns it into a ``Cache-Control`` max-age.
    - ``revoked_kids``: kids revoked and still remembered.
    - ``active_kid``: the signing key's kid, or None.
    - ``keyset``: a ``verifier.jwk.KeySet`` of ``jwks`` for TokenReview, built on first use.
    """

    __slots__ = (
        "_keyset",
        "active_kid",
        "algorithms",
        "jwks",
        "jwks_json",
        "jwks_max_age",
        "keys",
        "next_change",
        "revoked_kids",
        "version",
    )

    def __init__(
        self, version: int, keys: Sequence[StoredKey], policy: KeyPolicy, now: float
    ) -> None:
        self.version: int = version
        self.keys: tuple[StoredKey, ...] = tuple(keys)
        pub = rotation.published(self.keys)
        self.jwks: dict[str, list[dict[str, Any]]] = {
            "keys": [_public_only(k.public_jwk) for k in pub]
        }
        self.jwks_json: bytes = orjson.dumps(self.jwks)
        self.algorithms: tuple[str, ...] = tuple(sorted({k.alg for k in pub}))
        self.next_change: float | None = rotation.next_change(self.keys, now, policy)
        self.jwks_max_age: int = policy.jwks_max_age
        self.revoked_kids: frozenset[str] = frozenset(
            k.kid for k in self.keys if k.state == "revoked"
        )
        act = rotation.active(self.keys)
        self.active_kid: str | None = act.kid if act else None
        self._keyset: KeySet | None = None

    @property
    def keyset(self) -> KeySet:
        """The published keys as a verifier ``KeySet`` (built once per snapshot)."""
        ks = self._keyset
        if ks is None:
            from verifier.jwk import KeySet

            ks = self._keyset = KeySet.from_jwks(self.jwks)
        return ks

    def max_age(self, now: float | None = None) -> int:
        """``Cache-Control`` max-age at ``now``: min(jwks_max_age, next_change - now), >= 0."""
        t = time.time() if now is None else now
        return rotation.cache_max_age(self.next_change, t, self.jwks_max_age)

    def __repr__(self) -> str:
        kids = [k["kid"] for k in self.jwks["keys"]]
        return (
            f"PublishedKeys(version={self.version}, active={self.active_kid!r}, published={kids})"
        )


class KeyManager:
    """Signing keys for one replica: bootstrap, rotation, revocation, snapshots, signer.

    Contract (used by the HTTP app, the CLI, TokenRequest and TokenReview):
    ``start``, ``stop``, ``refresh``, ``rotate_if_due``, ``rotate``, ``revoke``, ``rewrap``,
    ``signer``, ``published``, ``add_listener``, ``is_revoked``.
    """

    def __init__(
        self,
        store: Store,
        kek: Kek,
        policy: KeyPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._kek = kek
        self._policy = policy
        self._clock = clock
        self._lock = threading.RLock()  # snapshot swaps + listener calls, in order
        self._write_lock = threading.Lock()  # one local writer at a time (others race via CAS)
        self._snapshot: PublishedKeys | None = None
        self._signer: Signer | None = None
        self._private: dict[str, PrivateKey] = {}  # decrypted active/next keys by kid
        self._listeners: list[Callable[[PublishedKeys], None]] = []
        self._sub: Subscription | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        snap = self._snapshot
        return f"KeyManager(version={snap.version if snap else None}, policy={self._policy!r})"

    @property
    def policy(self) -> KeyPolicy:
        """The policy in force."""
        return self._policy

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, *, rotate: bool = True, interval: float = 10.0) -> None:
        """Load the keys (bootstrapping an empty store), subscribe to changes, start rotating.

        Raises :class:`KekError` — before writing anything — if the stored keys cannot be
        decrypted with this KEK.
        """
        # Subscribe first, so a change written between our first read and now is not missed.
        if self._sub is None:
            self._sub = self._store.watch(self._on_store_change, kinds=("keys",))
        try:
            state = self._store.load_keys()
            if state.keys:
                self._install(state)  # KEK check first: a wrong KEK must not write anything
            if not state.keys or rotate:
                self.rotate_if_due()  # bootstrap, or catch up on what fell due while we were down
            if self._snapshot is None:
                self._install(self._store.load_keys())
        except BaseException:
            self.stop()
            raise
        if rotate and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="sa-issuer-key-rotation", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the rotation thread and the store subscription (idempotent)."""
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()

    def _run(self, interval: float) -> None:
        wait = self._next_wait(interval)
        while not self._stop.wait(wait):
            try:
                self.rotate_if_due()
                STORE_OUTAGE.succeeded()
                wait = self._next_wait(interval)
            except StoreUnavailable as e:  # one line per outage, not a traceback per check
                STORE_OUTAGE.failed("key rotation", e)
                wait = interval  # no fast retries against a failing store
            except Exception:
                log.exception("key rotation step failed; will retry")
                wait = interval

    def _next_wait(self, interval: float) -> float:
        """Sleep the jittered ``interval``, but wake just after the published set's next change
        is due: until the change is written, Cache-Control says max-age=0 (the documents count
        down to ``next_change``), so every verifier would refetch on every request. The small
        extra jitter spreads replicas out; CAS makes exactly one of them write (invariant 3)."""
        wait = interval * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
        snap = self._snapshot
        if snap is not None and snap.next_change is not None:
            until = snap.next_change - self._clock()
            # Already due yet unchanged after a step: nothing to gain by waking early (and no
            # tight loop); keep the interval.
            if until > 0:
                wait = min(wait, until + random.uniform(0.01, 0.25))  # noqa: S311
        return wait

    def _on_store_change(self, kind: str) -> None:
        if kind != "keys":
            return
        try:
            self.refresh()
        except KekError as e:
            log.error(
                "could not refresh keys after a store change: %s. If the KEK was rotated "
                "(`sa-issuer keys rewrap`), set this replica's KEK to the new one and restart it; "
                "keeping the last good snapshot",
                e,
            )
        except StoreUnavailable as e:
            STORE_OUTAGE.failed("key refresh after a store change", e)
        except Exception:
            log.exception("could not refresh keys after a store change; keeping the last snapshot")

    def refresh(self) -> None:
        """Re-read the store, rebuild the snapshot and notify listeners (if it changed).

        Raises what the store raises, or :class:`KekError` if a key written by another replica
        cannot be decrypted with this KEK (the last good snapshot stays in place).
        """
        self._install(self._store.load_keys())

    # --- readers (hot path: no locks) ---------------------------------------------------------

    def signer(self) -> Signer:
        """The signer of the active key; :class:`NoActiveKey` if there is none."""
        s = self._signer
        if s is None:
            raise NoActiveKey("no active signing key (key manager not started, or store empty)")
        return s

    def published(self) -> PublishedKeys:
        """The current snapshot; :class:`NoActiveKey` before :meth:`start`."""
        snap = self._snapshot
        if snap is None:
            raise NoActiveKey("key manager not started")
        return snap

    def is_revoked(self, kid: str) -> bool:
        """True if ``kid`` is a revoked key still remembered by the store."""
        snap = self._snapshot
        return snap is not None and kid in snap.revoked_kids

    def add_listener(self, callback: Callable[[PublishedKeys], None]) -> None:
        """Call ``callback(snapshot)`` after every snapshot change — and once now, if a snapshot
        exists, so a listener added after :meth:`start` misses nothing."""
        with self._lock:
            self._listeners.append(callback)
            snap = self._snapshot
            if snap is not None:
                self._notify_one(callback, snap)

    # --- writers ------------------------------------------------------------------------------

    def rotate_if_due(self, now: float | None = None) -> bool:
        """One rotation step: load, decide, generate outside the write, apply, compare-and-swap.

        Re-reads and re-decides on Conflict (bounded); never writes when nothing is due. Returns
        True if this call wrote. ``now`` pins the clock (tests); by default the clock is re-read
        right before the write, so slow key generation does not shorten the publish lead.
        """
        with self._write_lock:
            new_key: StoredKey | None = None
            for _ in range(MAX_CAS_ATTEMPTS):
                state = self._store.load_keys()
                t = self._clock() if now is None else now
                d = rotation.decide(state.keys, t, self._policy)
                if d.nothing:
                    self._install(state)
                    return False
                self._check_kek(state)
                if d.needs_new_key and new_key is None:
                    new_key = self._generate(t)
                    t = self._clock() if now is None else now
                    d = rotation.decide(state.keys, t, self._policy)
                    if d.nothing:  # only if the clock went backwards; still never write
                        return False
                keys = rotation.apply(state.keys, t, self._policy, new_key)
                try:
                    version = self._store.cas_keys(state.version, keys)
                except Conflict:
                    log.info("key set changed under us; re-reading (invariant 3)")
                    continue
                # The first key of an empty store is routine (every first start): debug only,
                # so a normal start logs just the serve banner. Later writes are rotations.
                log.log(
                    logging.INFO if state.keys else logging.DEBUG,
                    "key set written (version %d): %s",
                    version,
                    "; ".join(d.reasons),
                )
                self._install(KeySetState(version, keys))
                return True
            raise Conflict(f"key rotation lost {MAX_CAS_ATTEMPTS} compare-and-swap races in a row")

    def rotate(self, *, immediately: bool = False) -> StoredKey:
        """Manual rotation; returns the key that signs next (the new active key if promoted).

        Safe by default (see :func:`rotation.rotate_now`); ``immediately=True`` knowingly breaks
        invariant 1 — verifiers with a cached JWKS reject new tokens until they refetch.
        """

        def op(state: KeySetState, now: float, new_key: StoredKey | None) -> tuple[StoredKey, ...]:
            return rotation.rotate_now(
                state.keys, now, self._policy, new_key, immediately=immediately
            )

        keys = self._write(op, lambda s: rotation.rotate_now_needs_new_key(s.keys))
        if immediately:
            log.warning("IMMEDIATE key rotation: breaks invariant 1 for verifiers' cached JWKS")
        nexts = [k for k in keys if k.state == "next"]
        if nexts:
            return min(nexts, key=lambda k: (k.activate_at or k.created_at, k.kid))
        act = rotation.active(keys)
        assert act is not None
        return act

    def revoke(self, kid: str) -> None:
        """Revoke ``kid`` (gone from the JWKS at once) and append a ``KeyRevoked`` invalidation
        event. :class:`UnknownKey` (a KeyError and a store NotFound) if no such key. Revoking the
        active key promotes the next one — or a new one — at once (see :func:`rotation.revoke`)."""

        def op(state: KeySetState, now: float, new_key: StoredKey | None) -> tuple[StoredKey, ...]:
            return rotation.revoke(state.keys, kid, now, self._policy, new_key)

        self._write(op, lambda s: rotation.revoke_needs_new_key(s.keys, kid))
        # Tell hybrid verifiers at once (their cached JWKS still holds the key). Recorded after
        # the key set is stored; revoking again re-records it, so a crash between the two writes
        # is closed by re-running `sa-issuer keys revoke KID` (followers treat repeats as one).
        revocations.record_key_revoked(self._store, kid, self._clock())
        log.warning("key %s revoked", kid)

    def _write(
        self,
        op: Callable[[KeySetState, float, StoredKey | None], tuple[StoredKey, ...]],
        needs_new_key: Callable[[KeySetState], bool],
    ) -> tuple[StoredKey, ...]:
        with self._write_lock:
            new_key: StoredKey | None = None
            for _ in range(MAX_CAS_ATTEMPTS):
                state = self._store.load_keys()
                if state.keys:
                    self._check_kek(state)
                if needs_new_key(state) and new_key is None:
                    new_key = self._generate(self._clock())
                keys = op(state, self._clock(), new_key)
                if keys == state.keys:
                    self._install(state)
                    return keys
                try:
                    version = self._store.cas_keys(state.version, keys)
                except Conflict:
                    continue
                self._install(KeySetState(version, keys))
                return keys
            raise Conflict(f"lost {MAX_CAS_ATTEMPTS} compare-and-swap races in a row")

    def rewrap(self, new_kek: Kek) -> KeySetState:
        """Re-encrypt every stored private key under ``new_kek`` in ONE compare-and-swap write.

        Each key is decrypted with the current KEK (and checked against its kid and public JWK),
        then sealed under ``new_kek`` (AAD = kid, fresh nonce); kids, states, times and public
        material are unchanged. On :class:`Conflict` (a rotation or revocation won the race) the
        key set is re-read and the whole re-encryption redone (bounded). Raises :class:`KekError`
        — before writing anything — if ``new_kek`` is the current KEK or any stored key does not
        open under the current KEK. On success this manager uses ``new_kek`` from now on and the
        written state is returned (nothing is written if the store holds no keys).

        Other replicas still holding the old KEK keep signing with the keys they have decrypted
        in memory, but can neither load keys written afterwards nor write (``_check_kek``): roll
        the new KEK out to them right away.
        """
        if self._kek.same_key(new_kek):
            raise KekError("the new KEK is the same as the current one: nothing to re-encrypt")
        with self._write_lock:
            for _ in range(MAX_CAS_ATTEMPTS):
                state = self._store.load_keys()
                if not state.keys:
                    return state
                keys = tuple(self._rewrapped(k, new_kek) for k in state.keys)
                try:
                    version = self._store.cas_keys(state.version, keys)
                except Conflict:
                    log.info("key set changed during the KEK rewrap; re-reading and redoing it")
                    continue
                with self._lock:
                    self._kek = new_kek
                new_state = KeySetState(version, keys)
                self._install(new_state)
                log.warning(
                    "re-encrypted %d private keys under a new KEK (key set version %d): replicas "
                    "still on the old KEK cannot load keys written from now on",
                    len(keys),
                    version,
                )
                return new_state
            raise Conflict(f"KEK rewrap lost {MAX_CAS_ATTEMPTS} compare-and-swap races in a row")

    def _rewrapped(self, k: StoredKey, new_kek: Kek) -> StoredKey:
        """``k`` with its private key sealed under ``new_kek`` (KekError if it cannot be opened
        with the current KEK, or does not match its kid and public JWK)."""
        der = self._kek.decrypt(k.kid, k.private_enc)  # always the blob, never the cache
        key = self._parse_checked(k, der)
        blob = new_kek.encrypt(k.kid, crypto.private_key_to_pkcs8(key))
        if new_kek.decrypt(k.kid, blob) != crypto.private_key_to_pkcs8(key):  # pragma: no cover
            raise KekError(f"re-encrypting the private key of kid {k.kid} did not round-trip")
        return dataclasses.replace(k, private_enc=blob)

    # --- internals ----------------------------------------------------------------------------

    def _generate(self, now: float) -> StoredKey:
        """A new key, encrypted under the KEK, generated outside any write (dex rotation.go)."""
        key = crypto.generate_private_key(self._policy.alg, self._policy.rsa_bits)
        pub = key.public_key()
        kid = crypto.kid_for_public_key(pub)
        blob = self._kek.encrypt(kid, crypto.private_key_to_pkcs8(key))
        with self._lock:
            self._private[kid] = key
        return StoredKey(
            kid=kid,
            alg=crypto.alg_for_key(key),
            state="next",
            public_jwk=crypto.public_jwk(pub, kid),
            private_enc=blob,
            created_at=now,
            max_token_lifetime=self._policy.max_token_lifetime,
        )

    def _decrypt(self, k: StoredKey) -> PrivateKey:
        with self._lock:
            return self._decrypt_locked(k)

    def _decrypt_locked(self, k: StoredKey) -> PrivateKey:
        key = self._private.get(k.kid)
        if key is not None:
            return key
        der = self._kek.decrypt(k.kid, k.private_enc)
        key = self._parse_checked(k, der)
        self._private[k.kid] = key
        return key

    @staticmethod
    def _parse_checked(k: StoredKey, der: bytes) -> PrivateKey:
        try:
            key = crypto.load_private_key(der)
        except ValueError:
            raise KekError(f"stored private key of kid {k.kid} does not parse") from None
        # The store could have been edited: the private key must match its kid and public JWK.
        if crypto.kid_for_public_key(key.public_key()) != k.kid or _public_only(
            k.public_jwk
        ) != crypto.public_jwk(key.public_key(), k.kid):
            raise KekError(f"stored private key of kid {k.kid} does not match its public key")
        return key

    def _check_kek(self, state: KeySetState) -> None:
        """Never write under a KEK that cannot read what is stored (invariant 4).

        Opens the stored blobs themselves, not the in-memory cache: after ``keys rewrap`` a
        replica still on the old KEK holds the keys decrypted, but must not add a key sealed under
        the old KEK to a key set sealed under the new one.
        """
        for k in state.keys:
            if k.state in ("active", "next"):
                self._decrypt(k)
                try:
                    self._kek.decrypt(k.kid, k.private_enc)
                except KekError as e:
                    raise KekError(
                        f"{e} (the stored keys are sealed under another KEK: after "
                        "`sa-issuer keys rewrap`, configure the new KEK on this replica)"
                    ) from None

    def _warn_kek_mismatch(self, state: KeySetState) -> None:
        """Log (once per key set) when cached keys no longer open under this replica's KEK."""
        for k in state.keys:
            if k.state in ("active", "next") and k.kid in self._private:
                try:
                    self._kek.decrypt(k.kid, k.private_enc)
                except KekError:
                    log.error(
                        "KEK mismatch: the stored private key of kid %s (key set version %d) does "
                        "not open under this replica's KEK (rotated with `sa-issuer keys "
                        "rewrap`?). Still signing with the keys held in memory, but this replica "
                        "cannot load new keys, rotate, or restart: set its KEK to the new one and "
                        "restart it",
                        k.kid,
                        state.version,
                    )
                    return

    def _install(self, state: KeySetState) -> None:
        """Swap in a snapshot of ``state`` if it is newer; notify listeners."""
        with self._lock:
            cur = self._snapshot
            if cur is not None and state.version < cur.version:
                # Either a read that raced a newer install, or the store went back (restored from
                # a backup, a Redis without persistence restarted): ask the store once more, under
                # the lock, and believe it — never keep signing with a key it no longer holds.
                state = self._store.load_keys()
            if cur is not None and state.version == cur.version and state.keys == cur.keys:
                return
            self._warn_kek_mismatch(state)
            act = rotation.active(state.keys)
            signer: Signer | None = None
            if act is not None:
                signer = Signer(
                    self._decrypt(act), act.kid, max_token_lifetime=act.max_token_lifetime
                )
            for k in state.keys:
                if k.state == "next":
                    self._decrypt(k)  # ready for promotion; also checks the KEK early
            live = {k.kid for k in state.keys if k.state in ("active", "next")}
            for kid in [kid for kid in self._private if kid not in live]:
                del self._private[kid]
            snap = PublishedKeys(state.version, state.keys, self._policy, self._clock())
            self._snapshot, self._signer = snap, signer
            if cur is None or cur.active_kid != snap.active_kid:
                # At start (cur is None) this is routine; a change of signer later is news.
                log.log(
                    logging.DEBUG if cur is None else logging.INFO,
                    "signing with kid %s (key set version %d)",
                    snap.active_kid,
                    snap.version,
                )
            for cb in list(self._listeners):
                self._notify_one(cb, snap)

    @staticmethod
    def _notify_one(cb: Callable[[PublishedKeys], None], snap: PublishedKeys) -> None:
        try:
            cb(snap)
        except Exception:
            log.exception("key listener %r failed", cb)
