"""OpenAPI v2 (``/openapi/v2``) and v3 (``/openapi/v3``, ``/openapi/v3/<group-version>``) as
kube-apiserver serves them, describing exactly what sa-oidc serves.

The schemas are Kubernetes' own: ``openapi_kube.json`` is kube 1.31's OpenAPI document trimmed to
the served resources' paths and the definitions they reach (``scripts/trim_openapi.py``); the
``sa-oidc.dev`` group, which kube has no definitions for, is described by
:mod:`issuer.api.openapi_sa_oidc`. At
import, the operations are filtered to the verbs the discovery documents list
(:data:`issuer.api.discovery.GROUP_VERSIONS`, themselves checked against the routes), so a verb
sa-oidc does not serve is not described either. The ``v1beta1`` review versions (gone from
kube since 1.22) are not in the OpenAPI documents.

What kubectl does with them (k8s.io/kubectl): ``explain`` reads the v3 document of the resource's
group-version; ``create``/``apply``/``replace`` ask the v3 document whether the PATCH operation
of the kind takes the ``fieldValidation`` query parameter (resource.QueryParamVerifierV3) and, if
so, leave validation to the server (``fieldValidation=Strict`` by default: unknown fields are 400,
see :mod:`issuer.api.validation`); client-side apply reads the patch strategies
(``x-kubernetes-patch-merge-key``) from it.

v3 documents are addressed by content hash (``/openapi/v3/api/v1?hash=...``, listed by
``/openapi/v3``) and served ``Cache-Control: public, immutable`` when the hash matches, as
kube's (k8s.io/kube-openapi pkg/handler3). ``/openapi/v2`` is JSON, or gnostic protobuf
(:mod:`issuer.api.openapi_pb`) for client-go, which asks for that. Who may read them: any
authenticated caller (kube's ``system:discovery`` role covers ``/openapi/*``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from issuer.api import openapi_sa_oidc
from issuer.api._http import endpoint
from issuer.api.apiresource import Resource
from issuer.api.discovery import GROUP_VERSIONS, require_caller
from issuer.api.openapi_pb import encode_document
from issuer.api.schema import kube_openapi
from issuer.http.status import StatusError

__all__ = ["V2_PROTOBUF", "Documents", "documents", "routes", "served_paths"]

_V2_REF: Final = "#/definitions/"
_V3_REF: Final = "#/components/schemas/"
_METHODS: Final = ("get", "put", "post", "delete", "patch")
#: x-kubernetes-action -> RBAC/discovery verb (kube: endpoints/installer.go).
_ACTION_VERBS: Final = {"post": "create", "put": "update"}
_NOT_FOUND: Final = "the server could not find the requested resource"


def served_paths() -> dict[str, Resource]:
    """Every kube path template sa-oidc routes -> the discovery resource it belongs to."""
    out: dict[str, Resource] = {}
    for gv, resources in GROUP_VERSIONS.items():
        base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        for r in resources:
            name, _, sub = r.name.partition("/")
            item = (
                f"{base}/namespaces/{{namespace}}/{name}/{{name}}"
                if r.namespaced
                else f"{base}/{name}/{{name}}"
            )
            if sub:
                out[f"{item}/{sub}"] = r
                continue
            out[item] = r
            out[f"{base}/{name}"] = r  # cluster-scoped collection, or all namespaces
            if r.namespaced:
                out[f"{base}/namespaces/{{namespace}}/{name}"] = r
    return out


def _served_operations(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """kube's path items, keeping the operations whose verb discovery lists for the resource."""
    served = served_paths()
    out: dict[str, dict[str, Any]] = {}
    for path, item in doc["paths"].items():
        resource = served.get(path)
        if resource is None:
            continue
        kept = {
            k: v
            for k, v in item.items()
            if k not in _METHODS
            or _ACTION_VERBS.get(v.get("x-kubernetes-action", ""), v.get("x-kubernetes-action"))
            in resource.verbs
        }
        if any(k in _METHODS for k in kept):
            out[path] = kept
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _closure(definitions: Mapping[str, Any], roots: Iterator[str]) -> dict[str, Any]:
    wanted = [r.removeprefix(_V2_REF) for r in roots if r.startswith(_V2_REF)]
    out: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in out or name not in definitions:
            continue
        out[name] = definitions[name]
        wanted += [r.removeprefix(_V2_REF) for r in _refs(out[name]) if r.startswith(_V2_REF)]
    return dict(sorted(out.items()))


