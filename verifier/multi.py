"""One verifier for many issuers, configured by Kubernetes' ``AuthenticationConfiguration``.

::

    v = MultiIssuerVerifier("/etc/auth/authn.yaml")        # threads; watches the file
    result = v.verify(token)         # Authenticated(user=UserInfo, service_account=..., ...)
    result = await AsyncMultiIssuerVerifier(path).verify(token)

Per token (kube's JWT authenticator, staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/
oidc/oidc.go, with the checks of :mod:`verifier.core`):

1. The compact JWS is parsed and its payload decoded — unverified — only to read ``iss``
   (kube ``hasCorrectIssuer`` does the same). An ``iss`` that no ``jwt[i].issuer.url`` equals
   exactly is refused as ``issuer_mismatch`` right there: no key lookup, no network call.
2. That issuer's own :class:`~verifier.remote.OIDCVerifier` supplies the keys, with its cache,
   unknown-``kid`` cooldown and single in-flight fetch (``verify_with``); the signature is checked
   with every algorithm this verifier supports (the file has no algorithm list; kube takes the
   key's). ``kid`` may be absent, as go-oidc allows.
3. ``exp`` (required), ``nbf``, ``iat`` and ``aud`` (one of ``issuer.audiences``; ``MatchAny`` is
   the only policy kube has) are checked. A Kubernetes service-account token (it carries the
   ``kubernetes.io`` claim) is also checked and mapped exactly as by :func:`verifier.verify`, so
   the result carries a :class:`~verifier.identity.ServiceAccountIdentity` too.
4. The claims are mapped to a user and validated by the authenticator's rules
   (:meth:`verifier.usermap.Authenticator.user_for`).

Hot reload: with ``watch=True`` a daemon thread polls the file's (inode, size, mtime) every
``poll_interval`` seconds (:meth:`reload` checks at once). A version that loads and validates
replaces the previous one in one reference assignment, so a request in flight finishes on the
version it started with and no request is dropped; an issuer whose ``url``, ``discoveryURL`` and
``certificateAuthority`` are unchanged keeps its verifier and key cache. A version that fails is
logged and counted, and the previous one stays in force (:attr:`status`, :meth:`metrics`, named
after kube-apiserver's ``apiserver_authentication_config_controller_*`` metrics).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final, Generic, Self, TypeVar

from ._json import JSONError, loads_object
from .authconfig import (
    MAX_CONFIG_BYTES,
    AuthConfigError,
    AuthenticationConfiguration,
    Authenticator,
    UserInfo,
    parse_authentication_config,
)
from .claims import identity_from_claims, validate_aud, validate_exp, validate_iat, validate_nbf
from .errors import InvalidToken
from .identity import ServiceAccountIdentity
from .jwk import KeySet
from .jws import ParsedJWS, parse_compact
from .policy import MAX_TOKEN_BYTES, SUPPORTED_ALGORITHMS, Policy
from .remote import AsyncOIDCVerifier, OIDCVerifier

__all__ = [
    "AsyncMultiIssuerVerifier",
    "Authenticated",
    "MultiIssuerVerifier",
    "ReloadStatus",
]

logger = logging.getLogger(__name__)

_ALGORITHMS: Final = frozenset(SUPPORTED_ALGORITHMS)
#: Seconds a removed issuer's verifier stays open for requests that selected it before the swap.
_RETIRE_AFTER: Final = 60.0
_V = TypeVar("_V", OIDCVerifier, AsyncOIDCVerifier)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A token accepted through an ``AuthenticationConfiguration``.

    ``user`` is the mapped user (a TokenReview ``status.user``); ``service_account`` is set for
    Kubernetes service-account tokens; ``audiences`` are the token's; ``claims`` are verified.
    """

    user: UserInfo
    service_account: ServiceAccountIdentity | None
    issuer: str
    audiences: tuple[str, ...]
    claims: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``{"username", "uid", "groups", "extra", "issuer", "audiences", "serviceAccount"}``."""
        sa = self.service_account
        return {
            **self.user.to_dict(),
            "issuer": self.issuer,
            "audiences": list(self.audiences),
            "serviceAccount": None if sa is None else sa.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What configuration is in force and how the last reloads went."""

    source: str
    generation: int
    config_sha256: str
    issuers: tuple[str, ...]
    loaded_at: float
    reloads_succeeded: int = 0
    reloads_failed: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


