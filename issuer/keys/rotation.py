"""The key lifecycle as pure functions of (keys, now, policy) — no I/O, no crypto, no clock.

After dex ``server/signer/rotation.go`` (STYLE.md §8): :func:`decide` says what is due, the
caller generates any new key *outside* the write, :func:`apply` re-decides on the freshly loaded
key set and returns the new one, and the caller writes it with compare-and-swap; a loser re-reads,
and finding the work already done is fine (docs/CONTRACTS.md invariant 3).

Lifecycle (docs/CONTRACTS.md "Keys: one lifecycle, stated as invariants")::

    (none) --bootstrap--> active                          empty set: nobody can have cached anything
    next --activate_at reached--> active --> retired --remove_at reached--> (dropped)
    any --revoke--> revoked --remove_at reached--> (dropped)

Timing, with ``lead = jwks_max_age + publish_margin``:

- a ``next`` key is created at ``active.activate_at + rotation_period - lead`` and scheduled to
  activate at ``max(created + lead, active.activate_at + rotation_period)`` — so it is published at
  least one JWKS max-age (+ margin) before it signs (invariant 1);
- it is promoted when ``now >= activate_at``; the old active key is retired with
  ``remove_at = now + max(policy, key) max_token_lifetime + leeway + publish_margin`` — published
  until the last token it signed has expired (invariant 2). ``publish_margin`` here covers replicas
  that have not yet seen the promotion and still sign with the old key for a moment;
- retired and revoked keys are dropped once ``now >= remove_at``;
- exactly one key is ``active`` at every instant after bootstrap.

Times are POSIX seconds (floats). Every function returns new tuples; inputs are never mutated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from issuer.crypto import ALGORITHMS, RSA_SIZES
from issuer.store.base import NotFound, StoredKey

__all__ = [
    "DAY",
    "EXTENDED_TOKEN_LIFETIME",
    "Decision",
    "KeyPolicy",
    "UnknownKey",
    "active",
    "apply",
    "cache_max_age",
    "decide",
    "next_change",
    "published",
    "revoke",
    "revoke_needs_new_key",
    "rotate_now",
    "rotate_now_needs_new_key",
]

DAY: Final = 86400
#: Token lifetime with Kubernetes' extended expiration (kube: token.go, 1 year).
EXTENDED_TOKEN_LIFETIME: Final = 365 * DAY

_PUBLISHED: Final = frozenset({"next", "active", "retired"})


class UnknownKey(NotFound, KeyError):
    """No key with this kid is stored (a :class:`NotFound` and a :class:`KeyError`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown key"


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """How keys are made and rotated. All durations in seconds.

    - ``alg`` / ``rsa_bits``: new keys (RS256 with 2048/3072/4096 bits, or ES256/ES384/ES512).
    - ``rotation_period`` (7 days): how long a key signs before its successor takes over.
    - ``jwks_max_age`` (3600, kube-apiserver's value): the JWKS/discovery ``Cache-Control`` cap.
    - ``publish_margin`` (300): slack on top of ``jwks_max_age`` before a key signs, and on top of
      token expiry before a retired key is dropped (clock skew, replica propagation).
    - ``max_token_lifetime`` (1 day): the longest token (``exp - iat``) the issuer may sign; MUST be
      at least the TokenRequest maximum (``EXTENDED_TOKEN_LIFETIME`` with extended expiration on).
      Signers of this manager refuse longer tokens rather than break invariant 2.
    - ``leeway`` (60): verifiers' clock leeway on ``exp``; retired keys stay that much longer.
    """

    alg: str = "RS256"
    rsa_bits: int = 2048
    rotation_period: float = 7 * DAY
    jwks_max_age: int = 3600
    publish_margin: float = 300.0
    max_token_lifetime: int = DAY
    leeway: float = 60.0

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"unsupported key algorithm {self.alg!r}: use {sorted(ALGORITHMS)}")
        if self.alg == "RS256" and self.rsa_bits not in RSA_SIZES:
            raise ValueError(f"rsa_bits must be one of {sorted(RSA_SIZES)}, got {self.rsa_bits}")
        for name in ("jwks_max_age", "publish_margin", "max_token_lifetime", "leeway"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.rotation_period) and self.rotation_period > self.publish_lead):
            # Otherwise a successor would be due before its predecessor even started signing.
            raise ValueError(
                f"rotation_period ({self.rotation_period:g} s) must be longer than "
                f"jwks_max_age + publish_margin ({self.publish_lead:g} s)"
            )

    @property
    def publish_lead(self) -> float:
        """How long a key is published before it may sign (invariant 1)."""
        return self.jwks_max_age + self.publish_margin

    def retention(self, key: StoredKey) -> float:
        """How long a key stays published after it stops signing (invariant 2)."""
        lifetime = max(self.max_token_lifetime, key.max_token_lifetime)
        return lifetime + self.leeway + self.publish_margin


