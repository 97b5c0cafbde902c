"""Credential configuration for the clouds' SDKs, so nobody hand-writes one (pure).

Each function takes the cloud-side identifiers and the path of the token file the agent keeps
fresh, validates them, and returns the text to write:

- AWS (boto3 / every AWS SDK): ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE`` (+ session name)
  as environment lines, or the same as a shared-config profile (``role_arn``,
  ``web_identity_token_file``, ``role_session_name``), the "assume role with web identity"
  provider of the SDKs' credential chain.
- Google Cloud (google-auth and the other client libraries, gcloud): an ``external_account``
  credential configuration with a file-sourced subject token (``credential_source.file``,
  ``format.type`` text), the workload identity provider as ``audience``, Google STS as
  ``token_url`` and, optionally, service-account impersonation.
- Azure (azure-identity ``WorkloadIdentityCredential`` / ``DefaultAzureCredential``):
  ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE``,
  ``AZURE_AUTHORITY_HOST``.

:func:`token_audience` says which ``--audience`` the agent must request for each.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "AZURE_DEFAULT_AUTHORITY",
    "GCP_DEFAULT_TOKEN_URL",
    "ConfigValueError",
    "aws_environment",
    "aws_profile",
    "azure_environment",
    "env_lines",
    "gcp_credential_config",
    "gcp_provider",
    "token_audience",
]

GCP_DEFAULT_TOKEN_URL: Final = "https://sts.googleapis.com/v1/token"  # noqa: S105 (a URL)
AZURE_DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com/"
ENTRA_AUDIENCE: Final = "api://AzureADTokenExchange"
AWS_AUDIENCE: Final = "sts.amazonaws.com"

_ROLE_ARN_RE: Final = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# AWS RoleSessionName: [\w+=,.@-]*, 2-64 characters.
_SESSION_RE: Final = re.compile(r"^[\w+=,.@-]{2,64}$")
_PROFILE_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GCP_ID_RE: Final = re.compile(r"^[a-z0-9-]{4,32}$")
_GCP_PROVIDER_RE: Final = re.compile(
    r"^//iam\.googleapis\.com/projects/(\d+)/locations/global/"
    r"workloadIdentityPools/([a-z0-9-]{4,32})/providers/([a-z0-9-]{4,32})$"
)
_EMAIL_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]*@[a-z0-9.-]+\.[a-z]+$")
_GUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                             r"[0-9a-fA-F]{12}$")  # fmt: skip
_TENANT_RE: Final = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


class ConfigValueError(ValueError):
    """A value the cloud would refuse; the message names the flag and the expected form."""


def _https_url(flag: str, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigValueError(f"{flag} {value!r}: expected an https:// URL")
    return value


def _abs_path(flag: str, value: str) -> str:
    if not value.startswith("/") or "\n" in value or "\x00" in value:
        raise ConfigValueError(f"{flag} {value!r}: expected an absolute path")
    return value


# --- AWS --------------------------------------------------------------------------------------


def _aws_values(role_arn: str, token_file: str, session_name: str | None) -> dict[str, str]:
    if not _ROLE_ARN_RE.match(role_arn):
        raise ConfigValueError(
            f"--role-arn {role_arn!r}: expected arn:aws:iam::ACCOUNT_ID:role/NAME"
        )
    values = {
        "role_arn": role_arn,
        "web_identity_token_file": _abs_path("--token-file", token_file),
    }
    if session_name is not None:
        if not _SESSION_RE.match(session_name):
            raise ConfigValueError(
                f"--session-name {session_name!r}: 2-64 characters of letters, digits and +=,.@_-"
            )
        values["role_session_name"] = session_name
    return values


def aws_environment(
    role_arn: str, token_file: str, session_name: str | None = None, region: str | None = None
) -> dict[str, str]:
    """The environment of the SDKs' web identity credential provider."""
    v = _aws_values(role_arn, token_file, session_name)
    env = {
        "AWS_ROLE_ARN": v["role_arn"],
        "AWS_WEB_IDENTITY_TOKEN_FILE": v["web_identity_token_file"],
    }
    if "role_session_name" in v:
        env["AWS_ROLE_SESSION_NAME"] = v["role_session_name"]
    if region:
        env["AWS_REGION"] = region
    return env


