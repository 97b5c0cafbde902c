"""azure-identity, unmodified, exchanges an agent-written token at a local Entra authority.

``WorkloadIdentityCredential`` reads exactly the environment ``sa-issuer cloud-config azure``
writes (``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE``,
``AZURE_AUTHORITY_HOST`` = the stand-in over https, trusted through ``REQUESTS_CA_BUNDLE``), with
instance discovery disabled (the stand-in is not a known Microsoft cloud). The stand-in validates
each client assertion with PyJWT and the issuer's live JWKS by Entra's rules (RS256 only,
audience api://AzureADTokenExchange, exact issuer and subject of the federated credential) and
answers in Entra's shapes (AADSTS errors).
"""

from __future__ import annotations

import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.identity._credentials.workload_identity as wi
import pytest
from _clouds import ENTRA_AUDIENCE, EntraAuthority, TokenChecker
from _fed import Cluster, Workload, delete_bound_pod, run_agent, run_cli, start_issuer
from _tls import Pki
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import WorkloadIdentityCredential

from issuer.agent.schedule import MIN_REMAINING_SECONDS, SDK_REREAD_SECONDS

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"


@pytest.fixture(scope="module")
def workload(fed_cluster_module: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return Workload(fed_cluster_module, tmp_path_factory.mktemp("azure"))


@pytest.fixture(scope="module")
def entra(fed_issuer: Any, pki: Pki, hybrid: Any, workload: Workload) -> Iterator[EntraAuthority]:
    checker = TokenChecker(fed_issuer.issuer, str(pki.ca), ("RS256",), hybrid=hybrid)
    e = EntraAuthority(pki, checker, TENANT, CLIENT_ID, subject=workload.sub)
    yield e
    e.close()


@pytest.fixture
def azure(tmp_path: Path, pki: Pki, entra: EntraAuthority, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment cloud-config wrote, applied; returns the token file it names."""
    token_file = tmp_path / "azure-token"
    env_file = tmp_path / "azure.env"
    args = ["--client-id", CLIENT_ID, "--tenant-id", TENANT, "--token-file", str(token_file)]
    r = run_cli("cloud-config", "azure", *args, "--authority-host", entra.url, "-o", str(env_file))
    assert r.returncode == 0, r.stderr
    assert f"--audience {ENTRA_AUDIENCE}" in r.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert set(env) == {
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    return token_file


def credential() -> WorkloadIdentityCredential:
    return WorkloadIdentityCredential(disable_instance_discovery=True)


def scope() -> str:
    """A fresh scope: a token the SDK has not cached yet, so it asks the authority."""
    return f"api://{uuid.uuid4()}/.default"


def test_azure_identity_exchanges_the_agent_token(
    azure: Path, workload: Workload, entra: EntraAuthority
) -> None:
    token = workload.write(azure, ENTRA_AUDIENCE)
    at = credential().get_token(scope())
    assert at.token.startswith("eyJ0eXAiOiJKV1QifQ.stand-in.")
    form = entra.requests[-1]["form"]
    assert form["client_assertion"] == token and form["client_id"] == CLIENT_ID
    assert form["grant_type"] == "client_credentials"


def _refused(text: str) -> None:
    with pytest.raises(ClientAuthenticationError) as e:
        credential().get_token(scope())
    assert text in str(e.value)


def test_wrong_audience_is_refused(azure: Path, workload: Workload) -> None:
    workload.write(azure, "sts.amazonaws.com")
    _refused(
        "AADSTS700212: No matching federated identity record found for presented assertion "
        "audience 'sts.amazonaws.com'"
    )


def test_wrong_subject_is_refused(azure: Path, workload: Workload) -> None:
    workload.write(azure, ENTRA_AUDIENCE, "other")
    _refused(
        "AADSTS700213: No matching federated identity record found for presented assertion "
        f"subject 'system:serviceaccount:{workload.ns}:other'"
    )


def test_expired_token_is_refused(azure: Path, workload: Workload, entra: EntraAuthority) -> None:
    workload.write(azure, ENTRA_AUDIENCE)
    entra.checker.clock_offset = 3601.0
    try:
        _refused("AADSTS700024: Client assertion is not within its valid time range")
    finally:
        entra.checker.clock_offset = 0.0


def test_deleted_pod_is_refused_through_the_hybrid_verifier(
    azure: Path, workload: Workload, hybrid: Any
) -> None:
    delete_bound_pod(
        workload,
        hybrid,
        azure,
        ENTRA_AUDIENCE,
        "azure-pod",
        lambda: credential().get_token(scope()),
    )
    _refused("revoked")


def test_sdk_file_cache_and_the_agents_minimum_remaining_lifetime(
    azure: Path,
    workload: Workload,
    entra: EntraAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """azure-identity re-reads the token file at most every 600 s. After the agent's refresh the
    SDK keeps presenting the replaced token until its 600 s pass — which is why the agent replaces
    a token while it has more than 660 s left — and then sends the new one."""
    offset = 0.0
    # The SDK's own clock (only the token-file cache reads it): advanced by the test.
    monkeypatch.setattr(wi, "time", types.SimpleNamespace(time=lambda: time.time() + offset))
    cred = credential()
    sent: list[str] = []

    def sdk_get_token() -> None:
        cred.get_token(scope())
        sent.append(entra.tokens()[-1])

    # the SDK reads the file 10 s before the agent's refresh at 2880 s
    clock = run_agent(workload, azure, ENTRA_AUDIENCE, {2870: sdk_get_token}, stop=2890)
    t0 = clock.start
    first, new = sent[0], azure.read_text()
    assert new != first
    # Within 600 s of its read the SDK still sends the replaced token; the agent left it more
    # than the SDK's re-read interval to live, so the authority — its clock where the agent's
    # fake clock stopped, plus those seconds — still accepts it.
    assert SDK_REREAD_SECONDS["azure-identity"] < MIN_REMAINING_SECONDS
    offset = SDK_REREAD_SECONDS["azure-identity"] - 10
    entra.checker.clock_offset = (clock.t - t0) + offset
    try:
        sdk_get_token()
        assert sent[-1] == first
        offset = SDK_REREAD_SECONDS["azure-identity"] + 1
        sdk_get_token()
        assert sent[-1] == new
    finally:
        entra.checker.clock_offset = 0.0


def test_es256_issuer_is_refused_and_check_federation_says_why(
    tmp_path: Path, pki: Pki, azure: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entra accepts RS256 only: an issuer signing ES256 is refused by the authority (the SDK
    surfaces AADSTS5002738), and check-federation names the requirement beforehand."""
    factory, proc = start_issuer(tmp_path / "es-issuer", pki, {"key_alg": "ES256"})
    try:
        cluster = Cluster(proc, pki.ca)
        workload = Workload(cluster, tmp_path)
        checker = TokenChecker(proc.issuer, str(pki.ca), ("RS256",))
        entra = EntraAuthority(pki, checker, TENANT, CLIENT_ID, subject=workload.sub)
        try:
            monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra.url)
            workload.write(azure, ENTRA_AUDIENCE)
            _refused("AADSTS5002738: Invalid JWT token. 'ES256' is not a supported signature")
        finally:
            entra.close()
        r = run_cli("check-federation", "--cloud", "azure", "--issuer", proc.issuer,
                    "--ca-bundle", str(pki.ca))  # fmt: skip
    finally:
        factory.close()
    assert r.returncode == 1
    assert "FAIL  signing algorithms accepted: published ES256; not accepted: ES256" in r.stdout
    assert "RS256 algorithm are supported" in r.stdout
