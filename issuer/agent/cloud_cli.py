"""``sa-issuer cloud-config`` and ``sa-issuer check-federation`` (registered by
issuer.agent.cli)."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``cloud-config`` and ``check-federation`` to ``sa-issuer``'s subparsers."""
