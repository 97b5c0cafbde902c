"""``sa-issuer agent``, ``sa-issuer cloud-config`` and ``sa-issuer check-federation``.

:func:`register` adds the three subcommands to ``sa-issuer``'s parser (issuer/cli.py calls it);
each command function returns its exit code and reports errors itself as
``sa-issuer: error: ...`` (exit codes of ``agent`` are listed in its ``--help``).
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import logging
import os
import pwd
import signal
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from issuer.agent.client import EXIT_CREDENTIAL, EXIT_ERROR, EXIT_GONE, EXIT_UNAVAILABLE
from issuer.agent.schedule import DEFAULT_EXPIRATION_SECONDS, check_expiration

__all__ = ["register"]

PROG = "sa-issuer"
log = logging.getLogger("sa_issuer.agent")

_AGENT_EPILOG = f"""\
outputs:
  --path OUT with --audience AUD ... writes one token (all those audiences) to OUT; each
  --output AUD[,AUD...]=PATH adds another file with its own audiences (audiences must not
  contain '=' or ','). Every file is replaced atomically (temp file + rename), mode 0600.

refresh:
  kubelet's rule: when 80% of the token's lifetime has passed or after 24 h (minus up to 10 s of
  jitter), and always while more than 660 s are left (azure-identity re-reads the file only every
  600 s). Transient failures keep the last good token and retry with capped backoff (1 s .. 60 s).

exit codes:
  0  --once wrote every file, or stopped by SIGTERM/SIGINT (files stay)
  1  error: bad configuration, unwritable output, or the issuer rejected the request as invalid
  2  usage error
  {EXIT_GONE}  refused: the service account or the bound pod/node is gone (404/409)
  {EXIT_CREDENTIAL}  refused: the agent's credential is not accepted (401) or not allowed (403)
  {EXIT_UNAVAILABLE} --once: no token before --once-timeout (issuer unreachable or failing)
  On a refusal the output files are removed (--on-refusal remove, default) or kept.
"""


def _add_agent(sub: Any) -> None:
    p = sub.add_parser(
        "agent",
        help="keep token files fresh for workloads outside Kubernetes (kubelet's behaviour)",
        description=(
            "Request service-account tokens with TokenRequest and keep them fresh in files, as\n"
            "the kubelet does for projected volumes. The agent's own credential (--token-file) is\n"
            "re-read on every request and needs only 'create' on 'serviceaccounts/token' for\n"
            "this one account (RBAC resourceNames; see deploy/agent/rbac.yaml)."
        ),
        epilog=_AGENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--server", required=True, metavar="URL", help="the issuer's API URL")
    p.add_argument(
        "--token-file", required=True, metavar="CRED", type=Path, help="the agent's credential"
    )
    p.add_argument("--namespace", "-n", required=True, metavar="NS")
    p.add_argument("--service-account", required=True, metavar="SA")
    p.add_argument(
        "--audience", action="append", default=[], metavar="AUD", help="audience of --path"
    )
    p.add_argument("--path", metavar="OUT", help="token file to keep fresh")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="AUD[,AUD...]=PATH",
        help="another token file with its own audiences (repeatable)",
    )
    p.add_argument(
        "--expiration-seconds",
        type=int,
        default=DEFAULT_EXPIRATION_SECONDS,
        metavar="N",
        help=f"requested token lifetime (default {DEFAULT_EXPIRATION_SECONDS})",
    )
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--bound-pod", metavar="NAME", help="bind the tokens to this pod")
    bound.add_argument("--bound-node", metavar="NAME", help="bind the tokens to this node")
    p.add_argument("--ca-bundle", metavar="F", help="PEM CA bundle to trust for --server")
    p.add_argument("--once", action="store_true", help="write each file once and exit")
    p.add_argument(
        "--once-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="with --once: give up (exit 75) after S seconds of failures (default 30)",
    )
    p.add_argument("--mode", default="0600", metavar="OCTAL", help="file mode (default 0600)")
    p.add_argument("--owner", metavar="USER[:GROUP]", help="chown the files (name or number)")
    p.add_argument(
        "--on-refusal",
        choices=["remove", "keep"],
        default="remove",
        help="what to do with the files when the issuer refuses for good (default remove)",
    )
    p.add_argument("--status-file", metavar="F", type=Path, help="JSON status, rewritten on change")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per-request timeout (default 10)"
    )
    p.add_argument(
        "--insecure-allow-http",
        action="store_true",
        help="INSECURE: allow a plain-http --server that is not on loopback",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.set_defaults(func=cmd_agent)


def register(sub: Any) -> None:
    """Add ``agent``, ``cloud-config`` and ``check-federation`` to ``sa-issuer``'s subparsers."""
    _add_agent(sub)
    from issuer.agent import cloud_cli

    cloud_cli.register(sub)


# --- agent ------------------------------------------------------------------------------------


