"""``sa-issuer cloud-config`` and ``sa-issuer check-federation`` (registered by
issuer.agent.cli).

Exit codes: 0 success (check-federation: nothing to fix), 1 error (a bad value, an unwritable
file; check-federation: at least one requirement not met), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from issuer.agent import cloudconfig
from issuer.agent.cloudconfig import ConfigValueError

__all__ = ["register"]

PROG = "sa-issuer"


def register(sub: Any) -> None:
    """Add ``cloud-config`` and ``check-federation`` to ``sa-issuer``'s subparsers."""
    cc = sub.add_parser(
        "cloud-config",
        help="write an SDK credential configuration for a token file the agent keeps fresh",
        description=(
            "Print (or write with --output) what a cloud SDK needs to exchange the agent's token "
            "file for cloud credentials, and the --audience the agent must request."
        ),
    )
    csub = cc.add_subparsers(dest="cloud", metavar="CLOUD", required=True)
    aws = csub.add_parser("aws", help="AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (env/profile)")
    aws.add_argument("--role-arn", required=True, metavar="ARN")
    aws.add_argument("--session-name", metavar="NAME")
    aws.add_argument("--region", metavar="REGION")
    aws.add_argument("--format", choices=["env", "shell", "profile"], default="env")
    aws.add_argument("--profile", default="default", metavar="NAME", help="with --format profile")
    gcp = csub.add_parser("gcp", help="an external_account credential configuration (JSON)")
    prov = gcp.add_mutually_exclusive_group(required=True)
    prov.add_argument(
        "--provider-name",
        metavar="NAME",
        help="//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/"
        "providers/PROVIDER",
    )
    prov.add_argument("--project-number", metavar="N", help="with --pool and --provider")
    gcp.add_argument("--pool", metavar="POOL_ID")
    gcp.add_argument("--provider", metavar="PROVIDER_ID")
    gcp.add_argument(
        "--service-account-email", metavar="EMAIL", help="impersonate this service account"
    )
    gcp.add_argument(
        "--token-url",
        default=cloudconfig.GCP_DEFAULT_TOKEN_URL,
        metavar="URL",
        help="Security Token Service URL (default %(default)s)",
    )
    gcp.add_argument("--impersonation-url", metavar="URL", help=argparse.SUPPRESS)
    az = csub.add_parser("azure", help="the AZURE_* environment of WorkloadIdentityCredential")
    az.add_argument("--client-id", required=True, metavar="GUID")
    az.add_argument("--tenant-id", required=True, metavar="TENANT")
    az.add_argument(
        "--authority-host",
        default=cloudconfig.AZURE_DEFAULT_AUTHORITY,
        metavar="URL",
        help="default %(default)s",
    )
    az.add_argument("--format", choices=["env", "shell"], default="env")
    for p in (aws, gcp, az):
        p.add_argument(
            "--token-file", required=True, metavar="PATH", help="the file the agent writes"
        )
        p.add_argument("--output", "-o", metavar="FILE", type=Path, help="write here (0644)")
        p.set_defaults(func=cmd_cloud_config)

    cf = sub.add_parser(
        "check-federation",
        help="check a live issuer against a cloud's documented federation requirements",
        description=(
            "Fetch ISSUER/.well-known/openid-configuration and the JWKS as the cloud's token "
            "service does and check them against its documented requirements; print what to "
            "fix, quoting the requirement. Exit 0 when nothing must be fixed, 1 otherwise."
        ),
    )
    cf.add_argument("--cloud", required=True, choices=["aws", "gcp", "azure"])
    cf.add_argument("--issuer", metavar="URL", help="default: the configured issuer")
    cf.add_argument("--config", metavar="FILE", help="sa-issuer config file (for the issuer)")
    cf.add_argument("--audience", metavar="AUD", help="the audience tokens will carry")
    cf.add_argument("--subject", metavar="SUB", help="e.g. system:serviceaccount:NS:SA")
    cf.add_argument("--ca-bundle", metavar="F", help="trust this CA (tests; clouds use public CAs)")
    cf.add_argument("--timeout", type=float, default=10.0, metavar="S")
    cf.set_defaults(func=cmd_check_federation)


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 1


def _render(args: argparse.Namespace) -> tuple[str, str]:
    """(the configuration text, the audience hint)."""
    if args.cloud == "aws":
        if args.format == "profile":
            text = cloudconfig.aws_profile(
                args.role_arn, args.token_file, args.session_name, args.region, args.profile
            )
        else:
            env = cloudconfig.aws_environment(
                args.role_arn, args.token_file, args.session_name, args.region
            )
            text = cloudconfig.env_lines(env, args.format)
        return text, cloudconfig.token_audience("aws")
    if args.cloud == "gcp":
        if args.provider_name:
            provider = args.provider_name
        else:
            if not (args.pool and args.provider):
                raise ConfigValueError("--project-number needs --pool and --provider")
            provider = cloudconfig.gcp_provider(args.project_number, args.pool, args.provider)
        text = cloudconfig.gcp_credential_config(
            provider,
            args.token_file,
            service_account=args.service_account_email,
            token_url=args.token_url,
            impersonation_url=args.impersonation_url,
        )
        return text, cloudconfig.token_audience("gcp", provider)
    env = cloudconfig.azure_environment(
        args.client_id, args.tenant_id, args.token_file, args.authority_host
    )
    return cloudconfig.env_lines(env, args.format), cloudconfig.token_audience("azure")


def cmd_cloud_config(args: argparse.Namespace) -> int:
    """``sa-issuer cloud-config aws|gcp|azure``."""
    from issuer.agent.writer import write_atomic

    try:
        text, audience = _render(args)
    except ConfigValueError as e:
        return _error(str(e))
    hint = (
        f"{PROG}: the agent must write {args.token_file} with --audience {audience} "
        f"(sa-issuer agent ... --audience {audience} --path {args.token_file})"
    )
    if args.output is None:
        sys.stdout.write(text)
    else:
        out = Path(os.path.abspath(args.output))
        try:
            write_atomic(out, text.encode(), mode=0o644)
        except OSError as e:
            return _error(f"cannot write {args.output}: {e.strerror or e}")
        print(f"{PROG}: wrote {out}", file=sys.stderr)
    print(hint, file=sys.stderr)
    return 0


def cmd_check_federation(args: argparse.Namespace) -> int:
    """``sa-issuer check-federation``."""
    from issuer.agent.federation import evaluate, observe, render

    issuer = args.issuer
    if issuer is None:
        from issuer.config import ConfigError, load_config

        try:
            issuer = load_config({"config": args.config}, os.environ, None).issuer
        except ConfigError as e:
            return _error(f"invalid configuration: {e}")
    if args.ca_bundle is not None and not os.path.isfile(args.ca_bundle):
        return _error(f"--ca-bundle {args.ca_bundle}: no such file")
    obs = observe(
        issuer,
        audience=args.audience,
        subject=args.subject,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
    )
    findings = evaluate(args.cloud, obs)
    print(render(args.cloud, obs, findings))
    return 1 if any(f.status == "fail" for f in findings) else 0