class _Issuer(Generic[_V]):
    """One ``jwt[i]``: its authenticator, claim policy and remote verifier."""

    __slots__ = ("authenticator", "leeway", "policy", "verifier")
    authenticator: Authenticator
    verifier: _V
    leeway: int
    policy: Policy

    def __init__(self, authenticator: Authenticator, verifier: _V, leeway: int) -> None:
        self.authenticator = authenticator
        self.verifier = verifier
        self.leeway = leeway
        self.policy = Policy(
            authenticator.issuer_url,
            authenticator.audiences,
            algorithms=sorted(_ALGORITHMS),
            leeway=leeway,
            require_kid=False,
        )

    def check(
        self, parsed: ParsedJWS, claims: dict[str, Any], now: float, keys: KeySet
    ) -> Authenticated:
        """Signature with ``keys``, then time and audience, then the user mapping."""
        key = keys.verify_parsed(parsed, _ALGORITHMS, False)
        policy = self.policy
        sa: ServiceAccountIdentity | None = None
        if "kubernetes.io" in claims:
            sa = identity_from_claims(claims, policy, now, key.kid)
            audiences = sa.audiences
        else:
            validate_exp(claims, now, self.leeway)  # required (go-oidc refuses a zero expiry)
            validate_nbf(claims, now, self.leeway)
            validate_iat(claims, now, self.leeway)
            audiences = validate_aud(claims, policy)
        user = self.authenticator.user_for(claims, parsed.payload)
        return Authenticated(user, sa, policy.issuer, audiences, MappingProxyType(claims))


class _Snapshot(Generic[_V]):
    """One loaded configuration: issuers by exact URL (replaced whole on reload)."""

    __slots__ = ("config", "issuers")
    config: AuthenticationConfiguration
    issuers: dict[str, _Issuer[_V]]

    def __init__(self, config: AuthenticationConfiguration, issuers: dict[str, _Issuer[_V]]):
        self.config = config
        self.issuers = issuers

    def select(self, token: str) -> tuple[_Issuer[_V], ParsedJWS, dict[str, Any]]:
        """Parse ``token`` and pick its issuer by the unverified ``iss``; no I/O."""
        parsed = parse_compact(token, MAX_TOKEN_BYTES)
        try:
            claims = loads_object(parsed.payload)
        except JSONError:
            raise InvalidToken("malformed", "payload is not a strict JSON object") from None
        iss = claims.get("iss")
        if type(iss) is not str:
            raise InvalidToken("missing_claim" if iss is None else "invalid_claim", "iss")
        issuer = self.issuers.get(iss)
        if issuer is None:
            # The value is unverified: never echo it.
            raise InvalidToken("issuer_mismatch", "the token's issuer is not configured")
        return issuer, parsed, claims


def _verifier_key(a: Authenticator) -> tuple[str, str, str]:
    i = a.spec.issuer
    return (i.url, i.discovery_url, i.certificate_authority)


