"""Issuer configuration: one frozen :class:`Config`, resolved from four layers.

Precedence (docs/CONTRACTS.md "Issuer CLI"): command-line flags > environment (``SA_ISSUER_<KEY>``)
> TOML config file > defaults. Every setting has a TOML key (snake_case, flat table) and an env var
(``SA_ISSUER_`` + the key upper-cased); the common ones also have a ``serve`` flag.

data_dir                       KEK, admin token, SQLite db, audit log ``./.sa-issuer``
listen                         ``HOST:PORT`` (``[::1]:PORT`` for v6)  ``127.0.0.1:8080``
issuer                         the ``iss`` URL (https; see below)     ``https://`` + listen
                                                                      (``http://`` with tls=off)
tls                            ``auto`` | ``self-signed`` | ``off``   ``auto``
tls_sans                       extra names for the self-signed cert   none
store                          ``sqlite``, ``sqlite:///PATH``,        ``sqlite``
                               ``redis://HOST:PORT/DB`` ...
tls_cert / tls_key             PEM files; both or neither             none
workers                        uvicorn worker processes (>= 1)        1
kek                            KEK: a file path, or base64 (secret!)  ``DATA_DIR/kek`` (created)
admin_token_file               bootstrap admin bearer token(s)        ``DATA_DIR/admin-token``
audit_log                      JSON-lines audit log (``-`` = stderr)  ``DATA_DIR/audit.log``
key_alg                        RS256 | ES256 | ES384 | ES512          RS256
rsa_bits                       RSA modulus size: 2048, 3072, 4096     2048
rotation_period                how long a key signs (duration)        7d
rotation_check_interval        how often the rotation loop looks      10s
jwks_max_age                   max Cache-Control max-age (duration)   3600 (1h)
publish_margin                 extra pre-publication/retention time   300s
leeway                         clock skew allowance                   60s
retention_leeway               how long revocations outlive exp;      600s
                               published to stream followers (>=
                               every verifier's leeway, and leeway)
api_audiences                  default token audiences (list)         [issuer]
token_max_expiration           TokenRequest's configured maximum      86400 (24h)
extended_expiration            kube's 3607 s -> 1 year pod tokens     false
insecure_allow_http_issuer     allow an http issuer off loopback      false
log_level                      debug | info | warning | error         info
access_log                     uvicorn access log                     false
max_body_bytes                 request body cap for the API           1048576 (1 MiB)
body_timeout                   a request body must arrive within      60s
body_min_rate                  least body bytes/s after a 5 s grace   500 (0 = no rate check)
max_connections                open connections per process; more    2048 (lowered to fit
                               are answered 503 and closed            ``ulimit -n``)
=============================  =====================================  =========================

Durations are seconds (int/float) or a string with a unit: ``90``, ``90s``, ``10m``, ``6h``, ``7d``.
Lists in env vars are comma-separated. Booleans in env vars: ``1/true/yes/on`` or
``0/false/no/off``.
Relative paths in the config file are relative to the file's directory; relative paths from flags
and env vars are relative to the working directory.
=======
=======
Every setting, with its flag, env var, default, unit and meaning, is listed in docs/CONFIG.md;
``tests/issuer/test_config_doc.py`` checks that table against :data:`_SETTINGS` and the defaults
below, so a setting added here must be documented there (and the reverse).

``token_max_expiration`` mirrors kube-apiserver's ``--service-account-max-token-expiration``:
a TokenRequest for longer is shortened to it (kube: registry/core/serviceaccount/storage/token.go);
like kube it must be at least one hour. We default to 24 h rather than kube's "unlimited" so a
stolen token is bounded and retired keys leave the JWKS within a day.

TLS (``tls``; kube-apiserver self-signs when given no certificate, apiserver
pkg/server/options/serving.go MaybeDefaultWithSelfSignedCerts): ``auto`` serves the configured
``tls_cert``/``tls_key`` if given, else a self-signed certificate (CA + serving certificate created
in the data dir, :mod:`issuer.tlsboot`) when the issuer URL is https, else plain http;
``self-signed`` always uses the self-signed one (an http issuer is then refused); ``off`` serves
plain http — with an https issuer URL that means a TLS-terminating proxy in front. ``tls_sans``
adds DNS names / IP addresses to the self-signed certificate (the issuer host, ``127.0.0.1``,
``::1`` and ``localhost`` are always in).

Issuer URL rules (docs/CONTRACTS.md "Discovery and JWKS"; kube:
pkg/serviceaccount/openidmetadata.go): https, no query, no fragment, no userinfo. A plain ``http``
issuer is accepted only on a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``) — a development
setup — or when ``insecure_allow_http_issuer`` is set, which logs a loud warning. Independently, an
``http`` issuer is refused when the listen address is not loopback (the service would be reachable
from the network with tokens naming a plain-http issuer) unless the insecure switch is set.

Every problem raises :class:`ConfigError` naming the offending flag / env var / file key and why.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from issuer.store import sqlite_url

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_LISTEN",
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "is_loopback_host",
    "load_config",
    "parse_duration",
    "parse_listen",
    "setting_flag",
    "settings",
]

log = logging.getLogger("sa_issuer.config")

ENV_PREFIX = "SA_ISSUER_"
DEFAULT_DATA_DIR = Path(".sa-issuer")
DEFAULT_LISTEN = "127.0.0.1:8080"

#: kube-apiserver refuses a --service-account-max-token-expiration below one hour and TokenRequest
#: refuses expirationSeconds above 2^32 (docs/CONTRACTS.md "Bound token").
_MIN_MAX_EXPIRATION = 3600
_MAX_EXPIRATION = 1 << 32

_ALGORITHMS = ("RS256", "ES256", "ES384", "ES512")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_TLS_MODES = ("auto", "self-signed", "off")
#: Schemes besides SQLite's (issuer.store.sqlite_url reads those).
_STORE_SCHEMES = (
    "redis",
    "rediss",
    "redis+sentinel",
    "redis+cluster",
    "rediss+cluster",
    "unix",
)


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe. ``where`` names its source (flag, env var or
    config-file key); ``str(err)`` is one line fit for ``sa-issuer: error: ...``."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved, validated issuer configuration (see the module docstring for each field)."""

    data_dir: Path = DEFAULT_DATA_DIR
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    issuer: str = "https://127.0.0.1:8080"
    store: str = "sqlite"
    tls: str = "auto"
    tls_sans: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workers: int = 1
    kek: str | None = field(default=None, repr=False)  # may be base64 key material
    admin_token_file: Path = DEFAULT_DATA_DIR / "admin-token"
    audit_log: str = str(DEFAULT_DATA_DIR / "audit.log")
    key_alg: str = "RS256"
    rsa_bits: int = 2048
    rotation_period: float = 7 * 86400.0
    rotation_check_interval: float = 10.0
    jwks_max_age: int = 3600
    publish_margin: float = 300.0
    leeway: float = 60.0
    retention_leeway: float = 600.0
    api_audiences: tuple[str, ...] = ("https://127.0.0.1:8080",)
    token_max_expiration: int = 86400
    extended_expiration: bool = False
    insecure_allow_http_issuer: bool = False
    log_level: str = "info"
    access_log: bool = False
    max_body_bytes: int = 1 << 20
    body_timeout: float = 60.0
    body_min_rate: int = 500
    max_connections: int = 2048
    config_file: Path | None = None

    @property
    def listen(self) -> str:
        """``HOST:PORT`` as given (IPv6 hosts bracketed)."""
        return f"{_bracket(self.listen_host)}:{self.listen_port}"

    @property
    def serving_tls(self) -> str:
        """How ``serve`` listens: ``"files"`` (the configured tls_cert/tls_key), ``"self-signed"``
        (:mod:`issuer.tlsboot` in the data dir) or ``"off"`` (plain http)."""
        if self.tls == "off":
            return "off"
        if self.tls_cert is not None and self.tls_key is not None:
            return "files"
        if self.tls == "self-signed" or urlsplit(self.issuer).scheme == "https":
            return "self-signed"
        return "off"

    @property
    def serving_scheme(self) -> str:
        """``https`` unless :attr:`serving_tls` is off."""
        return "http" if self.serving_tls == "off" else "https"

    @property
    def issuer_path(self) -> str:
        """The issuer URL's path without a trailing slash ("" for a bare host)."""
        return urlsplit(self.issuer).path.rstrip("/")

    @property
    def jwks_uri(self) -> str:
        """``issuer + "/openid/v1/jwks"`` (kube: pkg/serviceaccount/openidmetadata.go JWKSPath)."""
        return self.issuer.rstrip("/") + "/openid/v1/jwks"

    @property
    def discovery_url(self) -> str:
        """Where OIDC discovery lives for this issuer (OpenID Connect Discovery 1.0 §4)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def max_token_lifetime(self) -> int:
        """The longest lifetime any token signed now may have: retired keys stay published this
        long (docs/CONTRACTS.md invariant 2). Extended expiration makes pod tokens live one year
        (docs/CONTRACTS.md "Extended expiration")."""
        if self.extended_expiration:
            return max(self.token_max_expiration, 365 * 86400)
        return self.token_max_expiration

    def __repr__(self) -> str:
        # Not the generated repr: the store URL may carry a Redis password (and ``kek`` key
        # material, which is left out entirely).
        shown = ", ".join(
            f"{f.name}={self.store_description() if f.name == 'store' else getattr(self, f.name)!r}"
            for f in fields(self)
            if f.repr
        )
        return f"Config({shown})"

    def store_description(self) -> str:
        """The store URL for humans: sqlite with its file, redis with any password redacted."""
        sqlite = sqlite_url(self.store, self.data_dir)
        if sqlite is not None:
            shown = f"sqlite:{sqlite.path}"
            return shown if sqlite.synchronous == "full" else f"{shown} (synchronous=normal)"
        parts = urlsplit(self.store)
        # Split the netloc by hand: sentinel/cluster URLs list several hosts ("h:1,h:2"), which
        # urlsplit's .port refuses. A password may also come as a query parameter.
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}")
        if parts.query:
            query = "&".join(
                "password=***" if q.split("=", 1)[0].lower() == "password" else q
                for q in parts.query.split("&")
            )
            parts = parts._replace(query=query)
        return parts.geturl()


# --- value parsers: each takes (value, where, from_text) and returns the typed value ------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, where: str = "duration") -> float:
    """Seconds from an int/float or a string like ``90``, ``90s``, ``10m``, ``6h``, ``7d``."""
    if isinstance(value, bool):
        raise ConfigError(where, f"expected a duration, got boolean {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m is None:
            raise ConfigError(where, f"expected a duration like 90s, 10m, 6h or 7d, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(where, f"expected a duration, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(where, f"duration must be finite and >= 0, got {value!r}")
    return seconds


def _as_str(value: object, where: str, text: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"expected a string, got {type(value).__name__}")
    return value


def _as_path(value: object, where: str, text: bool) -> Path:
    s = _as_str(value, where, text)
    if not s:
        raise ConfigError(where, "must not be empty")
    return Path(s)


def _as_int(value: object, where: str, text: bool) -> int:
    if text and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError(where, f"expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"expected an integer, got {type(value).__name__}")
    return value


def _as_bool(value: object, where: str, text: bool) -> bool:
    if text and isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(where, f"expected a boolean (true/false), got {value!r}")
    if not isinstance(value, bool):
        raise ConfigError(where, f"expected a boolean, got {type(value).__name__}")
    return value


def _as_duration(value: object, where: str, text: bool) -> float:
    return parse_duration(value, where)


def _as_str_list(value: object, where: str, text: bool) -> tuple[str, ...]:
    if text and isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        return tuple(v for v in items if v)
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, "expected a list of strings")
    return tuple(value)


_Parser = Callable[[object, str, bool], Any]

#: Every setting: its parser, and the long flag that sets it (None = file/env only).
_SETTINGS: dict[str, tuple[_Parser, str | None]] = {
    "data_dir": (_as_path, "--data-dir"),
    "listen": (_as_str, "--listen"),
    "issuer": (_as_str, "--issuer"),
    "store": (_as_str, "--store"),
    "tls_cert": (_as_path, "--tls-cert"),
    "tls_key": (_as_path, "--tls-key"),
    "tls": (_as_str, "--tls"),
    "tls_sans": (_as_str_list, "--tls-sans"),
    "workers": (_as_int, "--workers"),
    "kek": (_as_str, "--kek"),
    "insecure_allow_http_issuer": (_as_bool, "--insecure-allow-http-issuer"),
    "admin_token_file": (_as_path, None),
    "audit_log": (_as_str, None),
    "key_alg": (_as_str, None),
    "rsa_bits": (_as_int, None),
    "rotation_period": (_as_duration, None),
    "rotation_check_interval": (_as_duration, None),
    "jwks_max_age": (_as_duration, None),
    "publish_margin": (_as_duration, None),
    "leeway": (_as_duration, None),
    "retention_leeway": (_as_duration, None),
    "api_audiences": (_as_str_list, None),
    "token_max_expiration": (_as_duration, None),
    "extended_expiration": (_as_bool, None),
    "log_level": (_as_str, "--log-level"),
    "access_log": (_as_bool, "--access-log"),
    "max_body_bytes": (_as_int, None),
    "body_timeout": (_as_duration, None),
    "body_min_rate": (_as_int, None),
    "max_connections": (_as_int, "--max-connections"),
}

_PATH_KEYS = ("data_dir", "tls_cert", "tls_key", "admin_token_file")


def settings() -> tuple[str, ...]:
    """All setting names (TOML keys; env var = ``SA_ISSUER_`` + upper-case)."""
    return tuple(_SETTINGS)


def setting_flag(key: str) -> str | None:
    """The command-line flag that sets ``key`` (``None``: config file and env var only).
    Raises ``KeyError`` for an unknown setting."""
    return _SETTINGS[key][1]


def load_config(
    argv_flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: Path | None = None,
) -> Config:
    """Resolve and validate the configuration.

    ``argv_flags`` maps setting names (``data_dir``, ``listen`` ...; also ``config``) to values
    already typed by argparse; ``None`` means "not given". ``env`` is usually ``os.environ``.
    ``config_file`` wins over ``argv_flags["config"]``, which wins over ``SA_ISSUER_CONFIG``;
    a named file that does not exist is an error. Raises :class:`ConfigError`.
    """
    raw: dict[str, tuple[Any, str]] = {}  # key -> (typed value, where)

    # Layer 3: the TOML file.
    cfg_where = "--config"
    if config_file is None and argv_flags.get("config") is not None:
        config_file = Path(argv_flags["config"])
    elif config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(env[ENV_PREFIX + "CONFIG"])
        cfg_where = ENV_PREFIX + "CONFIG"
    if config_file is not None:
        for key, (value, where) in _read_toml(config_file, cfg_where).items():
            raw[key] = (value, where)

    # Layer 2: environment.
    for key, (parse, _flag) in _SETTINGS.items():
        name = ENV_PREFIX + key.upper()
        if name in env:
            raw[key] = (parse(env[name], name, True), name)

    # Layer 1: flags.
    for key, value in argv_flags.items():
        if key == "config" or value is None:
            continue
        if key not in _SETTINGS:
            raise ConfigError(f"--{key.replace('_', '-')}", "unknown flag")
        parse, flag = _SETTINGS[key]
        where = flag or f"--{key.replace('_', '-')}"
        if isinstance(value, Path):
            value = str(value)
        if key == "insecure_allow_http_issuer" and value is False:
            continue  # store_true default: "not given", let env/file decide
        if key == "access_log" and value is False:
            continue
        raw[key] = (parse(value, where, isinstance(value, str)), where)

    return _build(raw, config_file)


def _read_toml(path: Path, where: str) -> dict[str, tuple[Any, str]]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(where, f"config file {str(path)!r} does not exist") from None
    except OSError as e:
        raise ConfigError(where, f"cannot read config file {str(path)!r}: {e.strerror}") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path}", f"not valid TOML: {e}") from None
    out: dict[str, tuple[Any, str]] = {}
    base = path.parent
    for key, value in doc.items():
        where = f"config file {path} key {key!r}"
        if key not in _SETTINGS:
            known = ", ".join(sorted(_SETTINGS))
            raise ConfigError(where, f"unknown key (known keys: {known})")
        parse, _flag = _SETTINGS[key]
        if isinstance(value, dict):
            raise ConfigError(where, "expected a value, got a table")
        typed = parse(value, where, False)
        if key in _PATH_KEYS and isinstance(typed, Path) and not typed.is_absolute():
            typed = base / typed
        if key == "kek" and isinstance(typed, str) and _is_relative_existing(base / typed):
            typed = str(base / typed)
        if key == "audit_log" and typed not in ("-", "") and not Path(typed).is_absolute():
            typed = str(base / typed)
        out[key] = (typed, where)
    return out


def _is_relative_existing(path: Path) -> bool:
    # A KEK source is base64 text or a file path (issuer.crypto.load_kek): only a relative value
    # naming an existing file is a path to resolve; never touch key material.
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _where(raw: Mapping[str, tuple[Any, str]], key: str) -> str:
    if key in raw:
        return raw[key][1]
    return f"{key} (default)"


def _build(raw: Mapping[str, tuple[Any, str]], config_file: Path | None) -> Config:
    def get(key: str, default: Any) -> Any:
        return raw[key][0] if key in raw else default

    data_dir: Path = get("data_dir", DEFAULT_DATA_DIR)
    listen: str = get("listen", DEFAULT_LISTEN)
    host, port = parse_listen(listen, _where(raw, "listen"))
    tls: str = get("tls", "auto")
    if tls not in _TLS_MODES:
        raise ConfigError(
            _where(raw, "tls"), f"must be one of {', '.join(_TLS_MODES)}, got {tls!r}"
        )
    default_scheme = "http" if tls == "off" else "https"
    issuer: str = get("issuer", f"{default_scheme}://{_bracket(host)}:{port}")
    insecure: bool = get("insecure_allow_http_issuer", False)
    issuer_where = (
        _where(raw, "issuer") if "issuer" in raw else f"--issuer (unset: {default_scheme}://LISTEN)"
    )
    _check_issuer(issuer, issuer_where, insecure, host)
    tls_sans: tuple[str, ...] = get("tls_sans", ())
    for san in tls_sans:
        _check_san(san, _where(raw, "tls_sans"))

    store: str = get("store", "sqlite")
    _check_store(store, _where(raw, "store"))

    tls_cert: Path | None = get("tls_cert", None)
    tls_key: Path | None = get("tls_key", None)
    if (tls_cert is None) != (tls_key is None):
        given = "tls_cert" if tls_cert is not None else "tls_key"
        missing = "--tls-key" if tls_cert is not None else "--tls-cert"
        raise ConfigError(
            _where(raw, given), f"TLS needs both a certificate and a key: {missing} is missing"
        )

    if tls == "off" and tls_cert is not None:
        raise ConfigError(
            _where(raw, "tls"),
            "--tls off serves plain http: drop --tls-cert/--tls-key or --tls off",
        )
    if tls == "self-signed" and urlsplit(issuer).scheme == "http":
        raise ConfigError(
            _where(raw, "tls"),
            f"--tls self-signed serves https, but the issuer {issuer!r} is http: use an https "
            "issuer URL",
        )
    if tls == "self-signed" and tls_cert is not None:
        raise ConfigError(
            _where(raw, "tls"),
            "--tls self-signed creates its own certificate: drop --tls-cert/--tls-key",
        )

    workers: int = get("workers", 1)
    if workers < 1:
        raise ConfigError(_where(raw, "workers"), f"must be >= 1, got {workers}")

    kek: str | None = get("kek", None)
    if kek is not None and not kek:
        raise ConfigError(_where(raw, "kek"), "must not be empty")

    key_alg: str = get("key_alg", "RS256")
    if key_alg not in _ALGORITHMS:
        raise ConfigError(
            _where(raw, "key_alg"), f"must be one of {', '.join(_ALGORITHMS)}, got {key_alg!r}"
        )
    rsa_bits: int = get("rsa_bits", 2048)
    if rsa_bits not in (2048, 3072, 4096):
        raise ConfigError(_where(raw, "rsa_bits"), f"must be 2048, 3072 or 4096, got {rsa_bits}")

    rotation_period: float = get("rotation_period", 7 * 86400.0)
    if rotation_period <= 0:
        raise ConfigError(_where(raw, "rotation_period"), "must be > 0")
    interval: float = get("rotation_check_interval", 10.0)
    if interval <= 0:
        raise ConfigError(_where(raw, "rotation_check_interval"), "must be > 0")
    max_age_f: float = get("jwks_max_age", 3600.0)
    if max_age_f != int(max_age_f):
        raise ConfigError(_where(raw, "jwks_max_age"), "must be a whole number of seconds")
    margin: float = get("publish_margin", 300.0)
    leeway: float = get("leeway", 60.0)
    # Revoked jtis and deletion events are kept until the token's exp + retention_leeway: at
    # least as long as any verifier (leeway up to 600 s, verifier.Policy) or this issuer's own
    # TokenReview could still accept the token (issue 9, item 4).
    retention_leeway: float = get("retention_leeway", 600.0)
    if retention_leeway < leeway:
        raise ConfigError(
            _where(raw, "retention_leeway"),
            f"must be at least leeway ({leeway:g} s), got {retention_leeway:g} s",
        )
    if rotation_period <= max_age_f + margin:
        # A successor must be published for jwks_max_age + publish_margin before it signs
        # (docs/CONTRACTS.md invariant 1), so a key must sign for longer than that.
        where = _where(raw, "rotation_period")
        raise ConfigError(
            where,
            f"must be longer than jwks_max_age + publish_margin "
            f"({max_age_f:g} s + {margin:g} s), got {rotation_period:g} s",
        )

    max_exp_f: float = get("token_max_expiration", 86400.0)
    if max_exp_f != int(max_exp_f) or not _MIN_MAX_EXPIRATION <= max_exp_f <= _MAX_EXPIRATION:
        raise ConfigError(
            _where(raw, "token_max_expiration"),
            f"must be whole seconds in {_MIN_MAX_EXPIRATION} (1h, as kube-apiserver) .. 2^32, "
            f"got {max_exp_f:g}",
        )

    audiences: tuple[str, ...] = get("api_audiences", (issuer,))
    if not audiences:
        raise ConfigError(_where(raw, "api_audiences"), "must name at least one audience")
    if any(not a for a in audiences):
        raise ConfigError(_where(raw, "api_audiences"), "audiences must not be empty strings")

    log_level: str = get("log_level", "info").lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(_where(raw, "log_level"), f"must be one of {', '.join(_LOG_LEVELS)}")

    max_body: int = get("max_body_bytes", 1 << 20)
    if max_body < 1024:
        raise ConfigError(_where(raw, "max_body_bytes"), f"must be >= 1024, got {max_body}")

    # Request bounds enforced by issuer.http.limits (issue 9 item 2).
    body_timeout: float = get("body_timeout", 60.0)
    if body_timeout <= 0:
        raise ConfigError(_where(raw, "body_timeout"), "must be > 0")
    body_min_rate: int = get("body_min_rate", 500)
    if body_min_rate < 0:
        raise ConfigError(_where(raw, "body_min_rate"), f"must be >= 0, got {body_min_rate}")
    max_connections: int = get("max_connections", 2048)
    if max_connections < 1:
        raise ConfigError(_where(raw, "max_connections"), f"must be >= 1, got {max_connections}")

    admin_token_file: Path = get("admin_token_file", data_dir / "admin-token")
    audit_log: str = get("audit_log", str(data_dir / "audit.log"))

    return Config(
        data_dir=data_dir,
        listen_host=host,
        listen_port=port,
        issuer=issuer,
        store=store,
        tls=tls,
        tls_sans=tls_sans,
        tls_cert=tls_cert,
        tls_key=tls_key,
        workers=workers,
        kek=kek,
        admin_token_file=admin_token_file,
        audit_log=audit_log,
        key_alg=key_alg,
        rsa_bits=rsa_bits,
        rotation_period=rotation_period,
        rotation_check_interval=interval,
        jwks_max_age=int(max_age_f),
        publish_margin=margin,
        leeway=leeway,
        retention_leeway=retention_leeway,
        api_audiences=audiences,
        token_max_expiration=int(max_exp_f),
        extended_expiration=get("extended_expiration", False),
        insecure_allow_http_issuer=insecure,
        log_level=log_level,
        access_log=get("access_log", False),
        max_body_bytes=max_body,
        body_timeout=body_timeout,
        body_min_rate=body_min_rate,
        max_connections=max_connections,
        config_file=config_file,
    )


def parse_listen(value: str, where: str = "--listen") -> tuple[str, int]:
    """Split ``HOST:PORT`` / ``[V6]:PORT`` into (host, port); port 1..65535."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]/]+):(\d{1,5})", value)
    if m is None:
        raise ConfigError(where, f"expected HOST:PORT (or [IPv6]:PORT), got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ConfigError(where, f"port must be 1..65535, got {port}")
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(where, f"{host!r} is not an IPv6 address") from None
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``."""
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _check_issuer(issuer: str, where: str, insecure: bool, listen_host: str) -> None:
    # docs/CONTRACTS.md "Discovery and JWKS": https, no query, fragment or user info (plain http
    # only on loopback or when explicitly allowed, loudly). Verifiers compare iss byte for byte,
    # so we keep the string exactly as given.
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(where, f"issuer {issuer!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(where, f"issuer must be an https URL with a host, got {issuer!r}")
    if parts.query or issuer.endswith("?"):
        raise ConfigError(where, f"issuer must not have a query, got {issuer!r}")
    if parts.fragment or "#" in issuer:
        raise ConfigError(where, f"issuer must not have a fragment, got {issuer!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(where, f"issuer must not contain user information, got {issuer!r}")
    if any(c.isspace() for c in issuer):
        raise ConfigError(where, f"issuer must not contain whitespace, got {issuer!r}")
    if parts.scheme == "http":
        if not insecure and not is_loopback_host(parts.hostname):
            raise ConfigError(
                where,
                f"issuer must be https (got {issuer!r}); plain http is allowed only on a loopback "
                "host, or with --insecure-allow-http-issuer",
            )
        if not insecure and not is_loopback_host(listen_host):
            raise ConfigError(
                where,
                f"plain-http issuer {issuer!r} while listening on non-loopback {listen_host!r}: "
                "use an https issuer (--tls-cert/--tls-key or a TLS proxy), or pass "
                "--insecure-allow-http-issuer",
            )
        if insecure and not is_loopback_host(parts.hostname):
            log.warning(
                "INSECURE: serving plain-http issuer %s (insecure_allow_http_issuer is set); "
                "tokens and keys can be intercepted or spoofed on the network",
                issuer,
            )


_DNS_NAME_RE = re.compile(
    r"(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
)


def _check_san(san: str, where: str) -> None:
    # A subjectAltName is an IP address or a DNS name (RFC 5280 §4.2.1.6; a leading "*." label
    # is a wildcard, RFC 6125 §6.4.3).
    try:
        ipaddress.ip_address(san.strip("[]"))
        return
    except ValueError:
        pass
    if _DNS_NAME_RE.fullmatch(san) is None:
        raise ConfigError(where, f"{san!r} is neither an IP address nor a DNS name")


def _check_store(store: str, where: str) -> None:
    try:
        if sqlite_url(store, Path()) is not None:  # only whether it reads
            return
    except ValueError as e:
        raise ConfigError(where, str(e)) from None
    scheme = store.split("://", 1)[0] if "://" in store else store.split(":", 1)[0]
    if scheme not in _STORE_SCHEMES or "://" not in store:
        raise ConfigError(
            where,
            f"unsupported store URL {store!r}: use 'sqlite', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'",
        )


def _is_relative_file(key: str, value: str) -> bool:
    if key == "kek":
        return not Path(value).is_absolute() and _is_relative_existing(Path(value))
    return key == "audit_log" and value not in ("-", "")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def config_to_env(config: Config) -> dict[str, str]:
    """Render ``config`` as ``SA_ISSUER_*`` env vars (absolute paths), so that uvicorn worker
    processes resolve exactly the same configuration. ``SA_ISSUER_KEK`` may carry key material
    (when the KEK was given as base64): pass the result only to our own child processes."""
    out: dict[str, str] = {}
    for f in fields(Config):
        if f.name in ("listen_host", "listen_port", "config_file"):
            continue
        value = getattr(config, f.name)
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value.absolute())
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, str) and _is_relative_file(f.name, value):
            value = str(Path(value).absolute())
        out[ENV_PREFIX + f.name.upper()] = str(value)
    out[ENV_PREFIX + "LISTEN"] = config.listen
    return out
