"""issuer.keys.rotation: the pure lifecycle on a fake clock (docs/CONTRACTS.md "Keys",
invariants 1-3).

Three layers: table-like unit tests of each rule; a hypothesis property test that drives random
sequences of time jumps, manual rotations and revocations and checks the invariants at every
observed instant; and THE ACCEPTANCE SIMULATION — 20 rotations with real keys while simulated
verifiers cache the JWKS exactly as long as Cache-Control allows and verify every token with the
verifier core: zero failures (and a mid-run revocation that fails exactly the revoked key's tokens).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuer import crypto
from issuer.crypto import Signer
from issuer.keys import rotation
from issuer.keys.rotation import DAY, KeyPolicy, UnknownKey
from issuer.store import NotFound, StoredKey
from verifier import InvalidToken, KeySet, Policy, verify

T0 = 1_700_000_000.0
P = KeyPolicy(
    rotation_period=7 * DAY,
    jwks_max_age=3600,
    publish_margin=300,
    max_token_lifetime=DAY,
    leeway=60,
)
LEAD = 3900.0
RETENTION = DAY + 60 + 300


_counter = iter(range(10**9))


def fake(t: float = 0.0) -> StoredKey:
    """Key material is irrelevant to the decision: a unique kid is enough."""
    kid = f"k{next(_counter):05d}"
    return StoredKey(kid, "RS256", "next", {"kid": kid}, b"ciphertext", created_at=t)


def step(keys: Sequence[StoredKey], now: float, policy: KeyPolicy = P) -> tuple[StoredKey, ...]:
    """What the KeyManager does once: decide, generate outside, apply."""
    d = rotation.decide(keys, now, policy)
    if d.nothing:
        return tuple(keys)
    return rotation.apply(keys, now, policy, fake(now) if d.needs_new_key else None)


def states(keys: Sequence[StoredKey]) -> dict[str, str]:
    return {k.kid: k.state for k in keys}


def by_state(keys: Sequence[StoredKey], state: str) -> list[StoredKey]:
    return [k for k in keys if k.state == state]


# --- rules -----------------------------------------------------------------------------------


def test_bootstrap_is_active_immediately() -> None:
    d = rotation.decide((), T0, P)
    assert d.new_key == "active" and d.new_key_activate_at == T0 and not d.nothing
    keys = rotation.apply((), T0, P, fake(T0 - 5))
    (k,) = keys
    assert k.state == "active" and k.activate_at == T0 and k.created_at == T0
    assert k.max_token_lifetime == P.max_token_lifetime
    assert rotation.decide(keys, T0, P).nothing
    assert rotation.decide(keys, T0 + 6 * DAY, P).nothing


def test_apply_needs_the_new_key_it_decided() -> None:
    with pytest.raises(ValueError, match="new key is due"):
        rotation.apply((), T0, P, None)


def test_successor_created_one_lead_before_the_period_ends() -> None:
    keys = step((), T0)
    due = T0 + 7 * DAY - LEAD
    assert rotation.decide(keys, due - 1, P).nothing
    d = rotation.decide(keys, due, P)
    assert d.new_key == "next" and d.new_key_activate_at == T0 + 7 * DAY
    keys = step(keys, due)
    (n,) = by_state(keys, "next")
    assert n.created_at == due and n.activate_at == T0 + 7 * DAY
    assert n.activate_at - n.created_at >= LEAD  # invariant 1


def test_late_successor_still_waits_a_full_lead() -> None:
    # The issuer was down past the rotation time: the successor must still be published a full
    # lead before it signs; the old key keeps signing meanwhile.
    keys = step((), T0)
    late = T0 + 9 * DAY
    keys = step(keys, late)
    (n,) = by_state(keys, "next")
    assert n.activate_at == late + LEAD
    assert by_state(step(keys, late + LEAD - 1), "active")[0].kid != n.kid
    assert by_state(step(keys, late + LEAD), "active")[0].kid == n.kid


def test_promotion_retires_with_retention() -> None:
    keys = step((), T0)
    old = keys[0].kid
    keys = step(keys, T0 + 7 * DAY - LEAD)
    new = by_state(keys, "next")[0].kid
    t = T0 + 7 * DAY + 17  # the loop ticks a little after activate_at
    keys = step(keys, t)
    assert states(keys) == {old: "retired", new: "active"}
    r = next(k for k in keys if k.kid == old)
    assert r.retired_at == t and r.remove_at == t + RETENTION  # invariant 2
    a = next(k for k in keys if k.kid == new)
    assert a.activate_at == t
    # The next successor is scheduled from the actual activation.
    assert rotation.decide(keys, t + 7 * DAY - LEAD - 1, P).new_key is None
    assert rotation.decide(keys, t + 7 * DAY - LEAD, P).new_key == "next"


def test_retired_key_dropped_at_remove_at() -> None:
    keys = step((), T0)
    keys = step(keys, T0 + 7 * DAY - LEAD)
    keys = step(keys, T0 + 7 * DAY)
    r = by_state(keys, "retired")[0]
    assert r.remove_at is not None
    assert states(step(keys, r.remove_at - 0.001))[r.kid] == "retired"
    assert r.kid not in states(step(keys, r.remove_at))


def test_retention_uses_the_longer_of_policy_and_key_lifetime() -> None:
    keys = step((), T0)
    keys = (dataclasses.replace(keys[0], max_token_lifetime=365 * DAY),)
    keys = rotation.rotate_now(keys, T0 + 10, P, fake(), immediately=True)
    r = by_state(keys, "retired")[0]
    assert r.remove_at == T0 + 10 + 365 * DAY + 60 + 300


def test_apply_is_idempotent_already_rotated_is_fine() -> None:
    keys = step((), T0)
    t = T0 + 7 * DAY - LEAD
    once = rotation.apply(keys, t, P, fake(t))
    assert rotation.decide(once, t, P).nothing
    # A replica that lost the race re-applies on the fresh set with its own key: nothing changes.
    assert rotation.apply(once, t, P, fake(t)) == once


def test_raise_lifetime_when_policy_grows() -> None:
    keys = step((), T0)
    bigger = dataclasses.replace(P, max_token_lifetime=365 * DAY)
    d = rotation.decide(keys, T0 + 1, bigger)
    assert d.raise_lifetime == (keys[0].kid,) and d.new_key is None
    keys2 = rotation.apply(keys, T0 + 1, bigger, None)
    assert keys2[0].max_token_lifetime == 365 * DAY
    # A replica with a smaller policy never lowers it.
    assert rotation.decide(keys2, T0 + 2, P).nothing


def test_two_actives_are_repaired() -> None:
    a = dataclasses.replace(fake(T0), state="active", activate_at=T0)
    b = dataclasses.replace(fake(T0), state="active", activate_at=T0 + 5)
    keys = step((a, b), T0 + 10)
    assert states(keys) == {a.kid: "retired", b.kid: "active"}


def test_next_key_promoted_when_no_active() -> None:
    n = dataclasses.replace(fake(T0), state="next", activate_at=T0 + LEAD)
    keys = step((n,), T0 + 1)
    assert states(keys) == {n.kid: "active"}


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="rotation_period"):
        KeyPolicy(rotation_period=3600, jwks_max_age=3600)
    with pytest.raises(ValueError, match="unsupported"):
        KeyPolicy(alg="HS256")
    with pytest.raises(ValueError, match="rsa_bits"):
        KeyPolicy(rsa_bits=1024)
    with pytest.raises(ValueError, match="leeway"):
        KeyPolicy(leeway=-1)
    assert KeyPolicy(alg="ES256", rsa_bits=0).alg == "ES256"


# --- published view, next_change, cache max-age ----------------------------------------------


def test_published_excludes_revoked_and_is_stable_across_promotion() -> None:
    keys = step((), T0)
    keys = step(keys, T0 + 7 * DAY - LEAD)
    before = [k.kid for k in rotation.published(keys)]
    keys = step(keys, T0 + 7 * DAY)
    assert [k.kid for k in rotation.published(keys)] == before
    keys = rotation.revoke(keys, before[0], T0 + 7 * DAY + 1, P)
    assert [k.kid for k in rotation.published(keys)] == before[1:]


def test_next_change_and_cache_max_age() -> None:
    assert rotation.next_change((), T0, P) == T0  # bootstrap pending
    keys = step((), T0)
    create = T0 + 7 * DAY - LEAD
    assert rotation.next_change(keys, T0, P) == create
    assert rotation.cache_max_age(create, T0, 3600) == 3600
    assert rotation.cache_max_age(create, create - 100.5, 3600) == 100
    assert rotation.cache_max_age(create, create + 5, 3600) == 0
    assert rotation.cache_max_age(None, T0, 3600) == 3600
    keys = step(keys, create)
    # With a next key scheduled: the one after it is created a period after its activation.
    assert rotation.next_change(keys, create, P) == T0 + 14 * DAY - LEAD
    t = T0 + 7 * DAY
    keys = step(keys, t)
    assert rotation.next_change(keys, t, P) == min(t + RETENTION, t + 7 * DAY - LEAD)


def test_next_change_short_retention_wins() -> None:
    keys = step((), T0)
    keys = rotation.rotate_now(keys, T0 + 100, P, fake(), immediately=True)
    assert rotation.next_change(keys, T0 + 100, P) == T0 + 100 + RETENTION


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_active_promotes_next_at_once() -> None:
    keys = step((), T0)
    keys = step(keys, T0 + 7 * DAY - LEAD)
    old, nxt = keys[0].kid, by_state(keys, "next")[0].kid
    assert not rotation.revoke_needs_new_key(keys, old)
    t = T0 + 7 * DAY - 100  # before the next key's scheduled activation: emergency
    keys = rotation.revoke(keys, old, t, P)
    assert states(keys) == {old: "revoked", nxt: "active"}
    r = keys[0]
    assert r.revoked_at == t and r.remove_at == t + RETENTION
    assert old not in {k.kid for k in rotation.published(keys)}
    assert rotation.revoke(keys, old, t + 5, P) == keys  # idempotent


def test_revoke_active_without_next_needs_new_key() -> None:
    keys = step((), T0)
    kid = keys[0].kid
    assert rotation.revoke_needs_new_key(keys, kid)
    with pytest.raises(ValueError, match="needs a new key"):
        rotation.revoke(keys, kid, T0 + 10, P)
    keys = rotation.revoke(keys, kid, T0 + 10, P, fake())
    assert [k.state for k in keys] == ["revoked", "active"]
    assert keys[1].activate_at == T0 + 10


def test_revoke_next_and_retired() -> None:
    keys = step((), T0)
    keys = step(keys, T0 + 7 * DAY - LEAD)
    nxt = by_state(keys, "next")[0]
    revoked = rotation.revoke(keys, nxt.kid, T0 + 7 * DAY - 10, P)
    assert states(revoked)[nxt.kid] == "revoked"
    assert step(revoked, T0 + 7 * DAY - 10) != revoked  # dropped at once, successor re-made
    keys = step(keys, T0 + 7 * DAY)
    ret = by_state(keys, "retired")[0]
    keys = rotation.revoke(keys, ret.kid, T0 + 8 * DAY, P)
    rk = next(k for k in keys if k.kid == ret.kid)
    assert rk.state == "revoked" and rk.remove_at == ret.remove_at


def test_revoke_unknown_kid() -> None:
    keys = step((), T0)
    with pytest.raises(UnknownKey) as e:
        rotation.revoke(keys, "nope", T0, P)
    assert isinstance(e.value, KeyError) and isinstance(e.value, NotFound)
    assert "nope" in str(e.value)


# --- manual rotate ---------------------------------------------------------------------------


def test_rotate_now_safe_creates_next_at_earliest_safe_time() -> None:
    keys = step((), T0)
    assert rotation.rotate_now_needs_new_key(keys)
    keys = rotation.rotate_now(keys, T0 + 50, P, fake())
    n = by_state(keys, "next")[0]
    assert n.created_at == T0 + 50 and n.activate_at == T0 + 50 + LEAD
    assert by_state(step(keys, T0 + 50 + LEAD), "active")[0].kid == n.kid


def test_rotate_now_safe_pulls_scheduled_next_forward() -> None:
    keys = step((), T0)
    keys = step(keys, T0 + 7 * DAY - LEAD - 5000)  # nothing yet
    keys = step(keys, T0 + 7 * DAY - LEAD)
    n = by_state(keys, "next")[0]
    t = n.created_at + 60
    pulled = rotation.rotate_now(keys, t, P)
    assert by_state(pulled, "next")[0].activate_at == n.created_at + LEAD  # still >= lead
    # Once the next key has been published a full lead, a safe rotation promotes it at once.
    t = n.created_at + LEAD
    promoted = rotation.rotate_now(keys, t, P)
    assert by_state(promoted, "active")[0].kid == n.kid


def test_rotate_now_immediately() -> None:
    keys = step((), T0)
    old = keys[0].kid
    keys = rotation.rotate_now(keys, T0 + 1, P, fake(), immediately=True)
    assert [k.state for k in keys] == ["retired", "active"]
    assert keys[0].kid == old and keys[1].activate_at == T0 + 1
    # With a next key present, immediately promotes it (no new key needed).
    keys = rotation.rotate_now(keys, T0 + 2, P, fake())
    nxt = by_state(keys, "next")[0].kid
    keys = rotation.rotate_now(keys, T0 + 3, P, immediately=True)
    assert by_state(keys, "active")[0].kid == nxt
    assert len(by_state(keys, "retired")) == 2


def test_rotate_now_requires_key_when_no_next() -> None:
    keys = step((), T0)
    with pytest.raises(ValueError, match="pass new_key"):
        rotation.rotate_now(keys, T0 + 1, P)
    with pytest.raises(ValueError, match="pass new_key"):
        rotation.rotate_now((), T0 + 1, P)
    assert by_state(rotation.rotate_now((), T0, P, fake()), "active")


# --- invariants as properties over random histories ------------------------------------------


@dataclass
class History:
    """Observed lifecycle of every kid, recorded at each instant the key set is looked at."""

    policy: KeyPolicy
    created: dict[str, float] = field(default_factory=dict)
    activated: dict[str, float] = field(default_factory=dict)
    deactivated: dict[str, float] = field(default_factory=dict)
    unpublished: dict[str, float] = field(default_factory=dict)
    emergency: set[str] = field(default_factory=set)  # bootstrap / immediate / revoke promotions
    revoked: set[str] = field(default_factory=set)

    def observe(self, keys: Sequence[StoredKey], t: float, *, emergency: bool = False) -> None:
        actives = [k for k in keys if k.state == "active"]
        assert len(actives) == 1, f"exactly one active key at {t}: {states(keys)}"
        pub = {k.kid for k in rotation.published(keys)}
        assert len(pub) == len(rotation.published(keys))
        for k in keys:
            self.created.setdefault(k.kid, t)
            if k.state == "revoked":
                assert k.kid not in pub
                self.revoked.add(k.kid)
            if k.state == "active" and k.kid not in self.activated:
                self.activated[k.kid] = t
                if emergency or len(self.activated) == 1:
                    self.emergency.add(k.kid)
            if k.state != "active" and k.kid in self.activated:
                self.deactivated.setdefault(k.kid, t)
        for kid in self.created:
            if kid not in pub:
                self.unpublished.setdefault(kid, t)

    def check(self) -> None:
        lead = self.policy.publish_lead
        for kid, t in self.activated.items():
            if kid not in self.emergency:
                # Invariant 1: published a full JWKS max-age + margin before it signs.
                assert t - self.created[kid] >= lead, kid
        for kid, t_off in self.deactivated.items():
            if kid in self.revoked:
                continue
            gone = self.unpublished.get(kid)
            if gone is not None:
                # Invariant 2: published until its last token expired (+ leeway).
                assert gone - t_off >= self.policy.max_token_lifetime + self.policy.leeway, kid


ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 150)),
        st.tuples(st.just("rotate"), st.booleans()),
        st.tuples(st.just("revoke"), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, tick=st.floats(30, 3600))
def test_invariants_hold_over_random_histories(ops: list[tuple[str, Any]], tick: float) -> None:
    policy = KeyPolicy(rotation_period=2 * DAY, max_token_lifetime=6 * 3600)
    h = History(policy)
    t = T0
    keys = step((), t, policy)
    h.observe(keys, t)
    for op, arg in ops:
        if op == "advance":
            for _ in range(arg):  # the rotation loop ticks while time passes
                t += tick
                keys = step(keys, t, policy)
                h.observe(keys, t)
            continue
        t += 1
        if op == "rotate":
            new = fake() if rotation.rotate_now_needs_new_key(keys) else None
            keys = rotation.rotate_now(keys, t, policy, new, immediately=arg)
            h.observe(keys, t, emergency=arg)
        else:
            kid = keys[arg % len(keys)].kid
            new = fake() if rotation.revoke_needs_new_key(keys, kid) else None
            keys = rotation.revoke(keys, kid, t, policy, new)
            h.observe(keys, t, emergency=True)
    h.check()


# --- THE ACCEPTANCE SIMULATION ---------------------------------------------------------------

ISSUER = "https://issuer.example"
SIM_POLICY = KeyPolicy(
    alg="RS256",
    rotation_period=DAY,
    jwks_max_age=3600,
    publish_margin=300,
    max_token_lifetime=6 * 3600,
    leeway=60,
)
VERIFY_POLICY = Policy(ISSUER, ["api"], algorithms=("RS256", "ES256"), leeway=60)


class SimIssuer:
    """The issuer side: pure rotation steps, real keys, Cache-Control from next_change."""

    def __init__(self, policy: KeyPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.keys: tuple[StoredKey, ...] = ()
        self.signers: dict[str, Signer] = {}
        self.rotations = 0
        self.jti = 0

    def new_key(self, t: float) -> StoredKey:
        priv = crypto.generate_private_key(self.policy.alg, self.policy.rsa_bits)
        s = Signer(priv)
        self.signers[s.kid] = s
        return StoredKey(s.kid, s.alg, "next", s.public_jwk(), b"", created_at=t)

    def _set(self, keys: tuple[StoredKey, ...]) -> None:
        before = rotation.active(self.keys)
        after = rotation.active(keys)
        if before is not None and after is not None and before.kid != after.kid:
            self.rotations += 1
        self.keys = keys

    def tick(self, t: float) -> None:
        d = rotation.decide(self.keys, t, self.policy)
        if not d.nothing:
            self._set(
                rotation.apply(self.keys, t, self.policy, self.new_key(t) if d.new_key else None)
            )

    def revoke(self, kid: str, t: float) -> None:
        need = rotation.revoke_needs_new_key(self.keys, kid)
        self._set(
            rotation.revoke(self.keys, kid, t, self.policy, self.new_key(t) if need else None)
        )

    def mint(self, t: float, lifetime: int) -> tuple[str, str, float]:
        act = rotation.active(self.keys)
        assert act is not None
        self.jti += 1
        iat = int(t)
        claims = {
            "iss": ISSUER,
            "sub": "system:serviceaccount:ns:sa",
            "aud": ["api"],
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
            "jti": str(self.jti),
            "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
        }
        return self.signers[act.kid].sign_jwt(claims), act.kid, iat + lifetime

    def serve_jwks(self, t: float) -> tuple[dict[str, Any], int]:
        """GET /openid/v1/jwks: body and Cache-Control max-age."""
        pub = rotation.published(self.keys)
        nc = rotation.next_change(self.keys, t, self.policy)
        return {"keys": [dict(k.public_jwk) for k in pub]}, rotation.cache_max_age(
            nc, t, self.policy.jwks_max_age
        )


class SimVerifier:
    """An offline verifier that caches the JWKS exactly as long as max-age allows and never
    refetches on an unknown kid — so only the issuer's invariants keep it working."""

    def __init__(self, issuer: SimIssuer) -> None:
        self.issuer = issuer
        self.keys: KeySet | None = None
        self.expires = float("-inf")
        self.fetches = 0
        self._parsed: dict[tuple[str, ...], KeySet] = {}

    def keyset(self, t: float) -> KeySet:
        if self.keys is None or t >= self.expires:
            jwks, max_age = self.issuer.serve_jwks(t)
            sig = tuple(k["kid"] for k in jwks["keys"])
            ks = self._parsed.get(sig)
            if ks is None:
                ks = self._parsed[sig] = KeySet.from_jwks(jwks)
            self.keys, self.expires = ks, t + max_age
            self.fetches += 1
        return self.keys

    def check(self, token: str, t: float) -> str | None:
        try:
            verify(token, self.keyset(t), VERIFY_POLICY, now=t)
        except InvalidToken as e:
            return e.reason
        return None


