"""KEK rotation: ``KeyManager.rewrap`` on the real stores, and ``sa-issuer keys rewrap`` end to end.

Every private key is re-sealed under the new KEK in one compare-and-swap write; kids, states,
times and public material are unchanged; a wrong current KEK writes nothing
(docs/CONTRACTS.md "Keys", invariant 4).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.crypto import private_key_to_pkcs8
from issuer.keys import Kek, KekError, KeyManager, KeyPolicy
from issuer.keys.rotation import DAY
from issuer.store import Conflict, KeySetState, Store, StoredKey
from verifier import KeySet, Policy, verify

T0 = 1_700_000_000.0
POLICY = KeyPolicy(alg="ES256", rotation_period=7 * DAY, max_token_lifetime=DAY)
VPOLICY = Policy("https://issuer.example", ["api"], algorithms=("ES256",))


def claims(now: float) -> dict[str, Any]:
    return {
        "iss": "https://issuer.example",
        "sub": "system:serviceaccount:ns:sa",
        "aud": ["api"],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 3600,
        "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
    }


@pytest.fixture
def managers() -> Iterator[list[KeyManager]]:
    made: list[KeyManager] = []
    yield made
    for m in made:
        m.stop()


@pytest.fixture
def make(managers: list[KeyManager]) -> Callable[..., KeyManager]:
    def _make(store: Any, kek: Kek, now: float = T0) -> KeyManager:
        m = KeyManager(store, kek, POLICY, lambda: now)
        managers.append(m)
        return m

    return _make


def _two_keys(make: Callable[..., KeyManager], store: Store, kek: Kek) -> KeyManager:
    """An active and a next key (both must be rewrapped)."""
    m = make(store, kek)
    m.start(rotate=False)
    m.rotate()
    assert {k.state for k in store.load_keys().keys} == {"active", "next"}
    return m


def _public(keys: Sequence[StoredKey]) -> list[StoredKey]:
    return [dataclasses.replace(k, private_enc=b"") for k in keys]


def test_rewrap_then_new_kek_signs_with_same_kid(
    make: Callable[..., KeyManager], store: Store, store_factory: Any
) -> None:
    old, new = Kek.generate(), Kek.generate()
    m = _two_keys(make, store, old)
    before = store.load_keys()
    kid = m.signer().kid

    written = m.rewrap(new)

    after = store.load_keys()
    assert after == written and after.version > before.version
    assert _public(after.keys) == _public(before.keys)  # kids, states, times, JWKs unchanged
    for k_old, k_new in zip(before.keys, after.keys, strict=True):
        assert k_new.private_enc != k_old.private_enc
        assert new.decrypt(k_new.kid, k_new.private_enc) == old.decrypt(
            k_old.kid, k_old.private_enc
        )
        with pytest.raises(KekError):
            old.decrypt(k_new.kid, k_new.private_enc)
    # The rewrapping manager itself carries on under the new KEK.
    assert m.signer().kid == kid
    assert m.rotate_if_due(T0) is False

    # A fresh replica with the NEW KEK starts and signs with the same kid; tokens verify.
    b = make(store_factory.open(), new)
    b.start(rotate=False)
    assert b.signer().kid == kid
    token = b.signer().sign_jwt(claims(T0))
    keys = KeySet.from_jwks(b.published().jwks)
    assert verify(token, keys, VPOLICY, now=T0 + 1).namespace == "ns"
    # ... and the OLD KEK no longer opens the store.
    c = make(store_factory.open(), old)
    with pytest.raises(KekError, match="wrong KEK"):
        c.start(rotate=False)
    assert store.load_keys() == after


def test_store_dump_holds_no_plaintext_key(
    make: Callable[..., KeyManager], store: Store, store_factory: Any
) -> None:
    old, new = Kek.generate(), Kek.generate()
    m = _two_keys(make, store, old)
    plaintexts = [
        private_key_to_pkcs8(m._decrypt(k))  # the test peeks; the product never does
        for k in store.load_keys().keys
    ]
    m.rewrap(new)
    state = store.load_keys()
    dump = repr(state).encode()
    if store_factory.backend == "sqlite":
        dump += Path(store_factory.url.removeprefix("sqlite:///")).read_bytes()
    else:
        import redis

        r = redis.Redis.from_url(store_factory.url)
        try:
            for name in r.scan_iter(count=1000):
                kind = r.type(name)  # type: ignore[no-untyped-call]
                if kind == b"string":
                    dump += r.get(name) or b""
                elif kind == b"hash":
                    for v in r.hgetall(name).values():
                        dump += v
        finally:
            r.close()
    for der in plaintexts:
        assert der not in dump
        assert base64.b64encode(der) not in dump
        assert der[-32:] not in dump  # not even a piece of the private scalar


def test_wrong_current_kek_writes_nothing(
    make: Callable[..., KeyManager], store: Store, store_factory: Any
) -> None:
    real = Kek.generate()
    _two_keys(make, store, real)
    before = store.load_keys()
    wrong = make(store_factory.open(), Kek.generate())  # never started: nothing cached
    with pytest.raises(KekError, match="wrong KEK"):
        wrong.rewrap(Kek.generate())
    after = store.load_keys()
    assert after.version == before.version
    assert [k.private_enc for k in after.keys] == [k.private_enc for k in before.keys]
    assert after == before


def test_same_kek_refused(make: Callable[..., KeyManager], store: Store) -> None:
    raw = os.urandom(32)
    kek = Kek(raw)
    m = _two_keys(make, store, kek)
    before = store.load_keys()
    assert kek.same_key(Kek(raw)) and not kek.same_key(Kek.generate())
    with pytest.raises(KekError, match="same as the current"):
        m.rewrap(Kek(raw))
    assert store.load_keys() == before


class RacingStore:
    """A store whose first ``cas_keys`` is preceded by another replica's rotation."""

    def __init__(self, inner: Store, race: Callable[[], object]) -> None:
        self._inner = inner
        self._race: Callable[[], object] | None = race
        self.conflicts = 0

    def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
        race, self._race = self._race, None
        if race is not None:
            race()
        try:
            return self._inner.cas_keys(expected_version, keys)
        except Conflict:
            self.conflicts += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_concurrent_rotation_conflict_redone_no_key_lost(
    make: Callable[..., KeyManager], store: Store, store_factory: Any
) -> None:
    old, new = Kek.generate(), Kek.generate()
    other = make(store_factory.open(), old)
    other.start(rotate=False)
    racer = RacingStore(store_factory.open(), lambda: other.rotate())
    m = make(racer, old)
    m.start(rotate=False)
    before = store.load_keys()
    assert len(before.keys) == 1

    written = m.rewrap(new)

    assert racer.conflicts == 1
    after = store.load_keys()
    assert after == written
    assert len(after.keys) == 2  # the concurrently created key is there, and rewrapped too
    assert {k.kid for k in before.keys} < {k.kid for k in after.keys}
    for k in after.keys:
        new.decrypt(k.kid, k.private_enc)
        with pytest.raises(KekError):
            old.decrypt(k.kid, k.private_enc)


