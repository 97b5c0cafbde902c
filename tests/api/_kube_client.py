"""The official ``kubernetes`` client pointed at a live ``sa-issuer serve`` as its admin."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s


def admin_client(proc: Any) -> k8s.ApiClient:
    """An ApiClient for ``proc`` (an ``issuer_factory`` process) with its admin bearer token."""
    cfg = k8s.Configuration(
        host=proc.url,
        api_key={"authorization": proc.admin_token},
        api_key_prefix={"authorization": "Bearer"},
    )
    return k8s.ApiClient(cfg)