class _MultiBase(Generic[_V]):
    """Loading, reloading and selection shared by the sync and async verifiers."""

    def __init__(
        self,
        config: str | os.PathLike[str] | AuthenticationConfiguration,
        *,
        watch: bool = True,
        poll_interval: float = 1.0,
        leeway: int = 60,
        clock: Callable[[], float] = time.time,
        verifier_options: Mapping[str, Any] | None = None,
    ) -> None:
        """See :class:`MultiIssuerVerifier` for the arguments."""
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._leeway = leeway
        self._clock = clock
        self._options = dict(verifier_options or {})
        self._lock = threading.RLock()
        self._retired: list[tuple[float, _V]] = []
        self._closing: set[asyncio.Task[None]] = set()  # async: closes of retired verifiers
        self._path: Path | None = None
        self._stamp: tuple[int, int, int] | None = None
        if isinstance(config, AuthenticationConfiguration):
            loaded, text = config, b""
        else:
            self._path = Path(config)
            self._stamp = self._file_stamp()
            loaded, text = self._load()  # raises AuthConfigError: no verifier without a config
        self._snapshot: _Snapshot[_V] = self._build(loaded, {})
        self._status = ReloadStatus(
            source=loaded.source,
            generation=1,
            config_sha256=hashlib.sha256(text).hexdigest(),
            issuers=tuple(self._snapshot.issuers),
            loaded_at=time.time(),
        )
        self._stop = threading.Event()
        self._poll_interval = poll_interval
        self._watcher: threading.Thread | None = None
        if watch and self._path is not None:
            self._watcher = threading.Thread(
                target=self._watch, name="sa-oidc-authn-config-watch", daemon=True
            )
            self._watcher.start()

    # -- configuration ---------------------------------------------------------------------------

    @property
    def status(self) -> ReloadStatus:
        """The configuration in force and the reload counters."""
        return self._status

    @property
    def issuers(self) -> tuple[str, ...]:
        """The issuer URLs accepted now."""
        return tuple(self._snapshot.issuers)

    def metrics(self) -> dict[str, float]:
        """Counters in Prometheus naming, after kube-apiserver's config-reload metrics."""
        s = self._status
        prefix = "apiserver_authentication_config_controller_"
        return {
            f'{prefix}automatic_reloads_total{{status="success"}}': s.reloads_succeeded,
            f'{prefix}automatic_reloads_total{{status="failure"}}': s.reloads_failed,
            f'{prefix}automatic_reload_last_timestamp_seconds{{status="success"}}': s.loaded_at,
            f'{prefix}automatic_reload_last_timestamp_seconds{{status="failure"}}': (
                s.last_error_at or 0.0
            ),
            f"{prefix}generation": s.generation,
        }

    def reload(self) -> bool:
        """Check the file now; load it if it changed. True when a new version took effect.

        An invalid version is logged, counted in :attr:`status` and ignored: the previous one
        stays in force. (Watching calls this every ``poll_interval`` seconds.)
        """
        if self._path is None:
            return False
        with self._lock:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                loaded, text = self._load()
                digest = hashlib.sha256(text).hexdigest()
                if digest == self._status.config_sha256:
                    return False  # touched, not changed
                snapshot = self._build(loaded, self._snapshot.issuers)
            except (AuthConfigError, ValueError) as exc:
                logger.error(
                    "authentication configuration %s refused, keeping generation %d: %s",
                    self._path,
                    self._status.generation,
                    exc,
                )
                self._status = replace(
                    self._status,
                    reloads_failed=self._status.reloads_failed + 1,
                    last_error=str(exc),
                    last_error_at=time.time(),
                )
                return False
            old = self._snapshot
            self._snapshot = snapshot  # the swap: one reference assignment
            kept = {id(i.verifier) for i in snapshot.issuers.values()}
            now = time.monotonic()
            self._retired += [
                (now, i.verifier) for i in old.issuers.values() if id(i.verifier) not in kept
            ]
            self._status = replace(
                self._status,
                generation=self._status.generation + 1,
                config_sha256=digest,
                issuers=tuple(snapshot.issuers),
                loaded_at=time.time(),
                reloads_succeeded=self._status.reloads_succeeded + 1,
            )
            logger.info(
                "authentication configuration %s loaded (generation %d, issuers: %s)",
                self._path,
                self._status.generation,
                ", ".join(snapshot.issuers) or "none",
            )
            return True

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> tuple[AuthenticationConfiguration, bytes]:
        """Read the file once (capped) and parse those very bytes."""
        assert self._path is not None
        try:
            with self._path.open("rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise AuthConfigError([f"cannot read {str(self._path)!r}: {exc.strerror}"]) from None
        return parse_authentication_config(data, source=str(self._path)), data

    def _build(
        self, config: AuthenticationConfiguration, previous: Mapping[str, _Issuer[_V]]
    ) -> _Snapshot[_V]:
        reuse = {_verifier_key(i.authenticator): i.verifier for i in previous.values()}
        issuers: dict[str, _Issuer[_V]] = {}
        for a in config.authenticators:
            verifier = reuse.get(_verifier_key(a)) or self._new_verifier(a)
            issuers[a.issuer_url] = _Issuer(a, verifier, self._leeway)
        return _Snapshot(config, issuers)

    def _new_verifier(self, a: Authenticator) -> _V:
        raise NotImplementedError

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_interval):
            try:
                self.reload()
            except Exception:  # pragma: no cover - reload catches what it expects
                logger.exception("authentication configuration watch failed")

    def _verifier_args(self, a: Authenticator) -> dict[str, Any]:
        i = a.spec.issuer
        return {
            "algorithms": sorted(_ALGORITHMS),
            "leeway": self._leeway,
            "clock": self._clock,
            "discovery_url": i.discovery_url or None,
            "ca_data": i.certificate_authority or None,
            **self._options,
        }

    def _close_retired(self, *, force: bool) -> list[_V]:
        """Take the retired verifiers old enough that no request can still be using them."""
        with self._lock:
            now = time.monotonic()
            done = [v for t, v in self._retired if force or now - t > _RETIRE_AFTER]
            self._retired = [
                (t, v) for t, v in self._retired if not (force or now - t > _RETIRE_AFTER)
            ]
            return done

    def _stop_watching(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5)


