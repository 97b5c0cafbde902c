"""The wiring of one issuer process: :class:`IssuerContext` and :func:`build_context`.

Every HTTP handler reaches it as ``request.app.state.ctx``. ``build_context`` does the I/O that
used to be scattered around ``main()``:

- creates ``DATA_DIR`` (mode 0700) and opens the store;
- loads the KEK (``config.kek``: a file path or base64), or the embedded default ``DATA_DIR/kek``,
  creating that file (0600, logged) on first start — but refusing to when the store already holds
  keys, which were then sealed under some other KEK that must be restored instead;
- loads ``admin_token_file`` (default ``DATA_DIR/admin-token``), creating it on first start with a
  random 32-byte urlsafe token, mode 0600. Its *path* may be printed; the token never is;
- builds the :class:`~issuer.keys.KeyManager` from the configured policy, the audit logger and the
  metrics registry, and registers the pre-renderer of discovery + JWKS as a key listener.

Nothing here starts threads: the app's lifespan calls ``ctx.keys.start()`` and ``ctx.close()``.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from issuer.config import Config, ConfigError
from issuer.crypto import Kek, KekError, create_kek_file, load_kek
from issuer.http.discovery import DiscoveryDocuments
from issuer.http.metrics import IssuerMetrics
from issuer.keys import KeyManager, KeyPolicy
from issuer.lastwritten import LastWritten
from issuer.store import Store, open_store

__all__ = [
    "IssuerContext",
    "build_context",
    "key_policy",
    "load_or_create_admin_tokens",
    "load_or_create_kek",
    "open_audit_log",
]

log = logging.getLogger("sa_issuer")


@dataclass
class IssuerContext:
    """Everything a request handler needs. Shared by all requests of one worker process.

    - ``config``: the resolved :class:`~issuer.config.Config`.
    - ``store``: the open :class:`~issuer.store.Store`.
    - ``keys``: the :class:`~issuer.keys.KeyManager` (``keys.signer()`` to sign).
    - ``clock``: POSIX seconds; use it instead of ``time.time`` so tests can steer time.
    - ``admin_tokens``: accepted bootstrap admin bearer tokens; compare with
      ``hmac.compare_digest``. Never log them.
    - ``api_audiences``: default token audiences (TokenRequest, TokenReview).
    - ``audit``: a logger writing one JSON object per line to ``config.audit_log``; use
      :meth:`audit_event` (or ``audit.info(event, extra={"audit": {...}})``).
    - ``metrics``: the Prometheus registry (``metrics.tokens_issued.inc(kind="pod")`` ...).
    - ``started_at``: when the context was built (POSIX s).
    - ``documents``: the pre-rendered discovery + JWKS (kept current by a key listener).
    - ``last_written``: the objects this process last stored, where updates start
      (:mod:`issuer.lastwritten`).
    """

    config: Config
    store: Store
    keys: KeyManager
    clock: Callable[[], float]
    admin_tokens: tuple[str, ...] = field(repr=False)  # secrets: never in a repr or a log
    api_audiences: tuple[str, ...]
    audit: logging.Logger
    metrics: IssuerMetrics
    started_at: float
    documents: DiscoveryDocuments
    last_written: LastWritten = field(default_factory=LastWritten, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def audit_event(self, event: str, **fields: Any) -> None:
        """Append one audit record: ``{"time", "event", **fields}`` as a JSON line."""
        self.audit.info(event, extra={"audit": fields})

    def close(self) -> None:
        """Stop the key manager, close the store and the audit log (idempotent)."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception:  # close everything even if one part fails
                log.exception("error while shutting down")


def key_policy(config: Config) -> KeyPolicy:
    """The :class:`~issuer.keys.KeyPolicy` for ``config``."""
    return KeyPolicy(
        alg=config.key_alg,
        rsa_bits=config.rsa_bits,
        rotation_period=config.rotation_period,
        jwks_max_age=config.jwks_max_age,
        publish_margin=config.publish_margin,
        max_token_lifetime=config.max_token_lifetime,
        leeway=config.leeway,
    )


def _ensure_data_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            "data_dir", f"cannot create data directory {path}: {e.strerror}"
        ) from None
    if not path.is_dir():
        raise ConfigError("data_dir", f"{path} is not a directory")


def load_or_create_kek(config: Config, store: Store, *, create: bool = True) -> Kek:
    """The KEK from ``config.kek``, else ``DATA_DIR/kek`` (created when missing and ``create``).

    Refuses to create a new KEK when the store already holds keys: those were sealed under another
    KEK, and a fresh one could never open them (the old one must be restored). Raises KekError.
    """
    if config.kek is not None:
        return load_kek(config.kek)
    path = config.data_dir / "kek"
    if path.exists():
        return load_kek(path)
    if not create:
        raise KekError(f"no KEK: {path} does not exist (set SA_ISSUER_KEK or the kek setting)")
    if store.load_keys().keys:
        raise KekError(
            f"no KEK file at {path}, but the store already holds keys sealed under a KEK: restore "
            "that KEK file (or set SA_ISSUER_KEK) instead of creating a new one"
        )
    try:
        kek = create_kek_file(path)
    except FileExistsError:  # another process created it first
        return load_kek(path)
    # Debug, not info: a first start prints one line (the serve banner). Backing the KEK up with
    # the store is in docs/OPERATIONS.md.
    log.debug("created key-encryption key %s (mode 0600); back it up with the store", path)
    return kek


