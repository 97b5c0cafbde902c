"""Who am I, what may I do: SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview.

===========================================================================  ====================
path                                                                         kubectl
===========================================================================  ====================
``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``              ``auth can-i VERB RES``
``POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews``               ``auth can-i --list``
``POST /apis/authentication.k8s.io/v1/selfsubjectreviews``                   ``auth whoami``
===========================================================================  ====================

Each answers for the caller as :func:`issuer.api.auth.authorize` authenticated it — after
impersonation, so ``kubectl auth can-i ... --as=system:serviceaccount:dev:app`` asks about the
service account (and is refused unless the caller may impersonate it). Creating one needs the
``create`` verb on it, which kube's ``system:basic-user`` ClusterRole grants every authenticated
caller (:mod:`issuer.bootstrap_policy`).

Shapes and checks are kube's: pkg/registry/authorization/selfsubjectaccessreview/rest.go,
selfsubjectrulesreview/rest.go ("no namespace on request"), pkg/registry/authentication/
selfsubjectreview/rest.go; validation in pkg/apis/authorization/validation/validation.go
(exactly one of resourceAttributes / nonResourceAttributes). RBAC on any resource name works:
``can-i list jobs.batch`` is decided by the stored rules although sa-oidc serves no Jobs (kubectl
then sends the resource as ``jobs.batch`` with no group; it is read as ``jobs`` in ``batch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from issuer import authz
from issuer.api._http import context, endpoint, field_validation, json_response, run_sync
from issuer.api.auth import Caller, authorize, decide, load_policy
from issuer.api.errors import FieldError, bad_request, invalid
from issuer.api.rbac import review_attributes
from issuer.api.validation import FieldValidation, KindInfo, decode_object, type_error
from issuer.context import IssuerContext
from issuer.goquote import go_quote
from issuer.http.status import read_json_body
from issuer.store import JSON

__all__ = [
    "AUTHENTICATION_V1",
    "AUTHORIZATION_V1",
    "routes",
    "self_subject_access_review",
    "self_subject_review",
    "self_subject_rules_review",
]

AUTHORIZATION_V1: Final = "authorization.k8s.io/v1"
AUTHENTICATION_V1: Final = "authentication.k8s.io/v1"
_TOP: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_RESOURCE_ATTRS: Final = (
    "namespace", "verb", "group", "version", "resource", "subresource", "name",
)  # fmt: skip
_NON_RESOURCE_ATTRS: Final = ("path", "verb")


def _info(kind: str, resource: str, api_version: str) -> KindInfo:
    return KindInfo(kind, resource, False, "subdomain", _TOP, api_version)


def _unknown(
    obj: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, mode: FieldValidation
) -> list[str]:
    # Strict refuses (400), Warn warns, Ignore drops (as issuer.api.validation).
    unknown = [f"{prefix}{k}" for k in obj if k not in allowed]
    if unknown and mode == "Strict":
        raise bad_request(
            "strict decoding error: " + ", ".join(f"unknown field {go_quote(n)}" for n in unknown)
        )
    return [f"unknown field {go_quote(n)}" for n in unknown] if mode == "Warn" else []


def _strings(obj: Mapping[str, Any], keys: tuple[str, ...], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise type_error(value, f"{where}.{key}", "string")
        if value:
            out[key] = value
    return out


def _mapping(value: Any, where: str, go_type: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise type_error(value, where, go_type)
    return value


def _empty_metadata_errors(meta: Mapping[str, Any]) -> list[FieldError]:
    # kube: validation.go — a review's metadata must be empty.
    if meta:
        return [FieldError("Invalid", "metadata", None, "must be empty")]
    return []


def self_subject_access_review(
    ctx: IssuerContext, caller: Caller, body: dict[str, Any], mode: FieldValidation = "Strict"
) -> tuple[JSON, list[str]]:
    """Decide a SelfSubjectAccessReview for ``caller``; return it with ``status`` and warnings."""
    kind = "SelfSubjectAccessReview"
    decoded = decode_object(
        body, _info(kind, "selfsubjectaccessreviews", AUTHORIZATION_V1), field_validation=mode
    )
    warnings = decoded.warnings
    where = f"{kind}.spec"
    spec_in = _mapping(decoded.obj.get("spec") or {}, where, "v1.SelfSubjectAccessReviewSpec")
    warnings += _unknown(spec_in, ("resourceAttributes", "nonResourceAttributes"), "spec.", mode)
    spec: dict[str, Any] = {}
    if spec_in.get("resourceAttributes") is not None:
        ra = _mapping(
            spec_in["resourceAttributes"], f"{where}.resourceAttributes", "v1.ResourceAttributes"
        )
        warnings += _unknown(
            ra,
            (*_RESOURCE_ATTRS, "fieldSelector", "labelSelector"),
            "spec.resourceAttributes.",
            mode,
        )
        spec["resourceAttributes"] = _strings(ra, _RESOURCE_ATTRS, f"{where}.resourceAttributes")
    if spec_in.get("nonResourceAttributes") is not None:
        nra = _mapping(
            spec_in["nonResourceAttributes"],
            f"{where}.nonResourceAttributes",
            "v1.NonResourceAttributes",
        )
        warnings += _unknown(nra, _NON_RESOURCE_ATTRS, "spec.nonResourceAttributes.", mode)
        spec["nonResourceAttributes"] = _strings(
            nra, _NON_RESOURCE_ATTRS, f"{where}.nonResourceAttributes"
        )
    # kube: ValidateSelfSubjectAccessReviewSpec
    errs: list[FieldError] = []
    if "resourceAttributes" in spec and "nonResourceAttributes" in spec:
        errs.append(
            FieldError(
                "Invalid",
                "spec.nonResourceAttributes",
                None,
                "cannot be specified in combination with resourceAttributes",
            )
        )
    elif not spec:
        errs.append(
            FieldError(
                "Invalid",
                "spec.resourceAttributes",
                None,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    errs += _empty_metadata_errors(decoded.obj.get("metadata") or {})
    if errs:
        raise invalid(kind, "", errs, group="authorization.k8s.io")
    asked = dict(spec)
    ra_in = spec.get("resourceAttributes") or {}
    resource = ra_in.get("resource", "")
    if "." in resource and not ra_in.get("group"):
        # kubectl sends "jobs.batch" as the resource, group "", when discovery does not list the
        # resource (can_i.go resourceFor) — as it is for every kind sa-oidc authorizes without
        # serving. Kube resource names hold no ".", so this is the RESTMapper's answer:
        # resource "jobs" in group "batch". The spec is echoed as sent.
        name, _, group = resource.partition(".")
        asked["resourceAttributes"] = {**ra_in, "resource": name, "group": group}
    attrs = review_attributes({**asked, "user": caller.user, "groups": list(caller.groups)})
    decision = decide(ctx.store, attrs)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    out = {
        "kind": kind,
        "apiVersion": AUTHORIZATION_V1,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
    return out, warnings


def self_subject_rules_review(
    ctx: IssuerContext, caller: Caller, body: dict[str, Any], mode: FieldValidation = "Strict"
) -> tuple[JSON, list[str]]:
    """Every rule ``caller`` holds in ``spec.namespace`` (kube: RBAC RulesFor): resource rules,
    non-resource rules, and ``incomplete`` with the resolution errors when a binding dangles."""
    kind = "SelfSubjectRulesReview"
    decoded = decode_object(
        body, _info(kind, "selfsubjectrulesreviews", AUTHORIZATION_V1), field_validation=mode
    )
    warnings = decoded.warnings
    spec_in = _mapping(
        decoded.obj.get("spec") or {}, f"{kind}.spec", "v1.SelfSubjectRulesReviewSpec"
    )
    warnings += _unknown(spec_in, ("namespace",), "spec.", mode)
    namespace = _strings(spec_in, ("namespace",), f"{kind}.spec").get("namespace", "")
    if not namespace:
        raise bad_request("no namespace on request")  # kube: selfsubjectrulesreview/rest.go
    policy = load_policy(ctx.store, caller.user, caller.groups, namespace)
    rules, errors = authz.rules_for(
        caller.user,
        caller.groups,
        namespace,
        policy.roles,
        policy.cluster_roles,
        policy.role_bindings,
        policy.cluster_role_bindings,
    )
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for rule in rules:
        # kube: rbac.go RulesFor -> ResourceRuleInfo / NonResourceRuleInfo, one per rule kind.
        if rule.resources:
            entry: dict[str, Any] = {
                "verbs": list(rule.verbs),
                "apiGroups": list(rule.api_groups),
                "resources": list(rule.resources),
            }
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource_rules.append(entry)
        if rule.non_resource_urls:
            non_resource_rules.append(
                {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
            )
    status: dict[str, Any] = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": bool(errors),
    }
    if errors:
        status["evaluationError"] = "; ".join(errors)
    out = {
        "kind": kind,
        "apiVersion": AUTHORIZATION_V1,
        "metadata": {"creationTimestamp": None},
        "spec": {"namespace": namespace},
        "status": status,
    }
    return out, warnings


def self_subject_review(
    caller: Caller, body: dict[str, Any], mode: FieldValidation = "Strict"
) -> tuple[JSON, list[str]]:
    """kube: selfsubjectreview/rest.go — the caller's user info (pure)."""
    kind = "SelfSubjectReview"
    decoded = decode_object(
        body, _info(kind, "selfsubjectreviews", AUTHENTICATION_V1), field_validation=mode
    )
    user: dict[str, Any] = {"username": caller.user}
    if caller.uid:
        user["uid"] = caller.uid
    user["groups"] = list(caller.groups)
    if caller.extra:
        user["extra"] = {k: list(v) for k, v in caller.extra}
    out = {
        "kind": kind,
        "apiVersion": AUTHENTICATION_V1,
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user},
    }
    return out, decoded.warnings


