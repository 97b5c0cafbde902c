"""Kubernetes API discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/GROUP/VER``.

Tools written for Kubernetes (the official clients, ``kubectl``, client-go's discovery client)
ask these first. The shapes are kube's (k8s.io/apimachinery pkg/apis/meta/v1 types.go
``APIVersions``, ``APIGroupList``, ``APIResourceList``; k8s.io/apimachinery pkg/version
``Info``), and they list only what :func:`issuer.api.routes` really serves: each resource with
the verbs it has a route for (``create`` POST on the collection, ``list`` GET on it, ``get``,
``update`` (PUT), ``patch`` and ``delete`` on an item, ``watch`` with ``?watch=true``).
``tests/api/test_discovery_api.py`` checks the table against the routes in both directions.

Who may read them (kube: plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go):

- ``/api``, ``/api/v1``, ``/apis``, ``/apis/...``: any authenticated caller — an admin token or a
  service-account token of this issuer — as kube's ``system:discovery`` ClusterRole bound to
  ``system:authenticated``. No stored RBAC object is consulted (RBAC only adds grants, and this
  one is built in), so a fresh service account can discover the API. Anonymous → 401.
- ``/version``: anyone, as kube's ``system:public-info-viewer`` (bound to
  ``system:authenticated`` and ``system:unauthenticated``). A bearer token that is presented must
  still be valid (kube authenticates before it authorizes: a bad token is 401, not anonymous).

Every path answers GET (and HEAD); any other method is 405 ``MethodNotAllowed``.
"""

from __future__ import annotations

import platform
import sys
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import issuer
from issuer.api import aggregated, rbac, selfreviews, tokenreview
from issuer.api._http import context, endpoint, json_response
from issuer.api.apiresource import Resource
from issuer.api.auth import (
    authenticate,
    authenticate_token,
    bearer_token,
    impersonation_request,
    match_admin_token,
)
from issuer.api.errors import internal_error, service_unavailable, unauthorized
from issuer.http.status import StatusError
from issuer.store import StoreError, StoreUnavailable

__all__ = [
    "GROUP_VERSIONS",
    "KUBE_MAJOR",
    "KUBE_MINOR",
    "Resource",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "require_caller",
    "routes",
    "version_info",
]

#: The Kubernetes release whose API behaviour sa-oidc mirrors (reported by ``/version``).
KUBE_MAJOR: Final = "1"
KUBE_MINOR: Final = "31"

#: Every stored kind: POST, GET (list, ``?watch=true``), and GET/PUT/PATCH/DELETE on an item.
_CRUD: Final = ("create", "delete", "get", "list", "patch", "update", "watch")
_NOT_FOUND: Final = "the server could not find the requested resource"


_TOKENREVIEW: Final = (Resource("tokenreviews", "tokenreview", False, "TokenReview", ("create",)),)
_SAR: Final = (
    Resource(
        "subjectaccessreviews", "subjectaccessreview", False, "SubjectAccessReview", ("create",)
    ),
)

#: groupVersion -> the resources served there. ``""`` group = core (``/api/v1``). The first
#: version of each group is its preferred version.
GROUP_VERSIONS: Final[dict[str, tuple[Resource, ...]]] = {
    "v1": (
        # shortNames and categories as kube's registries declare them (pkg/registry/core/
        # {namespace,node,pod,serviceaccount}/storage/storage.go ShortNames / Categories).
        Resource("namespaces", "namespace", False, "Namespace", _CRUD, short_names=("ns",)),
        Resource("nodes", "node", False, "Node", _CRUD, short_names=("no",)),
        Resource("pods", "pod", True, "Pod", _CRUD, short_names=("po",), categories=("all",)),
        Resource("secrets", "secret", True, "Secret", _CRUD),
        Resource(
            "serviceaccounts", "serviceaccount", True, "ServiceAccount", _CRUD, short_names=("sa",)
        ),
        Resource(
            "serviceaccounts/token",
            "",
            True,
            "TokenRequest",
            ("create",),
            group="authentication.k8s.io",
            version="v1",
        ),
    ),
    **{gv: _TOKENREVIEW for gv in tokenreview.API_VERSIONS},
    **{gv: _SAR for gv in rbac.SAR_API_VERSIONS},
    selfreviews.AUTHENTICATION_V1: (
        *_TOKENREVIEW,
        Resource(
            "selfsubjectreviews", "selfsubjectreview", False, "SelfSubjectReview", ("create",)
        ),
    ),
    selfreviews.AUTHORIZATION_V1: (
        Resource(
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            False,
            "SelfSubjectAccessReview",
            ("create",),
        ),
        Resource(
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            False,
            "SelfSubjectRulesReview",
            ("create",),
        ),
        *_SAR,
    ),
    "rbac.authorization.k8s.io/v1": (
        Resource("clusterrolebindings", "clusterrolebinding", False, "ClusterRoleBinding", _CRUD),
        Resource("clusterroles", "clusterrole", False, "ClusterRole", _CRUD),
        Resource("rolebindings", "rolebinding", True, "RoleBinding", _CRUD),
        Resource("roles", "role", True, "Role", _CRUD),
    ),
    "sa-oidc.dev/v1": (
        # GET .../invalidations lists (one page) or, with ?watch=true, streams; .../<seq> is one.
        Resource("invalidations", "invalidation", False, "Invalidation", ("get", "list", "watch")),
        Resource("tokenrevocations", "tokenrevocation", False, "TokenRevocation", ("create",)),
    ),
}