def load_or_create_admin_tokens(path: Path, *, create: bool = True) -> tuple[tuple[str, ...], bool]:
    """(tokens, created): one token per non-empty line of ``path``; on first start (and when
    ``create``) a new file holding one random 32-byte urlsafe token, mode 0600, written with
    ``O_EXCL`` so concurrent starts agree on one token."""
    created = False
    if not path.exists() and create:
        token = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, token.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and never replaces an existing token file
            created = True
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        st = path.stat()
        text = path.read_text("utf-8")
    except OSError as e:
        raise ConfigError(
            "admin_token_file", f"cannot read admin token file {path}: {e.strerror}"
        ) from None
    if st.st_mode & 0o077:
        log.warning(
            "admin token file %s is accessible by group/others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )
    tokens = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not tokens:
        raise ConfigError("admin_token_file", f"admin token file {path} holds no token")
    short = [i + 1 for i, t in enumerate(tokens) if len(t) < 16]
    if short:
        raise ConfigError(
            "admin_token_file",
            f"admin token file {path}: token(s) on line(s) {short} are shorter than 16 characters",
        )
    return tokens, created


class _JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "event": record.getMessage(),
        }
        extra = getattr(record, "audit", None)
        if isinstance(extra, Mapping):
            for k, v in extra.items():
                body.setdefault(str(k), v)
        return orjson.dumps(body, default=str).decode()


def open_audit_log(target: str, name: str) -> tuple[logging.Logger, Callable[[], None]]:
    """A logger named ``name`` writing JSON lines to ``target`` (a path created 0600, ``-`` for
    stderr, ``""`` to discard); returns it and a function that closes its handler."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler: logging.Handler
    if target == "":
        handler = logging.NullHandler()
    elif target == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        path = Path(target)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as e:
            raise ConfigError("audit_log", f"cannot open audit log {path}: {e.strerror}") from None
    handler.setFormatter(_JsonLineFormatter())
    logger.handlers = [handler]

    def close() -> None:
        logger.removeHandler(handler)
        handler.close()

    return logger, close


def build_context(config: Config, *, clock: Callable[[], float] = time.time) -> IssuerContext:
    """Open the store, load or create KEK and admin token, build the key manager (see module
    docstring). Raises ConfigError, KekError or a StoreError; on failure nothing is left open."""
    _ensure_data_dir(config.data_dir)
    try:
        store = open_store(config.store, config.data_dir)
    except ValueError as e:
        raise ConfigError("store", str(e)) from None
    closers: list[Callable[[], None]] = [store.close]
    try:
        kek = load_or_create_kek(config, store)
        admin_tokens, _created = load_or_create_admin_tokens(config.admin_token_file)
        try:
            policy = key_policy(config)
        except ValueError as e:
            raise ConfigError("key policy", str(e)) from None
        keys = KeyManager(store, kek, policy, clock=clock)
        closers.append(keys.stop)
        audit, close_audit = open_audit_log(config.audit_log, f"sa_issuer.audit.{id(keys):x}")
        closers.append(close_audit)
        documents = DiscoveryDocuments(
            config.issuer, config.jwks_uri, config.jwks_max_age, clock=clock
        )
        keys.add_listener(documents.update)
        metrics = IssuerMetrics()
    except BaseException:
        for closer in reversed(closers):
            try:
                closer()
            except Exception:
                log.debug("cleanup after failed start", exc_info=True)
        raise
    ctx = IssuerContext(
        config=config,
        store=store,
        keys=keys,
        clock=clock,
        admin_tokens=admin_tokens,
        api_audiences=config.api_audiences,
        audit=audit,
        metrics=metrics,
        started_at=clock(),
        documents=documents,
        _closers=closers,
    )
    _register_gauges(ctx)
    return ctx


def _register_gauges(ctx: IssuerContext) -> None:
    m = ctx.metrics
    m.gauge(
        "sa_issuer_keyset_version",
        "Version of the published key set.",
        lambda: float(ctx.documents.version),
    )
    m.gauge(
        "sa_issuer_keys_next_change_seconds",
        "Seconds until the published key set next changes (absent when nothing is scheduled).",
        lambda: (
            None if ctx.documents.next_change is None else ctx.documents.next_change - ctx.clock()
        ),
    )
    m.gauge(
        "sa_issuer_active_key_age_seconds",
        "Seconds since the active signing key started signing.",
        lambda: _active_key_age(ctx),
    )
    m.gauge(
        "sa_issuer_published_keys",
        "Number of keys in the JWKS.",
        lambda: float(len(ctx.keys.published().jwks.get("keys", ()))),
    )
    m.gauge(
        "sa_issuer_start_time_seconds",
        "When this process built its context (POSIX seconds).",
        lambda: ctx.started_at,
    )


def _active_key_age(ctx: IssuerContext) -> float | None:
    for key in ctx.keys.published().keys:
        if key.state == "active":
            start = key.activate_at if key.activate_at is not None else key.created_at
            return max(0.0, ctx.clock() - start)
    return None