@dataclass(frozen=True, slots=True)
class Decision:
    """What is due now. :attr:`nothing` means the key set must not be written.

    ``new_key`` is the state a freshly generated key must get (``"active"`` on bootstrap, else
    ``"next"``) and ``new_key_activate_at`` its activation time; ``promote`` is a next key's kid to
    activate; ``retire`` / ``drop`` / ``raise_lifetime`` list kids. ``reasons`` is for logs.
    """

    reasons: tuple[str, ...] = ()
    new_key: Literal["active", "next"] | None = None
    new_key_activate_at: float | None = None
    promote: str | None = None
    retire: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    raise_lifetime: tuple[str, ...] = ()

    @property
    def nothing(self) -> bool:
        """True when nothing is due."""
        return not (self.new_key or self.promote or self.retire or self.drop or self.raise_lifetime)

    @property
    def needs_new_key(self) -> bool:
        """True when the caller must generate a key before :func:`apply`."""
        return self.new_key is not None


# --- views -----------------------------------------------------------------------------------


def _order(k: StoredKey) -> tuple[float, str]:
    return (k.created_at, k.kid)


def _activated(k: StoredKey) -> float:
    return k.activate_at if k.activate_at is not None else k.created_at


def published(keys: Iterable[StoredKey]) -> tuple[StoredKey, ...]:
    """Keys in the JWKS: next, active and retired — never revoked — by (created_at, kid).

    The order does not depend on state, so a promotion leaves the JWKS bytes unchanged.
    """
    return tuple(sorted((k for k in keys if k.state in _PUBLISHED), key=_order))


def _actives(keys: Iterable[StoredKey]) -> list[StoredKey]:
    return sorted((k for k in keys if k.state == "active"), key=lambda k: (_activated(k), k.kid))


def _nexts(keys: Iterable[StoredKey]) -> list[StoredKey]:
    return sorted(
        (k for k in keys if k.state == "next"),
        key=lambda k: (_activated(k), k.created_at, k.kid),
    )


def active(keys: Iterable[StoredKey]) -> StoredKey | None:
    """The signing key (the latest activated one, should a broken store hold several), or None."""
    a = _actives(keys)
    return a[-1] if a else None


# --- the decision ----------------------------------------------------------------------------


def decide(keys: Sequence[StoredKey], now: float, policy: KeyPolicy) -> Decision:
    """What is due at ``now`` (see the module docstring). Pure."""
    reasons: list[str] = []
    drop = tuple(
        k.kid
        for k in keys
        if k.state in ("retired", "revoked") and k.remove_at is not None and now >= k.remove_at
    )
    if drop:
        reasons.append(f"drop {len(drop)} expired key(s)")

    actives = _actives(keys)
    nexts = _nexts(keys)
    retire: list[str] = []
    if len(actives) > 1:
        # Never written by this module; repair a broken set by keeping the newest.
        retire.extend(k.kid for k in actives[:-1])
        reasons.append("more than one active key")
    current = actives[-1] if actives else None

    promote: str | None = None
    current_activated = _activated(current) if current else None
    if nexts and (current is None or now >= _activated(nexts[0])):
        promote = nexts[0].kid
        if current is not None:
            retire.append(current.kid)
        current_activated = now
        nexts = nexts[1:]
        reasons.append("next key reached activate_at" if current else "no active key")

    new_key: Literal["active", "next"] | None = None
    new_at: float | None = None
    if current_activated is None:
        new_key, new_at = "active", now
        reasons.append("bootstrap: no signing key")
    elif not nexts:
        due = current_activated + policy.rotation_period - policy.publish_lead
        if now >= due:
            # Invariant 1: published for at least jwks_max_age + margin before it signs.
            new_key = "next"
            new_at = max(now + policy.publish_lead, current_activated + policy.rotation_period)
            reasons.append("successor due")

    retiring = set(retire)
    raise_lifetime = tuple(
        k.kid
        for k in keys
        if k.state in ("active", "next")
        and k.kid not in retiring
        and k.max_token_lifetime < policy.max_token_lifetime
    )
    if raise_lifetime:
        reasons.append("max_token_lifetime raised")

    return Decision(
        reasons=tuple(reasons),
        new_key=new_key,
        new_key_activate_at=new_at,
        promote=promote,
        retire=tuple(retire),
        drop=drop,
        raise_lifetime=raise_lifetime,
    )


