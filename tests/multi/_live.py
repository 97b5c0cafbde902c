"""Two live ``sa-issuer serve`` clusters (TLS) plus a foreign issuer, and their configuration.

Shared by test_live_issuers.py and test_frameworks.py: :func:`start_clusters` starts both issuers
with one self-signed certificate, creates a service account in each through the real API and
returns a :class:`Clusters` that mints tokens by TokenRequest and writes the
AuthenticationConfiguration naming both.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUDIENCE = "https://orders.internal"
OTHER_AUDIENCE = "https://billing.internal"


@dataclass
class Clusters:
    """Issuers ``a`` and ``b`` (IssuerProcess), the foreign JWKS server, the CA PEM."""

    a: Any
    b: Any
    foreign: Any
    foreign_key: Any
    ca_pem: str

    def mint(self, which: str, ns: str = "shop", sa: str = "orders", **spec: Any) -> str:
        """A service-account token from cluster ``which`` by TokenRequest (real API call)."""
        s = self.a if which == "a" else self.b
        spec.setdefault("audiences", [AUDIENCE])
        headers = {"Authorization": f"Bearer {s.admin_token}"}
        with s.client(headers=headers) as c:
            r = c.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", json={"spec": spec})
            assert r.status_code == 201, r.text
            return str(r.json()["status"]["token"])

    def config_text(self, *, with_b: bool = True) -> str:
        """The AuthenticationConfiguration trusting ``a`` (and ``b``), not the foreign issuer."""
        ca = textwrap.indent(self.ca_pem.rstrip(), " " * 6)
        text = f"""\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {self.a.issuer}
    certificateAuthority: |
{ca}
    audiences: ["{AUDIENCE}", "{OTHER_AUDIENCE}"]
    audienceMatchPolicy: MatchAny
  claimMappings:
    username:
      expression: '"cluster-a:" + claims.sub'
    groups:
      expression: '["cluster-a", "cluster-a:" + claims["kubernetes.io"].namespace]'
    uid:
      expression: 'claims["kubernetes.io"].serviceaccount.uid'
    extra:
    - key: example.com/cluster
      valueExpression: '"a"'
  userValidationRules:
  - expression: "!user.username.startsWith('system:')"
    message: 'username cannot use the reserved system: prefix'
"""
        if with_b:
            text += f"""\
- issuer:
    url: {self.b.issuer}
    certificateAuthority: |
{ca}
    audiences: ["{AUDIENCE}"]
  claimValidationRules:
  - expression: 'claims["kubernetes.io"].namespace != "kube-system"'
    message: kube-system tokens are not accepted from cluster b
  claimMappings:
    username:
      claim: sub
      prefix: "cluster-b:"
    uid:
      claim: jti
"""
        return text


def create_sa(s: Any, ns: str, name: str) -> None:
    """Namespace (if new) and service account through the issuer's API."""
    headers = {"Authorization": f"Bearer {s.admin_token}"}
    with s.client(headers=headers) as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
        assert r.status_code in (201, 409), r.text
        r = c.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text


def start_clusters(issuer_factory: Any, jwks: Any, tls: tuple[Path, Path]) -> Clusters:
    """Start both issuers and the foreign one; create shop/orders in a and b, kube-system/x in b."""
    a = issuer_factory.start(tls=tls)
    b = issuer_factory.start(tls=tls)
    for s in (a, b):
        create_sa(s, "shop", "orders")
    create_sa(b, "kube-system", "x")
    foreign = jwks.JWKSServer(tls=tls).start()
    key = jwks.ec_key(3)
    foreign.keys = [key]
    return Clusters(a, b, foreign, key, tls[0].read_text())


def foreign_token(c: Clusters, jwks: Any, *, iss: str | None = None) -> str:
    """A well-formed service-account token from the foreign issuer (or claiming ``iss``)."""
    claims = jwks.claims_for(iss or c.foreign.issuer, audiences=[AUDIENCE], namespace="shop")
    return str(jwks.sign_token(c.foreign_key, claims))
