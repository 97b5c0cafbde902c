"""The conformance suite runs against every backend in ``ALL_BACKENDS`` (tests/conftest.py):
SQLite, Redis, Redis Cluster and Redis through Sentinel. Other suites keep the fast two."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def store_factory(any_store_factory: Any) -> Any:
    """Every backend, including the Cluster and Sentinel topologies (``store`` builds on it)."""
    return any_store_factory