def _retired(k: StoredKey, now: float, policy: KeyPolicy) -> StoredKey:
    # Invariant 2: published until the last token it signed has expired (+ leeway, + margin).
    return dataclasses.replace(
        k, state="retired", retired_at=now, remove_at=now + policy.retention(k)
    )


def _activated_now(k: StoredKey, now: float, policy: KeyPolicy) -> StoredKey:
    return dataclasses.replace(
        k,
        state="active",
        activate_at=now,
        max_token_lifetime=max(k.max_token_lifetime, policy.max_token_lifetime),
    )


def _fresh(new_key: StoredKey, state: Literal["active", "next"], now: float, at: float,
           policy: KeyPolicy, keys: Iterable[StoredKey]) -> StoredKey:  # fmt: skip
    if any(k.kid == new_key.kid for k in keys):
        raise ValueError(f"new key's kid {new_key.kid} is already in the key set")
    # created_at = when it is written (published), which is what invariant 1 counts from.
    return dataclasses.replace(
        new_key,
        state=state,
        created_at=now,
        activate_at=at,
        retired_at=None,
        revoked_at=None,
        remove_at=None,
        max_token_lifetime=max(new_key.max_token_lifetime, policy.max_token_lifetime),
    )


def apply(
    keys: Sequence[StoredKey], now: float, policy: KeyPolicy, new_key: StoredKey | None
) -> tuple[StoredKey, ...]:
    """The key set after doing what :func:`decide` finds due at ``now`` on *these* keys.

    Call it on the freshly loaded set right before the compare-and-swap: the decision is re-made
    here, so a key set another replica already rotated comes back unchanged (and ``new_key`` is
    ignored). Raises ValueError if a new key is due and ``new_key`` is None.
    """
    d = decide(keys, now, policy)
    if d.needs_new_key and new_key is None:
        raise ValueError("a new key is due: generate one and pass it as new_key")
    drop, retire = set(d.drop), set(d.retire)
    raise_lifetime = set(d.raise_lifetime)
    out: list[StoredKey] = []
    for k in keys:
        if k.kid in drop:
            continue
        if k.kid in retire:
            k = _retired(k, now, policy)
        elif k.kid == d.promote:
            k = _activated_now(k, now, policy)
        elif k.kid in raise_lifetime:
            k = dataclasses.replace(k, max_token_lifetime=policy.max_token_lifetime)
        out.append(k)
    if d.new_key is not None and new_key is not None and d.new_key_activate_at is not None:
        out.append(_fresh(new_key, d.new_key, now, d.new_key_activate_at, policy, out))
    return tuple(out)


# --- manual operations -----------------------------------------------------------------------


def _find(keys: Sequence[StoredKey], kid: str) -> StoredKey:
    for k in keys:
        if k.kid == kid:
            return k
    raise UnknownKey(f"no key with kid {kid!r}")


def revoke_needs_new_key(keys: Sequence[StoredKey], kid: str) -> bool:
    """True if revoking ``kid`` needs a freshly generated replacement (it is the active key and no
    next key exists). Raises :class:`UnknownKey`."""
    k = _find(keys, kid)
    return k.state == "active" and not any(x.state == "next" for x in keys)


