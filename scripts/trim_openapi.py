"""Trim Kubernetes' OpenAPI v2 document to what sa-oidc serves: ``issuer/api/openapi_kube.json``.

Usage (the input is kube 1.31's ``api/openapi-spec/swagger.json``; the official Python client
ships the same file as ``kubernetes/swagger.json.unprocessed`` in its v31.0.0 release)::

    python3 scripts/trim_openapi.py swagger.json > issuer/api/openapi_kube.json

Kept: every operation kube documents on the paths of the resources in
the discovery documents (:func:`issuer.api.openapi.served_paths`: item, collection and
all-namespaces paths and the routed subresources; the deprecated ``/watch/`` paths are left out:
sa-oidc serves them, as ``?watch=true``, which the documents describe),
the global parameters they reference, and the transitive closure of the definitions referenced.
:mod:`issuer.api.openapi` then keeps the operations whose verb the discovery documents list.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from issuer.api.openapi import served_paths


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def trim(doc: dict[str, Any]) -> dict[str, Any]:
    """The trimmed document (pure)."""
    paths = {p: doc["paths"][p] for p in sorted(served_paths()) if p in doc["paths"]}
    refs: set[str] = set()
    _refs(paths, refs)
    params = {
        r.rsplit("/", 1)[1]: doc["parameters"][r.rsplit("/", 1)[1]]
        for r in refs
        if r.startswith("#/parameters/")
    }
    _refs(params, refs)
    wanted = [r.rsplit("/", 1)[1] for r in refs if r.startswith("#/definitions/")]
    # Every kind a served group-version defines (TokenRequest, SelfSubjectReview ...).
    definitions: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in definitions:
            continue
        definitions[name] = doc["definitions"][name]
        found: set[str] = set()
        _refs(definitions[name], found)
        wanted += [r.rsplit("/", 1)[1] for r in found if r.startswith("#/definitions/")]
    return {
        "swagger": doc["swagger"],
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "parameters": dict(sorted(params.items())),
        "definitions": dict(sorted(definitions.items())),
    }


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        source = json.load(f)
    json.dump(trim(source), sys.stdout, indent=None, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")
