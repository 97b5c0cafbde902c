"""A rotating verifier credential against a live issuer: after a 401, TokenReviewVerifier and the
hybrid's stream re-read their BearerTokenFile at once instead of waiting out the refresh period."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from verifier import BearerTokenFile, HybridVerifier, TokenReviewVerifier, VerifierUnavailable

from ._helpers import wait_until
from .conftest import IssuerFactory

AUD = "cred-audience"


def _setup(url: str, admin: str) -> str:
    """A namespace, service account and pod-bound token to review; returns the token."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": "cred"}}).status_code == 201
        r = c.post(
            "/api/v1/namespaces/cred/serviceaccounts/default/token",
            json={"spec": {"audiences": [AUD]}},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["status"]["token"])


def test_token_review_rereads_a_rotated_credential_after_401(
    issuer_factory: IssuerFactory, tmp_path: Path
) -> None:
    p = issuer_factory.start()
    token = _setup(p.url, p.admin_token)
    cred = tmp_path / "credential"
    cred.write_text("not-the-admin-token\n")
    file = BearerTokenFile(cred, refresh=3600)
    v = TokenReviewVerifier(p.url, file, [AUD], insecure_allow_http=True)
    try:
        with pytest.raises(VerifierUnavailable, match="401"):
            v.verify(token)
        cred.write_text(p.admin_token + "\n")  # the credential is rotated on disk
        assert v.verify(token).namespace == "cred"  # re-read at once despite refresh=3600
        assert file.reads == 2
    finally:
        v.close()


def test_hybrid_stream_and_review_share_the_rotating_credential(
    issuer_factory: IssuerFactory, tmp_path: Path
) -> None:
    p = issuer_factory.start()
    token = _setup(p.url, p.admin_token)
    cred = tmp_path / "credential"
    cred.write_text("stale-credential\n")
    file = BearerTokenFile(cred, refresh=3600)
    h = HybridVerifier(p.issuer, [AUD], bearer_token=file, insecure_allow_http=True)
    try:
        # The stream's first request is refused (401), which invalidates the credential ...
        assert wait_until(lambda: h.follower.reconnects >= 1, 10)
        assert not h.wait_synced(0.2)
        cred.write_text(p.admin_token + "\n")
        # ... so its reconnect reads the rotated file and syncs, with no 3600 s wait.
        assert h.wait_synced(10)
        assert h.verify(token).namespace == "cred"
    finally:
        h.close()
