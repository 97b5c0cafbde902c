"""boto3, unmodified, exchanges an agent-written token with AssumeRoleWithWebIdentity.

The SDK is configured only by what ``sa-issuer cloud-config aws`` writes (a shared-config profile
with ``role_arn`` + ``web_identity_token_file``) and reaches the STS stand-in through
``AWS_ENDPOINT_URL_STS`` (https, trusted through ``AWS_CA_BUNDLE``). The stand-in validates each
token with PyJWT and the issuer's live JWKS by IAM's rules and answers in STS's XML shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from _clouds import AwsSts, TokenChecker
from _fed import Cluster, Workload, delete_bound_pod, run_agent, run_cli
from _tls import Pki

ROLE = "arn:aws:iam::123456789012:role/sa-oidc-app"
AUD = "sts.amazonaws.com"
#: a developer's own AWS settings must not leak into the SDK under test
AWS_ENV_TO_CLEAR = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture(scope="module")
def workload(fed_cluster_module: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return Workload(fed_cluster_module, tmp_path_factory.mktemp("aws"))


@pytest.fixture(scope="module")
def sts(fed_issuer: Any, pki: Pki, hybrid: Any, workload: Workload) -> Iterator[AwsSts]:
    algorithms = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
    checker = TokenChecker(fed_issuer.issuer, str(pki.ca), algorithms, hybrid=hybrid)
    s = AwsSts(pki, checker, roles={ROLE: workload.sub})
    yield s
    s.close()


@pytest.fixture
def aws(tmp_path: Path, pki: Pki, sts: AwsSts, monkeypatch: pytest.MonkeyPatch) -> Path:
    """boto3's environment: the profile cloud-config wrote, the stand-in endpoint; returns the
    token file path the profile names."""
    token_file = tmp_path / "aws-token"
    config = tmp_path / "aws-config"
    args = ["--role-arn", ROLE, "--token-file", str(token_file), "--session-name", "sa-oidc-test"]
    r = run_cli("cloud-config", "aws", *args, "--format", "profile", "-o", str(config))
    assert r.returncode == 0, r.stderr
    assert f"--audience {AUD}" in r.stderr
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return token_file


def credentials() -> Any:
    """What an application does: a fresh session's credentials (the web identity provider)."""
    creds = boto3.Session().get_credentials()
    assert creds is not None and creds.method == "assume-role-with-web-identity"
    return creds


def test_boto3_exchanges_the_agent_token(aws: Path, workload: Workload, sts: AwsSts) -> None:
    token = workload.write(aws, AUD)
    frozen = credentials().get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and frozen.token
    assert sts.tokens()[-1] == token
    assert sts.requests[-1]["form"]["RoleArn"] == ROLE
    assert sts.requests[-1]["form"]["RoleSessionName"] == "sa-oidc-test"


def _refused(code: str, message: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        credentials().get_frozen_credentials()
    err = e.value.response["Error"]
    assert err["Code"] == code
    assert message in err["Message"]


def test_wrong_audience_is_refused(aws: Path, workload: Workload) -> None:
    workload.write(aws, "api://AzureADTokenExchange")
    _refused("InvalidIdentityToken", "Incorrect token audience")


def test_wrong_subject_is_refused(aws: Path, workload: Workload) -> None:
    workload.write(aws, AUD, "other")
    _refused("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")


def test_expired_token_is_refused(aws: Path, workload: Workload, sts: AwsSts) -> None:
    workload.write(aws, AUD)
    sts.checker.clock_offset = 3601.0  # the token service's clock: an hour later
    try:
        _refused("ExpiredTokenException", "Token expired: current date/time")
    finally:
        sts.checker.clock_offset = 0.0


def test_deleted_pod_is_refused_through_the_hybrid_verifier(
    aws: Path, workload: Workload, hybrid: Any
) -> None:
    delete_bound_pod(
        workload, hybrid, aws, AUD, "aws-pod", lambda: credentials().get_frozen_credentials()
    )
    _refused("InvalidIdentityToken", "revoked")


def test_after_a_refresh_the_next_sdk_refresh_sends_the_new_token(
    aws: Path, workload: Workload, sts: AwsSts
) -> None:
    """The agent (fake clock) refreshes the file; boto3's next credential refresh (its
    credentials expire within its 10-minute mandatory window) reads and sends the new token."""
    creds = credentials()
    sent: list[str] = []

    def sdk_refresh() -> None:
        creds.get_frozen_credentials()
        sent.append(sts.tokens()[-1])

    # first write at 0 s, the SDK at 60 s, the agent's refresh at 2880 s, stop at 2900 s
    run_agent(workload, aws, AUD, {60: sdk_refresh}, stop=2900)
    sdk_refresh()
    assert sent[1] == aws.read_text() != sent[0]
