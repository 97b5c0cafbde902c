"""Kubernetes' own schemas for the served types, and unknown-field detection at every depth.

The data is kube 1.31's OpenAPI document trimmed to what sa-oidc serves (``openapi_kube.json``,
``scripts/trim_openapi.py``), shared with :mod:`issuer.api.openapi`. kube-apiserver decodes a
body into its Go types and, with ``fieldValidation=Strict``, reports every field the types do not
have, wherever it is (apimachinery runtime/serializer/json strict decoding, via
sigs.k8s.io/json): ``strict decoding error: unknown field "spec.containers[0].imagee"``.
:func:`unknown_fields` finds the same fields by walking a decoded body along the definitions
(``properties``, ``items``, ``additionalProperties``, ``$ref``); the caller refuses, warns or
drops them as ``fieldValidation`` says (:mod:`issuer.api.validation`). Pure, apart from reading
the packaged JSON once.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import orjson

__all__ = ["DEFINITIONS", "UnknownField", "definition_for", "kube_openapi", "unknown_fields"]

_DATA: Final = "openapi_kube.json"
_REF: Final = "#/definitions/"

#: Stored kind -> its definition (core/v1 and rbac/v1 as served).
DEFINITIONS: Final = {
    "Namespace": "io.k8s.api.core.v1.Namespace",
    "Node": "io.k8s.api.core.v1.Node",
    "Pod": "io.k8s.api.core.v1.Pod",
    "Secret": "io.k8s.api.core.v1.Secret",
    "ServiceAccount": "io.k8s.api.core.v1.ServiceAccount",
    "Role": "io.k8s.api.rbac.v1.Role",
    "ClusterRole": "io.k8s.api.rbac.v1.ClusterRole",
    "RoleBinding": "io.k8s.api.rbac.v1.RoleBinding",
    "ClusterRoleBinding": "io.k8s.api.rbac.v1.ClusterRoleBinding",
}


@cache
def kube_openapi() -> Mapping[str, Any]:
    """The packaged document: ``{"swagger", "info", "paths", "parameters", "definitions"}``."""
    raw = importlib.resources.files("issuer.api").joinpath(_DATA).read_bytes()
    doc: dict[str, Any] = orjson.loads(raw)
    return doc


def definition_for(kind: str) -> Mapping[str, Any] | None:
    """The OpenAPI definition of a stored kind, or None."""
    name = DEFINITIONS.get(kind)
    if name is None:
        return None
    found: Mapping[str, Any] = kube_openapi()["definitions"][name]
    return found


@dataclass(frozen=True, slots=True)
class UnknownField:
    """One field the schema does not have: its path as kube prints it, and where it sits (so
    the caller can drop it)."""

    path: str
    parent: dict[str, Any]
    key: str


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        found: Mapping[str, Any] = kube_openapi()["definitions"].get(ref.removeprefix(_REF), {})
        return found
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        return _resolve(all_of[0])
    return schema


def _walk(value: Any, schema: Mapping[str, Any], path: str, out: list[UnknownField]) -> None:
    schema = _resolve(schema)
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, Mapping):
            for key, child in value.items():
                sub = props.get(key)
                where = f"{path}.{key}" if path else key
                if sub is None:
                    out.append(UnknownField(where, value, key))
                else:
                    _walk(child, sub, where, out)
        elif isinstance(extra, Mapping):
            for key, child in value.items():
                _walk(child, extra, f"{path}[{key}]" if path else key, out)
        # No properties and no typed additionalProperties: free-form (x-kubernetes-preserve-
        # unknown-fields, RawExtension, int-or-string ...): nothing to check.
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, child in enumerate(value):
                _walk(child, items, f"{path}[{i}]", out)


def unknown_fields(
    obj: dict[str, Any], kind: str, skip: frozenset[str] = frozenset()
) -> list[UnknownField]:
    """Every field of ``obj`` (a body of ``kind``) its kube definition lacks, at any depth, in
    document order; top-level keys in ``skip`` are not looked into. [] for kinds without one."""
    definition = definition_for(kind)
    if definition is None:
        return []
    out: list[UnknownField] = []
    props = definition.get("properties") or {}
    for key, child in obj.items():
        if key in skip:
            continue
        sub = props.get(key)
        if sub is None:
            out.append(UnknownField(key, obj, key))
        else:
            _walk(child, sub, key, out)
    return out
