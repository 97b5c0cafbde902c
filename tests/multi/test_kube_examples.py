"""The AuthenticationConfiguration examples of the Kubernetes documentation, table-driven.

Source: kubernetes/website content/en/docs/reference/access-authn-authz/authentication.md,
"Authentication configuration from a file" (the three tabs "Valid token", "Fails claim
validation", "Fails user validation"). Each example's YAML is used as printed, with two lines added
so that ``https://example.com`` can be served here the way kube allows it: ``discoveryURL`` (a real
TLS discovery + JWKS server on loopback whose discovery document says ``issuer:
https://example.com``) and ``certificateAuthority`` (that server's self-signed certificate).
Each token payload is the documented one, re-signed with the test server's key; the clock is the
payload's ``iat``.

The documented payloads carry ``"aud": "kubernetes"`` while the example configurations accept only
``my-app``: kube-apiserver refuses them ("oidc: expected audience"), and so does this verifier —
the table says so, then runs the same payload with ``"aud": "my-app"`` to check the documented user.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from verifier import InvalidToken, VerifierUnavailable
from verifier.multi import MultiIssuerVerifier

DATA = Path(__file__).resolve().parent / "data"
DOC_IAT = 1701107233
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db4a"

# The payloads as printed under each tab.
VALID_PAYLOAD: dict[str, Any] = {
    "aud": "kubernetes",
    "exp": 1703232949,
    "iat": 1701107233,
    "iss": "https://example.com",
    "jti": "7c337942807e73caa2c30c868ac0ce910bce02ddcbfebe8c23b8b5f27ad62873",
    "nbf": 1701107233,
    "roles": "user,admin",
    "sub": "auth",
    "tenant": TENANT,
    "username": "foo",
}
HD_PAYLOAD: dict[str, Any] = {
    "aud": "kubernetes",
    "exp": 1703232949,
    "hd": "example.com",
    "iat": 1701113101,
    "iss": "https://example.com",
    "jti": "b5b0652372cd20e345b6fdffcdc2181f4afd6f259aab4b7e35881237d29220bc",
    "nbf": 1701113101,
    "roles": "user,admin",
    "sub": "auth",
    "tenant": TENANT,
    "username": "foo",
}

VALID_TOKEN_CONFIG = "valid-token.yaml"

FAILS_CLAIM_VALIDATION_CONFIG = "fails-claim-validation.yaml"

FAILS_USER_VALIDATION_CONFIG = "fails-user-validation.yaml"

DOC_USER = {
    "username": "foo:external-user",
    "uid": "auth",
    "groups": ["user", "admin"],
    "extra": {"example.com/tenant": [TENANT]},
}

# (config, payload, expected user dict | (reason, message fragment))
CASES: list[tuple[str, str, dict[str, Any], Any]] = [
    (
        "valid-token/as-printed",
        VALID_TOKEN_CONFIG,
        VALID_PAYLOAD,
        ("audience_mismatch", "no audience of the token is accepted"),
    ),
    ("valid-token/aud-my-app", VALID_TOKEN_CONFIG, {**VALID_PAYLOAD, "aud": "my-app"}, DOC_USER),
    (
        "fails-claim-validation",
        FAILS_CLAIM_VALIDATION_CONFIG,
        {**VALID_PAYLOAD, "aud": "my-app"},
        (
            "invalid_claim",
            "oidc: error evaluating claim validation expression: expression "
            "'claims.hd == \"example.com\"' resulted in error: ",
        ),
    ),
    (
        "fails-claim-validation/with-hd-passes",
        FAILS_CLAIM_VALIDATION_CONFIG,
        {**HD_PAYLOAD, "aud": "my-app"},
        DOC_USER,
    ),
    (
        "fails-user-validation",
        FAILS_USER_VALIDATION_CONFIG,
        {**HD_PAYLOAD, "aud": "my-app"},
        (
            "invalid_claim",
            "oidc: error evaluating user info validation rule: validation expression "
            "'!user.username.startsWith('system:')' failed: username cannot used reserved "
            "system: prefix",
        ),
    ),
]


@pytest.fixture
def example_com(jwks: ModuleType, tls: tuple[Path, Path]) -> Iterator[Any]:
    """A TLS discovery + JWKS server that claims to be ``https://example.com``."""
    server = jwks.JWKSServer(tls=tls)
    server.discovery_issuer = "https://example.com"
    server.keys = [jwks.rsa_key(0)]
    with server:
        yield server


def with_serving(example: str, server: Any, pem: str) -> str:
    """The documented file (tests/multi/data/) with ``discoveryURL`` and
    ``certificateAuthority`` added after ``url: https://example.com``."""
    text = (DATA / example).read_text()
    url_line = "    url: https://example.com\n"
    assert text.count(url_line) == 1
    ca = textwrap.indent(pem, " " * 6)
    added = (
        f"    discoveryURL: {server.url}/.well-known/openid-configuration\n"
        f"    certificateAuthority: |\n{ca.rstrip()}\n"
    )
    return text.replace(url_line, url_line + added)


@pytest.mark.parametrize(
    ("config", "payload", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_documented_examples(
    config: str,
    payload: dict[str, Any],
    expected: Any,
    example_com: Any,
    jwks: ModuleType,
    tls_pem: str,
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(with_serving(config, example_com, tls_pem))
    token = jwks.sign_token(example_com.keys[0], payload)
    clock = lambda: float(payload["iat"])  # noqa: E731 - the documented token's own time
    with MultiIssuerVerifier(path, watch=False, clock=clock) as v:
        if isinstance(expected, dict):
            result = v.verify(token)
            assert result.user.to_dict() == expected
            assert result.service_account is None  # not a Kubernetes service-account token
            assert result.issuer == "https://example.com"
        else:
            reason, message = expected
            with pytest.raises(InvalidToken) as err:
                v.verify(token)
            assert err.value.reason == reason
            assert message in err.value.detail
            assert TENANT not in err.value.detail  # claim values never reach the message
    assert example_com.counts["discovery"] == 1  # discovery through discoveryURL, once


def test_discovery_must_name_the_configured_issuer(
    jwks: ModuleType, tls: tuple[Path, Path], tls_pem: str, write_config: Callable[[str], Path]
) -> None:
    # discoveryURL moves where discovery is fetched, not who the issuer is: a document naming
    # another issuer is refused and no key set is ever loaded ("could not check", not "invalid").
    server = jwks.JWKSServer(tls=tls)  # its discovery says issuer = its own URL
    server.keys = [jwks.rsa_key(0)]
    with server:
        path = write_config(with_serving(VALID_TOKEN_CONFIG, server, tls_pem))
        payload = {**VALID_PAYLOAD, "aud": "my-app"}
        token = jwks.sign_token(server.keys[0], payload)
        with (
            MultiIssuerVerifier(path, watch=False, clock=lambda: float(DOC_IAT)) as v,
            pytest.raises(VerifierUnavailable, match="does not equal the configured issuer"),
        ):
            v.verify(token)
        assert server.counts["jwks"] == 0


def test_cli_usage_errors() -> None:
    from verifier.cli import main

    assert main(["verify", "x.y.z", "--authentication-config", "/nonexistent/authn.yaml"]) == 2
    assert main(["verify", "x.y.z"]) == 2  # neither --audience nor --authentication-config
