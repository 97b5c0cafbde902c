"""KeyManager against the real stores (SQLite file, private redis-server): bootstrap, restart,
wrong KEK, replicas racing on one store (docs/CONTRACTS.md invariant 3), watch propagation,
revocation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from issuer.keys import (
    Kek,
    KekError,
    KeyManager,
    KeyPolicy,
    NoActiveKey,
    PublishedKeys,
    UnknownKey,
    rotation,
)
from issuer.keys.rotation import DAY
from issuer.store import Conflict, KeySetState, NotFound, Store, StoredKey
from verifier import Policy, verify

T0 = 1_700_000_000.0
POLICY = KeyPolicy(alg="ES256", rotation_period=7 * DAY, max_token_lifetime=DAY)
DUE = T0 + 7 * DAY - POLICY.publish_lead  # successor creation time after a T0 bootstrap


class Clock:
    """A settable fake clock shared by managers."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def kek() -> Kek:
    return Kek.generate()


@pytest.fixture
def managers() -> Iterator[list[KeyManager]]:
    made: list[KeyManager] = []
    yield made
    for m in made:
        m.stop()


@pytest.fixture
def make(kek: Kek, managers: list[KeyManager], store_factory: Any) -> Callable[..., KeyManager]:
    """A KeyManager on a *new* store instance (a replica) of the parametrized backend."""

    def _make(
        *,
        key: Kek | None = None,
        policy: KeyPolicy = POLICY,
        clock: Callable[[], float] | None = None,
        store: Store | None = None,
    ) -> KeyManager:
        m = KeyManager(
            store if store is not None else store_factory.open(),
            key or kek,
            policy,
            clock or Clock(),
        )
        managers.append(m)
        return m

    return _make


def claims(now: float, lifetime: int = 3600) -> dict[str, Any]:
    return {
        "iss": "https://issuer.example",
        "sub": "system:serviceaccount:ns:sa",
        "aud": ["api"],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + lifetime,
        "jti": "j",
        "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
    }


VPOLICY = Policy("https://issuer.example", ["api"], algorithms=("RS256", "ES256"))


