"""Each cloud's documented requirements on an OIDC issuer, checked from the outside.

:func:`observe` fetches what a cloud's token service fetches (``ISSUER/.well-known/openid-
configuration`` over verified TLS, then its ``jwks_uri``) and times it; :func:`evaluate` (pure)
holds the observation against one cloud's rules and returns :class:`Finding` s, each quoting the
cloud's own wording of the requirement and saying what to fix. ``sa-issuer check-federation``
prints them (:func:`render`).

Sources of the quoted requirements (public documentation):

- AWS: IAM API ``CreateOpenIDConnectProvider`` (``Url``: "The URL must begin with https:// ...
  Per the OIDC standard, path components are allowed but query parameters are not", length
  1-255; ``ClientIDList``: "accepts client IDs up to 255 characters long"); STS web identity
  federation accepts RS256/384/512 and ES256/384/512 and gives up on an issuer whose discovery or
  JWKS takes over 5 s.
- Google Cloud: IAM API ``WorkloadIdentityPoolProvider.oidc`` (``issuerUri`` "Must be an HTTPS
  endpoint"; ``allowedAudiences`` "Each audience may be at most 256 characters", default: the
  provider's canonical resource name "with or without the HTTPS prefix"; ``jwksJson`` "Currently,
  RSA and EC asymmetric keys are supported ... include only the following fields"),
  ``attributeMapping`` ("google.subject ... Cannot exceed 127 bytes"), STS ``subjectToken`` ("alg
  ... Must be RS256 or ES256"; the issuer "must provide a discovery document at the URL
  <iss>/.well-known/openid-configuration").
- Microsoft Entra: "Important considerations and restrictions for federated identity credentials"
  (issuer, subject and audience "character limit of 600 characters"; audiences "can only accept a
  single value", recommended "api://AzureADTokenExchange"; "Only issuers that provide tokens signed
  using the RS256 algorithm are supported").
- OpenID Connect Discovery 1.0 §3 (required metadata) and §4.3 (the returned issuer "MUST be
  identical to the Issuer URL that was used as the prefix to /.well-known/openid-configuration").
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx
import orjson

__all__ = [
    "CLOUDS",
    "Finding",
    "Observed",
    "evaluate",
    "observe",
    "render",
]

Cloud = Literal["aws", "gcp", "azure"]
CLOUDS: Final[tuple[Cloud, ...]] = ("aws", "gcp", "azure")
_NAMES: Final = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Microsoft Entra ID"}

#: Algorithms each cloud accepts for the token's signature.
ALGORITHMS: Final[dict[Cloud, frozenset[str]]] = {
    "aws": frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}),
    "gcp": frozenset({"RS256", "ES256"}),
    "azure": frozenset({"RS256"}),
}
_ALG_WORDING: Final[dict[Cloud, str]] = {
    "aws": "AWS STS verifies web identity tokens signed with RS256, RS384, RS512, ES256, ES384 "
    "or ES512",
    "gcp": 'Google STS, subject token header "alg": "Must be RS256 or ES256."',
    "azure": '"Only issuers that provide tokens signed using the RS256 algorithm are supported '
    'for token exchange using workload identity federation."',
}
#: GCP jwksJson: "include only the following fields".
GCP_JWK_MEMBERS: Final = frozenset({"kty", "alg", "use", "kid", "n", "e", "x", "y", "crv"})
#: Longest issuer URL / audience / subject each cloud takes (None: no documented limit).
ISSUER_LIMIT: Final[dict[Cloud, int | None]] = {"aws": 255, "gcp": None, "azure": 600}
AUDIENCE_LIMIT: Final[dict[Cloud, int]] = {"aws": 255, "gcp": 256, "azure": 600}
ENTRA_AUDIENCE: Final = "api://AzureADTokenExchange"
#: AWS gives up on discovery or JWKS slower than this (seconds).
AWS_FETCH_LIMIT: Final = 5.0
#: OIDC Discovery 1.0 §3: REQUIRED provider metadata.
REQUIRED_DISCOVERY: Final = (
    "issuer",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)
_GCP_PROVIDER_RE: Final = re.compile(
    r"^(https:)?//iam\.googleapis\.com/projects/\d+/locations/global/"
    r"workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$"
)
MAX_DOCUMENT_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One requirement held against the issuer: ``status`` pass / warn / fail."""

    status: Literal["pass", "warn", "fail"]
    check: str
    detail: str
    requirement: str = ""
    fix: str = ""


