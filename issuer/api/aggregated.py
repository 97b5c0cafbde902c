"""Aggregated discovery (``apidiscovery.k8s.io``): ``/api`` and ``/apis`` as one document each.

client-go (kubectl 1.30+) asks ``/api`` and ``/apis`` with ``Accept: application/json;
g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...;v=v2beta1...,application/json`` and, when
the answer's Content-Type says ``as=APIGroupDiscoveryList``, reads every group, version and
resource from it instead of one request per group-version (kube: apiserver
pkg/endpoints/discovery/aggregated; types: k8s.io/api/apidiscovery/v2). Built from the same table
as the legacy documents (:data:`issuer.api.discovery.GROUP_VERSIONS`, passed in), so both always
agree.
Subresources (``serviceaccounts/token``) are listed under their parent resource. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from issuer.api.apiresource import Resource

__all__ = ["MEDIA_GROUP", "aggregated_version", "discovery_list"]

MEDIA_GROUP: Final = "apidiscovery.k8s.io"


def aggregated_version(accept: str) -> str | None:
    """``v2`` or ``v2beta1`` when ``accept`` prefers the aggregated document (the first
    acceptable entry in the client's order), else None."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() not in ("application/json", "*/*", "application/*"):
            continue
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        if "as" not in opts:
            return None
        if (
            opts.get("as") == "APIGroupDiscoveryList"
            and opts.get("g") == MEDIA_GROUP
            and opts.get("v") in ("v2", "v2beta1")
        ):
            return opts["v"]
    return None


def _response_kind(r: Resource, group: str, version: str) -> dict[str, str]:
    return {"group": r.group or group, "version": r.version or version, "kind": r.kind}


def _resources(group: str, version: str, resources: Sequence[Resource]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in resources:
        name, _, sub = r.name.partition("/")
        if sub:
            continue
        entry: dict[str, Any] = {
            "resource": name,
            "responseKind": _response_kind(r, group, version),
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular_name,
            "verbs": sorted(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out[name] = entry
    for r in resources:
        name, _, sub = r.name.partition("/")
        if sub and name in out:
            out[name].setdefault("subresources", []).append(
                {
                    "subresource": sub,
                    "responseKind": _response_kind(r, group, version),
                    "verbs": sorted(r.verbs),
                }
            )
    return list(out.values())


def discovery_list(
    group_versions: Mapping[str, Sequence[Resource]], core: bool, version: str = "v2"
) -> dict[str, Any]:
    """kube's ``APIGroupDiscoveryList``: the core group (``/api``) or every other group
    (``/apis``), preferred version first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for gv, resources in group_versions.items():
        group, _, ver = gv.rpartition("/")
        if (group == "") != core:
            continue
        groups.setdefault(group, []).append(
            {
                "version": ver,
                "resources": _resources(group, ver, resources),
                "freshness": "Current",
            }
        )
    items = []
    for group, versions in groups.items():
        meta: dict[str, Any] = {"creationTimestamp": None}
        if group:
            meta["name"] = group
        items.append({"metadata": meta, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{MEDIA_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }
