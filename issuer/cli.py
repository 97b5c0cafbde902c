"""``sa-issuer``: serve, manage keys, export static discovery, run the demo; the token agent and
cloud federation helpers are registered from issuer/agent/cli.py.

Exit codes: 0 success, 1 error (bad config, unreadable or wrong KEK, corrupt or unreachable
store ...: one line ``sa-issuer: error: ...`` on stderr, nothing overwritten), 2 usage error.

Configuration resolution is the same for every subcommand (issuer.config: flags > SA_ISSUER_* env
> TOML file > defaults), so ``keys`` and ``export`` act on exactly the store and issuer that
``serve`` uses. Key changes made with ``keys rotate|revoke|rewrap`` are written to the store with
compare-and-swap; running replicas pick them up through the store's change notifications
(``keys rewrap`` re-encrypts under a new KEK, which every replica must then be given).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import inspect
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from issuer.config import Config, ConfigError, config_to_env, load_config
from issuer.crypto import KekError
from issuer.http.metrics import WORKER_METRICS_ENV
from issuer.logsetup import setup_logging
from issuer.preflight import PreflightError, bind_listener, check_data_dir, check_tls
from issuer.store import (
    Store,
    StoreCorrupt,
    StoredKey,
    StoreError,
    StoreUnavailable,
    open_store,
    sqlite_url,
)

__all__ = ["main"]

log = logging.getLogger("sa_issuer")

PROG = "sa-issuer"

#: TLS 1.2 suites offered by ``serve`` (Mozilla "intermediate": forward-secret AEAD only); TLS 1.3
#: suites are OpenSSL's defaults, and Python's default minimum version (TLS 1.2) applies.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


class CliError(Exception):
    """An operational error reported as ``sa-issuer: error: ...`` with exit code 1."""


# --- argument parsing -------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (flags > SA_ISSUER_* env > config file > defaults)")
    g.add_argument("--config", metavar="FILE", help="TOML config file (env SA_ISSUER_CONFIG)")
    g.add_argument("--data-dir", metavar="DIR", help="data directory (default ./.sa-issuer)")
    g.add_argument("--listen", metavar="HOST:PORT", help="listen address (default 127.0.0.1:8080)")
    g.add_argument(
        "--issuer", metavar="URL", help="issuer URL (default https://LISTEN; http with --tls off)"
    )
    # In every command, not only serve: the default issuer URL depends on it (https://LISTEN,
    # http with --tls off), and keys/export must act on the issuer serve would publish.
    g.add_argument(
        "--tls",
        choices=["auto", "self-signed", "off"],
        help="auto (default): --tls-cert/--tls-key if given, else a self-signed CA and "
        "certificate in the data dir for an https issuer; off: plain http (an https issuer URL "
        "then means a TLS-terminating proxy in front)",
    )
    g.add_argument(
        "--store",
        metavar="URL",
        help="'sqlite' (default, in the data dir), sqlite:///PATH or redis://HOST:PORT/DB",
    )
    g.add_argument(
        "--kek",
        metavar="SOURCE",
        help="key-encryption key: a file path (preferred) or base64; default DATA_DIR/kek",
    )
    g.add_argument(
        "--insecure-allow-http-issuer",
        action="store_true",
        default=None,
        help="INSECURE: allow a plain-http issuer on a non-loopback host or listen address",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``sa-issuer``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Kubernetes-style service-account token issuer with OIDC discovery and JWKS.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the issuer HTTP service")
    _common(serve)
    s = serve.add_argument_group("serving")
    s.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) for HTTPS")
    s.add_argument("--tls-key", metavar="FILE", help="PEM private key for HTTPS")
    s.add_argument(
        "--tls-sans",
        metavar="NAMES",
        help="comma-separated extra DNS names / IPs for the self-signed certificate",
    )
    s.add_argument("--workers", metavar="N", type=int, help="worker processes (default 1)")
    s.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        help="open connections per process; more are answered 503 (default 2048)",
    )
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.add_argument("--access-log", action="store_true", default=None, help="log every request")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="list, rotate or revoke signing keys")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    klist = ksub.add_parser("list", help="show every stored key and its lifecycle times")
    _common(klist)
    klist.add_argument("--json", action="store_true", help="print JSON instead of a table")
    klist.set_defaults(func=cmd_keys_list)
    krot = ksub.add_parser(
        "rotate",
        help="start a rotation now: a next key that activates as soon as it is safe",
    )
    _common(krot)
    krot.add_argument(
        "--immediately",
        action="store_true",
        help="activate the new key NOW (verifiers with a cached JWKS reject new tokens until "
        "they refetch)",
    )
    krot.set_defaults(func=cmd_keys_rotate)
    krev = ksub.add_parser(
        "revoke",
        help="revoke a key: removed from the JWKS at once",
        description=(
            "Revoke the key KID. A kid may start with '-' (base64url): it is taken as the kid "
            "all the same; --kid=KID and '-- KID' also work."
        ),
    )
    _common(krev)
    krev.add_argument("kid", metavar="KID", nargs="?", help="the kid (see `keys list`)")
    krev.add_argument("--kid", dest="kid_option", metavar="KID", help="the kid, as an option")
    krev.set_defaults(func=cmd_keys_revoke)
    krw = ksub.add_parser(
        "rewrap",
        help="re-encrypt every stored private key under a new key-encryption key (KEK rotation)",
        description=(
            "Re-encrypt every stored private key under a new KEK in one compare-and-swap write; "
            "the current KEK comes from the usual configuration (--kek, SA_ISSUER_KEK, config "
            "file, DATA_DIR/kek). Afterwards every replica must be given the new KEK."
        ),
    )
    _common(krw)
    new = krw.add_mutually_exclusive_group(required=True)
    new.add_argument(
        "--new-kek", metavar="SOURCE", help="the new KEK: a file path (preferred) or base64"
    )
    new.add_argument("--new-kek-file", metavar="PATH", type=Path, help="the new KEK file")
    krw.add_argument(
        "--create",
        action="store_true",
        help="create --new-kek-file with a fresh random KEK (mode 0600; never overwrites)",
    )
    krw.set_defaults(func=cmd_keys_rewrap)

    export = sub.add_parser(
        "export",
        help="write static discovery + JWKS files for object-store hosting",
        description=(
            "Write DIR/.well-known/openid-configuration and DIR/openid/v1/jwks, byte for byte "
            "what `sa-issuer serve` serves for the same configuration. Self-hosted issuers for "
            "AWS IAM Roles for Service Accounts (IRSA) and Azure workload identity federation "
            "are exactly these two files in a bucket or static site at the issuer URL; upload "
            "them with Content-Type application/json and application/jwk-set+json. Re-export "
            "after every key change (they are written atomically)."
        ),
    )
    _common(export)
    export.add_argument("dir", metavar="DIR", type=Path)
    export.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo", help="the OIDC-versus-TokenReview demo", add_help=False)
    demo.add_argument("args", nargs=argparse.REMAINDER)
    demo.set_defaults(func=cmd_demo)

    # agent, cloud-config, check-federation: workloads outside Kubernetes (issuer/agent/).
    from issuer.agent.cli import register as register_agent_commands

    register_agent_commands(sub)
    return parser


_CONFIG_FLAGS = (
    "config",
    "data_dir",
    "listen",
    "issuer",
    "store",
    "kek",
    "insecure_allow_http_issuer",
    "tls_cert",
    "tls_key",
    "tls",
    "tls_sans",
    "workers",
    "max_connections",
    "log_level",
    "access_log",
)


def _config(args: argparse.Namespace) -> Config:
    flags = {k: getattr(args, k) for k in _CONFIG_FLAGS if hasattr(args, k)}
    return load_config(flags, os.environ, None)


# --- serve ------------------------------------------------------------------------------------


def _fast_lane_available() -> bool:
    try:
        import httptools  # noqa: F401

        import issuer.http.fastlane
        import issuer.http.limits  # noqa: F401
    except ImportError:
        return False
    return True


def banner(config: Config) -> str:
    """The one line ``serve`` logs at INFO on start: the issuer URL (and where it listens, when
    that differs), the data directory and store, the admin token's PATH (never the token), the CA
    to trust (self-signed TLS) and the kubeconfig."""
    ca = ""
    if config.serving_tls == "self-signed":
        ca = f"; CA {config.data_dir / 'ca.crt'}"
    scheme = config.serving_scheme
    listening = (
        "" if config.issuer.startswith(scheme + "://") else f" on {scheme}://{config.listen}"
    )
    return (
        f"serving issuer {config.issuer}{listening} (discovery {config.discovery_url}); "
        f"data dir {config.data_dir}, store {config.store_description()}; "
        f"admin token in {config.admin_token_file}{ca}; "
        f"kubeconfig {config.data_dir / 'kubeconfig'}"
    )


def _setup_tls(config: Config) -> tuple[Path | None, Path | None, Path | None]:
    """The certificate and key to serve and the CA clients should trust (all None for plain
    http), creating or renewing the self-signed ones (:mod:`issuer.tlsboot`)."""
    from issuer import kubeconfig, tlsboot

    mode = config.serving_tls
    if mode == "off":
        return None, None, None
    if mode == "files":
        assert config.tls_cert is not None
        ca = config.tls_cert if kubeconfig.self_issued(config.tls_cert) else None
        return config.tls_cert, config.tls_key, ca
    names = tlsboot.wanted_names(config.issuer, config.listen_host, config.tls_sans)
    try:
        files, _why = tlsboot.ensure_self_signed(config.data_dir, names)
    except (OSError, ValueError) as e:
        raise CliError(
            f"cannot create the self-signed TLS certificate in {config.data_dir}: {e}"
        ) from None
    stop = threading.Event()
    threading.Thread(
        target=tlsboot.renew_loop,
        args=(config.data_dir, names, stop),
        name="tls-renew",
        daemon=True,
    ).start()
    return files.cert, files.key, files.ca_cert


def _api_server_url(config: Config) -> str:
    # The API is served at the root of the issuer's origin (an issuer path only prefixes OIDC
    # discovery), so kubectl's server is the origin.
    parts = urlsplit(config.issuer)
    return f"{parts.scheme}://{parts.netloc}"


def cmd_serve(args: argparse.Namespace) -> int:
    """``sa-issuer serve``."""
    from issuer import kubeconfig
    from issuer.app import create_app
    from issuer.context import build_context
    from issuer.http.limits import raise_open_file_limit

    config = _config(args)
    setup_logging(config.log_level)
    # Nothing is written until TLS loads, the port is ours and the data dir takes files
    # (issue 9 item 14: each fails with one line naming what is wrong).
    check_tls(config)
    sock = bind_listener(config)
    try:
        check_data_dir(config)
        # Room for max_connections client sockets (issuer.http.limits); workers inherit it.
        raise_open_file_limit()
        try:
            ctx = build_context(config)
        except PermissionError as e:
            raise CliError(f"cannot write {e.filename}: {e.strerror}") from None
        try:
            # Preflight before serving: KEK check, bootstrap of the first key, catch-up
            # rotation. A wrong KEK or a corrupt store fails here, before anything is written.
            ctx.keys.start(rotate=False)
        except BaseException:
            ctx.close()
            raise
        try:
            # After the preflight: a refused start leaves the data dir as it was.
            certfile, keyfile, ca_file = _setup_tls(config)
            kubeconfig.write(
                config.data_dir / "kubeconfig",
                _api_server_url(config),
                kubeconfig.kubectl_token_file(
                    config.admin_token_file, ctx.admin_tokens, config.data_dir
                ),
                ca_file,
            )
        except OSError as e:
            ctx.close()
            raise CliError(f"cannot write {config.data_dir / 'kubeconfig'}: {e.strerror}") from None
        except BaseException:
            ctx.close()
            raise
        kwargs = _uvicorn_kwargs(config, certfile, keyfile)
        if config.workers > 1:
            # Each worker builds its own context from the same resolved configuration.
            ctx.close()
            os.environ.update(config_to_env(config))
            os.environ.pop("SA_ISSUER_CONFIG", None)
            # /metrics reports the whole process group: the workers share counters through
            # this private directory (issuer.http.metrics, "Several workers"), removed at exit.
            metrics_dir = tempfile.mkdtemp(prefix="sa-issuer-metrics-")
            os.environ[WORKER_METRICS_ENV] = metrics_dir
            log.info("%s", banner(config))
            try:
                _serve_uvicorn("issuer.app:app_from_env", kwargs, sock, config.workers)
            finally:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            return 0
        app = create_app(ctx)
        log.info("%s", banner(config))
        return _serve_uvicorn(app, kwargs, sock, 1)
    finally:
        sock.close()


def _uvicorn_kwargs(config: Config, certfile: Path | None, keyfile: Path | None) -> dict[str, Any]:
    from issuer import tlsboot

    kwargs: dict[str, Any] = {
        "host": config.listen_host,
        "port": config.listen_port,
        "lifespan": "on",
        "access_log": config.access_log,
        "log_config": None,
        "log_level": "debug" if config.log_level == "debug" else "warning",
        "server_header": False,
        "timeout_graceful_shutdown": 5,
    }
    if _fast_lane_available():
        # Discovery/JWKS answered from the HTTP parser (issuer.http.fastlane); by import string
        # so that --workers (spawned processes) can load it too. Both classes bound request heads,
        # bodies and open connections (issuer.http.limits), which uvicorn's own protocol does not.
        kwargs["http"] = (
            "issuer.http.limits:GuardedHttpToolsProtocol"
            if config.access_log
            else "issuer.http.fastlane:FastLaneHttpToolsProtocol"
        )
    if certfile is not None and keyfile is not None:
        kwargs["ssl_certfile"] = str(certfile)
        kwargs["ssl_keyfile"] = str(keyfile)
        # uvicorn's default cipher string "TLSv1" also offers CBC/SHA-1 suites on TLS 1.2.
        kwargs["ssl_ciphers"] = TLS12_CIPHERS
        # A renewed (or replaced) certificate is served without a restart.
        kwargs["ssl_context_factory"] = tlsboot.reloading_context_factory
    return kwargs


def _serve_uvicorn(app: Any, kwargs: dict[str, Any], sock: socket.socket, workers: int) -> int:
    """What ``uvicorn.run`` does, on our already bound socket."""
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    if workers > 1:
        uv_config = uvicorn.Config(app, factory=True, workers=workers, **kwargs)
        supervisor: Any = Multiprocess
        if "target" in inspect.signature(Multiprocess.__init__).parameters:  # older uvicorn
            supervisor = functools.partial(supervisor, target=uvicorn.Server(uv_config).run)
        supervisor(uv_config, sockets=[sock]).run()
        return 0
    server = uvicorn.Server(uvicorn.Config(app, **kwargs))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    return 0 if server.started else 3  # uvicorn's STARTUP_FAILURE


# --- keys -------------------------------------------------------------------------------------


def _open_store(config: Config) -> Store:
    try:
        sqlite = sqlite_url(config.store, config.data_dir)
        if sqlite is not None and sqlite.in_data_dir and not sqlite.path.exists():
            raise CliError(
                f"no store at {sqlite.path}: run `sa-issuer serve` first "
                "(or pass --data-dir / --store)"
            )
        return open_store(config.store, config.data_dir)
    except ValueError as e:
        raise ConfigError("store", str(e)) from None


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _key_rows(keys: Sequence[StoredKey], config: Config) -> list[dict[str, Any]]:
    nexts = sorted(k.activate_at for k in keys if k.state == "next" and k.activate_at)
    rows = []
    for k in keys:
        retires: float | None = k.retired_at or k.revoked_at
        if k.state == "active" and retires is None:
            start = k.activate_at or k.created_at
            retires = nexts[0] if nexts else start + config.rotation_period
        activates = k.activate_at
        rows.append(
            {
                "kid": k.kid,
                "alg": k.alg,
                "state": k.state,
                "created": _iso(k.created_at),
                "activates": _iso(activates),
                "retires": _iso(retires),
                "removal": _iso(k.remove_at),
            }
        )
    order = {"active": 0, "next": 1, "retired": 2, "revoked": 3}
    rows.sort(key=lambda r: (order.get(str(r["state"]), 9), r["created"] or ""))
    return rows


def cmd_keys_list(args: argparse.Namespace) -> int:
    """``sa-issuer keys list [--json]``: reads the store only (no KEK needed)."""
    config = _config(args)
    store = _open_store(config)
    try:
        state = store.load_keys()
    finally:
        store.close()
    rows = _key_rows(state.keys, config)
    if args.json:
        sys.stdout.write(
            orjson.dumps(
                {"version": state.version, "keys": rows}, option=orjson.OPT_INDENT_2
            ).decode()
            + "\n"
        )
        return 0
    cols = ("kid", "alg", "state", "created", "activates", "retires", "removal")
    table = [[c.upper() for c in cols]] + [[r[c] or "-" for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no keys yet: `sa-issuer serve` creates the first one)")
    return 0


def _key_manager(config: Config, store: Store, *, create_kek: bool) -> Any:
    from issuer.context import key_policy, load_or_create_kek
    from issuer.keys import KeyManager

    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    kek = load_or_create_kek(config, store, create=create_kek)
    return KeyManager(store, kek, key_policy(config))


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """``sa-issuer keys rotate [--immediately]``."""
    config = _config(args)
    setup_logging("warning")
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        store = open_store(config.store, config.data_dir)
    except ValueError as e:
        raise ConfigError("store", str(e)) from None
    try:
        km = _key_manager(config, store, create_kek=True)
        key = km.rotate(immediately=args.immediately)
    finally:
        store.close()
    when = "now" if key.state == "active" else f"at {_iso(key.activate_at)}"
    print(f"{PROG}: key {key.kid} ({key.alg}) signs {when}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """``sa-issuer keys revoke KID``."""
    from issuer.keys import UnknownKey

    kid: str = args.kid
    config = _config(args)
    setup_logging("error")
    store = _open_store(config)
    try:
        km = _key_manager(config, store, create_kek=False)
        try:
            km.revoke(kid)
        except UnknownKey:
            raise CliError(f"no key with kid {kid!r} (see `sa-issuer keys list`)") from None
    finally:
        store.close()
    print(f"{PROG}: key {kid} revoked (removed from the JWKS)")
    return 0


#: An issuer kid: base64url (unpadded) SHA-256 of the public key, 43 characters
#: (``crypto.kid_for_public_key``). One in 64 starts with "-", which argparse would take for an
#: option (issue 9, item 13); no option of ours has this shape.
_DASH_KID = re.compile(r"-[A-Za-z0-9_-]{42}")


def _dash_kids(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``keys revoke`` with a kid that starts with "-": rewrite it as ``--kid=KID``.

    Only a lone argument of exactly a kid's shape is rewritten, never the value of an option
    (``--config -weird...``) nor anything after ``--`` (argparse's own "the rest are
    positionals").
    """
    if argv[:2] != ["keys", "revoke"]:
        return argv
    takes_value = {
        opt
        for action in _revoke_parser(parser)._actions
        if action.nargs != 0
        for opt in action.option_strings
    }
    out = argv[:2]
    rest = argv[2:]
    for i, arg in enumerate(rest):
        if arg == "--":
            out += rest[i:]
            break
        after_option = i > 0 and rest[i - 1] in takes_value
        out.append(f"--kid={arg}" if _DASH_KID.fullmatch(arg) and not after_option else arg)
    return out