@dataclass
class Fetched:
    """One GET: the status, the parsed JSON object (if any), an error, and how long it took."""

    url: str
    status: int | None = None
    document: dict[str, Any] | None = None
    content_type: str = ""
    error: str = ""
    tls_error: str = ""
    seconds: float = 0.0


@dataclass
class Observed:
    """What :func:`observe` saw (input of the pure :func:`evaluate`)."""

    issuer: str
    audience: str | None = None
    subject: str | None = None
    custom_ca: bool = False
    discovery: Fetched | None = None
    jwks: Fetched | None = None
    notes: list[str] = field(default_factory=list)


# --- I/O --------------------------------------------------------------------------------------


def _get(client: httpx.Client, url: str, clock: Callable[[], float]) -> Fetched:
    out = Fetched(url)
    start = clock()
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as r:
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    out.error = f"the answer exceeds {MAX_DOCUMENT_BYTES} bytes"
                    break
            out.status = r.status_code
            out.content_type = r.headers.get("content-type", "")
    except httpx.HTTPError as e:
        text = str(e) or type(e).__name__
        cause = e.__cause__ or e.__context__
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            out.tls_error = text
        else:
            out.error = text
        out.seconds = clock() - start
        return out
    out.seconds = clock() - start
    if out.error:
        return out
    if out.status != 200:
        out.error = f"answered HTTP {out.status}"
        return out
    try:
        doc = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        out.error = "the answer is not JSON"
        return out
    if not isinstance(doc, dict):
        out.error = "the answer is not a JSON object"
        return out
    out.document = doc
    return out


