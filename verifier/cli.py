"""``sa-verifier``: check one service-account token from the command line.

::

    sa-verifier verify [TOKEN|-] --issuer URL --audience AUD [--audience AUD2]
                       [--mode oidc|tokenreview|hybrid] [--token-file F] [--ca-bundle F]
                       [--insecure-allow-http] [--json]
                       [--review-url URL --bearer-token-file F]     (tokenreview, hybrid)
    sa-verifier verify [TOKEN|-] --authentication-config FILE [--json]   (many issuers)

Exit codes (docs/CONTRACTS.md "Verifier public API"): 0 valid, 1 invalid (``invalid token: <reason>:
<detail>`` on stderr), 2 usage, 3 unavailable (could not check). The token is never printed; pass it
with ``-`` (stdin) or ``--token-file`` rather than as an argument, which other users can see in
``ps``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TextIO, cast

from verifier.errors import (
    CredentialRefused,
    InvalidToken,
    VerificationError,
    VerifierUnavailable,
)
from verifier.identity import ServiceAccountIdentity

EXIT_VALID: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
#: Cap on what is read as a token or bearer credential (the core refuses tokens over 16 KiB).
MAX_INPUT_BYTES: Final = 64 * 1024


_STDIN: Final = "-"


class _Verifier(Protocol):
    def verify(self, token: str) -> ServiceAccountIdentity: ...

    def close(self) -> None: ...


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sa-verifier", description="Verify Kubernetes-style service-account tokens."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="verify one token",
        description="Exit 0 valid, 1 invalid, 2 usage, 3 unavailable (could not check).",
    )
    v.add_argument("token", nargs="?", help="the token, or - to read it from stdin")
    v.add_argument("--token-file", type=Path, help="read the token from this file")
    v.add_argument("--issuer", help="issuer URL, compared exactly (required for oidc, hybrid)")
    v.add_argument(
        "--audience",
        action="append",
        default=[],
        help="accepted audience (required unless --authentication-config)",
    )
    v.add_argument(
        "--authentication-config",
        type=Path,
        metavar="FILE",
        help="Kubernetes AuthenticationConfiguration (apiserver.config.k8s.io/v1beta1 or v1): "
        "many issuers, audiences and claim mappings from the file",
    )
    v.add_argument("--mode", choices=("oidc", "tokenreview", "hybrid"), default="oidc")
    v.add_argument("--ca-bundle", help="PEM file of CA certificates to trust")
    v.add_argument(
        "--insecure-allow-http",
        action="store_true",
        help="allow http:// URLs; keys and tokens then travel unprotected (never in production)",
    )
    v.add_argument("--json", action="store_true", help="print the identity as JSON")
    v.add_argument("--review-url", help="issuer API base URL for TokenReview (default: --issuer)")
    v.add_argument("--bearer-token-file", type=Path, help="credential for TokenReview / stream")
    v.add_argument("-v", "--verbose", action="store_true", help="log key fetches to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sa-verifier``; return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="sa-verifier: %(levelname)s: %(message)s")
    else:  # the outcome line says what matters; don't repeat fetch warnings on stderr
        logging.getLogger("verifier").addHandler(logging.NullHandler())
    try:
        token = _read_token(args)
        if args.authentication_config is not None:
            _check_config_flags(args)
            # Imported here: the single-issuer modes never load YAML or CEL.
            from verifier._cli_multi import check_with_config

            return check_with_config(token, args.authentication_config, as_json=args.json)
        verifier = _build(args)
    except _UsageError as exc:
        print(f"sa-verifier: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidToken as exc:
        return _invalid(exc)
    try:
        ident = verifier.verify(token)
    except InvalidToken as exc:
        return _invalid(exc)
    except CredentialRefused as exc:
        # The reviewer credential, not the token, was refused: say which file to fix.
        print(
            f"unavailable: the issuer refused the credential in --bearer-token-file "
            f"{str(args.bearer_token_file)!r} (HTTP {exc.status}); the token was not checked",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except VerifierUnavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except VerificationError as exc:  # pragma: no cover - nothing else is raised today
        print(f"unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        if args.mode == "hybrid":
            # The follower's daemon thread may be waiting on a silent issuer; this process is
            # about to exit, so don't wait for it (the check itself kept to --timeout).
            cast(Any, verifier).close(timeout=0.0)
        else:
            verifier.close()
    _print_identity(ident, as_json=args.json, out=sys.stdout)
    return EXIT_VALID


def _invalid(exc: InvalidToken) -> int:
    print(f"invalid token: {exc.reason}: {exc.detail}", file=sys.stderr)
    return EXIT_INVALID


def _read_capped(stream: Any, what: str) -> str:
    data = stream.read(MAX_INPUT_BYTES + 1)
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_INPUT_BYTES:
        if what == "token":
            raise InvalidToken("token_too_large", f"more than {MAX_INPUT_BYTES} bytes")
        raise _UsageError(f"{what} is larger than {MAX_INPUT_BYTES} bytes")
    try:
        return str(data.decode("ascii").strip())
    except UnicodeDecodeError:
        raise _UsageError(f"{what} is not ASCII (a JWT is base64url text)") from None


def _read_file(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            return _read_capped(f, what)
    except OSError as exc:
        raise _UsageError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None


def _read_token(args: argparse.Namespace) -> str:
    if args.token is not None and args.token_file is not None:
        raise _UsageError("give the token as an argument, '-' or --token-file, not both")
    if args.token_file is not None:
        token = _read_file(args.token_file, "token")
    elif args.token == _STDIN:
        token = _read_capped(sys.stdin.buffer, "token")
    elif args.token is not None:
        token = args.token.strip()
    else:
        raise _UsageError("no token: pass TOKEN, '-' (stdin) or --token-file")
    if not token:
        raise _UsageError("the token is empty")
    return token


def _check_config_flags(args: argparse.Namespace) -> None:
    """With --authentication-config the file says everything the per-issuer flags would."""
    given = [
        flag
        for flag, value in (
            ("--issuer", args.issuer),
            ("--audience", args.audience),
            ("--ca-bundle", args.ca_bundle),
            ("--review-url", args.review_url),
            ("--bearer-token-file", args.bearer_token_file),
            ("--insecure-allow-http", args.insecure_allow_http),
            ("--mode", args.mode != "oidc"),
        )
        if value
    ]
    if given:
        raise _UsageError(
            f"{', '.join(given)} cannot be combined with --authentication-config "
            "(the file configures issuers, audiences and trust)"
        )


def _build(args: argparse.Namespace) -> _Verifier:
    mode: str = args.mode
    if not args.audience:
        raise _UsageError("--audience is required (or use --authentication-config)")
    if mode in ("oidc", "hybrid") and not args.issuer:
        raise _UsageError(f"--issuer is required with --mode {mode}")
    bearer = ""
    if mode in ("tokenreview", "hybrid"):
        if args.bearer_token_file is None:
            raise _UsageError(f"--bearer-token-file is required with --mode {mode}")
        bearer = _read_file(args.bearer_token_file, "bearer token")
        if not (args.review_url or args.issuer):
            raise _UsageError(f"--review-url (or --issuer) is required with --mode {mode}")
    if not args.insecure_allow_http:
        for url in (args.issuer, args.review_url):
            if url and url.lower().startswith("http://"):
                raise _UsageError(
                    f"{url!r} is not https: tokens would travel in clear text; "
                    "--insecure-allow-http is for loopback tests only"
                )
    common: dict[str, Any] = {
        "ca_bundle": args.ca_bundle,
        "insecure_allow_http": args.insecure_allow_http,
    }
    # Imported here: a usage error should not pay for importing httpx.
    try:
        if mode == "oidc":
            from verifier.remote import OIDCVerifier

            return OIDCVerifier(args.issuer, args.audience, **common)
        if mode == "tokenreview":
            from verifier.tokenreview import TokenReviewVerifier

            url = args.review_url or args.issuer
            return TokenReviewVerifier(url, bearer, args.audience, **common)
        from verifier.hybrid import HybridVerifier

        return HybridVerifier(
            args.issuer, args.audience, bearer_token=bearer, review_url=args.review_url, **common
        )
    except ValueError as exc:  # any other configuration a constructor refuses
        raise _UsageError(str(exc)) from None


def _print_identity(ident: ServiceAccountIdentity, *, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(ident.to_dict(), indent=2, sort_keys=True), file=out)
        return
    bound = ""
    for kind, name, uid in (
        ("pod", ident.pod_name, ident.pod_uid),
        ("secret", ident.secret_name, ident.secret_uid),
        ("node", ident.node_name, ident.node_uid),
    ):
        if name:
            bound = f" ({kind} {name} uid {uid or '-'})"
            break
    print(f"valid: {ident.username}{bound}, {_expiry(ident.expires_at)}", file=out)


def _expiry(expires_at: int | None) -> str:
    if expires_at is None:
        return "no expiry"
    left = int(expires_at - time.time())
    if left < 0:  # within leeway
        return f"expired {_duration(-left)} ago (within leeway)"
    return f"expires in {_duration(left)}"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