def aws_profile(
    role_arn: str,
    token_file: str,
    session_name: str | None = None,
    region: str | None = None,
    profile: str = "default",
) -> str:
    """A shared-config file section (``~/.aws/config``) for the same provider."""
    if not _PROFILE_RE.match(profile):
        raise ConfigValueError(f"--profile {profile!r}: letters, digits and ._- only")
    v = _aws_values(role_arn, token_file, session_name)
    if region:
        v["region"] = region
    header = "[default]" if profile == "default" else f"[profile {profile}]"
    return header + "\n" + "".join(f"{k} = {val}\n" for k, val in v.items())


# --- Google Cloud -----------------------------------------------------------------------------


def gcp_provider(project_number: str, pool: str, provider: str) -> str:
    """The provider's resource name: the ``audience`` of the credential configuration."""
    if not project_number.isdigit():
        raise ConfigValueError(f"--project-number {project_number!r}: expected digits")
    for flag, value in (("--pool", pool), ("--provider", provider)):
        if not _GCP_ID_RE.match(value):
            raise ConfigValueError(f"{flag} {value!r}: 4-32 characters of a-z, 0-9 and -")
    return (
        f"//iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{pool}/providers/{provider}"
    )


def gcp_credential_config(
    provider: str,
    token_file: str,
    *,
    service_account: str | None = None,
    token_url: str = GCP_DEFAULT_TOKEN_URL,
    impersonation_url: str | None = None,
) -> str:
    """The ``external_account`` JSON (what ``gcloud iam workload-identity-pools
    create-cred-config --credential-source-file`` writes)."""
    if not _GCP_PROVIDER_RE.match(provider):
        raise ConfigValueError(
            f"--provider-name {provider!r}: expected //iam.googleapis.com/projects/NUMBER/"
            "locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
        )
    config: dict[str, object] = {
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": provider,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": _https_url("--token-url", token_url),
        "credential_source": {
            "file": _abs_path("--token-file", token_file),
            "format": {"type": "text"},
        },
    }
    if service_account is not None or impersonation_url is not None:
        if impersonation_url is None:
            assert service_account is not None
            if not _EMAIL_RE.match(service_account):
                raise ConfigValueError(
                    f"--service-account-email {service_account!r}: expected NAME@PROJECT."
                    "iam.gserviceaccount.com"
                )
            impersonation_url = (
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
                f"{service_account}:generateAccessToken"
            )
        config["service_account_impersonation_url"] = _https_url(
            "--impersonation-url", impersonation_url
        )
    return json.dumps(config, indent=2) + "\n"


# --- Azure ------------------------------------------------------------------------------------


def azure_environment(
    client_id: str, tenant_id: str, token_file: str, authority_host: str = AZURE_DEFAULT_AUTHORITY
) -> dict[str, str]:
    """The environment ``WorkloadIdentityCredential`` reads."""
    if not _GUID_RE.match(client_id):
        raise ConfigValueError(f"--client-id {client_id!r}: expected the application's GUID")
    if not (_GUID_RE.match(tenant_id) or _TENANT_RE.match(tenant_id)):
        raise ConfigValueError(f"--tenant-id {tenant_id!r}: expected a GUID or a domain")
    return {
        "AZURE_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": tenant_id,
        "AZURE_FEDERATED_TOKEN_FILE": _abs_path("--token-file", token_file),
        "AZURE_AUTHORITY_HOST": _https_url("--authority-host", authority_host),
    }


# --- rendering --------------------------------------------------------------------------------


def env_lines(env: Mapping[str, str], style: Literal["env", "shell"] = "env") -> str:
    """``KEY=value`` lines (docker --env-file, systemd EnvironmentFile) or ``export`` lines."""
    for key, value in env.items():
        if "\n" in value or "\x00" in value:
            raise ConfigValueError(f"{key}: value has a newline")
    if style == "shell":
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return "".join(f"{k}={v}\n" for k, v in env.items())


def token_audience(cloud: Literal["aws", "gcp", "azure"], provider: str | None = None) -> str:
    """The ``--audience`` the agent must request for ``cloud`` (GCP: the provider's default
    allowed audience, its resource name with the https prefix)."""
    if cloud == "aws":
        return AWS_AUDIENCE
    if cloud == "azure":
        return ENTRA_AUDIENCE
    assert provider is not None
    return "https:" + provider
