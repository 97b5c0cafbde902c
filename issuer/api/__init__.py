"""Kubernetes-compatible identity API: core objects, TokenRequest, TokenReview, legacy tokens,
RBAC and SubjectAccessReview.

``routes()`` returns the Starlette routes the app mounts. Every route authenticates a bearer
token (an admin token or a service-account token of this issuer) and authorizes the request with
RBAC (:func:`issuer.api.auth.authorize`); anonymous callers get OIDC discovery and JWKS only
(served elsewhere), plus ``/version``; the API discovery documents need any authenticated caller.

==================================================================  ==========================
path                                                                methods
==================================================================  ==========================
/api/v1/namespaces                                                  GET (list, watch), POST
/api/v1/namespaces/{name}                                           GET, PUT, PATCH, DELETE
/api/v1/namespaces/{ns}/{serviceaccounts|pods|secrets}              GET (list, watch), POST
/api/v1/namespaces/{ns}/{serviceaccounts|pods|secrets}/{name}       GET, PUT, PATCH, DELETE
/api/v1/{serviceaccounts|pods|secrets}                              GET (all namespaces, watch)
/api/v1/nodes[/{name}]                                              GET, POST / GET, PUT, ...
/api/v1/namespaces/{ns}/serviceaccounts/{name}/token                POST (TokenRequest)
/apis/authentication.k8s.io/{v1,v1beta1}/tokenreviews               POST (TokenReview)
/apis/rbac.authorization.k8s.io/v1/...                              see :mod:`issuer.api.rbac`
/apis/authorization.k8s.io/{v1,v1beta1}/subjectaccessreviews        POST (SubjectAccessReview)
/apis/authorization.k8s.io/v1/selfsubject{access,rules}reviews       POST (:mod:`.selfreviews`)
/apis/authentication.k8s.io/v1/selfsubjectreviews                   POST (``auth whoami``)
/version, /api, /api/v1, /apis, /apis/{group}/{version}             GET (API discovery)
/openapi/v2, /openapi/v3, /openapi/v3/{api/v1 | apis/G/V}           GET (:mod:`.openapi`)
/apis/sa-oidc.dev/v1/{invalidations|tokenrevocations}               see :mod:`issuer.stream`
==================================================================  ==========================

Module map: pure logic in ``validation`` (decoding, names), ``admission`` (pod admission),
:mod:`issuer.tokens` (claims), :mod:`issuer.review` (review decisions); store-facing services in
``objects``, ``legacy``, ``tokenrequest``, ``tokenreview``, ``rbac`` (synchronous, run in the
thread pool); RBAC evaluation in :mod:`issuer.authz` (pure); HTTP edges here and in
``_http``/``auth``/``rbac``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from issuer.api import (
    discovery,
    legacy,
    objects,
    openapi,
    rbac,
    selfreviews,
    tokenrequest,
    tokenreview,
    watch,
    writes,
)
from issuer.api._http import (
    context,
    dry_run,
    endpoint,
    field_manager,
    field_validation,
    json_response,
    run_sync,
)
from issuer.api.apply import create_stamp
from issuer.api.auth import authorize
from issuer.api.errors import method_not_allowed
from issuer.api.listing import ListOptions, parse_list_options, selector_predicate, with_name
from issuer.api.validation import KINDS
from issuer.http.status import StatusError, read_json_body
from issuer.store import JSON
from issuer.timefmt import rfc3339

__all__ = ["routes"]

#: URL resource name -> stored kind.
_NAMESPACED: Final = {"serviceaccounts": "ServiceAccount", "pods": "Pod", "secrets": "Secret"}
_RESOURCE_NOT_FOUND: Final = "the server could not find the requested resource"


def _namespaced_kind(request: Request) -> str:
    kind = _NAMESPACED.get(request.path_params["resource"])
    if kind is None:
        raise StatusError(404, "NotFound", _RESOURCE_NOT_FOUND, {})
    return kind


async def _body(request: Request) -> dict[str, object]:
    ctx = context(request)
    return await read_json_body(request, ctx.config.max_body_bytes)


# --- collections ---------------------------------------------------------------------------------


def _watch(
    request: Request, kind: str, namespace: str | None, opts: ListOptions
) -> Awaitable[Response]:
    ctx = context(request)

    async def lister() -> JSON:
        return await run_sync(objects.list_objects, ctx, kind, namespace)

    return watch.watch_response(
        request,
        kind=kind,
        api_version=KINDS[kind].api_version,
        namespace=namespace,
        lister=lister,
        predicate=selector_predicate(kind, opts),
    )


async def _collection(request: Request, kind: str, namespace: str) -> Response:
    ctx = context(request)
    caller = await authorize(request)
    if request.method in ("GET", "HEAD"):
        opts = parse_list_options(request.query_params, kind, namespace)
        if watch.is_watch(request):
            scope = namespace if KINDS[kind].namespaced else None
            return await _watch(request, kind, scope, opts)
        return json_response(await run_sync(objects.list_objects, ctx, kind, namespace, opts))
    if request.method != "POST":
        raise method_not_allowed()
    mode = field_validation(request)
    body = await _body(request)
    stamp = create_stamp(
        kind, KINDS[kind].api_version, field_manager(request), rfc3339(ctx.clock())
    )
    dry = dry_run(request)
    obj, warnings = await run_sync(
        lambda: objects.create_object(
            ctx, kind, namespace, body, mode, caller.label, stamp=stamp, dry_run=dry
        )
    )
    if kind == "Secret":
        # A service-account token only to a caller who may read the Secret (issue 9, item 1).
        obj, withheld = await run_sync(legacy.visible_to, ctx, caller, obj)
        warnings = [*warnings, *withheld]
    return json_response(obj, 201, warnings)


async def _item(request: Request, kind: str, namespace: str, name: str) -> Response:
    ctx = context(request)
    await authorize(request)
    # Writes (PUT, PATCH, DELETE) are routed to issuer.api.writes.
    if request.method in ("GET", "HEAD"):
        return json_response(await run_sync(objects.get_object, ctx, kind, namespace, name))
    raise method_not_allowed()


@endpoint
async def namespaces(request: Request) -> Response:
    """``/api/v1/namespaces``: list, create (with its ``default`` ServiceAccount)."""
    return await _collection(request, "Namespace", "")


@endpoint
async def namespace(request: Request) -> Response:
    """``/api/v1/namespaces/{name}``: get, delete (cascading)."""
    return await _item(request, "Namespace", "", request.path_params["name"])


@endpoint
async def nodes(request: Request) -> Response:
    """``/api/v1/nodes``: list, create."""
    return await _collection(request, "Node", "")


@endpoint
async def node(request: Request) -> Response:
    """``/api/v1/nodes/{name}``: get, delete."""
    return await _item(request, "Node", "", request.path_params["name"])


@endpoint
async def namespaced_collection(request: Request) -> Response:
    """``/api/v1/namespaces/{ns}/{resource}``: list, create."""
    kind = _namespaced_kind(request)
    return await _collection(request, kind, request.path_params["ns"])


@endpoint
async def namespaced_item(request: Request) -> Response:
    """``/api/v1/namespaces/{ns}/{resource}/{name}``: get, delete."""
    kind = _namespaced_kind(request)
    return await _item(request, kind, request.path_params["ns"], request.path_params["name"])


@endpoint
async def all_namespaces(request: Request) -> Response:
    """``/api/v1/{resource}``: list across all namespaces."""
    ctx = context(request)
    kind = _namespaced_kind(request)
    await authorize(request)
    opts = parse_list_options(request.query_params, kind, None)
    if watch.is_watch(request):
        return await _watch(request, kind, None, opts)
    return json_response(await run_sync(objects.list_objects, ctx, kind, None, opts))


async def _legacy_watch(request: Request, kind: str, namespace: str | None) -> Response:
    """A deprecated ``/api/v1/watch/...`` path: ``?watch=true`` on the collection, of one object
    when the path names it. Authorized as verb ``watch`` on what the path names
    (:func:`issuer.authz.request_info`: the ``watch`` prefix is the verb)."""
    await authorize(request)
    opts = parse_list_options(request.query_params, kind, namespace)
    opts = with_name(opts, request.path_params.get("name"))
    scope = namespace if KINDS[kind].namespaced else None
    return await _watch(request, kind, scope, opts)


@endpoint
async def legacy_watch_namespaces(request: Request) -> Response:
    """``/api/v1/watch/namespaces[/{name}]`` (deprecated): watch namespaces."""
    return await _legacy_watch(request, "Namespace", "")


@endpoint
async def legacy_watch_nodes(request: Request) -> Response:
    """``/api/v1/watch/nodes[/{name}]`` (deprecated): watch nodes."""
    return await _legacy_watch(request, "Node", "")


@endpoint
async def legacy_watch_namespaced(request: Request) -> Response:
    """``/api/v1/watch/namespaces/{ns}/{resource}[/{name}]`` (deprecated): watch in a
    namespace."""
    return await _legacy_watch(request, _namespaced_kind(request), request.path_params["ns"])


@endpoint
async def legacy_watch_all_namespaces(request: Request) -> Response:
    """``/api/v1/watch/{resource}`` (deprecated): watch across all namespaces."""
    return await _legacy_watch(request, _namespaced_kind(request), None)


def _legacy_watch_routes() -> list[BaseRoute]:
    """kube-apiserver's deprecated watch paths (k8s.io/apiserver pkg/endpoints/installer.go
    registers ``watch/`` + the collection and item paths of every resource that can be watched);
    the specific ones first, since ``{resource}`` would also match ``namespaces``."""
    base = "/api/v1/watch"
    return [
        Route(f"{base}/namespaces", legacy_watch_namespaces, methods=["GET"]),
        Route(f"{base}/namespaces/{{name}}", legacy_watch_namespaces, methods=["GET"]),
        Route(f"{base}/nodes", legacy_watch_nodes, methods=["GET"]),
        Route(f"{base}/nodes/{{name}}", legacy_watch_nodes, methods=["GET"]),
        Route(f"{base}/namespaces/{{ns}}/{{resource}}", legacy_watch_namespaced, methods=["GET"]),
        Route(
            f"{base}/namespaces/{{ns}}/{{resource}}/{{name}}",
            legacy_watch_namespaced,
            methods=["GET"],
        ),
        Route(f"{base}/{{resource}}", legacy_watch_all_namespaces, methods=["GET"]),
    ]


@endpoint
async def token_request(request: Request) -> Response:
    """``POST .../serviceaccounts/{name}/token``: TokenRequest (201)."""
    ctx = context(request)
    caller = await authorize(request)
    mode = field_validation(request)
    body = await _body(request)
    out, warnings = await run_sync(
        tokenrequest.create_token,
        ctx,
        request.path_params["ns"],
        request.path_params["name"],
        body,
        mode,
        caller.label,
    )
    return json_response(out, 201, warnings)


def _token_review_endpoint(api_version: str) -> Route:
    @endpoint
    async def token_review(request: Request) -> Response:
        """``POST /apis/authentication.k8s.io/VERSION/tokenreviews``: TokenReview (201)."""
        ctx = context(request)
        await authorize(request)
        mode = field_validation(request)
        body = await _body(request)
        out, warnings = await run_sync(tokenreview.create_review, ctx, api_version, body, mode)
        return json_response(out, 201, warnings)

    return Route(f"/apis/{api_version}/tokenreviews", token_review, methods=["POST"])


def routes() -> list[BaseRoute]:
    """The authenticated API routes (``/api/v1/...``, ``/apis/authentication.k8s.io/...``,
    ``/apis/rbac.authorization.k8s.io/...``, ``/apis/authorization.k8s.io/...``)."""
    read_write = ["GET", "POST"]
    read_delete = ["GET"]  # PUT, PATCH and DELETE: writes.routes(), mounted first
    # Invalidation stream + token revocation (/apis/sa-oidc.dev/v1/...), see issuer/stream.py.
    # Imported here: issuer.stream imports issuer.api.auth (a module-level import would cycle).
    from issuer import stream

    return [
        *writes.routes(),
        *discovery.routes(),
        *openapi.routes(),
        *stream.routes(),
        *_legacy_watch_routes(),
        Route("/api/v1/namespaces", namespaces, methods=read_write),
        Route("/api/v1/namespaces/{name}", namespace, methods=read_delete),
        Route("/api/v1/nodes", nodes, methods=read_write),
        Route("/api/v1/nodes/{name}", node, methods=read_delete),
        Route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            token_request,
            methods=["POST"],
        ),
        Route("/api/v1/namespaces/{ns}/{resource}", namespaced_collection, methods=read_write),
        Route("/api/v1/namespaces/{ns}/{resource}/{name}", namespaced_item, methods=read_delete),
        Route("/api/v1/{resource}", all_namespaces, methods=["GET"]),
        *(_token_review_endpoint(v) for v in tokenreview.API_VERSIONS),
        *rbac.routes(),
        *selfreviews.routes(),
    ]
