"""The few API calls the reliability tests drive, over httpx against a real issuer."""

from __future__ import annotations

from typing import Any

import httpx

NAMESPACE = "rel"
ACCOUNT = "load"
AUDIENCE = "reliability"


def admin(token: str) -> dict[str, str]:
    """Headers for the admin bearer token."""
    return {"Authorization": f"Bearer {token}"}


def setup_account(client: httpx.Client) -> None:
    """Namespace :data:`NAMESPACE` with ServiceAccount :data:`ACCOUNT` (409s are fine)."""
    r = client.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
    assert r.status_code in (201, 409), r.text
    r = client.post(
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", json={"metadata": {"name": ACCOUNT}}
    )
    assert r.status_code in (201, 409), r.text


def mint(client: httpx.Client, _n: int) -> tuple[int, Any]:
    """A TokenRequest for the load account; the value is the token on 201."""
    r = client.post(
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token",
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [AUDIENCE], "expirationSeconds": 3600},
        },
    )
    return r.status_code, r.json()["status"]["token"] if r.status_code == 201 else None


def reviews(client: httpx.Client, token: str) -> bool:
    """True if the issuer's TokenReview authenticates ``token`` as the load account."""
    r = client.post(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE]},
        },
    )
    assert r.status_code == 201, r.text
    status = r.json()["status"]
    return bool(status.get("authenticated")) and status["user"]["username"] == (
        f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    )


def create_account(client: httpx.Client, n: int) -> tuple[int, Any]:
    """Create ServiceAccount ``sa-N``; the value is its name."""
    name = f"sa-{n}"
    r = client.post(
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", json={"metadata": {"name": name}}
    )
    return r.status_code, name


def account_names(client: httpx.Client) -> set[str]:
    """Names of every ServiceAccount in :data:`NAMESPACE`."""
    r = client.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts")
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["metadata"].get("continue"), "expected one page"
    return {item["metadata"]["name"] for item in body["items"]}
