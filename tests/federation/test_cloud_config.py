"""``issuer.agent.cloudconfig`` (pure) and ``sa-issuer cloud-config`` refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _fed import run_cli

from issuer.agent import cloudconfig as cc

ROLE = "arn:aws:iam::123456789012:role/app"


def test_aws_environment_and_profile() -> None:
    assert cc.aws_environment(ROLE, "/run/t", "s1", "eu-west-1") == {
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/run/t",
        "AWS_ROLE_SESSION_NAME": "s1",
        "AWS_REGION": "eu-west-1",
    }
    assert cc.aws_profile(ROLE, "/run/t", profile="app") == (
        f"[profile app]\nrole_arn = {ROLE}\nweb_identity_token_file = /run/t\n"
    )
    assert cc.aws_profile(ROLE, "/run/t").startswith("[default]\n")
    assert cc.env_lines({"A": "x y"}, "shell") == "export A='x y'\n"


def test_gcp_configuration_with_impersonation() -> None:
    provider = cc.gcp_provider("123", "my-pool", "my-prov")
    doc = json.loads(
        cc.gcp_credential_config(provider, "/run/t", service_account="a@p.iam.gserviceaccount.com")
    )
    assert doc["type"] == "external_account"
    assert doc["audience"] == provider
    assert doc["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert doc["token_url"] == "https://sts.googleapis.com/v1/token"
    assert doc["credential_source"] == {"file": "/run/t", "format": {"type": "text"}}
    assert doc["service_account_impersonation_url"] == (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        "a@p.iam.gserviceaccount.com:generateAccessToken"
    )
    assert cc.token_audience("gcp", provider) == "https:" + provider


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cc.aws_environment("arn:aws:iam::1:role/x", "/t"), "--role-arn"),
        (lambda: cc.aws_environment(ROLE, "relative/t"), "absolute path"),
        (lambda: cc.aws_environment(ROLE, "/t", "bad name!"), "--session-name"),
        (lambda: cc.gcp_provider("12a", "pool", "prov1"), "--project-number"),
        (lambda: cc.gcp_credential_config("//iam.googleapis.com/x", "/t"), "--provider-name"),
        (lambda: cc.azure_environment("not-a-guid", "t", "/t"), "--client-id"),
        (
            lambda: cc.azure_environment(
                "0f9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b", "t", "/t", "http://login.example"
            ),
            "--authority-host",
        ),
    ],
)
def test_values_the_cloud_would_refuse(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(cc.ConfigValueError, match=message):
        call()


def test_cli_refuses_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.env"
    r = run_cli("cloud-config", "aws", "--role-arn", "nope", "--token-file", "/t", "-o", str(out))
    assert r.returncode == 1
    assert r.stderr.startswith("sa-issuer: error: --role-arn 'nope'")
    assert not out.exists()