def test_conflict_exhaustion_raises(make: Callable[..., KeyManager], store: Store) -> None:
    kek = Kek.generate()
    m = make(store, kek)
    m.start(rotate=False)

    class AlwaysConflict:
        def __init__(self, inner: Store) -> None:
            self._inner = inner

        def cas_keys(self, expected_version: int, keys: Sequence[StoredKey]) -> int:
            raise Conflict("lost")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    before = store.load_keys()
    loser = make(AlwaysConflict(store), kek)
    with pytest.raises(Conflict, match="rewrap"):
        loser.rewrap(Kek.generate())
    assert store.load_keys() == before


def test_running_old_replica_keeps_serving_refuses_to_write(
    make: Callable[..., KeyManager],
    store: Store,
    store_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = Kek.generate(), Kek.generate()
    stale = make(store_factory.open(), old)
    stale.start(rotate=False)
    kid = stale.signer().kid
    admin = make(store, old)
    caplog.set_level(logging.ERROR, logger="issuer.keys.manager")
    written = admin.rewrap(new)
    stale.refresh()  # what the store's change notification does
    assert stale.published().version == written.version
    assert stale.signer().kid == kid  # still signs with the key held in memory
    assert "KEK mismatch" in caplog.text
    # It must not add a key sealed under the old KEK to a key set sealed under the new one.
    with pytest.raises(KekError, match="keys rewrap"):
        stale.rotate(immediately=True)
    assert store.load_keys() == written
    # A key written by a new-KEK replica cannot be loaded: the last good snapshot stays.
    admin.rotate()
    rotated = store.load_keys()
    with pytest.raises(KekError):
        stale.refresh()
    assert stale.published().version == written.version
    assert stale.signer().kid == kid
    assert store.load_keys() == rotated


def test_empty_store_nothing_written(make: Callable[..., KeyManager], store: Store) -> None:
    m = make(store, Kek.generate())
    assert m.rewrap(Kek.generate()) == KeySetState(0, ())
    assert store.load_keys().version == 0


# --- CLI end to end ----------------------------------------------------------------------------


def test_cli_rewrap_end_to_end(issuer_factory: Any, tmp_path: Path) -> None:
    a = issuer_factory.start()  # SQLite, default DATA_DIR/kek
    data = a.data_dir
    with a.client() as c:
        kid = c.get("/openid/v1/jwks").json()["keys"][0]["kid"]
    a.stop()
    old_kek_text = (data / "kek").read_text().strip()
    base = ("keys", "rewrap", "--data-dir", str(data))

    def blobs() -> list[bytes]:
        from issuer.store import open_store

        s = open_store("sqlite", data)
        try:
            return [k.private_enc for k in s.load_keys().keys]
        finally:
            s.close()

    before = blobs()

    # Errors: exit 1, one clear line, store unchanged.
    r = issuer_factory.cli(*base, "--new-kek", str(data / "kek"))
    assert r.returncode == 1 and "same as the current" in r.stderr, r.stderr
    r = issuer_factory.cli(*base, "--new-kek", "not-a-kek")
    assert r.returncode == 1 and "new KEK" in r.stderr, r.stderr
    r = issuer_factory.cli(*base, "--new-kek-file", str(tmp_path / "missing.kek"))
    assert r.returncode == 1 and "cannot read KEK file" in r.stderr, r.stderr
    wrong = issuer_factory.make_kek("wrong.kek")
    new_path = tmp_path / "new.kek"
    r = issuer_factory.cli(*base, "--kek", str(wrong), "--new-kek-file", str(new_path), "--create")
    assert r.returncode == 1 and "wrong KEK" in r.stderr, r.stderr
    assert not new_path.exists()  # the KEK created for a failed rewrap is removed again
    r = issuer_factory.cli(*base, "--new-kek", str(wrong), "--create")
    assert r.returncode == 1 and "--create needs --new-kek-file" in r.stderr, r.stderr
    r = issuer_factory.cli(*base, "--new-kek-file", str(wrong), "--create")
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr, r.stderr
    assert blobs() == before

    # Success.
    r = issuer_factory.cli(*base, "--new-kek-file", str(new_path), "--create")
    assert r.returncode == 0, r.stderr
    assert "re-encrypted 1 private keys" in r.stdout
    assert "next steps:" in r.stdout and str(new_path) in r.stdout
    assert stat.S_IMODE(new_path.stat().st_mode) == 0o600
    new_kek_text = new_path.read_text().strip()
    for secret in (old_kek_text, new_kek_text):
        assert secret not in r.stdout + r.stderr
    after = blobs()
    assert len(after) == len(before) and after != before

    # The old KEK no longer starts the issuer; the new one does, with the same kid.
    r = issuer_factory.cli("keys", "rotate", "--data-dir", str(data))
    assert r.returncode == 1 and "wrong KEK" in r.stderr, r.stderr
    assert blobs() == after
    b = issuer_factory.start(data_dir=data, kek=new_path)
    with b.client() as c:
        assert c.get("/openid/v1/jwks").json()["keys"][0]["kid"] == kid
        resp = c.get("/readyz")
        assert resp.status_code == 200
    assert isinstance(resp, httpx.Response)
