"""Kubernetes-compatible identity API (objects, TokenRequest, TokenReview, invalidations).

``routes()`` returns the Starlette routes the app mounts. Placeholder until the API lands.
"""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    """The authenticated API routes (``/api/v1/...``, ``/apis/...``)."""
    return []