class MultiIssuerVerifier(_MultiBase[OIDCVerifier]):
    """Verify tokens from every issuer of an ``AuthenticationConfiguration``. Thread-safe.

    - ``config``: a path (loaded now; :class:`~verifier.authconfig.AuthConfigError` if refused)
      or an already loaded configuration (no file to watch).
    - ``watch`` / ``poll_interval``: hot reload (see the module docstring).
    - ``leeway``: seconds of clock skew on ``exp``, ``nbf``, ``iat``.
    - ``verifier_options``: passed to each issuer's :class:`~verifier.remote.OIDCVerifier`
      (``timeout``, ``refetch_cooldown``, ``min_cache``...).
    """

    def _new_verifier(self, a: Authenticator) -> OIDCVerifier:
        return OIDCVerifier(a.issuer_url, a.audiences, **self._verifier_args(a))

    def verify(self, token: str) -> Authenticated:
        """Verify ``token`` against its issuer; raise ``InvalidToken`` / ``VerifierUnavailable``."""
        issuer, parsed, claims = self._snapshot.select(token)
        check = functools.partial(issuer.check, parsed, claims, self._clock())
        return issuer.verifier.verify_with(check)

    def verify_cached(self, token: str) -> Authenticated | None:
        """:meth:`verify` without blocking on the network: ``None`` means "would have to fetch"."""
        issuer, parsed, claims = self._snapshot.select(token)
        check = functools.partial(issuer.check, parsed, claims, self._clock())
        return issuer.verifier.verify_cached_with(check)

    def close(self) -> None:
        """Stop watching and close every issuer's HTTP client."""
        self._stop_watching()
        with self._lock:
            for v in self._close_retired(force=True):
                v.close()
            for i in self._snapshot.issuers.values():
                i.verifier.close()

    def reload(self) -> bool:
        changed = super().reload()
        for v in self._close_retired(force=False):
            v.close()
        return changed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMultiIssuerVerifier(_MultiBase[AsyncOIDCVerifier]):
    """:class:`MultiIssuerVerifier` for asyncio: same arguments, ``await v.verify(token)``.

    Each issuer has an :class:`~verifier.remote.AsyncOIDCVerifier`; use it from one event loop.
    """

    def _new_verifier(self, a: Authenticator) -> AsyncOIDCVerifier:
        return AsyncOIDCVerifier(a.issuer_url, a.audiences, **self._verifier_args(a))

    async def verify(self, token: str) -> Authenticated:
        """Verify ``token`` against its issuer (see :meth:`MultiIssuerVerifier.verify`)."""
        if self._retired:  # removed issuers' clients are closed here, on the loop that uses them
            for v in self._close_retired(force=False):
                task = asyncio.get_running_loop().create_task(v.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        issuer, parsed, claims = self._snapshot.select(token)
        check = functools.partial(issuer.check, parsed, claims, self._clock())
        return await issuer.verifier.verify_with(check)

    async def aclose(self) -> None:
        """Stop watching and close every issuer's HTTP client."""
        self._stop_watching()
        with self._lock:
            retired = self._close_retired(force=True)
            current = [i.verifier for i in self._snapshot.issuers.values()]
        for v in (*retired, *current):
            await v.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