def _groups() -> dict[str, list[str]]:
    """Group name -> its versions in GROUP_VERSIONS order (the first is preferred)."""
    out: dict[str, list[str]] = {}
    for gv in GROUP_VERSIONS:
        group, _, version = gv.rpartition("/")
        if group:
            out.setdefault(group, []).append(version)
    return out


def version_info() -> dict[str, str]:
    """kube: k8s.io/apimachinery pkg/version.Info. Unknown build facts keep kube's defaults."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": f"v{KUBE_MAJOR}.{KUBE_MINOR}.0-sa-oidc.{issuer.__version__}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{sys.platform}/{arch}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """kube: metav1.APIVersions (``/api``)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    """kube: metav1.APIGroupList (``/apis``)."""
    groups = []
    for name, versions in _groups().items():
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group_version: str) -> dict[str, Any] | None:
    """kube: metav1.APIResourceList for ``group_version`` (``v1`` = core), or None."""
    resources = GROUP_VERSIONS.get(group_version)
    if resources is None:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r.to_json() for r in resources],
    }


# --- HTTP ----------------------------------------------------------------------------------------


def _authenticate(ctx: Any, token: str) -> bool:
    return authenticate_token(ctx, token) is not None


async def require_caller(request: Request, *, anonymous: bool) -> None:
    """Discovery's access rule (also the OpenAPI documents'): 401 unless the bearer token
    authenticates (no token at all is fine when ``anonymous``)."""
    token = bearer_token(request)
    if token is None:
        if anonymous and "authorization" not in request.headers:
            return
        raise unauthorized()
    if impersonation_request(request.headers) is not None:
        await authenticate(request)  # honoured or refused (403), never ignored
        return
    ctx = context(request)
    if match_admin_token(token, ctx.admin_tokens) is not None:
        return
    try:
        ok = await run_in_threadpool(_authenticate, ctx, token)
    except StoreUnavailable:
        raise service_unavailable("the store is unavailable; try again") from None
    except StoreError:
        raise internal_error("the store failed") from None
    if not ok:
        raise unauthorized()


@endpoint
async def version(request: Request) -> Response:
    """``GET /version`` (anonymous allowed)."""
    await require_caller(request, anonymous=True)
    return json_response(version_info())


def _aggregated(request: Request, core: bool) -> Response | None:
    version = aggregated.aggregated_version(request.headers.get("accept", ""))
    if version is None:
        return None
    body = aggregated.discovery_list(GROUP_VERSIONS, core, version)
    media = f"application/json;g={aggregated.MEDIA_GROUP};v={version};as=APIGroupDiscoveryList"
    response = json_response(body)
    response.headers["Content-Type"] = media
    return response


@endpoint
async def core_versions(request: Request) -> Response:
    """``GET /api`` (aggregated discovery when asked for, :mod:`issuer.api.aggregated`)."""
    await require_caller(request, anonymous=False)
    return _aggregated(request, core=True) or json_response(api_versions(request.url.netloc))


@endpoint
async def core_resources(request: Request) -> Response:
    """``GET /api/v1``."""
    await require_caller(request, anonymous=False)
    return json_response(api_resource_list("v1"))


@endpoint
async def groups(request: Request) -> Response:
    """``GET /apis`` (aggregated discovery when asked for)."""
    await require_caller(request, anonymous=False)
    return _aggregated(request, core=False) or json_response(api_group_list())


@endpoint
async def group_resources(request: Request) -> Response:
    """``GET /apis/{group}/{version}``."""
    await require_caller(request, anonymous=False)
    gv = f"{request.path_params['group']}/{request.path_params['version']}"
    body = api_resource_list(gv)
    if body is None:
        raise StatusError(404, "NotFound", _NOT_FOUND, {})
    return json_response(body)


def routes() -> list[BaseRoute]:
    """The discovery routes (GET only; Starlette answers HEAD too, other methods 405)."""
    get = ["GET"]
    return [
        Route("/version", version, methods=get),
        Route("/api", core_versions, methods=get),
        Route("/api/v1", core_resources, methods=get),
        Route("/apis", groups, methods=get),
        Route("/apis/{group}/{version}", group_resources, methods=get),
    ]