def revoke(
    keys: Sequence[StoredKey],
    kid: str,
    now: float,
    policy: KeyPolicy,
    new_key: StoredKey | None = None,
) -> tuple[StoredKey, ...]:
    """Revoke ``kid``: it leaves the JWKS at once. Idempotent for an already revoked key.

    If it was the active key, the next key (if any) is promoted *at once* — an emergency that
    knowingly breaks invariant 1: verifiers whose cached JWKS predates the next key meet an unknown
    kid until they refetch, which beats trusting a compromised key. Without a next key, ``new_key``
    is required and becomes active at once. Raises :class:`UnknownKey`.
    """
    target = _find(keys, kid)
    if target.state == "revoked":
        return tuple(keys)
    if target.state == "next":
        remove_at = now  # never signed anything: nothing to wait for
    elif target.state == "retired" and target.remove_at is not None:
        remove_at = target.remove_at  # already covers every token it signed
    else:
        remove_at = now + policy.retention(target)
    revoked = dataclasses.replace(target, state="revoked", revoked_at=now, remove_at=remove_at)
    out = [revoked if k.kid == kid else k for k in keys]
    if target.state != "active":
        return tuple(out)
    nexts = _nexts(out)
    if nexts:
        promote = nexts[0].kid
        return tuple(_activated_now(k, now, policy) if k.kid == promote else k for k in out)
    if new_key is None:
        raise ValueError("revoking the active key with no next key needs a new key")
    return (*out, _fresh(new_key, "active", now, now, policy, out))


def rotate_now_needs_new_key(keys: Sequence[StoredKey]) -> bool:
    """True if :func:`rotate_now` needs a freshly generated key (there is no next key)."""
    return not any(k.state == "next" for k in keys)


def rotate_now(
    keys: Sequence[StoredKey],
    now: float,
    policy: KeyPolicy,
    new_key: StoredKey | None = None,
    *,
    immediately: bool = False,
) -> tuple[StoredKey, ...]:
    """Manual rotation (``sa-issuer keys rotate``).

    Default (safe): make sure a next key exists and activates at the earliest time invariant 1
    allows (``created_at + jwks_max_age + publish_margin``); a next key that is already past that
    point is promoted now. ``immediately=True`` promotes the next key — or a new key — *now*,
    knowingly breaking invariant 1 (verifiers with a cached JWKS meet an unknown kid until they
    refetch). Needs ``new_key`` when :func:`rotate_now_needs_new_key` says so.
    """
    current = active(keys)
    nexts = _nexts(keys)
    if current is None and not nexts:
        # Nothing signs and nobody can have cached a successor: same as bootstrap.
        if new_key is None:
            raise ValueError("no key to promote: pass new_key")
        return (*keys, _fresh(new_key, "active", now, now, policy, keys))
    if nexts:
        n = nexts[0]
        safe = n.created_at + policy.publish_lead
        if immediately or current is None or now >= safe:

            def promoted(k: StoredKey) -> StoredKey:
                if k.kid == n.kid:
                    return _activated_now(k, now, policy)
                return _retired(k, now, policy) if k.state == "active" else k

            return tuple(promoted(k) for k in keys)
        return tuple(
            dataclasses.replace(k, activate_at=min(_activated(k), safe)) if k.kid == n.kid else k
            for k in keys
        )
    if new_key is None:
        raise ValueError("no next key exists: pass new_key")
    if immediately:
        out = [_retired(k, now, policy) if k.state == "active" else k for k in keys]
        return (*out, _fresh(new_key, "active", now, now, policy, out))
    return (*keys, _fresh(new_key, "next", now, now + policy.publish_lead, policy, keys))


# --- caching ---------------------------------------------------------------------------------


def next_change(keys: Sequence[StoredKey], now: float, policy: KeyPolicy) -> float | None:
    """When the *published* key set (the JWKS content) next changes, if no one intervenes.

    That is the earliest of: the next ``next`` key's creation (after a pending promotion, if one is
    scheduled), and any retired key's ``remove_at``. Promotions and revoked keys do not change the
    JWKS content. A value <= ``now`` means a change is due now. None if nothing is scheduled.
    The discovery layer serves ``Cache-Control: max-age = cache_max_age(...)`` (STYLE.md §8).
    """
    times = [k.remove_at for k in keys if k.state == "retired" and k.remove_at is not None]
    current = active(keys)
    nexts = _nexts(keys)
    if current is None and not nexts:
        times.append(now)  # bootstrap pending
    elif not nexts:
        assert current is not None
        times.append(_activated(current) + policy.rotation_period - policy.publish_lead)
    elif len(nexts) == 1:
        promoted_at = max(_activated(nexts[0]), now)
        times.append(promoted_at + policy.rotation_period - policy.publish_lead)
    return min(times) if times else None


def cache_max_age(next_change: float | None, now: float, cap: float) -> int:
    """``Cache-Control`` max-age: ``min(cap, next_change - now)`` in whole seconds, never < 0."""
    if next_change is None:
        return max(0, int(cap))
    return max(0, int(min(cap, next_change - now)))