def test_acceptance_20_rotations_zero_failures_and_revocation() -> None:
    rng = random.Random(20240601)
    policy = SIM_POLICY
    issuer = SimIssuer(policy, rng)
    verifiers = [SimVerifier(issuer) for _ in range(6)]
    t = T0
    issuer.tick(t)
    events: list[tuple[float, int, str, Any]] = []  # (time, seq, kind, payload)
    seq = 0

    def at(when: float, kind: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, kind, payload))

    failures: list[tuple[float, str, str, str | None]] = []
    minted = verified = 0
    revoked_kid: str | None = None
    revoked_at = 0.0
    revoked_rejections = 0
    h = History(policy)
    h.observe(issuer.keys, t)

    at(t, "tick", None)
    while events:  # after the 20th rotation, ticks stop and pending verifications drain
        t, _, kind, payload = heapq.heappop(events)
        if kind == "tick":
            issuer.tick(t)
            h.observe(issuer.keys, t, emergency=revoked_at == t)
            # Mint: the hot path right after a possible rotation; some max-lifetime tokens.
            lifetime = policy.max_token_lifetime if rng.random() < 0.3 else rng.randint(600, 7200)
            token, kid, exp = issuer.mint(t, lifetime)
            minted += 1
            # Every verifier sees the fresh token now (invariant 1: its kid must be cached) ...
            for v in verifiers:
                at(t, "verify", (token, kid, exp, v))
            # ... and one sees it again just before exp + leeway (invariant 2), one in between.
            at(exp + policy.leeway - 1, "verify", (token, kid, exp, rng.choice(verifiers)))
            at(rng.uniform(t, exp), "verify", (token, kid, exp, rng.choice(verifiers)))
            if issuer.rotations < 20:
                at(t + rng.uniform(30, 1200), "tick", None)
            # Revoke the active key once, mid-run, while a successor is published: its emergency
            # promotion breaks nobody, because max-age never outlasts the next key's creation.
            has_next = any(k.state == "next" for k in issuer.keys)
            if revoked_kid is None and issuer.rotations == 10 and has_next:
                revoked_kid = rotation.active(issuer.keys).kid  # type: ignore[union-attr]
                revoked_at = t + 1
                at(revoked_at, "revoke", revoked_kid)
        elif kind == "revoke":
            issuer.revoke(payload, t)
            h.observe(issuer.keys, t, emergency=True)
        else:
            token, kid, exp, v = payload
            verified += 1
            reason = v.check(token, t)
            if kid == revoked_kid and t >= revoked_at:
                if reason is not None:
                    assert reason == "unknown_key", reason
                    revoked_rejections += 1
                else:
                    # Offline caches may still hold the revoked key, but never past one max-age.
                    assert t < revoked_at + policy.jwks_max_age
            elif reason is not None:
                failures.append((t - T0, kid, reason, token[:20]))

    h.check()
    assert failures == []
    assert issuer.rotations >= 20
    assert revoked_kid is not None and revoked_rejections > 0
    assert minted > 1000 and verified == 8 * minted
    assert all(v.fetches > 20 for v in verifiers)
    # Keys come and go: retired keys were dropped along the way (the JWKS did not grow forever).
    assert len(rotation.published(issuer.keys)) <= 3


def test_emergency_revoke_without_next_fails_only_until_caches_expire() -> None:
    # Revoking the only key has no safe successor: new tokens fail at verifiers whose cached JWKS
    # predates the new key, for at most one max-age; afterwards everything passes again.
    policy = SIM_POLICY
    issuer = SimIssuer(policy, random.Random(1))
    t = T0
    issuer.tick(t)
    v = SimVerifier(issuer)
    old_token, old_kid, _ = issuer.mint(t, 3600)
    assert v.check(old_token, t) is None
    issuer.revoke(old_kid, t + 10)
    token, _, _ = issuer.mint(t + 10, 3600)
    assert v.check(token, t + 10) == "unknown_key"  # stale cache: the documented cost
    expiry = v.expires
    assert expiry <= t + policy.jwks_max_age
    assert v.check(token, expiry) is None
    assert v.check(old_token, expiry) == "unknown_key"