def _v3(node: Any) -> Any:
    """A v2 schema as v3 (references into components.schemas)."""
    if isinstance(node, dict):
        return {
            k: (v.replace(_V2_REF, _V3_REF) if k == "$ref" and isinstance(v, str) else _v3(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_v3(v) for v in node]
    return node


def _v3_parameter(param: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: param[k] for k in ("name", "in", "description", "required") if k in param}
    schema = {k: param[k] for k in ("type", "uniqueItems", "format") if k in param}
    out["schema"] = schema
    return out


def _v3_operation(op: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: op[k] for k in ("tags", "description", "operationId", "x-kubernetes-action") if k in op
    }
    params = []
    for p in op.get("parameters", []):
        if "$ref" in p:
            p = parameters[p["$ref"].rsplit("/", 1)[1]]
        if p.get("in") == "body":
            # kube's v3 documents list the JSON and YAML (and protobuf) request types.
            out["requestBody"] = {
                "content": {"*/*": {"schema": _v3(p["schema"])}},
                "required": bool(p.get("required")),
            }
        else:
            params.append(_v3_parameter(p))
    if params:
        out["parameters"] = params
    responses: dict[str, Any] = {}
    for code, resp in op.get("responses", {}).items():
        entry: dict[str, Any] = {"description": resp.get("description", "")}
        if "schema" in resp:
            entry["content"] = {
                mime: {"schema": _v3(resp["schema"])} for mime in op.get("produces", [])
            }
        responses[code] = entry
    out["responses"] = responses
    if "x-kubernetes-group-version-kind" in op:
        out["x-kubernetes-group-version-kind"] = op["x-kubernetes-group-version-kind"]
    return out


def _group_version_key(path: str) -> str:
    # "/api/v1/..." -> "api/v1"; "/apis/G/V/..." -> "apis/G/V" (kube's v3 discovery keys).
    parts = path.strip("/").split("/")
    return "/".join(parts[:2] if parts[0] == "api" else parts[:3])


@dataclass(frozen=True, slots=True)
class Documents:
    """The rendered documents (bytes) and the v3 hashes."""

    v2: bytes
    v2_protobuf: bytes
    v3_index: bytes
    v3: Mapping[str, tuple[bytes, str]]  # "api/v1" -> (document, hash)


@cache
def documents() -> Documents:
    """Build every document once (pure over the packaged data and the discovery table)."""
    kube = kube_openapi()
    # kube's documents plus the sa-oidc.dev group's (issuer.api.openapi_sa_oidc).
    doc = {
        **kube,
        "paths": {**kube["paths"], **openapi_sa_oidc.PATHS},
        "definitions": {**kube["definitions"], **openapi_sa_oidc.DEFINITIONS},
    }
    paths = _served_operations(doc)
    parameters = doc["parameters"]
    definitions = doc["definitions"]
    v2 = {
        "swagger": "2.0",
        "info": doc["info"],
        "paths": paths,
        "parameters": parameters,
        "definitions": _closure(definitions, _refs([paths, parameters])),
    }
    by_gv: dict[str, dict[str, Any]] = {}
    for path, item in paths.items():
        by_gv.setdefault(_group_version_key(path), {})[path] = item
    rendered: dict[str, tuple[bytes, str]] = {}
    for key, items in sorted(by_gv.items()):
        v3_paths: dict[str, Any] = {}
        for path, item in items.items():
            path_params = [
                _v3_parameter(parameters[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p)
                for p in item.get("parameters", [])
            ]
            ops = {m: _v3_operation(item[m], parameters) for m in _METHODS if m in item}
            v3_paths[path] = {**ops, **({"parameters": path_params} if path_params else {})}
        used = [parameters[r.rsplit("/", 1)[1]] for r in _refs(items) if r.startswith("#/param")]
        schemas = _closure(definitions, _refs([items, used]))
        body = orjson.dumps(
            {
                "openapi": "3.0.0",
                "info": doc["info"],
                "paths": v3_paths,
                "components": {"schemas": _v3(schemas)},
            }
        )
        # kube-openapi handler3: the hash is the upper-case hex SHA-512 of the document.
        rendered[key] = (body, hashlib.sha512(body).hexdigest().upper())
    index = {
        "paths": {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
            for key, (_body, digest) in rendered.items()
        }
    }
    return Documents(orjson.dumps(v2), encode_document(v2), orjson.dumps(index), rendered)


# --- HTTP ---------------------------------------------------------------------------------------


def _json(body: bytes, etag: str | None = None, immutable: bool = False) -> Response:
    response = Response(body, media_type="application/json")
    if etag is not None:
        response.headers["ETag"] = f'"{etag}"'
    if immutable:
        response.headers["Cache-Control"] = "public, immutable"
        response.headers["Expires"] = "Fri, 01 Jan 2038 00:00:00 GMT"
    else:
        response.headers["Cache-Control"] = "no-cache, private"
    return response


#: client-go's Accept for /openapi/v2 (k8s.io/client-go discovery openAPIV2mimePb).
V2_PROTOBUF: Final = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
#: What kube-openapi (pkg/handler) answers it with: "@" is not valid in a Content-Type token.
_V2_PROTOBUF_RETURNED: Final = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _v2_media(accept: str) -> str | None:
    """The representation to serve for ``Accept`` (first acceptable in the client's order)."""
    if not accept.strip():
        return "application/json"
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (V2_PROTOBUF, _V2_PROTOBUF_RETURNED):
            return V2_PROTOBUF
        if media in ("application/json", "application/*", "*/*"):
            return "application/json"
    return None


@endpoint
async def v2(request: Request) -> Response:
    """``GET /openapi/v2`` (protobuf as client-go asks for it, or JSON)."""
    await require_caller(request, anonymous=False)
    media = _v2_media(request.headers.get("accept", ""))
    if media is None:
        raise StatusError(
            406, "NotAcceptable", f"only application/json and {V2_PROTOBUF} are served", {}
        )
    docs = documents()
    if media == V2_PROTOBUF:
        response = Response(docs.v2_protobuf, media_type=_V2_PROTOBUF_RETURNED)
        response.headers["Cache-Control"] = "no-cache, private"
        return response
    return _json(docs.v2)


@endpoint
async def v3_index(request: Request) -> Response:
    """``GET /openapi/v3``: the group-versions and their hashed URLs."""
    await require_caller(request, anonymous=False)
    return _json(documents().v3_index)


@endpoint
async def v3_document(request: Request) -> Response:
    """``GET /openapi/v3/<api/v1 | apis/G/V>``."""
    await require_caller(request, anonymous=False)
    found = documents().v3.get(request.path_params["gv"].strip("/"))
    if found is None:
        raise StatusError(404, "NotFound", _NOT_FOUND, {})
    body, digest = found
    if request.headers.get("if-none-match", "").strip('"') == digest:
        return Response(status_code=304, headers={"ETag": f'"{digest}"'})
    return _json(body, digest, immutable=request.query_params.get("hash") == digest)


def routes() -> list[BaseRoute]:
    """The OpenAPI routes (GET; HEAD too, other methods 405)."""
    get = ["GET"]
    return [
        Route("/openapi/v2", v2, methods=get),
        Route("/openapi/v3", v3_index, methods=get),
        Route("/openapi/v3/{gv:path}", v3_document, methods=get),
    ]