# --- HTTP ---------------------------------------------------------------------------------------


async def _review(
    request: Request,
) -> tuple[IssuerContext, Caller, dict[str, Any], FieldValidation]:
    ctx = context(request)
    caller = await authorize(request)
    mode = field_validation(request)
    body = await read_json_body(request, ctx.config.max_body_bytes)
    return ctx, caller, body, mode


@endpoint
async def access_review(request: Request) -> Response:
    """``POST .../selfsubjectaccessreviews`` (201)."""
    ctx, caller, body, mode = await _review(request)
    out, warnings = await run_sync(self_subject_access_review, ctx, caller, body, mode)
    return json_response(out, 201, warnings)


@endpoint
async def rules_review(request: Request) -> Response:
    """``POST .../selfsubjectrulesreviews`` (201)."""
    ctx, caller, body, mode = await _review(request)
    out, warnings = await run_sync(self_subject_rules_review, ctx, caller, body, mode)
    return json_response(out, 201, warnings)


@endpoint
async def user_review(request: Request) -> Response:
    """``POST .../selfsubjectreviews`` (201)."""
    _ctx, caller, body, mode = await _review(request)
    out, warnings = self_subject_review(caller, body, mode)
    return json_response(out, 201, warnings)


def routes() -> list[BaseRoute]:
    """The three self-review routes (POST only)."""
    post = ["POST"]
    return [
        Route(f"/apis/{AUTHORIZATION_V1}/selfsubjectaccessreviews", access_review, methods=post),
        Route(f"/apis/{AUTHORIZATION_V1}/selfsubjectrulesreviews", rules_review, methods=post),
        Route(f"/apis/{AUTHENTICATION_V1}/selfsubjectreviews", user_review, methods=post),
    ]