def observe(
    issuer: str,
    *,
    audience: str | None = None,
    subject: str | None = None,
    ca_bundle: str | None = None,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> Observed:
    """Fetch discovery and JWKS as a cloud would (verified TLS, no redirects, size caps)."""
    obs = Observed(issuer, audience, subject, custom_ca=ca_bundle is not None)
    verify: ssl.SSLContext | bool = True
    if ca_bundle is not None:
        verify = ssl.create_default_context(cafile=ca_bundle)
    if urllib.parse.urlsplit(issuer).scheme not in ("https", "http"):
        return obs
    with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as client:
        obs.discovery = _get(
            client, issuer.rstrip("/") + "/.well-known/openid-configuration", clock
        )
        doc = obs.discovery.document
        jwks_uri = doc.get("jwks_uri") if doc else None
        if isinstance(jwks_uri, str) and jwks_uri.startswith(("https://", "http://")):
            obs.jwks = _get(client, jwks_uri, clock)
    return obs


# --- rules (pure) -----------------------------------------------------------------------------


def _issuer_url(cloud: Cloud, obs: Observed) -> list[Finding]:
    out: list[Finding] = []
    parts = urllib.parse.urlsplit(obs.issuer)
    https_wording = {
        "aws": 'IAM OIDC provider URL: "The URL must begin with https://"',
        "gcp": 'Workload identity pool provider issuerUri: "Must be an HTTPS endpoint."',
        "azure": "Entra fetches the issuer's discovery document and keys over HTTPS",
    }[cloud]
    if parts.scheme == "https":
        out.append(Finding("pass", "issuer URL is https", obs.issuer))
    else:
        out.append(
            Finding(
                "fail",
                "issuer URL is https",
                f"{obs.issuer} uses {parts.scheme or 'no scheme'}",
                https_wording,
                "serve the issuer over https with a publicly trusted certificate (or host "
                "`sa-issuer export` output in a bucket / static site with https) and set --issuer "
                "to that https URL",
            )
        )
    if parts.query or parts.fragment:
        out.append(
            Finding(
                "fail",
                "issuer URL has no query or fragment",
                obs.issuer,
                'IAM OIDC provider URL: "Per the OIDC standard, path components are allowed but '
                'query parameters are not."',
                "drop the query/fragment from --issuer",
            )
        )
    limit = ISSUER_LIMIT[cloud]
    if limit is not None:
        wording = {
            "aws": "IAM CreateOpenIDConnectProvider Url: maximum length of 255",
            "azure": 'federated identity credential issuer: "This field has a character limit of '
            '600 characters."',
        }.get(cloud, "")
        status: Literal["pass", "fail"] = "pass" if len(obs.issuer) <= limit else "fail"
        out.append(
            Finding(
                status,
                f"issuer URL at most {limit} characters",
                f"{len(obs.issuer)} characters",
                wording if status == "fail" else "",
                "use a shorter issuer URL" if status == "fail" else "",
            )
        )
    if cloud == "aws" and parts.port is not None and parts.port != 443:
        out.append(
            Finding(
                "warn",
                "issuer URL without a port",
                f"port {parts.port}",
                'IAM OIDC provider URL: "The URL should not contain a port number."',
                "serve the issuer on port 443 (a load balancer or bucket in front)",
            )
        )
    return out


def _discovery(cloud: Cloud, obs: Observed) -> list[Finding]:
    d = obs.discovery
    wording = (
        'Google STS: the issuer "must provide a discovery document at the URL '
        '<iss>/.well-known/openid-configuration"'
        if cloud == "gcp"
        else "OpenID Connect Discovery 1.0 §4: the provider configuration is read from "
        "ISSUER/.well-known/openid-configuration"
    )
    if d is None:
        return [Finding("fail", "discovery document reachable", "not fetched", wording)]
    if d.tls_error:
        return [
            Finding(
                "fail",
                "TLS certificate is valid",
                f"{d.url}: {d.tls_error}",
                f"{_NAMES[cloud]} verifies the issuer's certificate against public certificate "
                "authorities",
                "serve a certificate from a publicly trusted CA that covers the issuer's host "
                "name, with its full chain",
            )
        ]
    out: list[Finding] = []
    if d.url.startswith("https://") and d.status is not None:  # a TLS session was made
        note = " (against --ca-bundle: the cloud uses public CAs)" if obs.custom_ca else ""
        tls_status: Literal["pass", "warn"] = "warn" if obs.custom_ca else "pass"
        out.append(Finding(tls_status, "TLS certificate is valid", d.url + note))
    if d.document is None:
        out.append(
            Finding(
                "fail",
                "discovery document reachable",
                f"{d.url}: {d.error}",
                wording,
                "serve discovery at ISSUER/.well-known/openid-configuration (sa-issuer serve "
                "does; for a bucket, upload `sa-issuer export DIR` output)",
            )
        )
        return out
    out.append(Finding("pass", "discovery document reachable", f"{d.url} ({d.seconds:.2f} s)"))
    doc = d.document
    missing = [k for k in REQUIRED_DISCOVERY if k not in doc]
    out.append(
        Finding(
            "fail" if missing else "pass",
            "discovery has the required fields",
            f"missing: {', '.join(missing)}" if missing else ", ".join(REQUIRED_DISCOVERY),
            "OpenID Connect Discovery 1.0 §3 lists them as REQUIRED" if missing else "",
            "regenerate discovery with `sa-issuer export`" if missing else "",
        )
    )
    if doc.get("issuer") == obs.issuer:
        out.append(Finding("pass", "discovery issuer matches exactly", obs.issuer))
    else:
        out.append(
            Finding(
                "fail",
                "discovery issuer matches exactly",
                f"discovery says {doc.get('issuer')!r}, fetched from {obs.issuer!r}",
                'OpenID Connect Discovery 1.0 §4.3: the issuer "MUST be identical to the Issuer '
                'URL that was used as the prefix to /.well-known/openid-configuration"',
                "give sa-issuer --issuer exactly the URL the cloud is configured with (scheme, "
                "host, port, path, trailing slash), and re-export",
            )
        )
    jwks_uri = doc.get("jwks_uri")
    if not (isinstance(jwks_uri, str) and jwks_uri.startswith("https://")):
        out.append(
            Finding(
                "fail",
                "jwks_uri is https",
                repr(jwks_uri),
                f"{_NAMES[cloud]} fetches the keys from jwks_uri over HTTPS",
                "serve the JWKS over https (jwks_uri follows --issuer)",
            )
        )
    if cloud == "aws" and d.seconds > AWS_FETCH_LIMIT:
        out.append(_slow("discovery", d.seconds))
    return out


def _slow(what: str, seconds: float) -> Finding:
    return Finding(
        "fail",
        f"{what} answers within {AWS_FETCH_LIMIT:.0f} s",
        f"took {seconds:.1f} s",
        "AWS STS gives up on an identity provider whose discovery or JWKS takes over 5 s "
        "(IDPCommunicationError)",
        "serve the documents from a static host or CDN close to AWS (e.g. `sa-issuer export` to "
        "S3), or fix what slows the issuer",
    )


def _jwks(cloud: Cloud, obs: Observed) -> list[Finding]:
    j = obs.jwks
    if obs.discovery is None or obs.discovery.document is None:
        return []
    if j is None:
        return [Finding("fail", "JWKS reachable", "jwks_uri missing or not a URL")]
    if j.document is None:
        return [
            Finding(
                "fail",
                "JWKS reachable",
                f"{j.url}: {j.tls_error or j.error}",
                f"{_NAMES[cloud]} verifies signatures with the keys at jwks_uri",
                "serve the JWKS at jwks_uri (sa-issuer serve: /openid/v1/jwks)",
            )
        ]
    out = [Finding("pass", "JWKS reachable", f"{j.url} ({j.seconds:.2f} s)")]
    if cloud == "aws" and j.seconds > AWS_FETCH_LIMIT:
        out.append(_slow("JWKS", j.seconds))
    keys = j.document.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        out.append(Finding("fail", "JWKS holds keys", "no usable 'keys' array", "RFC 7517 §5"))
        return out
    algs = {str(k.get("alg", "")) for k in keys}
    advertised = obs.discovery.document.get("id_token_signing_alg_values_supported")
    if isinstance(advertised, list):
        algs |= {str(a) for a in advertised}
    allowed = ALGORITHMS[cloud]
    refused = sorted(algs - allowed)
    if not refused:
        out.append(Finding("pass", "signing algorithms accepted", ", ".join(sorted(algs))))
    else:
        status: Literal["warn", "fail"] = "warn" if algs & allowed else "fail"
        out.append(
            Finding(
                status,
                "signing algorithms accepted",
                f"published {', '.join(sorted(algs))}; not accepted: {', '.join(refused)}",
                _ALG_WORDING[cloud],
                "sign with RS256 (sa-issuer's default key type); rotate keys after changing "
                "the key type",
            )
        )
    no_kid = [i for i, k in enumerate(keys) if not isinstance(k.get("kid"), str) or not k["kid"]]
    if no_kid:
        why = "tokens name their key by kid; the cloud selects the key by it"
        out.append(Finding("fail", "every key has a kid", f"keys without kid: {no_kid}", why))
    if cloud == "gcp":
        extra = sorted({m for k in keys for m in k} - GCP_JWK_MEMBERS)
        bad_kty = sorted({str(k.get("kty")) for k in keys} - {"RSA", "EC"})
        if extra or bad_kty:
            out.append(
                Finding(
                    "fail",
                    "JWK members accepted for an uploaded JWKS",
                    f"extra members: {extra}; key types: {bad_kty}",
                    'WorkloadIdentityPoolProvider oidc.jwksJson: "Currently, RSA and EC asymmetric '
                    "keys are supported. The JWK must use following format and include only the "
                    'following fields: kty, alg, use, kid, n, e, x, y, crv"',
                    "upload the JWKS exactly as `sa-issuer export` writes it",
                )
            )
        else:
            members = ", ".join(sorted({m for k in keys for m in k}))
            out.append(Finding("pass", "JWK members accepted for an uploaded JWKS", members))
    return out


def _audience(cloud: Cloud, obs: Observed) -> list[Finding]:
    aud = obs.audience
    if aud is None:
        hint = {
            "aws": "sts.amazonaws.com",
            "gcp": "https://iam.googleapis.com/projects/N/locations/global/"
            "workloadIdentityPools/POOL/providers/PROVIDER",
            "azure": ENTRA_AUDIENCE,
        }[cloud]
        return [Finding("warn", "audience checked", f"no --audience given (usual: {hint})")]
    out: list[Finding] = []
    limit = AUDIENCE_LIMIT[cloud]
    wording = {
        "aws": 'IAM OIDC provider ClientIDList: "accepts client IDs up to 255 characters long"',
        "gcp": 'oidc.allowedAudiences: "Each audience may be at most 256 characters."',
        "azure": 'federated identity credential audiences: "has a limit of 600 characters"',
    }[cloud]
    if len(aud) > limit:
        too_long = f"{len(aud)} characters"
        check = f"audience at most {limit} characters"
        out.append(Finding("fail", check, too_long, wording, "use a shorter audience"))
    else:
        out.append(Finding("pass", f"audience at most {limit} characters", aud))
    if cloud == "azure" and aud != ENTRA_AUDIENCE:
        out.append(
            Finding(
                "warn",
                "Entra's recommended audience",
                aud,
                "federated identity credential audiences: the recommended value is "
                f'"{ENTRA_AUDIENCE}" and the field "can only accept a single value"',
                f"request tokens with --audience {ENTRA_AUDIENCE}",
            )
        )
    if cloud == "gcp" and "iam.googleapis.com" in aud and not _GCP_PROVIDER_RE.match(aud):
        out.append(
            Finding(
                "fail",
                "audience is the provider's resource name",
                aud,
                'oidc.allowedAudiences (empty): the token audience "must be equal to the full '
                "canonical resource name of the WorkloadIdentityPoolProvider, with or without the "
                'HTTPS prefix"',
                "use https://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/"
                "workloadIdentityPools/POOL_ID/providers/PROVIDER_ID",
            )
        )
    return out


def _subject(cloud: Cloud, obs: Observed) -> list[Finding]:
    sub = obs.subject
    if sub is None:
        return []
    if cloud == "gcp":
        size = len(sub.encode())
        if size > 127:
            return [
                Finding(
                    "fail",
                    "subject at most 127 bytes (google.subject)",
                    f"{size} bytes",
                    'attributeMapping: "google.subject ... Cannot exceed 127 bytes."',
                    "use shorter namespace / service-account names, or map google.subject from "
                    "a shorter expression (e.g. the kubernetes.io serviceaccount uid)",
                )
            ]
        return [Finding("pass", "subject at most 127 bytes (google.subject)", sub)]
    if cloud == "azure":
        if len(sub) > 600:
            return [
                Finding(
                    "fail",
                    "subject at most 600 characters",
                    f"{len(sub)} characters",
                    'federated identity credential subject: "This field has a character limit '
                    'of 600 characters."',
                    "use shorter namespace / service-account names",
                )
            ]
        return [Finding("pass", "subject at most 600 characters", sub)]
    return [Finding("pass", "subject (trust policy condition key ISSUER:sub)", sub)]


def evaluate(cloud: Cloud, obs: Observed) -> list[Finding]:
    """Every finding for ``cloud`` (pure)."""
    return [
        *_issuer_url(cloud, obs),
        *_discovery(cloud, obs),
        *_jwks(cloud, obs),
        *_audience(cloud, obs),
        *_subject(cloud, obs),
    ]


def render(cloud: Cloud, obs: Observed, findings: list[Finding]) -> str:
    """Human-readable report: one line per check, the requirement and fix under each problem."""
    lines = [f"check-federation: {_NAMES[cloud]} \u2014 issuer {obs.issuer}"]
    for f in findings:
        lines.append(f"  {f.status.upper():4}  {f.check}: {f.detail}")
        if f.status != "pass" and f.requirement:
            lines.append(f"        requirement: {f.requirement}")
        if f.status != "pass" and f.fix:
            lines.append(f"        fix: {f.fix}")
    fails = sum(f.status == "fail" for f in findings)
    warns = sum(f.status == "warn" for f in findings)
    if fails:
        lines.append(f"{fails} problem(s) to fix before {_NAMES[cloud]} accepts this issuer.")
    else:
        lines.append(f"OK for {_NAMES[cloud]} ({warns} warning(s)).")
    return "\n".join(lines)
