"""Fixtures of tests/federation/, defined in :mod:`_fed` (see its docstring)."""

from _fed import fed_cluster, fed_cluster_module, fed_issuer, hybrid, pki  # noqa: F401
