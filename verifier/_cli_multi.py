"""``sa-verifier verify --authentication-config FILE``: one token through Kubernetes'
``AuthenticationConfiguration`` (many issuers; :mod:`verifier.multi`).

Same exit codes as the rest of ``sa-verifier``: 0 valid, 1 invalid, 2 usage (this includes a
configuration kube-apiserver would refuse: its message is printed), 3 unavailable. ``--json``
prints ``{"username", "uid", "groups", "extra", "issuer", "audiences", "serviceAccount"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final, TextIO

from verifier.authconfig import AuthConfigError, load_authentication_config
from verifier.errors import InvalidToken, VerifierUnavailable
from verifier.multi import Authenticated, MultiIssuerVerifier

__all__ = ["check_with_config"]

EXIT_VALID: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3


def check_with_config(
    token: str,
    config_path: Path,
    *,
    as_json: bool,
    timeout: float = 5.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Verify ``token`` with the configuration at ``config_path``; print the outcome; exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = load_authentication_config(config_path)
    except AuthConfigError as exc:
        print(
            f"sa-verifier: error: --authentication-config {str(config_path)!r} refused: {exc}",
            file=err,
        )
        return EXIT_USAGE
    verifier = MultiIssuerVerifier(config, watch=False, verifier_options={"timeout": timeout})
    try:
        result = verifier.verify(token)
    except InvalidToken as exc:
        print(f"invalid token: {exc.reason}: {exc.detail}", file=err)
        return EXIT_INVALID
    except VerifierUnavailable as exc:
        print(f"unavailable: {exc}", file=err)
        return EXIT_UNAVAILABLE
    finally:
        verifier.close()
    print_result(result, as_json=as_json, out=out)
    return EXIT_VALID


def print_result(result: Authenticated, *, as_json: bool, out: TextIO) -> None:
    """The accepted user: JSON, or one human line."""
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True), file=out)
        return
    user = result.user
    parts = [f"valid: {user.username}"]
    if user.uid:
        parts.append(f"uid {user.uid}")
    if user.groups:
        parts.append("groups " + ",".join(user.groups))
    sa = result.service_account
    if sa is not None:
        parts.append(f"service account {sa.namespace}/{sa.service_account_name}")
    parts.append(f"issuer {result.issuer}")
    print(", ".join(parts), file=out)
