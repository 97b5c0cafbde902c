"""``Resource``: one entry of Kubernetes' API discovery (kube: metav1.APIResource). Pure.

Shared by the legacy discovery documents (:mod:`issuer.api.discovery`, which holds the table of
served resources), the aggregated ones (:mod:`issuer.api.aggregated`) and OpenAPI
(:mod:`issuer.api.openapi`), so it sits below all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Resource"]


@dataclass(frozen=True, slots=True)
class Resource:
    """kube: metav1.APIResource (the fields sa-oidc fills)."""

    name: str
    singular_name: str
    namespaced: bool
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "singularName": self.singular_name,
            "namespaced": self.namespaced,
        }
        if self.group:
            out["group"] = self.group
        if self.version:
            out["version"] = self.version
        out["kind"] = self.kind
        out["verbs"] = sorted(self.verbs)
        if self.short_names:
            out["shortNames"] = list(self.short_names)
        if self.categories:
            out["categories"] = list(self.categories)
        return out
