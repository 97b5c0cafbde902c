"""``sa-issuer check-federation``: the live check against a REAL issuer, and each cloud's rules
(pure :func:`issuer.agent.federation.evaluate` on observations the live check would make)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _fed import run_cli, serve
from _tls import Pki

from issuer.agent.federation import Fetched, Finding, Observed, evaluate

ISSUER = "https://oidc.example.com/cluster-1"


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def good(**changes: Any) -> Observed:
    """What a well-configured RS256 issuer looks like from outside."""
    discovery = {
        "issuer": ISSUER,
        "jwks_uri": ISSUER + "/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1", "n": "AQAB", "e": "AQAB"}
    obs = Observed(
        ISSUER,
        discovery=Fetched(ISSUER + "/.well-known/openid-configuration", 200, discovery,
                          seconds=0.05),
        jwks=Fetched(ISSUER + "/openid/v1/jwks", 200, {"keys": [key]}, seconds=0.05),
    )  # fmt: skip
    for k, v in changes.items():
        setattr(obs, k, v)
    return obs


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_a_good_issuer_passes_everywhere(cloud: Any) -> None:
    findings = evaluate(cloud, good(audience=None))
    assert [f for f in findings if f.status == "fail"] == []


def test_exact_issuer_match_is_required() -> None:
    obs = good()
    assert obs.discovery is not None and obs.discovery.document is not None
    obs.discovery.document["issuer"] = ISSUER + "/"
    f = by_check(evaluate("aws", obs))["discovery issuer matches exactly"]
    assert f.status == "fail" and "MUST be identical" in f.requirement


def test_algorithms_per_cloud() -> None:
    obs = good()
    assert obs.jwks is not None and obs.jwks.document is not None
    assert obs.discovery is not None and obs.discovery.document is not None
    obs.jwks.document["keys"][0]["alg"] = "ES384"
    obs.discovery.document["id_token_signing_alg_values_supported"] = ["ES384"]
    assert by_check(evaluate("aws", obs))["signing algorithms accepted"].status == "pass"
    gcp = by_check(evaluate("gcp", obs))["signing algorithms accepted"]
    assert gcp.status == "fail" and "Must be RS256 or ES256." in gcp.requirement
    azure = by_check(evaluate("azure", obs))["signing algorithms accepted"]
    assert azure.status == "fail" and "RS256 algorithm are supported" in azure.requirement


def test_gcp_uploaded_jwks_members() -> None:
    obs = good()
    assert obs.jwks is not None and obs.jwks.document is not None
    obs.jwks.document["keys"][0]["x5c"] = ["MII..."]
    f = by_check(evaluate("gcp", obs))["JWK members accepted for an uploaded JWKS"]
    assert f.status == "fail" and "x5c" in f.detail and "include only" in f.requirement


def test_aws_five_second_limit() -> None:
    obs = good()
    assert obs.jwks is not None
    obs.jwks.seconds = 6.2
    f = by_check(evaluate("aws", obs))["JWKS answers within 5 s"]
    assert f.status == "fail" and "took 6.2 s" in f.detail


def test_length_limits() -> None:
    long_sub = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 63
    f = by_check(evaluate("gcp", good(subject=long_sub)))
    assert f["subject at most 127 bytes (google.subject)"].status == "fail"
    assert "Cannot exceed 127 bytes" in f["subject at most 127 bytes (google.subject)"].requirement
    assert (
        by_check(evaluate("azure", good(subject=long_sub)))["subject at most 600 characters"].status
        == "pass"
    )
    aud = "a" * 256
    assert (
        by_check(evaluate("aws", good(audience=aud)))["audience at most 255 characters"].status
        == "fail"
    )
    assert (
        by_check(evaluate("gcp", good(audience=aud)))["audience at most 256 characters"].status
        == "pass"
    )
    long_issuer = "https://oidc.example.com/" + "p" * 240
    f = by_check(evaluate("aws", good(issuer=long_issuer)))["issuer URL at most 255 characters"]
    assert f.status == "fail" and "255" in f.requirement


def test_http_and_query_issuers_are_refused() -> None:
    f = by_check(evaluate("aws", good(issuer="http://oidc.example.com?x=1")))
    assert f["issuer URL is https"].status == "fail"
    assert '"The URL must begin with https://"' in f["issuer URL is https"].requirement
    assert f["issuer URL has no query or fragment"].status == "fail"
    gcp = by_check(evaluate("gcp", good(issuer="http://oidc.example.com")))["issuer URL is https"]
    assert "Must be an HTTPS endpoint." in gcp.requirement


def test_audience_advice() -> None:
    azure = by_check(evaluate("azure", good(audience="sts.amazonaws.com")))
    assert azure["Entra's recommended audience"].status == "warn"
    bad = "https://iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/p/providers/x"
    f = by_check(evaluate("gcp", good(audience=bad)))["audience is the provider's resource name"]
    assert f.status == "fail" and "with or without the HTTPS prefix" in f.requirement


# --- live -------------------------------------------------------------------------------------


def test_live_issuer_passes_with_warnings(fed_issuer: Any, pki: Pki) -> None:
    r = run_cli("check-federation", "--cloud", "aws", "--issuer", fed_issuer.issuer,
                "--audience", "sts.amazonaws.com", "--ca-bundle", str(pki.ca))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "PASS  discovery issuer matches exactly" in out
    assert "PASS  signing algorithms accepted: RS256" in out
    assert "WARN  issuer URL without a port" in out  # the test issuer listens on a high port
    assert '"The URL should not contain a port number."' in out
    assert "WARN  TLS certificate is valid" in out and "--ca-bundle" in out
    assert "OK for AWS" in out


def test_live_untrusted_certificate_fails(fed_issuer: Any) -> None:
    r = run_cli("check-federation", "--cloud", "gcp", "--issuer", fed_issuer.issuer)
    assert r.returncode == 1
    assert "FAIL  TLS certificate is valid" in r.stdout
    assert "fix: serve a certificate from a publicly trusted CA" in r.stdout


def test_live_plain_http_issuer_fails(tmp_path: Path) -> None:
    factory = serve.IssuerFactory(tmp_path)
    try:
        proc = factory.start()
        r = run_cli("check-federation", "--cloud", "azure", "--issuer", proc.issuer,
                    "--subject", "system:serviceaccount:default:app")  # fmt: skip
    finally:
        factory.close()
    assert r.returncode == 1
    assert "FAIL  issuer URL is https" in r.stdout
    assert "PASS  discovery issuer matches exactly" in r.stdout
    assert "PASS  subject at most 600 characters" in r.stdout
    assert "problem(s) to fix before Microsoft Entra ID accepts this issuer" in r.stdout


def test_unreachable_issuer_claims_nothing_about_tls() -> None:
    obs = good()
    obs.discovery = Fetched(ISSUER + "/.well-known/openid-configuration", error="refused")
    obs.jwks = None
    f = by_check(evaluate("aws", obs))
    assert "TLS certificate is valid" not in f
    assert f["discovery document reachable"].status == "fail"
