"""google-auth, unmodified, exchanges an agent-written token at the Security Token Service.

The SDK loads what ``sa-issuer cloud-config gcp`` writes (an ``external_account`` configuration
with a file-sourced subject token) with its token URL pointed at the STS stand-in (https, trusted
through ``REQUESTS_CA_BUNDLE``). The stand-in validates each token with PyJWT and the issuer's
live JWKS by Google's rules and answers in Google's token-exchange shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import pytest
from _clouds import GoogleSts, TokenChecker
from _fed import GCP_PROVIDER, Cluster, Workload, delete_bound_pod, run_agent, run_cli
from _tls import Pki
from google.auth import identity_pool

AUD = "https:" + GCP_PROVIDER  # the provider's default allowed audience
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@pytest.fixture(scope="module")
def workload(fed_cluster_module: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return Workload(fed_cluster_module, tmp_path_factory.mktemp("gcp"))


@pytest.fixture(scope="module")
def sts(fed_issuer: Any, pki: Pki, hybrid: Any, workload: Workload) -> Iterator[GoogleSts]:
    checker = TokenChecker(
        fed_issuer.issuer, str(pki.ca), ("RS256", "ES256"), hybrid=hybrid, max_lifetime=48 * 3600
    )
    s = GoogleSts(pki, checker, GCP_PROVIDER, subject=workload.sub)
    yield s
    s.close()


@pytest.fixture
def gcp(
    tmp_path: Path, pki: Pki, sts: GoogleSts, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """(credential configuration, token file): what cloud-config wrote."""
    token_file = tmp_path / "gcp-token"
    config = tmp_path / "gcp-credentials.json"
    args = ["--provider-name", GCP_PROVIDER, "--token-file", str(token_file)]
    r = run_cli(
        "cloud-config", "gcp", *args, "--token-url", sts.url + "/v1/token", "-o", str(config)
    )
    assert r.returncode == 0, r.stderr
    assert f"--audience {AUD}" in r.stderr
    doc = json.loads(config.read_text())
    assert doc["type"] == "external_account" and doc["audience"] == GCP_PROVIDER
    assert doc["credential_source"] == {"file": str(token_file), "format": {"type": "text"}}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    return config, token_file


def load(config: Path) -> Any:
    """The identity_pool credentials the configuration describes (what google.auth.default
    builds for it, without its project-id lookup at cloudresourcemanager.googleapis.com)."""
    return identity_pool.Credentials.from_file(str(config), scopes=SCOPES)


def refresh(creds: Any) -> None:
    creds.refresh(google.auth.transport.requests.Request())


def test_google_auth_exchanges_the_agent_token(
    gcp: tuple[Path, Path], workload: Workload, sts: GoogleSts
) -> None:
    config, token_file = gcp
    token = workload.write(token_file, AUD)
    creds = load(config)
    refresh(creds)
    assert creds.token.startswith("ya29.stand-in.")
    form = sts.requests[-1]["form"]
    assert form["subject_token"] == token and form["audience"] == GCP_PROVIDER
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"


def _refused(config: Path, text: str) -> None:
    with pytest.raises(google.auth.exceptions.GoogleAuthError) as e:
        refresh(load(config))
    assert "invalid_grant" in str(e.value) and text in str(e.value)


def test_wrong_audience_is_refused(gcp: tuple[Path, Path], workload: Workload) -> None:
    workload.write(gcp[1], "sts.amazonaws.com")
    _refused(gcp[0], "does not match the expected audience")


def test_wrong_subject_is_refused(gcp: tuple[Path, Path], workload: Workload) -> None:
    workload.write(gcp[1], AUD, "other")
    _refused(gcp[0], "rejected by the attribute condition")


def test_expired_token_is_refused(
    gcp: tuple[Path, Path], workload: Workload, sts: GoogleSts
) -> None:
    workload.write(gcp[1], AUD)
    sts.checker.clock_offset = 3601.0
    try:
        _refused(gcp[0], "ID Token has expired")
    finally:
        sts.checker.clock_offset = 0.0


def test_deleted_pod_is_refused_through_the_hybrid_verifier(
    gcp: tuple[Path, Path], workload: Workload, hybrid: Any
) -> None:
    delete_bound_pod(workload, hybrid, gcp[1], AUD, "gcp-pod", lambda: refresh(load(gcp[0])))
    _refused(gcp[0], "revoked")


def test_after_a_refresh_the_next_sdk_refresh_sends_the_new_token(
    gcp: tuple[Path, Path], workload: Workload, sts: GoogleSts
) -> None:
    """The agent (fake clock) refreshes the file; google-auth's next refresh sends the new one."""
    config, token_file = gcp
    creds = load(config)
    sent: list[str] = []

    def sdk_refresh() -> None:
        refresh(creds)
        sent.append(sts.tokens()[-1])

    run_agent(workload, token_file, AUD, {60: sdk_refresh}, stop=2900)
    sdk_refresh()
    assert sent[1] == token_file.read_text() != sent[0]


def test_service_account_impersonation(
    tmp_path: Path, gcp: tuple[Path, Path], workload: Workload, sts: GoogleSts
) -> None:
    """With --service-account-email the SDK exchanges the STS token for the service account's
    token (IAM Credentials generateAccessToken), here served by the same stand-in."""
    _, token_file = gcp
    config = tmp_path / "gcp-impersonating.json"
    url = f"{sts.url}/v1/projects/-/serviceAccounts/{sts.service_account}:generateAccessToken"
    args = ["--provider-name", GCP_PROVIDER, "--token-file", str(token_file), "--token-url",
            sts.url + "/v1/token", "--service-account-email", sts.service_account,
            "--impersonation-url", url, "-o", str(config)]  # fmt: skip
    r = run_cli("cloud-config", "gcp", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(config.read_text())["service_account_impersonation_url"] == url
    workload.write(token_file, AUD)
    creds = load(config)
    refresh(creds)
    assert creds.token.startswith("ya29.impersonated.")
    assert sts.requests[-1]["path"].endswith(":generateAccessToken")