def wait_for(cond: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# --- bootstrap, restart, KEK -----------------------------------------------------------------


def test_bootstrap_on_empty_store(make: Callable[..., KeyManager], store: Store) -> None:
    m = make(store=store)
    with pytest.raises(NoActiveKey):
        m.signer()
    with pytest.raises(NoActiveKey):
        m.published()
    m.start(rotate=False)
    state = store.load_keys()
    assert len(state.keys) == 1 and state.keys[0].state == "active"
    snap = m.published()
    assert snap.version == state.version and snap.active_kid == state.keys[0].kid
    assert snap.algorithms == ("ES256",)
    assert [k["kid"] for k in snap.jwks["keys"]] == [state.keys[0].kid]
    assert snap.next_change == DUE and snap.max_age(T0) == 3600
    assert snap.max_age(DUE - 10) == 10
    s = m.signer()
    assert s.kid == snap.active_kid
    ident = verify(s.sign_jwt(claims(T0)), snap.keyset, VPOLICY, now=T0 + 1)
    assert ident.namespace == "ns"
    assert snap.keyset is snap.keyset  # built once per snapshot


def test_private_material_never_rendered(make: Callable[..., KeyManager], store: Store) -> None:
    m = make(store=store)
    m.start(rotate=False)
    snap = m.published()
    blob = store.load_keys().keys[0].private_enc
    for rendering in (repr(snap), repr(m), repr(m.signer()), snap.jwks_json.decode()):
        assert "private_enc" not in rendering and blob.hex() not in rendering
        assert '"d"' not in rendering
    assert set(snap.jwks["keys"][0]) == {"use", "kty", "kid", "crv", "alg", "x", "y"}


def test_private_key_stored_encrypted(
    make: Callable[..., KeyManager], store: Store, kek: Kek
) -> None:
    m = make(store=store)
    m.start(rotate=False)
    k = store.load_keys().keys[0]
    # Invariant 4: only ciphertext in the store, bound to the kid.
    assert kek.decrypt(k.kid, k.private_enc).startswith(b"0")  # DER SEQUENCE
    with pytest.raises(KekError):
        Kek.generate().decrypt(k.kid, k.private_enc)


def test_restart_keeps_keys(make: Callable[..., KeyManager], store_factory: Any) -> None:
    a = make()
    a.start(rotate=True, interval=3600)
    kid, version = a.signer().kid, a.published().version
    a.stop()
    b = make()  # another process, same store, same KEK
    b.start(rotate=True, interval=3600)
    assert b.signer().kid == kid
    assert b.published().version == version  # nothing was due: nothing written


def test_wrong_kek_fails_and_store_untouched(
    make: Callable[..., KeyManager], store_factory: Any
) -> None:
    a = make()
    a.start(rotate=False)
    probe = store_factory.open()
    before = probe.load_keys()
    # Even with a rotation due (clock far ahead), a wrong KEK must not write anything.
    b = make(key=Kek.generate(), clock=Clock(T0 + 30 * DAY))
    with pytest.raises(KekError, match="wrong KEK"):
        b.start(rotate=True)
    assert probe.load_keys() == before
    with pytest.raises(KekError):
        b.rotate_if_due()
    with pytest.raises(KekError):
        b.rotate(immediately=True)
    assert probe.load_keys() == before


def test_tampered_public_jwk_refused(make: Callable[..., KeyManager], store: Store) -> None:
    import dataclasses

    a = make(store=store)
    a.start(rotate=False)
    state = store.load_keys()
    other = make(store=store, policy=POLICY)
    # Swap in another key's public JWK under the same kid: the private key no longer matches.
    forged_jwk = dict(state.keys[0].public_jwk, x=state.keys[0].public_jwk["y"])
    store.cas_keys(state.version, (dataclasses.replace(state.keys[0], public_jwk=forged_jwk),))
    with pytest.raises(KekError, match="does not match"):
        other.start(rotate=False)


# --- rotation steps --------------------------------------------------------------------------


def test_rotate_if_due_never_writes_when_nothing_due(
    make: Callable[..., KeyManager], store: Store
) -> None:
    clock = Clock()
    m = make(store=store, clock=clock)
    m.start(rotate=False)
    v = store.load_keys().version
    for t in (T0, T0 + DAY, DUE - 1):
        assert m.rotate_if_due(now=t) is False
    clock.t = DUE - 1
    assert m.rotate_if_due() is False
    assert store.load_keys().version == v


def test_full_cycle_through_the_store(make: Callable[..., KeyManager], store: Store) -> None:
    clock = Clock()
    m = make(store=store, clock=clock)
    m.start(rotate=False)
    first = m.signer().kid
    assert m.rotate_if_due(now=DUE) is True
    nxt = [k for k in store.load_keys().keys if k.state == "next"]
    assert len(nxt) == 1 and m.signer().kid == first  # published, not signing yet
    assert nxt[0].kid in {k["kid"] for k in m.published().jwks["keys"]}
    assert m.rotate_if_due(now=T0 + 7 * DAY) is True
    assert m.signer().kid == nxt[0].kid
    assert {k.kid: k.state for k in store.load_keys().keys} == {
        first: "retired",
        nxt[0].kid: "active",
    }
    retired = next(k for k in store.load_keys().keys if k.kid == first)
    assert retired.remove_at is not None
    assert m.rotate_if_due(now=retired.remove_at) is True
    assert [k.kid for k in store.load_keys().keys] == [nxt[0].kid]


def test_two_replicas_race_exactly_one_writes(
    make: Callable[..., KeyManager], store_factory: Any
) -> None:
    a, b = make(), make()
    a.start(rotate=False)
    b.start(rotate=False)
    for round_ in range(5):
        t = DUE + round_ * 7 * DAY  # successive due instants (next created, then promoted ...)
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def run(
            name: str,
            m: KeyManager,
            when: float = t,
            barrier: threading.Barrier = barrier,
            results: dict[str, bool] = results,
        ) -> None:
            barrier.wait()
            results[name] = m.rotate_if_due(now=when)

        threads = [threading.Thread(target=run, args=(n, m)) for n, m in (("a", a), ("b", b))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results.values()) == [False, True], results
        keys = store_factory.open().load_keys().keys
        assert sum(k.state == "active" for k in keys) == 1
        assert sum(k.state == "next" for k in keys) <= 1


class LosingStore:
    """A store proxy that lets ``rival`` write between our load and our compare-and-swap."""

    def __init__(self, inner: Store, rival: Callable[[], None]) -> None:
        self._inner = inner
        self._rival: Callable[[], None] | None = rival
        self.conflicts = 0
        self.backend = inner.backend

    def load_keys(self) -> KeySetState:
        state = self._inner.load_keys()
        rival, self._rival = self._rival, None
        if rival is not None:
            rival()
        return state

    def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
        try:
            return self._inner.cas_keys(expected_version, keys)
        except Conflict:
            self.conflicts += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_loser_rereads_and_finds_the_work_done(
    make: Callable[..., KeyManager], store_factory: Any
) -> None:
    a = make()
    a.start(rotate=False)
    rival = make()
    rival.start(rotate=False)
    proxy = LosingStore(store_factory.open(), lambda: rival.rotate_if_due(now=DUE))
    loser = make(store=proxy)  # type: ignore[arg-type]
    assert loser.rotate_if_due(now=DUE) is False  # already rotated is fine
    assert proxy.conflicts == 1
    keys = store_factory.open().load_keys().keys
    assert sum(k.state == "next" for k in keys) == 1
    assert loser.published().version == store_factory.open().load_keys().version


def test_watch_propagates_rotation_within_one_second(
    make: Callable[..., KeyManager], store_factory: Any
) -> None:
    a, b = make(), make()
    a.start(rotate=False)
    b.start(rotate=False)
    seen: list[PublishedKeys] = []
    b.add_listener(seen.append)
    assert len(seen) == 1  # called at once with the current snapshot
    new = a.rotate(immediately=True)
    assert wait_for(lambda: b.signer().kid == new.kid, timeout=1.0)
    assert seen[-1].active_kid == new.kid and seen[-1].version == a.published().version
    a.revoke(new.kid)
    assert wait_for(lambda: b.is_revoked(new.kid), timeout=1.0)
    assert b.signer().kid != new.kid


def test_background_rotation_thread(make: Callable[..., KeyManager], store: Store) -> None:
    clock = Clock()
    m = make(store=store, clock=clock)
    m.start(rotate=True, interval=0.02)
    first = m.signer().kid
    clock.t = DUE
    assert wait_for(lambda: any(k.state == "next" for k in store.load_keys().keys), 2.0)
    clock.t = T0 + 7 * DAY
    assert wait_for(lambda: m.signer().kid != first, 2.0)
    m.stop()
    m.stop()  # idempotent


def test_rotation_loop_wakes_when_the_published_set_is_due_to_change(
    make: Callable[..., KeyManager], store: Store
) -> None:
    """Until a due change is written, the documents say max-age=0 (they count down to
    next_change): the loop must not sleep its whole interval past that moment."""
    policy = KeyPolicy(
        alg="ES256", rotation_period=3, jwks_max_age=1, publish_margin=0.5, max_token_lifetime=60
    )
    m = make(store=store, policy=policy, clock=time.time)
    m.start(rotate=True, interval=30.0)
    due = m.published().next_change
    assert due is not None and 0 < due - time.time() <= 2.0
    assert wait_for(lambda: any(k.state == "next" for k in store.load_keys().keys), 3.0)
    assert time.time() - due < 1.0  # written right after it was due, not ~30 s later
    m.stop()


# --- manual operations -----------------------------------------------------------------------


def test_manual_rotate_safe_and_immediate(make: Callable[..., KeyManager], store: Store) -> None:
    clock = Clock()
    m = make(store=store, clock=clock)
    m.start(rotate=False)
    first = m.signer().kid
    nxt = m.rotate()
    assert nxt.state == "next" and nxt.activate_at == T0 + POLICY.publish_lead
    assert m.signer().kid == first  # safe: not signing yet
    assert m.rotate().kid == nxt.kid  # idempotent: the same next key, still scheduled
    act = m.rotate(immediately=True)
    assert act.kid == nxt.kid and act.state == "active" and m.signer().kid == nxt.kid


def test_revoke(make: Callable[..., KeyManager], store: Store) -> None:
    m = make(store=store)
    m.start(rotate=False)
    kid = m.signer().kid
    token = m.signer().sign_jwt(claims(T0))
    with pytest.raises(UnknownKey):
        m.revoke("no-such-kid")
    with pytest.raises(NotFound):
        m.revoke("no-such-kid")
    with pytest.raises(KeyError):
        m.revoke("no-such-kid")
    m.revoke(kid)
    assert m.is_revoked(kid) and not m.is_revoked(m.signer().kid)
    snap = m.published()
    assert kid in snap.revoked_kids and kid not in {k["kid"] for k in snap.jwks["keys"]}
    assert m.signer().kid != kid
    from verifier import InvalidToken

    with pytest.raises(InvalidToken) as e:
        verify(token, snap.keyset, VPOLICY, now=T0 + 1)
    assert e.value.reason == "unknown_key"
    v = store.load_keys().version
    m.revoke(kid)  # idempotent: no write
    assert store.load_keys().version == v


def test_signer_refuses_tokens_longer_than_the_key_lifetime(
    make: Callable[..., KeyManager], store: Store
) -> None:
    m = make(store=store)
    m.start(rotate=False)
    m.signer().sign_jwt(claims(T0, DAY))
    with pytest.raises(ValueError, match="max_token_lifetime"):
        m.signer().sign_jwt(claims(T0, DAY + 1))
    # A replica with a longer policy raises the stored lifetime before signing longer tokens.
    longer = make(
        policy=KeyPolicy(alg="ES256", max_token_lifetime=rotation.EXTENDED_TOKEN_LIFETIME)
    )
    longer.start(rotate=True, interval=3600)
    longer.signer().sign_jwt(claims(T0, rotation.EXTENDED_TOKEN_LIFETIME))
    stored = rotation.active(store.load_keys().keys)
    assert stored is not None and stored.max_token_lifetime == rotation.EXTENDED_TOKEN_LIFETIME


def test_rs256_default_policy(make: Callable[..., KeyManager], store: Store) -> None:
    m = make(store=store, policy=KeyPolicy())
    m.start(rotate=False)
    assert m.signer().alg == "RS256" and m.published().algorithms == ("RS256",)
    snap = m.published()
    verify(m.signer().sign_jwt(claims(T0)), snap.keyset, VPOLICY, now=T0)


class SwappableStore:
    """A store proxy whose backing store can be replaced (a restore, a Redis restart)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.backend = inner.backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_store_going_back_is_believed(
    make: Callable[..., KeyManager], store: Store, tmp_path: Any
) -> None:
    from issuer.store.sqlite import SQLiteStore

    proxy = SwappableStore(store)
    m = make(store=proxy)  # type: ignore[arg-type]
    m.start(rotate=False)
    old = m.signer().kid
    m.rotate(immediately=True)
    m.rotate(immediately=True)
    assert m.published().version >= 3
    empty = SQLiteStore(tmp_path / "restored.db")
    try:
        proxy.inner = empty  # the store lost everything (version 0)
        m.refresh()
        with pytest.raises(NoActiveKey):  # never sign with a key the store no longer holds
            m.signer()
        assert m.published().jwks == {"keys": []}
        assert m.rotate_if_due() is True  # bootstrap again
        assert m.signer().kid != old
        assert [k.kid for k in empty.load_keys().keys] == [m.signer().kid]
    finally:
        empty.close()


def test_facade_exports() -> None:
    # STYLE.md §9: the public names others code against are pinned.
    import issuer.keys

    assert set(issuer.keys.__all__) >= {
        "KeyPolicy",
        "KeyManager",
        "Signer",
        "Kek",
        "KekError",
        "NoActiveKey",
        "PublishedKeys",
        "UnknownKey",
        "load_kek",
        "create_kek_file",
    }
    for name in issuer.keys.__all__:
        assert getattr(issuer.keys, name) is not None