def _revoke_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return _subparser(_subparser(parser, "keys"), "revoke")


def _one_kid(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``keys revoke``: exactly one of KID and --kid (else a usage error, exit 2)."""
    given = [k for k in (args.kid, args.kid_option) if k is not None]
    if len(given) != 1:
        _revoke_parser(parser).error(
            "give the kid once: KID, --kid=KID, or -- KID (for a kid starting with '-')"
        )
    args.kid = given[0]


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise AssertionError(f"no {name} subcommand")  # pragma: no cover


def _new_kek(args: argparse.Namespace) -> tuple[Any, Path | None, str]:
    """(new KEK, file created by --create or None, how to name it to the operator)."""
    from issuer.crypto import create_kek_file, load_kek, load_kek_file

    path: Path | None = args.new_kek_file
    if path is not None and args.create:
        try:
            return create_kek_file(path), path, str(path)
        except FileExistsError:
            raise CliError(
                f"{path} already exists: refusing to overwrite a KEK (drop --create to use it)"
            ) from None
        except OSError as e:
            raise CliError(f"cannot create new KEK file {path}: {e.strerror or e}") from None
    try:
        if path is not None:
            return load_kek_file(path), None, str(path)
        source: str = args.new_kek
        kek = load_kek(source)
    except KekError as e:
        raise CliError(f"new KEK: {e}") from None
    shown = source.strip() if os.path.exists(source.strip()) else "the new KEK (base64)"
    return kek, None, shown


def cmd_keys_rewrap(args: argparse.Namespace) -> int:
    """``sa-issuer keys rewrap --new-kek SOURCE | --new-kek-file PATH [--create]``."""
    config = _config(args)
    setup_logging("error")
    if args.create and args.new_kek_file is None:
        raise CliError("--create needs --new-kek-file PATH")
    store = _open_store(config)
    created: Path | None = None
    try:
        km = _key_manager(config, store, create_kek=False)  # the current KEK
        new_kek, created, shown = _new_kek(args)
        try:
            state = km.rewrap(new_kek)
        except KekError:
            if created is not None:  # sealed nothing: do not leave a KEK that protects nothing
                with contextlib.suppress(OSError):
                    created.unlink()
            raise
    finally:
        store.close()
    if not state.keys:
        print(f"{PROG}: the store holds no keys: nothing re-encrypted")
        print(f"next: configure {shown} as the kek setting before the first `{PROG} serve`")
        return 0
    # Never echo config.kek: it may be base64 key material.
    where = "the kek setting (--kek / SA_ISSUER_KEK / config file)"
    if config.kek is None:
        where = f"{config.data_dir / 'kek'} (replace it with the new KEK file) or the kek setting"
    print(
        f"{PROG}: re-encrypted {len(state.keys)} private keys under the new KEK "
        f"(key set version {state.version}); kids and public keys unchanged"
    )
    print("next steps:")
    print(f"  1. now, on EVERY replica: point {where} at {shown}, and restart it")
    print(
        "  2. until then, replicas on the old KEK sign with keys already in memory but cannot "
        "load keys written from now on, cannot rotate, and will not start again"
    )
    print(
        "  3. once all replicas run with the new KEK, destroy the old KEK; store backups taken "
        "before now still need the old KEK"
    )
    return 0


# --- export -----------------------------------------------------------------------------------


def rendered_documents(config: Config, store: Store) -> tuple[bytes, bytes]:
    """(discovery, jwks) bytes exactly as ``serve`` renders them for this store's key set."""
    from issuer.context import key_policy
    from issuer.http.discovery import render_discovery, render_jwks
    from issuer.keys import PublishedKeys

    state = store.load_keys()
    if not state.keys:
        raise CliError("the store holds no keys yet: run `sa-issuer serve` (or `keys rotate`)")
    snap = PublishedKeys(state.version, state.keys, key_policy(config), time.time())
    return (
        render_discovery(config.issuer, config.jwks_uri, snap.algorithms),
        render_jwks(snap.jwks),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # public documents, meant to be uploaded
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_export(args: argparse.Namespace) -> int:
    """``sa-issuer export DIR``."""
    config = _config(args)
    store = _open_store(config)
    try:
        discovery, jwks = rendered_documents(config, store)
    finally:
        store.close()
    out: Path = args.dir
    disc_path = out / ".well-known" / "openid-configuration"
    jwks_path = out / "openid" / "v1" / "jwks"
    try:
        _write_atomic(disc_path, discovery)
        _write_atomic(jwks_path, jwks)
    except OSError as e:
        raise CliError(f"cannot write to {out}: {e.strerror or e}") from None
    print(f"{PROG}: wrote {disc_path} and {jwks_path} for issuer {config.issuer}")
    return 0


# --- demo -------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """``sa-issuer demo``: :func:`issuer.demo.main` (imported here: it pulls in the verifiers)."""
    from issuer import demo

    return int(demo.main(list(args.args)))


# --- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sa-issuer`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        # The demo parses its own flags (--json, --html, --help ...): argparse.REMAINDER would
        # refuse ones that start with a dash, so hand everything after "demo" through untouched.
        args = argparse.Namespace(args=argv[1:], func=cmd_demo)
    else:
        args = parser.parse_args(_dash_kids(argv, parser))
        if args.func is cmd_keys_revoke:
            _one_kid(args, parser)
    if not logging.getLogger().handlers:
        setup_logging("info")
    try:
        return int(args.func(args))
    except ConfigError as e:
        return _fail(f"invalid configuration: {e}")
    except KekError as e:
        return _fail(f"key-encryption key: {e}")
    except StoreCorrupt as e:
        return _fail(f"store is corrupt (left untouched): {e}")
    except StoreUnavailable as e:
        return _fail(f"store unavailable: {e}")
    except StoreError as e:
        return _fail(f"store error: {e}")
    except (CliError, PreflightError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
