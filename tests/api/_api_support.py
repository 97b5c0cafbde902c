"""Helpers for the identity API tests: :class:`Api` (the real app in-process + helpers), a
steerable clock, JWT peeking. Fixtures live in conftest.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from issuer.config import load_config
from issuer.context import IssuerContext


class Clock:
    """Real time plus an adjustable offset (seconds)."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset


def b64json(segment: str) -> dict[str, Any]:
    """Decode one base64url JWT segment to JSON."""
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWT, unverified (tests only)."""
    h, p, _ = token.split(".")
    return b64json(h), b64json(p)


class Api:
    """A TestClient on the real app plus helpers (all requests carry the admin token)."""

    def __init__(self, client: TestClient, ctx: IssuerContext, clock: Clock) -> None:
        self.client = client
        self.ctx = ctx
        self.clock = clock
        self.headers = {"Authorization": f"Bearer {ctx.admin_tokens[0]}"}

    # --- raw ----------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.get(path, headers=headers, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is not None:
            kw["json"] = body
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, **kw)

    def delete(self, path: str) -> httpx.Response:
        return self.client.delete(path, headers=self.headers)

    # --- objects ------------------------------------------------------------------------------
    def ok(self, r: httpx.Response, code: int = 201) -> dict[str, Any]:
        assert r.status_code == code, r.text
        return r.json()  # type: ignore[no-any-return]

    def ns(self, name: str) -> dict[str, Any]:
        return self.ok(self.post("/api/v1/namespaces", {"metadata": {"name": name}}))

    def sa(self, ns: str, name: str, **fields: Any) -> dict[str, Any]:
        body = {"metadata": {"name": name}, **fields}
        return self.ok(self.post(f"/api/v1/namespaces/{ns}/serviceaccounts", body))

    def pod(
        self, ns: str, name: str, sa: str | None = None, node: str | None = None, **spec: Any
    ) -> dict[str, Any]:
        spec = {"containers": [{"name": "app", "image": "busybox"}], **spec}
        if sa is not None:
            spec["serviceAccountName"] = sa
        if node is not None:
            spec["nodeName"] = node
        return self.ok(
            self.post(f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": name}, "spec": spec})
        )

    def secret(self, ns: str, name: str, **fields: Any) -> dict[str, Any]:
        body = {"metadata": {"name": name}, **fields}
        return self.ok(self.post(f"/api/v1/namespaces/{ns}/secrets", body))

    def legacy_secret(self, ns: str, name: str, sa: str) -> dict[str, Any]:
        return self.secret(
            ns,
            name,
            type="kubernetes.io/service-account-token",
            metadata={"name": name, "annotations": {"kubernetes.io/service-account.name": sa}},
        )

    def node(self, name: str) -> dict[str, Any]:
        return self.ok(self.post("/api/v1/nodes", {"metadata": {"name": name}}))

    def uid(self, obj: dict[str, Any]) -> str:
        return str(obj["metadata"]["uid"])

    # --- tokens -------------------------------------------------------------------------------
    def token_request(self, ns: str, sa: str, **spec: Any) -> httpx.Response:
        return self.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", {"spec": spec})

    def token(self, ns: str, sa: str, **spec: Any) -> str:
        return str(self.ok(self.token_request(ns, sa, **spec))["status"]["token"])

    def review_response(self, token: str, audiences: list[str] | None = None) -> httpx.Response:
        spec: dict[str, Any] = {"token": token}
        if audiences is not None:
            spec["audiences"] = audiences
        return self.post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        )

    def review(self, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
        return self.ok(self.review_response(token, audiences))["status"]  # type: ignore[no-any-return]

    # --- store snapshot -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, list[tuple[str, str, str | None]]]:
        """Every stored object by kind, as (namespace, name, uid) — to assert 'nothing changed'."""
        out = {}
        for kind in ("Namespace", "ServiceAccount", "Pod", "Secret", "Node"):
            out[kind] = sorted(
                (
                    o["metadata"].get("namespace", ""),
                    o["metadata"]["name"],
                    o["metadata"].get("uid"),
                )
                for o in self.ctx.store.list_objects(kind, None)
            )
        return out


ApiFactory = Callable[..., Api]


def config_for(tmp_path: Path, store_url: str, **overrides: Any) -> Any:
    """A Config with a tmp data dir, ES256 keys (fast) and ``overrides``."""
    flags: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "store": store_url,
        "key_alg": "ES256",
        "audit_log": str(tmp_path / "audit.log"),
    }
    flags.update(overrides)
    return load_config(flags, {})