class UsageError(Exception):
    """A flag combination or value that cannot work (exit 1 with the message)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_server(url: str, insecure: bool) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--server {url!r}: must be an https:// URL")
    if parts.query or parts.fragment or parts.username:
        raise UsageError(f"--server {url!r}: must not carry a query, fragment or user info")
    if parts.scheme == "http" and not insecure and not _is_loopback(parts.hostname):
        raise UsageError(
            f"--server {url!r}: plain http would send the agent's credential in clear text; use "
            "https (or --insecure-allow-http)"
        )
    return url


def _parse_outputs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    outputs: list[tuple[str, list[str]]] = []
    if args.path:
        outputs.append((args.path, list(args.audience)))
    elif args.audience:
        raise UsageError("--audience applies to --path: give --path OUT (or use --output)")
    for spec in args.output:
        auds, sep, path = spec.partition("=")
        audiences = [a for a in auds.split(",") if a]
        if not sep or not path or not audiences:
            raise UsageError(f"--output {spec!r}: expected AUD[,AUD...]=PATH")
        outputs.append((path, audiences))
    if not outputs:
        raise UsageError("nothing to write: give --path OUT (with --audience) or --output")
    seen: set[str] = set()
    for path, _ in outputs:
        real = os.path.abspath(path)
        if real in seen:
            raise UsageError(f"{path} is given twice")
        seen.add(real)
        if not os.path.isdir(os.path.dirname(real)):
            raise UsageError(f"{path}: the directory {os.path.dirname(real)} does not exist")
    return outputs


def _parse_owner(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    user, _, group = value.partition(":")
    uid = gid = None
    try:
        if user:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"--owner {value!r}: no such user or group") from None
    return uid, gid


def _check_names(args: argparse.Namespace) -> None:
    from issuer.api.validation import dns1123_label_errors, dns1123_subdomain_errors

    checks = [("--namespace", args.namespace, dns1123_label_errors)]
    checks.append(("--service-account", args.service_account, dns1123_subdomain_errors))
    for flag, value in (("--bound-pod", args.bound_pod), ("--bound-node", args.bound_node)):
        if value is not None:
            checks.append((flag, value, dns1123_subdomain_errors))
    for flag, value, errors in checks:
        problems = errors(value)
        if problems:
            raise UsageError(f"{flag} {value!r}: {problems[0]}")


def _settings(args: argparse.Namespace) -> Any:
    from issuer.agent.loop import AgentSettings, outputs_from

    _check_server(args.server, args.insecure_allow_http)
    _check_names(args)
    why = check_expiration(args.expiration_seconds)
    if why:
        raise UsageError(f"--expiration-seconds {args.expiration_seconds}: {why}")
    try:
        mode = int(args.mode, 8)
    except ValueError:
        raise UsageError(f"--mode {args.mode!r}: expected an octal mode such as 0600") from None
    if not 0 <= mode <= 0o777:
        raise UsageError(f"--mode {args.mode!r}: expected an octal mode such as 0600")
    if mode & 0o002:
        raise UsageError(f"--mode {args.mode!r}: a world-writable token file is never right")
    uid, gid = _parse_owner(args.owner)
    if args.once_timeout <= 0 or args.timeout <= 0:
        raise UsageError("--once-timeout and --timeout must be positive")
    return AgentSettings(
        outputs=outputs_from(_parse_outputs(args)),
        mode=mode,
        uid=uid,
        gid=gid,
        on_refusal=args.on_refusal,
        status_file=Path(os.path.abspath(args.status_file)) if args.status_file else None,
        once=args.once,
        once_timeout=args.once_timeout,
    )


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def cmd_agent(args: argparse.Namespace) -> int:
    """``sa-issuer agent``."""
    from issuer.agent.client import TokenRequester
    from issuer.agent.loop import Agent, RealClock
    from verifier.credentials import BearerTokenFile

    logging.getLogger().setLevel(getattr(logging, args.log_level.upper()))
    # httpx logs every request at INFO: the agent says what matters itself
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if args.log_level == "debug" else logging.WARNING
    )
    try:
        settings = _settings(args)
        if args.ca_bundle is not None and not os.path.isfile(args.ca_bundle):
            raise UsageError(f"--ca-bundle {args.ca_bundle}: no such file")
        if not os.access(args.token_file, os.R_OK) or not os.path.isfile(args.token_file):
            raise UsageError(f"--token-file {args.token_file}: no such readable file")
        try:
            credential = BearerTokenFile(args.token_file, refresh=0.0)
        except ValueError as e:
            raise UsageError(f"--token-file: {e}") from None
    except UsageError as e:
        _error(str(e))
        return EXIT_ERROR
    bound = None
    if args.bound_pod:
        bound = ("Pod", args.bound_pod)
    elif args.bound_node:
        bound = ("Node", args.bound_node)
    try:
        requester = TokenRequester(
            args.server,
            credential,
            args.namespace,
            args.service_account,
            expiration_seconds=args.expiration_seconds,
            bound=bound,
            ca_bundle=args.ca_bundle,
            timeout=args.timeout,
        )
    except OSError as e:  # an unreadable or malformed --ca-bundle
        _error(f"--ca-bundle {args.ca_bundle}: {e}")
        return EXIT_ERROR
    clock = RealClock()

    def _stop(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        clock.stop()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return Agent(settings, requester.request, clock).run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        requester.close()
