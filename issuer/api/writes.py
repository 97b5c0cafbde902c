"""HTTP edges of PUT, PATCH and DELETE on every stored object (core ``v1`` and RBAC), and the
query parameters of writes (kube: metav1.UpdateOptions, PatchOptions, DeleteOptions).

- ``fieldManager`` (:func:`issuer.api._http.field_manager`): who is writing. An apply needs it
  (422).
- ``dryRun=All`` (:func:`issuer.api._http.dry_run`): every check runs, nothing is stored; the
  answer is the would-be object.
- ``force=true``: an apply takes conflicting fields over (400 on other patch types).
- ``fieldValidation``: as for creates (:func:`issuer.api._http.field_validation`).
- DELETE takes ``DeleteOptions`` (body and query: ``preconditions``, ``dryRun``,
  ``propagationPolicy``, ``orphanDependents``, ``gracePeriodSeconds``), read and validated by
  :mod:`issuer.api.deleteoptions` (400/422 as kube), which also says what they mean here.

The semantics live in :mod:`issuer.api.update`; routes here are mounted before the read-only
ones of the same paths (Starlette tries the next route whose methods match).
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from issuer.api import legacy, update
from issuer.api._http import (
    context,
    dry_run,
    endpoint,
    field_manager,
    field_validation,
    json_response,
    run_sync,
)
from issuer.api.auth import Caller, authorize
from issuer.api.deleteoptions import parse_delete_options
from issuer.api.errors import bad_request, method_not_allowed
from issuer.api.rbac import RBAC_KINDS, RBAC_V1
from issuer.http.status import StatusError, parse_json_object, read_body, read_json_body

__all__ = ["routes", "write_options"]

_NAMESPACED: Final = {"serviceaccounts": "ServiceAccount", "pods": "Pod", "secrets": "Secret"}
_RBAC_CLUSTER: Final = {i.resource: k for k, i in RBAC_KINDS.items() if not i.namespaced}
_RBAC_NAMESPACED: Final = {i.resource: k for k, i in RBAC_KINDS.items() if i.namespaced}


def _force(request: Request) -> bool:
    raw = request.query_params.get("force", "")
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise bad_request(f"invalid force parameter {raw!r}: must be true or false")


def write_options(request: Request, caller: Caller) -> update.WriteOptions:
    """The write's :class:`issuer.api.update.WriteOptions` from its query parameters."""
    return update.WriteOptions(
        caller=caller,
        manager=field_manager(request),
        mode=field_validation(request),
        dry_run=dry_run(request),
        force=_force(request),
        manager_given=bool(request.query_params.get("fieldManager")),
    )


async def _write(request: Request, kind: str, namespace: str, name: str) -> Response:
    ctx = context(request)
    caller = await authorize(request)
    method = request.method
    if method == "DELETE":
        raw = await read_body(request, ctx.config.max_body_bytes)
        body = parse_json_object(raw) if raw.strip() else None
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        options = parse_delete_options(body, query)
        out = await run_sync(
            update.delete_with_options, ctx, kind, namespace, name, options, caller
        )
        return json_response(out)
    opts = write_options(request, caller)
    if method == "PUT":
        body = await read_json_body(request, ctx.config.max_body_bytes)
        obj, warnings, created = await run_sync(
            update.replace_object, ctx, kind, namespace, name, body, opts
        )
    elif method == "PATCH":
        raw = await read_body(request, ctx.config.max_body_bytes)
        if not raw.strip():
            raise bad_request("the request body is empty")
        content_type = request.headers.get("content-type", "")
        obj, warnings, created = await run_sync(
            update.patch_object, ctx, kind, namespace, name, content_type, raw, opts
        )
    else:
        raise method_not_allowed()
    if created and kind == "Secret":
        # A created service-account token Secret holds its token only for a reader, as on POST
        # (issue 9, item 1; api/legacy.visible_to).
        obj, withheld = await run_sync(legacy.visible_to, ctx, caller, obj)
        warnings = [*warnings, *withheld]
    return json_response(obj, 201 if created else 200, warnings)


@endpoint
async def _namespace(request: Request) -> Response:
    return await _write(request, "Namespace", "", request.path_params["name"])


@endpoint
async def _node(request: Request) -> Response:
    return await _write(request, "Node", "", request.path_params["name"])


@endpoint
async def _namespaced(request: Request) -> Response:
    kind = _NAMESPACED.get(request.path_params["resource"])
    if kind is None:
        raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
    p = request.path_params
    return await _write(request, kind, p["ns"], p["name"])


def _rbac_kind(request: Request, table: dict[str, str]) -> str:
    # The route is per resource; its path's resource segment names the kind.
    route = request.scope["route"].path
    resource = route.rsplit("/", 2)[-2]
    return table[resource]


@endpoint
async def _rbac_cluster(request: Request) -> Response:
    kind = _rbac_kind(request, _RBAC_CLUSTER)
    return await _write(request, kind, "", request.path_params["name"])


@endpoint
async def _rbac_namespaced(request: Request) -> Response:
    kind = _rbac_kind(request, _RBAC_NAMESPACED)
    p = request.path_params
    return await _write(request, kind, p["ns"], p["name"])


def routes() -> list[BaseRoute]:
    """PUT, PATCH and DELETE on every object path."""
    methods = ["PUT", "PATCH", "DELETE"]
    base = f"/apis/{RBAC_V1}"
    return [
        Route("/api/v1/namespaces/{name}", _namespace, methods=methods),
        Route("/api/v1/nodes/{name}", _node, methods=methods),
        Route("/api/v1/namespaces/{ns}/{resource}/{name}", _namespaced, methods=methods),
        *(
            Route(
                f"{base}/namespaces/{{ns}}/{resource}/{{name}}", _rbac_namespaced, methods=methods
            )
            for resource in _RBAC_NAMESPACED
        ),
        *(
            Route(f"{base}/{resource}/{{name}}", _rbac_cluster, methods=methods)
            for resource in _RBAC_CLUSTER
        ),
    ]
