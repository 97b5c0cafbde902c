"""RBAC objects (``rbac.authorization.k8s.io/v1``) and SubjectAccessReview
(``authorization.k8s.io/v1``) for the issuer's own API.

==========================================================================  ======================
path (under ``/apis/rbac.authorization.k8s.io/v1``)                         methods
==========================================================================  ======================
/clusterroles, /clusterrolebindings                                         GET (list), POST
/clusterroles/{name}, /clusterrolebindings/{name}                           GET, DELETE
/namespaces/{ns}/roles, /namespaces/{ns}/rolebindings                       GET (list), POST
/namespaces/{ns}/roles/{name}, /namespaces/{ns}/rolebindings/{name}         GET, DELETE
/roles, /rolebindings                                                       GET (all namespaces)
``/apis/authorization.k8s.io/{v1,v1beta1}/subjectaccessreviews``            POST
==========================================================================  ======================

Create follows kube's order, and a refused request stores nothing: decode (400, strict like the
other objects) → defaults (kube: pkg/apis/rbac/v1/defaults.go) → validation (422, kube:
pkg/apis/rbac/validation/validation.go) → the namespace exists and is active (404/403) →
escalation check (403; kube: pkg/registry/rbac/{role,rolebinding,...}/policybased/storage.go) →
store (409 AlreadyExists).

A ClusterRole may carry an ``aggregationRule`` (``clusterRoleSelectors``, label selectors
validated as kube does, 422): its rules are then those of the ClusterRoles it selects
(:func:`issuer.authz.resolve_aggregation`), as kube's aggregation controller makes them.

Escalation prevention, as kube: a caller in ``system:masters`` may create anything; otherwise a
Role/ClusterRole needs ``escalate`` on roles/clusterroles or must grant only rules the caller
already holds there, and a binding needs ``bind`` on the referenced role (resourceNames can name
it) or must reference a role whose rules the caller already holds in the binding's namespace
("" for a ClusterRoleBinding; an aggregated role counts with its aggregated rules). Creating a
ClusterRole with an aggregationRule also needs full authority (``*`` on ``*.*``; kube:
clusterrole/policybased/storage.go). A binding's referenced role need not exist unless that last
check has to read it (404, as kube).

The built-in ClusterRoles and ClusterRoleBindings (:mod:`issuer.authz`) are listed and read
like stored ones (label ``kubernetes.io/bootstrapping: rbac-defaults``) but are not stored:
creating one of their names is 409 AlreadyExists, deleting one is 403 (kube would let it be
deleted and recreate it at the next restart). kube-apiserver creates them at start when missing
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy, the ``rbac/bootstrap-roles`` post-start hook),
so they carry the metadata of stored objects; here they are made by the serving process, so their
``creationTimestamp`` is when it started (``IssuerContext.started_at``: each replica and restart
shows its own), their ``uid`` is derived from the name (the same everywhere, always) and their
``resourceVersion`` is ``"1"`` (they never change while served and never appear in a watch).

Deleting a namespace also deletes its Roles and RoleBindings, before the Namespace object itself
(:func:`issuer.api.objects.delete_object`), so a namespace recreated with the same name starts
with no grants.

SubjectAccessReview answers kube-apiserver's authorization webhook unchanged
(``--authorization-webhook-config-file``; v1beta1 names the groups field ``group``):
``status: {allowed, reason}`` (``denied`` is never set: RBAC has no deny rules; the webhook
then asks its next authorizer). A store that cannot be reached is 503, never ``allowed``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from issuer import authz, bootstrap_policy
from issuer.api import watch
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
from issuer.api.auth import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
    Caller,
    authorize,
    decide,
    load_policy,
)
from issuer.api.errors import (
    FieldError,
    already_exists,
    bad_request,
    forbidden,
    invalid,
    method_not_allowed,
    not_found,
)
from issuer.api.listing import (
    ListOptions,
    list_collection,
    list_response,
    parse_list_options,
    selector_predicate,
    with_name,
)
from issuer.api.validation import (
    FieldValidation,
    KindInfo,
    decode_object,
    dns1123_subdomain_errors,
    type_error,
)
from issuer.authz import RBAC_GROUP, Attributes, PolicyRule, Role
from issuer.context import IssuerContext
from issuer.goquote import go_quote, go_quote_list
from issuer.http.status import read_json_body
from issuer.rbac_index import index_for
from issuer.selectors import SelectorError, label_selector_from_json
from issuer.store import JSON, AlreadyExists, NotFound
from issuer.timefmt import rfc3339

__all__ = [
    "RBAC_KINDS",
    "SAR_API_VERSIONS",
    "create_rbac_object",
    "create_subject_access_review",
    "delete_rbac_object",
    "get_rbac_object",
    "list_rbac_objects",
    "routes",
]

RBAC_V1: Final = f"{RBAC_GROUP}/v1"
AUTHORIZATION_GROUP: Final = "authorization.k8s.io"
SAR_API_VERSIONS: Final = (f"{AUTHORIZATION_GROUP}/v1", f"{AUTHORIZATION_GROUP}/v1beta1")
_BASE: Final = f"/apis/{RBAC_V1}"

_ROLE_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "rules"})
_CLUSTER_ROLE_FIELDS: Final = _ROLE_FIELDS | {"aggregationRule"}
_BINDING_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "subjects", "roleRef"})

#: Stored kind -> what the API knows about it (name_rule is unused: RBAC names are path
#: segments, see _path_segment_errors).
RBAC_KINDS: Final[Mapping[str, KindInfo]] = {
    ROLE: KindInfo(ROLE, "roles", True, "subdomain", _ROLE_FIELDS, RBAC_V1),
    CLUSTER_ROLE: KindInfo(
        CLUSTER_ROLE, "clusterroles", False, "subdomain", _CLUSTER_ROLE_FIELDS, RBAC_V1
    ),
    ROLE_BINDING: KindInfo(
        ROLE_BINDING, "rolebindings", True, "subdomain", _BINDING_FIELDS, RBAC_V1
    ),
    CLUSTER_ROLE_BINDING: KindInfo(
        CLUSTER_ROLE_BINDING, "clusterrolebindings", False, "subdomain", _BINDING_FIELDS, RBAC_V1
    ),
}

_RULE_FIELDS: Final = frozenset(
    {"verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"}
)
_SUBJECT_FIELDS: Final = frozenset({"kind", "apiGroup", "name", "namespace"})
_ROLE_REF_FIELDS: Final = frozenset({"apiGroup", "kind", "name"})
_BUILTIN_LABELS: Final = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_BUILTIN_ANNOTATIONS: Final = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


# --- decoding (400) -----------------------------------------------------------------------------


def _obj(value: Any, where: str, go_type: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise type_error(value, where, go_type)
    return dict(value)


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise type_error(value, where, "string")
    return value


def _strs(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise type_error(value, where, "[]string")
    for item in value:
        if not isinstance(item, str):
            raise type_error(item, where, "string")
    return list(value)


def _unknown(
    obj: dict[str, Any], allowed: frozenset[str], prefix: str, mode: FieldValidation
) -> list[str]:
    # Strict refuses (400), Warn drops with a warning, Ignore drops (as issuer.api.validation).
    unknown = [k for k in obj if k not in allowed]
    if not unknown:
        return []
    names = [f"{prefix}{k}" for k in unknown]
    if mode == "Strict":
        raise bad_request(
            "strict decoding error: " + ", ".join(f"unknown field {go_quote(n)}" for n in names)
        )
    for k in unknown:
        del obj[k]
    return [f"unknown field {go_quote(n)}" for n in names] if mode == "Warn" else []


def _decode_rules(kind: str, value: Any, mode: FieldValidation, warnings: list[str]) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise type_error(value, f"{kind}.rules", "[]v1.PolicyRule")
    rules = []
    for i, raw in enumerate(value):
        rule = _obj(raw, f"{kind}.rules", "v1.PolicyRule")
        warnings += _unknown(rule, _RULE_FIELDS, f"rules[{i}].", mode)
        out: dict[str, Any] = {}
        for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            items = _strs(rule.get(key), f"{kind}.rules.{key}")
            if items or key == "verbs":
                out[key] = items  # kube: verbs has no omitempty
        rules.append(out)
    return rules


def _decode_binding(
    kind: str, obj: dict[str, Any], mode: FieldValidation, warnings: list[str]
) -> None:
    subjects = obj.get("subjects")
    decoded_subjects = []
    if subjects is not None:
        if not isinstance(subjects, list):
            raise type_error(subjects, f"{kind}.subjects", "[]v1.Subject")
        for i, raw in enumerate(subjects):
            subject = _obj(raw, f"{kind}.subjects", "v1.Subject")
            warnings += _unknown(subject, _SUBJECT_FIELDS, f"subjects[{i}].", mode)
            s = {k: _str(subject.get(k), f"{kind}.subjects.{k}") for k in _SUBJECT_FIELDS}
            # kube: rbac/v1 defaults.go SetDefaults_Subject.
            if not s["apiGroup"] and s["kind"] in ("User", "Group"):
                s["apiGroup"] = RBAC_GROUP
            out = {"kind": s["kind"], "apiGroup": s["apiGroup"], "name": s["name"]}
            if s["namespace"]:
                out["namespace"] = s["namespace"]
            if not out["apiGroup"]:
                del out["apiGroup"]  # omitempty
            decoded_subjects.append(out)
    if decoded_subjects or subjects is not None:
        obj["subjects"] = decoded_subjects
    else:
        obj.pop("subjects", None)
    ref = _obj(obj.get("roleRef") or {}, f"{kind}.roleRef", "v1.RoleRef")
    warnings += _unknown(ref, _ROLE_REF_FIELDS, "roleRef.", mode)
    role_ref = {k: _str(ref.get(k), f"{kind}.roleRef.{k}") for k in ("apiGroup", "kind", "name")}
    # kube: defaults.go SetDefaults_RoleBinding / SetDefaults_ClusterRoleBinding.
    role_ref["apiGroup"] = role_ref["apiGroup"] or RBAC_GROUP
    obj["roleRef"] = role_ref


def decode_rbac_object(
    kind: str, body: dict[str, Any], namespace: str, mode: FieldValidation = "Strict"
) -> tuple[JSON, list[str]]:
    """Decode and default a create body for an RBAC kind (400 on decoding errors)."""
    info = RBAC_KINDS[kind]
    decoded = decode_object(body, info, path_namespace=namespace, field_validation=mode)
    obj, warnings = decoded.obj, decoded.warnings
    if kind in (ROLE, CLUSTER_ROLE):
        obj["rules"] = _decode_rules(kind, obj.get("rules"), mode, warnings)
        if obj.get("aggregationRule") is not None:
            agg = _obj(obj["aggregationRule"], f"{kind}.aggregationRule", "v1.AggregationRule")
            warnings += _unknown(agg, frozenset({"clusterRoleSelectors"}), "aggregationRule.", mode)
            selectors = agg.get("clusterRoleSelectors")
            if selectors is not None and not isinstance(selectors, list):
                raise type_error(
                    selectors, f"{kind}.aggregationRule.clusterRoleSelectors", "[]v1.LabelSelector"
                )
            agg["clusterRoleSelectors"] = [
                _obj(s, f"{kind}.aggregationRule.clusterRoleSelectors", "v1.LabelSelector")
                for s in selectors or []
            ]
            obj["aggregationRule"] = agg
    else:
        _decode_binding(kind, obj, mode, warnings)
    return obj, warnings


# --- validation (422) ---------------------------------------------------------------------------


def _path_segment_errors(name: str) -> list[str]:
    # kube: apimachinery/pkg/api/validation/path/name.go IsValidPathSegmentName.
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    errs = [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    if "\x00" in name:
        errs.append("may not contain NUL")  # sa-oidc: the store refuses NUL in keys
    return errs


def _not_supported(field: str, value: str, supported: list[str]) -> FieldError:
    # kube: field.NotSupported — "supported values: "a", "b"".
    return FieldError(
        "NotSupported",
        field,
        value,
        "supported values: " + ", ".join(go_quote(s) for s in supported),
    )


def _rule_errors(rule: Mapping[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    # kube: validation.go validatePolicyRule
    errs: list[FieldError] = []
    if not rule.get("verbs"):
        errs.append(
            FieldError("Required", f"{path}.verbs", detail="verbs must contain at least one value")
        )
    urls = rule.get("nonResourceURLs") or []
    if urls:
        value = go_quote_list(urls)
        if namespaced:
            errs.append(
                FieldError(
                    "Invalid",
                    f"{path}.nonResourceURLs",
                    _Raw(value),
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errs.append(
                FieldError(
                    "Invalid",
                    f"{path}.nonResourceURLs",
                    _Raw(value),
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return errs
    if not rule.get("apiGroups"):
        errs.append(
            FieldError(
                "Required",
                f"{path}.apiGroups",
                detail="resource rules must supply at least one api group",
            )
        )
    if not rule.get("resources"):
        errs.append(
            FieldError(
                "Required",
                f"{path}.resources",
                detail="resource rules must supply at least one resource",
            )
        )
    if rule.get("resourceNames") and len(rule.get("resources") or []) > 1:
        errs.append(
            FieldError(
                "Required",
                f"{path}.resourceNames",
                detail="resource names cannot apply to multiple resources",
            )
        )
    return errs


@dataclass(frozen=True, slots=True)
class _Raw:
    """A field value already rendered (Go's ``%v`` of a slice: ``["a" "b"]``), not re-quoted."""

    text: str

    def __str__(self) -> str:
        return self.text


def _subject_errors(subject: Mapping[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    # kube: validation.go validateRoleBindingSubject
    errs: list[FieldError] = []
    name = subject.get("name", "")
    api_group = subject.get("apiGroup", "")
    kind = subject.get("kind", "")
    if not name:
        errs.append(FieldError("Required", f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += [
                FieldError("Invalid", f"{path}.name", name, m)
                for m in dns1123_subdomain_errors(name)
            ]
        if api_group:
            errs.append(_not_supported(f"{path}.apiGroup", api_group, [""]))
        if not namespaced and not subject.get("namespace"):
            errs.append(FieldError("Required", f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if not name:
            errs.append(
                FieldError("Invalid", f"{path}.name", name, f"{kind.lower()} name cannot be empty")
            )
        if api_group != RBAC_GROUP:
            errs.append(_not_supported(f"{path}.apiGroup", api_group, [RBAC_GROUP]))
    else:
        errs.append(_not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return errs


def _aggregation_rule_errors(rule: Any) -> list[FieldError]:
    # kube: pkg/apis/rbac/validation/validation.go ValidateClusterRole (aggregationRule).
    if rule is None:
        return []
    path = "aggregationRule.clusterRoleSelectors"
    selectors = rule.get("clusterRoleSelectors") or []
    if not selectors:
        return [
            FieldError(
                "Required",
                path,
                detail="at least one clusterRoleSelector required if aggregationRule is non-nil",
            )
        ]
    errs: list[FieldError] = []
    for i, selector in enumerate(selectors):
        try:
            label_selector_from_json(selector)
        except SelectorError as e:
            errs.append(FieldError("Invalid", f"{path}[{i}]", str(e), "invalid label selector."))
    return errs


def validate_rbac_object(kind: str, obj: Mapping[str, Any]) -> None:
    """Raise 422 Invalid when a decoded RBAC object breaks kube's validation rules."""
    info = RBAC_KINDS[kind]
    meta = obj["metadata"]
    name = meta.get("name", "")
    errs: list[FieldError] = []
    if not name:
        errs.append(
            FieldError("Required", "metadata.name", detail="name or generateName is required")
        )
    else:
        errs += [
            FieldError("Invalid", "metadata.name", name, m) for m in _path_segment_errors(name)
        ]
    if kind in (ROLE, CLUSTER_ROLE):
        for i, rule in enumerate(obj.get("rules") or []):
            errs += _rule_errors(rule, info.namespaced, f"rules[{i}]")
        errs += _aggregation_rule_errors(obj.get("aggregationRule"))
    else:
        ref = obj["roleRef"]
        if ref["apiGroup"] != RBAC_GROUP:
            errs.append(_not_supported("roleRef.apiGroup", ref["apiGroup"], [RBAC_GROUP]))
        kinds = ["Role", "ClusterRole"] if info.namespaced else ["ClusterRole"]
        if ref["kind"] not in kinds:
            errs.append(_not_supported("roleRef.kind", ref["kind"], kinds))
        if not ref["name"]:
            errs.append(FieldError("Required", "roleRef.name"))
        else:
            errs += [
                FieldError("Invalid", "roleRef.name", ref["name"], m)
                for m in _path_segment_errors(ref["name"])
            ]
        for i, subject in enumerate(obj.get("subjects") or []):
            errs += _subject_errors(subject, info.namespaced, f"subjects[{i}]")
    if errs:
        raise invalid(kind, name, errs, group=RBAC_GROUP)


# --- built-ins ----------------------------------------------------------------------------------

_RESOLVED_BUILTINS: Final = authz.resolve_aggregation(authz.BUILTIN_CLUSTER_ROLES)


#: The resourceVersion of every built-in (module docstring).
_BUILTIN_RESOURCE_VERSION: Final = "1"


def _builtin_meta(
    name: str, labels: Mapping[str, str] | None = None, created: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sa-oidc:rbac:{name}")),
        "resourceVersion": _BUILTIN_RESOURCE_VERSION,
        "labels": {**(labels or {}), **_BUILTIN_LABELS},
        "annotations": dict(_BUILTIN_ANNOTATIONS),
    }
    if created is not None:
        meta["creationTimestamp"] = created
    return meta


def _builtin(kind: str, name: str, created: str | None = None) -> JSON | None:
    if kind == CLUSTER_ROLE:
        role = authz.BUILTIN_CLUSTER_ROLES.get(name)
        if role is None:
            return None
        out: JSON = {
            "apiVersion": RBAC_V1,
            "kind": CLUSTER_ROLE,
            "metadata": _builtin_meta(name, dict(role.labels), created),
            "rules": [r.to_json() for r in _RESOLVED_BUILTINS[name].rules],
        }
        selectors = bootstrap_policy.CLUSTER_ROLES[name].get("aggregate")
        if selectors is not None:
            # Shown with the rules aggregated from the built-ins (stored roles labelled
            # aggregate-to-NAME add theirs when RBAC evaluates it).
            out["aggregationRule"] = {
                "clusterRoleSelectors": [{"matchLabels": dict(sel)} for sel in selectors]
            }
        return out
    if kind == CLUSTER_ROLE_BINDING:
        binding = authz.BUILTIN_CLUSTER_ROLE_BINDINGS.get(name)
        if binding is None:
            return None
        return {
            "apiVersion": RBAC_V1,
            "kind": CLUSTER_ROLE_BINDING,
            "metadata": _builtin_meta(name, created=created),
            "subjects": [
                {"kind": s.kind, "apiGroup": s.api_group, "name": s.name} for s in binding.subjects
            ],
            "roleRef": {
                "apiGroup": binding.role_ref.api_group,
                "kind": binding.role_ref.kind,
                "name": binding.role_ref.name,
            },
        }
    return None


def _builtin_created(ctx: IssuerContext) -> str:
    """The built-ins' ``creationTimestamp``: when this process started (module docstring)."""
    return rfc3339(ctx.started_at)


def _builtin_names(kind: str) -> list[str]:
    if kind == CLUSTER_ROLE:
        return list(authz.BUILTIN_CLUSTER_ROLES)
    if kind == CLUSTER_ROLE_BINDING:
        return list(authz.BUILTIN_CLUSTER_ROLE_BINDINGS)
    return []


# --- escalation (kube: pkg/registry/rbac/escalation_check.go, validation/rule.go) ---------------


def _owner_rules(
    ctx: IssuerContext, caller: Caller, namespace: str
) -> tuple[list[PolicyRule], list[str]]:
    policy = load_policy(ctx.store, caller.user, caller.groups, namespace)
    return authz.rules_for(
        caller.user,
        caller.groups,
        namespace,
        policy.roles,
        policy.cluster_roles,
        policy.role_bindings,
        policy.cluster_role_bindings,
    )


def _confirm_no_escalation(
    ctx: IssuerContext,
    caller: Caller,
    namespace: str,
    rules: list[PolicyRule],
    resource: str,
    name: str,
) -> None:
    """kube: rule.go ConfirmNoEscalation -> 403 Forbidden with its text."""
    owner, errors = _owner_rules(ctx, caller, namespace)
    ok, missing = authz.covers(owner, rules)
    if ok:
        return
    lines = sorted({r.compact_string() for r in authz.compact_rules(missing)})
    msg = (
        f"user {go_quote(caller.user)} (groups={go_quote_list(caller.groups)}) is attempting to "
        "grant RBAC permissions not currently held:\n" + "\n".join(lines)
    )
    if errors:
        msg += "; resolution errors: [" + " ".join(errors) + "]"
    raise forbidden(resource, name, msg, group=RBAC_GROUP)


def _allowed(ctx: IssuerContext, caller: Caller, **attrs: Any) -> bool:
    return decide(
        ctx.store, Attributes(user=caller.user, groups=caller.groups, api_group=RBAC_GROUP, **attrs)
    ).allowed


def _referenced_rules(
    ctx: IssuerContext, ref: Mapping[str, str], namespace: str
) -> list[PolicyRule]:
    """kube: GetRoleReferenceRules, from the store (404 when the role does not exist)."""
    if ref["kind"] == "Role":
        try:
            return list(Role.from_object(ctx.store.get_object(ROLE, namespace, ref["name"])).rules)
        except NotFound:
            raise not_found("roles", ref["name"], RBAC_GROUP) from None
    # Built-in or stored, with aggregation resolved (admin/edit/view, or a stored role with an
    # aggregationRule, hold the rules of the roles they select): the RBAC index has them current.
    cluster_role = index_for(ctx.store).cluster_role(ref["name"])
    if cluster_role is None:
        raise not_found("clusterroles", ref["name"], RBAC_GROUP)
    return list(cluster_role.rules)


#: kube: clusterrole/policybased/storage.go fullAuthority.
_FULL_AUTHORITY: Final = (
    PolicyRule(verbs=("*",), api_groups=("*",), resources=("*",)),
    PolicyRule(verbs=("*",), non_resource_urls=("*",)),
)


def _check_escalation(
    ctx: IssuerContext, caller: Caller, kind: str, namespace: str, obj: JSON
) -> None:
    if authz.MASTERS_GROUP in caller.groups:
        return  # kube: EscalationAllowed — system:masters may grant anything
    info = RBAC_KINDS[kind]
    name = obj["metadata"]["name"]
    if kind in (ROLE, CLUSTER_ROLE):
        # kube: RoleEscalationAuthorized — "escalate" on roles/clusterroles (the create's name
        # is not part of the request attributes).
        if _allowed(ctx, caller, verb="escalate", resource=info.resource, namespace=namespace):
            return
        rules = [PolicyRule.from_json(r) for r in obj.get("rules") or []]
        _confirm_no_escalation(ctx, caller, namespace, rules, info.resource, name)
        if obj.get("aggregationRule") is not None:
            # kube: clusterrole/policybased/storage.go — an aggregationRule can gather anything,
            # so it needs * on *.* (and every non-resource URL).
            owner, _errors = _owner_rules(ctx, caller, "")
            if not authz.covers(owner, _FULL_AUTHORITY)[0]:
                raise forbidden(
                    info.resource,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                    group=RBAC_GROUP,
                )
        return
    ref = obj["roleRef"]
    # kube: BindingAuthorized — "bind" on the referenced role, in the binding's namespace.
    bound_resource = "roles" if ref["kind"] == "Role" else "clusterroles"
    if _allowed(
        ctx, caller, verb="bind", resource=bound_resource, name=ref["name"], namespace=namespace
    ):
        return
    rules = _referenced_rules(ctx, ref, namespace)
    _confirm_no_escalation(ctx, caller, namespace, rules, info.resource, name)


# --- services (synchronous; the handlers run them in the thread pool) -----------------------------


def _require_active_namespace(
    ctx: IssuerContext, info: KindInfo, namespace: str, name: str
) -> None:
    # kube: plugin/pkg/admission/namespace/lifecycle/admission.go
    try:
        ns = ctx.store.get_object("Namespace", "", namespace)
    except NotFound:
        raise not_found("namespaces", namespace) from None
    if (ns.get("status") or {}).get("phase") == "Terminating":
        raise forbidden(
            info.resource,
            name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
            group=RBAC_GROUP,
        )


def create_rbac_object(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    body: dict[str, Any],
    mode: FieldValidation,
    caller: Caller,
    *,
    stamp: Callable[[JSON], None] | None = None,
    dry_run: bool = False,
) -> tuple[JSON, list[str]]:
    """Create a Role, ClusterRole, RoleBinding or ClusterRoleBinding (see the module docstring
    for the order of checks); return it as stored and the ``Warning`` texts. ``stamp`` finishes
    the object just before it is stored (managedFields); ``dry_run`` stores nothing."""
    info = RBAC_KINDS[kind]
    ns = namespace if info.namespaced else ""
    obj, warnings = decode_rbac_object(kind, body, ns, mode)
    validate_rbac_object(kind, obj)
    name: str = obj["metadata"]["name"]
    if _builtin(kind, name) is not None:
        raise already_exists(info.resource, name, RBAC_GROUP)
    if info.namespaced:
        _require_active_namespace(ctx, info, ns, name)
    _check_escalation(ctx, caller, kind, ns, obj)
    obj["metadata"]["uid"] = str(uuid.uuid4())
    obj["metadata"]["creationTimestamp"] = rfc3339(ctx.clock())
    if stamp is not None:
        stamp(obj)
    if dry_run:
        with contextlib.suppress(NotFound):
            ctx.store.get_object(kind, ns, name)
            raise already_exists(info.resource, name, RBAC_GROUP)
        return obj, warnings
    try:
        stored = ctx.store.create_object(kind, ns, name, obj)
    except AlreadyExists:
        raise already_exists(info.resource, name, RBAC_GROUP) from None
    ctx.audit_event(
        "rbac_created", caller=caller.label, kind=kind, namespace=ns, name=name,
        uid=obj["metadata"]["uid"],
    )  # fmt: skip
    return stored, warnings


def builtin_object(kind: str, name: str) -> JSON | None:
    """The built-in ClusterRole/ClusterRoleBinding ``name`` (read-only), or None."""
    return _builtin(kind, name)


def check_escalation(
    ctx: IssuerContext, caller: Caller, kind: str, namespace: str, obj: JSON
) -> None:
    """403 unless ``caller`` may write ``obj`` without escalating (creates and updates alike)."""
    _check_escalation(ctx, caller, kind, namespace, obj)


def _valid_key(name: str) -> bool:
    return bool(name) and "\x00" not in name


def get_rbac_object(ctx: IssuerContext, kind: str, namespace: str, name: str) -> JSON:
    """One RBAC object (built-ins included), or 404."""
    info = RBAC_KINDS[kind]
    builtin = _builtin(kind, name, _builtin_created(ctx))
    if builtin is not None:
        return builtin
    if _valid_key(name):
        with contextlib.suppress(NotFound):
            obj: JSON = ctx.store.get_object(kind, namespace if info.namespaced else "", name)
            return obj
    raise not_found(info.resource, name, RBAC_GROUP)


def list_rbac_objects(
    ctx: IssuerContext, kind: str, namespace: str | None, opts: ListOptions | None = None
) -> JSON:
    """A ``<Kind>List`` (``namespace`` None = all namespaces; built-ins included in name
    order), paginated and filtered as :mod:`issuer.api.listing` says."""
    info = RBAC_KINDS[kind]
    store_namespace = namespace if info.namespaced else ""
    created = _builtin_created(ctx)
    builtins = [
        b for b in (_builtin(kind, n, created) for n in _builtin_names(kind)) if b is not None
    ]
    result = list_collection(ctx.store, kind, store_namespace, opts or ListOptions(), builtins)
    return list_response(result, f"{kind}List", RBAC_V1)


def delete_rbac_object(
    ctx: IssuerContext, kind: str, namespace: str, name: str, caller: Caller
) -> JSON:
    """Delete one RBAC object; answer kube's ``Status`` of kind Success (RBAC registries do not
    return the deleted object). Built-ins are 403; missing objects 404."""
    info = RBAC_KINDS[kind]
    if _builtin(kind, name) is not None:
        raise forbidden(
            info.resource, name, "built-in RBAC objects are read-only in sa-oidc", group=RBAC_GROUP
        )
    ns = namespace if info.namespaced else ""
    if not _valid_key(name):
        raise not_found(info.resource, name, RBAC_GROUP)
    try:
        deleted, _seq = ctx.store.delete_object(kind, ns, name)
    except NotFound:
        raise not_found(info.resource, name, RBAC_GROUP) from None
    uid = str((deleted.get("metadata") or {}).get("uid", ""))
    ctx.audit_event(
        "rbac_deleted", caller=caller.label, kind=kind, namespace=ns, name=name, uid=uid
    )
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": RBAC_GROUP, "kind": info.resource, "uid": uid},
    }


# --- SubjectAccessReview ------------------------------------------------------------------------

_SAR_TOP: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_RESOURCE_ATTRS: Final = (
    "namespace", "verb", "group", "version", "resource", "subresource", "name",
)  # fmt: skip
_SELECTOR_ATTRS: Final = ("fieldSelector", "labelSelector")
_NON_RESOURCE_ATTRS: Final = ("path", "verb")


def _sar_kind_info(api_version: str) -> KindInfo:
    return KindInfo(
        "SubjectAccessReview", "subjectaccessreviews", False, "subdomain", _SAR_TOP, api_version
    )


def decode_subject_access_review(
    body: dict[str, Any], api_version: str, mode: FieldValidation = "Strict"
) -> tuple[dict[str, Any], list[str]]:
    """Decode and validate a SubjectAccessReview; return ``(spec, warnings)``.

    400 on decoding errors; 422 as kube's ValidateSubjectAccessReview (kube:
    pkg/apis/authorization/validation/validation.go). v1beta1 spells ``groups`` as ``group``.
    """
    decoded = decode_object(body, _sar_kind_info(api_version), field_validation=mode)
    obj, warnings = decoded.obj, decoded.warnings
    groups_key = "group" if api_version.endswith("/v1beta1") else "groups"
    where = "SubjectAccessReview.spec"
    spec = _obj(obj.get("spec") or {}, where, "v1.SubjectAccessReviewSpec")
    allowed = frozenset(
        {"resourceAttributes", "nonResourceAttributes", "user", groups_key, "extra", "uid"}
    )
    warnings += _unknown(spec, allowed, "spec.", mode)
    out: dict[str, Any] = {}
    for key in ("user", "uid"):
        value = _str(spec.get(key), f"{where}.{key}")
        if value:
            out[key] = value
    groups = _strs(spec.get(groups_key), f"{where}.{groups_key}")
    if groups:
        out[groups_key] = groups
    if spec.get("extra") is not None:
        extra = _obj(spec["extra"], f"{where}.extra", "map[string]v1.ExtraValue")
        out["extra"] = {k: _strs(v, f"{where}.extra") for k, v in extra.items()}
    if spec.get("resourceAttributes") is not None:
        ra = _obj(
            spec["resourceAttributes"], f"{where}.resourceAttributes", "v1.ResourceAttributes"
        )
        warnings += _unknown(
            ra, frozenset({*_RESOURCE_ATTRS, *_SELECTOR_ATTRS}), "spec.resourceAttributes.", mode
        )
        attrs: dict[str, Any] = {}
        for key in _RESOURCE_ATTRS:
            value = _str(ra.get(key), f"{where}.resourceAttributes.{key}")
            if value:
                attrs[key] = value
        for key in _SELECTOR_ATTRS:  # accepted and echoed; RBAC does not look at selectors
            if ra.get(key) is not None:
                attrs[key] = _obj(ra[key], f"{where}.resourceAttributes.{key}", "object")
        out["resourceAttributes"] = attrs
    if spec.get("nonResourceAttributes") is not None:
        nra = _obj(
            spec["nonResourceAttributes"],
            f"{where}.nonResourceAttributes",
            "v1.NonResourceAttributes",
        )
        warnings += _unknown(
            nra, frozenset(_NON_RESOURCE_ATTRS), "spec.nonResourceAttributes.", mode
        )
        out["nonResourceAttributes"] = {
            k: v
            for k in _NON_RESOURCE_ATTRS
            if (v := _str(nra.get(k), f"{where}.nonResourceAttributes.{k}"))
        }

    errs: list[FieldError] = []
    has_ra, has_nra = "resourceAttributes" in out, "nonResourceAttributes" in out
    if has_ra and has_nra:
        errs.append(
            FieldError(
                "Invalid",
                "spec.nonResourceAttributes",
                _Raw(_go_struct(out["nonResourceAttributes"])),
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if not has_ra and not has_nra:
        errs.append(
            FieldError(
                "Invalid",
                "spec.resourceAttributes",
                None,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    if not out.get("user") and not out.get(groups_key):
        errs.append(
            FieldError(
                "Invalid",
                "spec.user",
                out.get("user", ""),
                "at least one of user or group must be specified",
            )
        )
    meta = obj["metadata"]
    if meta:
        errs.append(FieldError("Invalid", "metadata", _Raw(_go_struct(meta)), "must be empty"))
    if errs:
        raise invalid("SubjectAccessReview", "", errs, group=AUTHORIZATION_GROUP)
    return out, warnings


def _go_struct(value: Mapping[str, Any]) -> str:
    # A compact stand-in for Go's %v of a struct in field errors.
    return orjson.dumps(value).decode()


def review_attributes(spec: Mapping[str, Any], groups_key: str = "groups") -> Attributes:
    """kube: pkg/registry/authorization/util AuthorizationAttributesFrom."""
    user = spec.get("user", "")
    groups = tuple(spec.get(groups_key) or ())
    ra = spec.get("resourceAttributes")
    if ra is not None:
        return Attributes(
            user=user,
            groups=groups,
            verb=ra.get("verb", ""),
            api_group=ra.get("group", ""),
            resource=ra.get("resource", ""),
            subresource=ra.get("subresource", ""),
            namespace=ra.get("namespace", ""),
            name=ra.get("name", ""),
        )
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(
        user=user,
        groups=groups,
        verb=nra.get("verb", ""),
        path=nra.get("path", ""),
        resource_request=False,
    )


def create_subject_access_review(
    ctx: IssuerContext, api_version: str, body: dict[str, Any], mode: FieldValidation = "Strict"
) -> tuple[JSON, list[str]]:
    """Decide a SubjectAccessReview; return the response object and ``Warning`` texts."""
    spec, warnings = decode_subject_access_review(body, api_version, mode)
    groups_key = "group" if api_version.endswith("/v1beta1") else "groups"
    decision = decide(ctx.store, review_attributes(spec, groups_key))
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return (
        {
            "kind": "SubjectAccessReview",
            "apiVersion": api_version,
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        },
        warnings,
    )


# --- HTTP ---------------------------------------------------------------------------------------


async def _watch(request: Request, kind: str, namespace: str | None, opts: ListOptions) -> Response:
    ctx = context(request)

    async def lister() -> JSON:
        return await run_sync(list_rbac_objects, ctx, kind, namespace)

    return await watch.watch_response(
        request,
        kind=kind,
        api_version=RBAC_V1,
        namespace=namespace if RBAC_KINDS[kind].namespaced else None,
        lister=lister,
        predicate=selector_predicate(kind, opts),
    )


async def _collection(request: Request, kind: str, namespace: str | None) -> Response:
    ctx = context(request)
    caller = await authorize(request)
    if request.method in ("GET", "HEAD"):
        opts = parse_list_options(request.query_params, kind, namespace)
        if watch.is_watch(request):
            return await _watch(request, kind, namespace, opts)
        return json_response(await run_sync(list_rbac_objects, ctx, kind, namespace, opts))
    if request.method != "POST" or namespace is None:
        raise method_not_allowed()
    mode = field_validation(request)
    body = await read_json_body(request, ctx.config.max_body_bytes)
    stamp = create_stamp(kind, RBAC_V1, field_manager(request), rfc3339(ctx.clock()))
    dry = dry_run(request)
    obj, warnings = await run_sync(
        lambda: create_rbac_object(
            ctx, kind, namespace, body, mode, caller, stamp=stamp, dry_run=dry
        )
    )
    return json_response(obj, 201, warnings)


async def _item(request: Request, kind: str, namespace: str) -> Response:
    ctx = context(request)
    await authorize(request)
    name = request.path_params["name"]
    # Writes (PUT, PATCH, DELETE) are routed to issuer.api.writes.
    if request.method in ("GET", "HEAD"):
        return json_response(await run_sync(get_rbac_object, ctx, kind, namespace, name))
    raise method_not_allowed()


async def _legacy_watch(request: Request, kind: str, namespace: str | None) -> Response:
    """A deprecated ``/apis/rbac.authorization.k8s.io/v1/watch/...`` path: ``?watch=true`` on
    the collection, of one object when the path names it (kube: installer.go ``watch/`` paths,
    get.go ListResource), authorized as verb ``watch`` (requestinfo.go)."""
    await authorize(request)
    opts = parse_list_options(request.query_params, kind, namespace)
    opts = with_name(opts, request.path_params.get("name"))
    return await _watch(request, kind, namespace, opts)


def _legacy_watch_routes(kind: str) -> list[BaseRoute]:
    resource = RBAC_KINDS[kind].resource

    @endpoint
    async def in_namespace(request: Request) -> Response:
        return await _legacy_watch(request, kind, request.path_params["ns"])

    @endpoint
    async def everywhere(request: Request) -> Response:
        return await _legacy_watch(request, kind, None if RBAC_KINDS[kind].namespaced else "")

    base = f"{_BASE}/watch"
    if RBAC_KINDS[kind].namespaced:
        return [
            Route(f"{base}/namespaces/{{ns}}/{resource}", in_namespace, methods=["GET"]),
            Route(f"{base}/namespaces/{{ns}}/{resource}/{{name}}", in_namespace, methods=["GET"]),
            Route(f"{base}/{resource}", everywhere, methods=["GET"]),
        ]
    return [
        Route(f"{base}/{resource}", everywhere, methods=["GET"]),
        Route(f"{base}/{resource}/{{name}}", everywhere, methods=["GET"]),
    ]


def _cluster_routes(kind: str) -> list[BaseRoute]:
    resource = RBAC_KINDS[kind].resource

    @endpoint
    async def collection(request: Request) -> Response:
        return await _collection(request, kind, "")

    @endpoint
    async def item(request: Request) -> Response:
        return await _item(request, kind, "")

    return [
        Route(f"{_BASE}/{resource}", collection, methods=["GET", "POST"]),
        Route(f"{_BASE}/{resource}/{{name}}", item, methods=["GET"]),
    ]


def _namespaced_routes(kind: str) -> list[BaseRoute]:
    resource = RBAC_KINDS[kind].resource

    @endpoint
    async def collection(request: Request) -> Response:
        return await _collection(request, kind, request.path_params["ns"])

    @endpoint
    async def item(request: Request) -> Response:
        return await _item(request, kind, request.path_params["ns"])

    @endpoint
    async def all_namespaces(request: Request) -> Response:
        return await _collection(request, kind, None)

    return [
        Route(f"{_BASE}/namespaces/{{ns}}/{resource}", collection, methods=["GET", "POST"]),
        Route(f"{_BASE}/namespaces/{{ns}}/{resource}/{{name}}", item, methods=["GET"]),
        Route(f"{_BASE}/{resource}", all_namespaces, methods=["GET"]),
    ]


def _sar_route(api_version: str) -> Route:
    @endpoint
    async def subject_access_review(request: Request) -> Response:
        """``POST /apis/authorization.k8s.io/VERSION/subjectaccessreviews`` (201)."""
        ctx = context(request)
        await authorize(request)
        mode = field_validation(request)
        body = await read_json_body(request, ctx.config.max_body_bytes)
        out, warnings = await run_sync(create_subject_access_review, ctx, api_version, body, mode)
        return json_response(out, 201, warnings)

    return Route(
        f"/apis/{api_version}/subjectaccessreviews", subject_access_review, methods=["POST"]
    )


def routes() -> list[BaseRoute]:
    """The RBAC and SubjectAccessReview routes (mounted by :func:`issuer.api.routes`)."""
    return [
        *(
            r
            for k in (CLUSTER_ROLE, CLUSTER_ROLE_BINDING, ROLE, ROLE_BINDING)
            for r in _legacy_watch_routes(k)
        ),
        *_cluster_routes(CLUSTER_ROLE),
        *_cluster_routes(CLUSTER_ROLE_BINDING),
        *_namespaced_routes(ROLE),
        *_namespaced_routes(ROLE_BINDING),
        *(_sar_route(v) for v in SAR_API_VERSIONS),
    ]
