"""RBAC evaluation for the issuer's own API, as kube-apiserver does it. Pure: no I/O, no clock.

::

    request_info(method, path, query)   (kube: apiserver/pkg/endpoints/request/requestinfo.go)
        -> Attributes(verb, api_group, resource, subresource, namespace, name | path)
    attrs.as_user(user, groups)
    authorize(attrs, roles, cluster_roles, role_bindings, cluster_role_bindings) -> Decision
        ClusterRoleBindings (built-ins first), then RoleBindings of attrs.namespace;
        each binding whose subjects apply to the user contributes its role's rules;
        allowed as soon as one rule allows              (kube: plugin/pkg/auth/authorizer/rbac)

Rule matching is kube's ``pkg/apis/rbac/v1/evaluation_helpers.go`` to the letter: rules allow
only; verbs ``*`` or exact; apiGroups ``*`` or exact (``""`` is the core group); resources ``*``,
exact ``res`` or ``res/sub``, or ``*/sub``; empty resourceNames = every name; nonResourceURLs
exact, ``*``, or a trailing ``*`` prefix. A RoleBinding grants only within its own namespace, but
may bind a service account of another namespace (``subjects[].namespace``); a RoleBinding that
references a ClusterRole grants that ClusterRole's rules in the binding's namespace only.

Built-in ClusterRoles and ClusterRoleBindings (:data:`BUILTIN_CLUSTER_ROLES`,
:data:`BUILTIN_CLUSTER_ROLE_BINDINGS`) are kube's bootstrap policy (:mod:`issuer.bootstrap_policy`:
cluster-admin for ``system:masters``, admin/edit/view by aggregation, system:auth-delegator,
system:basic-user, system:discovery, system:public-info-viewer,
system:service-account-issuer-discovery); they are always in force and never stored. The
bootstrap admin tokens authenticate into ``system:masters``.

Also here, for the RBAC registry: escalation checks (:func:`covers`, kube:
component-helpers/auth/rbac/validation/policy_comparator.go) and kube's denial texts
(:func:`forbidden_message`, kube: endpoints/handlers/responsewriters/errors.go).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from issuer import bootstrap_policy
from issuer.goquote import go_quote, go_quote_list
from issuer.selectors import (
    LabelSelector,
    SelectorError,
    label_selector_from_json,
    parse_field_selector,
)

__all__ = [
    "ADMIN_GROUPS",
    "ADMIN_USER",
    "AUTHENTICATED_GROUP",
    "BUILTIN_CLUSTER_ROLES",
    "BUILTIN_CLUSTER_ROLE_BINDINGS",
    "MASTERS_GROUP",
    "RBAC_GROUP",
    "SA_OIDC_GROUP",
    "Attributes",
    "Binding",
    "Decision",
    "PolicyRule",
    "Role",
    "RoleRef",
    "Subject",
    "api_group_matches",
    "applies_to",
    "authorize",
    "breakdown_rule",
    "compact_rules",
    "covers",
    "forbidden_message",
    "non_resource_url_matches",
    "request_info",
    "resolve_aggregation",
    "resource_matches",
    "resource_name_matches",
    "rule_allows",
    "rules_for",
    "verb_matches",
]

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
SA_OIDC_GROUP: Final = "sa-oidc.dev"
#: kube: apiserver/pkg/authentication/user SystemPrivilegedGroup.
MASTERS_GROUP: Final = "system:masters"
AUTHENTICATED_GROUP: Final = "system:authenticated"
#: Who the bootstrap admin tokens authenticate as.
ADMIN_USER: Final = "sa-oidc:admin"
ADMIN_GROUPS: Final = (MASTERS_GROUP, AUTHENTICATED_GROUP)

# kube: k8s.io/api/rbac/v1 VerbAll, APIGroupAll, ResourceAll, NonResourceAll.
_ALL: Final = "*"
_SA_PREFIX: Final = "system:serviceaccount:"


# --- objects ------------------------------------------------------------------------------------


def _strs(value: Any) -> tuple[str, ...]:
    # Stored objects were validated on create; stay total on anything else.
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """kube: rbac/v1 PolicyRule."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PolicyRule:
        """From the JSON shape (``verbs, apiGroups, resources, resourceNames, nonResourceURLs``)."""
        return cls(
            verbs=_strs(obj.get("verbs")),
            api_groups=_strs(obj.get("apiGroups")),
            resources=_strs(obj.get("resources")),
            resource_names=_strs(obj.get("resourceNames")),
            non_resource_urls=_strs(obj.get("nonResourceURLs")),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON shape (empty lists omitted, as kube's ``omitempty``; verbs always)."""
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        for key, values in (
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if values:
                out[key] = list(values)
        return out

    def compact_string(self) -> str:
        """kube: evaluation_helpers.go CompactString (used in escalation messages)."""
        parts = []
        for label, values in (
            ("APIGroups", self.api_groups),
            ("Resources", self.resources),
            ("NonResourceURLs", self.non_resource_urls),
            ("ResourceNames", self.resource_names),
            ("Verbs", self.verbs),
        ):
            if values:
                parts.append(f"{label}:{go_quote_list(values)}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class Subject:
    """kube: rbac/v1 Subject (``kind`` is User, Group or ServiceAccount)."""

    kind: str
    name: str
    namespace: str = ""
    api_group: str = ""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Subject:
        """From ``{kind, apiGroup, name, namespace}``."""
        return cls(
            kind=str(obj.get("kind") or ""),
            name=str(obj.get("name") or ""),
            namespace=str(obj.get("namespace") or ""),
            api_group=str(obj.get("apiGroup") or ""),
        )


@dataclass(frozen=True, slots=True)
class RoleRef:
    """kube: rbac/v1 RoleRef (``kind`` is Role or ClusterRole)."""

    kind: str
    name: str
    api_group: str = RBAC_GROUP


@dataclass(frozen=True, slots=True)
class Role:
    """A Role (``namespace`` set) or a ClusterRole (``namespace`` "").

    ``labels`` are the object's labels (aggregation selects ClusterRoles by them);
    ``aggregation`` is a ClusterRole's ``aggregationRule.clusterRoleSelectors`` (None: no
    aggregationRule; a None item is a selector that matches nothing), see
    :func:`resolve_aggregation`.
    """

    name: str
    rules: tuple[PolicyRule, ...] = ()
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    aggregation: tuple[LabelSelector | None, ...] | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Role:
        """From a stored Role/ClusterRole document."""
        meta = obj.get("metadata") or {}
        rules = obj.get("rules") if isinstance(obj.get("rules"), list) else []
        labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
        return cls(
            name=str(meta.get("name") or ""),
            rules=tuple(PolicyRule.from_json(r) for r in rules or () if isinstance(r, Mapping)),
            namespace=str(meta.get("namespace") or ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items())),
            aggregation=_aggregation_selectors(obj.get("aggregationRule")),
        )


def _aggregation_selectors(rule: Any) -> tuple[LabelSelector | None, ...] | None:
    if not isinstance(rule, Mapping):
        return None
    selectors = rule.get("clusterRoleSelectors")
    out: list[LabelSelector | None] = []
    for raw in selectors if isinstance(selectors, list) else ():
        try:
            out.append(label_selector_from_json(raw))
        except SelectorError:
            out.append(None)  # the controller fails on it; validation refuses it on create
    return tuple(out)


def resolve_aggregation(cluster_roles: Mapping[str, Role]) -> dict[str, Role]:
    """ClusterRoles with an ``aggregationRule`` get the rules of the ClusterRoles their selectors
    match (kube: pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go).

    kube's controller writes them into the role's ``rules`` (replacing what was there); here the
    same result is computed when the roles are read. Per selector, the matching roles in name
    order, never the role itself, each rule once. An aggregated role that is itself selected
    contributes its aggregated rules (the controller reaches that fixpoint too); in a cycle the
    role met again contributes nothing more. Roles without an aggregationRule are unchanged.
    """
    resolved: dict[str, tuple[PolicyRule, ...]] = {}
    by_name = sorted(cluster_roles.items())

    def effective(name: str, visiting: frozenset[str]) -> tuple[PolicyRule, ...]:
        role = cluster_roles[name]
        if role.aggregation is None:
            return role.rules
        if name in resolved:
            return resolved[name]
        out: list[PolicyRule] = []
        seen: set[PolicyRule] = set()
        for selector in role.aggregation:
            if selector is None:
                continue
            for other, candidate in by_name:
                if other == name or other in visiting:
                    continue
                if not selector.matches(dict(candidate.labels)):
                    continue
                for rule in effective(other, visiting | {name}):
                    if rule not in seen:
                        seen.add(rule)
                        out.append(rule)
        rules = tuple(out)
        if not visiting:
            resolved[name] = rules
        return rules

    return {
        name: role
        if role.aggregation is None
        else dataclasses.replace(role, rules=effective(name, frozenset()))
        for name, role in cluster_roles.items()
    }


@dataclass(frozen=True, slots=True)
class Binding:
    """A RoleBinding (``namespace`` set) or a ClusterRoleBinding (``namespace`` "")."""

    name: str
    role_ref: RoleRef
    subjects: tuple[Subject, ...] = ()
    namespace: str = ""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Binding:
        """From a stored RoleBinding/ClusterRoleBinding document."""
        meta = obj.get("metadata") or {}
        ref = obj.get("roleRef") or {}
        subjects = obj.get("subjects") if isinstance(obj.get("subjects"), list) else []
        return cls(
            name=str(meta.get("name") or ""),
            role_ref=RoleRef(
                kind=str(ref.get("kind") or ""),
                name=str(ref.get("name") or ""),
                api_group=str(ref.get("apiGroup") or ""),
            ),
            subjects=tuple(Subject.from_json(s) for s in subjects or () if isinstance(s, Mapping)),
            namespace=str(meta.get("namespace") or ""),
        )


def _builtin_role(name: str, spec: Mapping[str, Any]) -> Role:
    aggregation = spec.get("aggregate")
    return Role(
        name,
        tuple(PolicyRule.from_json(r) for r in spec["rules"]),
        labels=tuple(sorted((spec.get("labels") or {}).items())),
        aggregation=None
        if aggregation is None
        else tuple(label_selector_from_json({"matchLabels": sel}) for sel in aggregation),
    )


# kube's bootstrap policy (issuer.bootstrap_policy). admin/edit/view carry their aggregationRule:
# their rules are resolved with the other ClusterRoles (resolve_aggregation).
BUILTIN_CLUSTER_ROLES: Final[Mapping[str, Role]] = {
    name: _builtin_role(name, spec) for name, spec in bootstrap_policy.CLUSTER_ROLES.items()
}
BUILTIN_CLUSTER_ROLE_BINDINGS: Final[Mapping[str, Binding]] = {
    name: Binding(
        name,
        RoleRef("ClusterRole", role),
        tuple(Subject("Group", g, api_group=RBAC_GROUP) for g in groups),
    )
    for name, (role, groups) in bootstrap_policy.CLUSTER_ROLE_BINDINGS.items()
}


# --- request attributes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attributes:
    """kube: apiserver/pkg/authorization/authorizer Attributes — who asks to do what.

    Resource requests use ``verb, api_group, resource, subresource, namespace, name``;
    non-resource requests (``resource_request`` False) use ``verb`` and ``path``.
    """

    user: str = ""
    groups: tuple[str, ...] = ()
    verb: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    def as_user(self, user: str, groups: Iterable[str]) -> Attributes:
        """The same request made by ``user`` in ``groups``."""
        return dataclasses.replace(self, user=user, groups=tuple(groups))


# kube: requestinfo.go — APIPrefixes {api, apis}, GrouplessAPIPrefixes {api},
# namespaceSubresources {status, finalize}, specialVerbs {proxy, watch}.
_GROUPLESS_PREFIX: Final = "api"
_GROUPED_PREFIX: Final = "apis"
_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})
_SPECIAL_VERBS: Final = frozenset({"proxy", "watch"})
_METHOD_VERBS: Final = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def _watch_param(query: Mapping[str, str]) -> bool:
    # Parsed exactly as issuer/stream.py parses it, so the authorized verb (watch or list) is the
    # one the handler then performs.
    return query.get("watch", "").lower() in ("true", "1")


def _selected_name(field_selector: str) -> str:
    """The name a fieldSelector requires (``metadata.name=x``), if it is a valid path segment
    (kube: fields.Selector.RequiresExactMatch, then path.IsValidPathSegmentName)."""
    if not field_selector:
        return ""
    try:
        name = parse_field_selector(field_selector).exact("metadata.name")
    except SelectorError:
        return ""
    if not name or name in (".", "..") or "/" in name or "%" in name:
        return ""
    return name


def request_info(method: str, path: str, query: Mapping[str, str] | None = None) -> Attributes:
    """The attributes of an HTTP request, without a user (kube: requestinfo.go NewRequestInfo).

    ``/api/v1/namespaces/dev/serviceaccounts/app/token`` → create ``serviceaccounts/token`` named
    ``app`` in ``dev``; ``/api/v1/namespaces/dev`` → get ``namespaces`` named ``dev`` in ``dev``;
    a GET without a name is ``list`` (``watch`` with ``?watch=true``), naming the object its
    ``fieldSelector`` requires ``metadata.name`` to be, if any; ``/api/v1/watch/...`` is ``watch``
    of what follows the prefix (a deprecated watch path); a DELETE without a name is
    ``deletecollection``; paths outside ``/api/v1/...`` and ``/apis/GROUP/VERSION/...`` are
    non-resource requests with the lower-cased method as the verb.
    """
    query = query or {}
    non_resource = Attributes(verb=method.lower(), path=path, resource_request=False)
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in (_GROUPLESS_PREFIX, _GROUPED_PREFIX):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == _GROUPED_PREFIX:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    parts = parts[1:]  # the version
    if parts[0] in _SPECIAL_VERBS:
        verb = parts[0]
        parts = parts[1:]
        if not parts:
            return non_resource  # kube: "unable to determine kind and namespace"
    else:
        verb = _METHOD_VERBS.get(method.upper(), method.lower())
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 else ""
    if not name and verb == "get":
        verb = "watch" if _watch_param(query) else "list"
        # kube: a list or watch whose fieldSelector requires metadata.name is authorized for
        # that name (RBAC resourceNames), so `kubectl get pod x -w` needs no more than a watch of
        # x; a selector that does not parse names nothing (requestinfo.go NewRequestInfo).
        name = _selected_name(query.get("fieldSelector") or "")
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )


# --- rule matching (kube: pkg/apis/rbac/v1/evaluation_helpers.go) --------------------------------


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    """kube: VerbMatches — ``*`` or the exact verb."""
    return any(v in (_ALL, verb) for v in rule.verbs)


def api_group_matches(rule: PolicyRule, group: str) -> bool:
    """kube: APIGroupMatches — ``*`` or the exact group (``""`` is the core group)."""
    return any(g in (_ALL, group) for g in rule.api_groups)


def resource_matches(rule: PolicyRule, combined: str, subresource: str) -> bool:
    """kube: ResourceMatches — ``*``, the exact ``res`` / ``res/sub``, or ``*/sub``."""
    for r in rule.resources:
        if r in (_ALL, combined):
            return True
        # */subresource matches that subresource of every resource.
        if subresource and len(r) == len(subresource) + 2 and r == "*/" + subresource:
            return True
    return False


def resource_name_matches(rule: PolicyRule, name: str) -> bool:
    """kube: ResourceNameMatches — no resourceNames means every name."""
    return not rule.resource_names or name in rule.resource_names


def non_resource_url_matches(rule: PolicyRule, path: str) -> bool:
    """kube: NonResourceURLMatches — ``*``, exact, or a trailing-``*`` prefix."""
    for url in rule.non_resource_urls:
        if url in (_ALL, path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: PolicyRule) -> bool:
    """kube: rbac.go RuleAllows."""
    if attrs.resource_request:
        combined = attrs.resource
        if attrs.subresource:
            combined = f"{attrs.resource}/{attrs.subresource}"
        return (
            verb_matches(rule, attrs.verb)
            and api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, combined, attrs.subresource)
            and resource_name_matches(rule, attrs.name)
        )
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# --- subjects and bindings (kube: pkg/registry/rbac/validation/rule.go) --------------------------


def _subject_applies(user: str, groups: Sequence[str], subject: Subject, namespace: str) -> bool:
    # kube: rule.go appliesToUser (subject.apiGroup is not consulted at evaluation time).
    if subject.kind == "User":
        return user == subject.name
    if subject.kind == "Group":
        return subject.name in groups
    if subject.kind == "ServiceAccount":
        # A ServiceAccount subject without a namespace means the binding's own namespace.
        sa_namespace = subject.namespace or namespace
        if not sa_namespace:
            return False
        return user == f"{_SA_PREFIX}{sa_namespace}:{subject.name}"
    return False


def applies_to(user: str, groups: Sequence[str], binding: Binding) -> Subject | None:
    """The first subject of ``binding`` that ``user`` (in ``groups``) is, or None."""
    for subject in binding.subjects:
        if _subject_applies(user, groups, subject, binding.namespace):
            return subject
    return None


def _describe_subject(subject: Subject, binding_namespace: str) -> str:
    # kube: rule.go describeSubject
    if subject.kind == "ServiceAccount":
        ns = subject.namespace or binding_namespace
        return f"{subject.kind} {go_quote(subject.name + '/' + ns)}"
    return f"{subject.kind} {go_quote(subject.name)}"


def _describe_binding(binding: Binding, subject: Subject) -> str:
    # kube: rule.go clusterRoleBindingDescriber / roleBindingDescriber
    ref = binding.role_ref
    if binding.namespace:
        head = f"RoleBinding {go_quote(binding.name + '/' + binding.namespace)}"
    else:
        head = f"ClusterRoleBinding {go_quote(binding.name)}"
    subject_text = _describe_subject(subject, binding.namespace)
    return f"{head} of {ref.kind} {go_quote(ref.name)} to {subject_text}"


@functools.cache
def _resolved_builtins() -> Mapping[str, Role]:
    """The built-in ClusterRoles with their aggregation resolved among themselves."""
    return resolve_aggregation(BUILTIN_CLUSTER_ROLES)


def _may_aggregate(role: Role) -> bool:
    """Whether ``role`` takes part in aggregation: it has an aggregationRule, or labels that a
    built-in aggregationRule selects."""
    if role.aggregation is not None:
        return True
    if not role.labels:
        return False
    labels = dict(role.labels)
    return any(
        selector is not None and selector.matches(labels)
        for builtin in BUILTIN_CLUSTER_ROLES.values()
        for selector in builtin.aggregation or ()
    )


@dataclass(slots=True)
class _Index:
    roles: dict[tuple[str, str], Role] = field(default_factory=dict)
    cluster_roles: dict[str, Role] = field(default_factory=dict)

    @classmethod
    def build(cls, roles: Iterable[Role], cluster_roles: Iterable[Role]) -> _Index:
        index = cls()
        for r in roles:
            index.roles[(r.namespace, r.name)] = r
        for r in cluster_roles:
            index.cluster_roles[r.name] = r
        if not any(_may_aggregate(r) for r in index.cluster_roles.values()):
            # Nothing given aggregates or is aggregated: the built-ins resolved once, plus them.
            index.cluster_roles = {**_resolved_builtins(), **index.cluster_roles}
            return index
        # The registry refuses stored objects with the built-ins' names, so a given role of such
        # a name is the built-in already resolved (issuer.rbac_index passes those).
        for name, builtin in BUILTIN_CLUSTER_ROLES.items():
            index.cluster_roles.setdefault(name, builtin)
        index.cluster_roles = resolve_aggregation(index.cluster_roles)
        return index

    def rules(self, ref: RoleRef, binding_namespace: str) -> tuple[PolicyRule, ...] | str:
        """The referenced role's rules, or kube's lister error (kube: GetRoleReferenceRules)."""
        if ref.kind == "Role":
            role = self.roles.get((binding_namespace, ref.name))
            if role is None:
                return f"role.{RBAC_GROUP} {go_quote(ref.name)} not found"
            return role.rules
        if ref.kind == "ClusterRole":
            cluster_role = self.cluster_roles.get(ref.name)
            if cluster_role is None:
                return f"clusterrole.{RBAC_GROUP} {go_quote(ref.name)} not found"
            return cluster_role.rules
        return f"unsupported role reference kind: {go_quote(ref.kind)}"


def _visit(
    user: str,
    groups: Sequence[str],
    namespace: str,
    index: _Index,
    role_bindings: Iterable[Binding],
    cluster_role_bindings: Iterable[Binding],
) -> Iterable[tuple[Binding, Subject, PolicyRule] | str]:
    """kube: rule.go VisitRulesFor — every (binding, subject, rule) that applies, and errors."""
    crbs = [*BUILTIN_CLUSTER_ROLE_BINDINGS.values(), *cluster_role_bindings]
    for binding in crbs:
        if binding.namespace:
            continue
        subject = applies_to(user, groups, binding)
        if subject is None:
            continue
        rules = index.rules(binding.role_ref, "")
        if isinstance(rules, str):
            yield rules
            continue
        for rule in rules:
            yield binding, subject, rule
    if not namespace:
        return
    for binding in role_bindings:
        if binding.namespace != namespace:
            continue  # a RoleBinding grants within its own namespace only
        subject = applies_to(user, groups, binding)
        if subject is None:
            continue
        rules = index.rules(binding.role_ref, namespace)
        if isinstance(rules, str):
            yield rules
            continue
        for rule in rules:
            yield binding, subject, rule


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: ``reason`` is kube's text (``RBAC: allowed by ...`` or resolution errors)."""

    allowed: bool
    reason: str = ""


def _aggregate(errors: Sequence[str]) -> str:
    # kube: apimachinery util/errors Aggregate.Error — one error bare, several as "[a, b]".
    if len(errors) == 1:
        return errors[0]
    return "[" + ", ".join(errors) + "]"


def authorize(
    attrs: Attributes,
    roles: Iterable[Role] = (),
    cluster_roles: Iterable[Role] = (),
    role_bindings: Iterable[Binding] = (),
    cluster_role_bindings: Iterable[Binding] = (),
) -> Decision:
    """kube: rbac.go RBACAuthorizer.Authorize over the given objects plus the built-ins.

    RoleBindings outside ``attrs.namespace`` are ignored. Denials carry the role-resolution
    errors met on the way (``RBAC: role.rbac.authorization.k8s.io "x" not found``), as kube's do.
    """
    index = _Index.build(roles, cluster_roles)
    errors: list[str] = []
    for item in _visit(
        attrs.user, attrs.groups, attrs.namespace, index, role_bindings, cluster_role_bindings
    ):
        if isinstance(item, str):
            errors.append(item)
            continue
        binding, subject, rule = item
        if rule_allows(attrs, rule):
            return Decision(True, f"RBAC: allowed by {_describe_binding(binding, subject)}")
    return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")


def rules_for(
    user: str,
    groups: Sequence[str],
    namespace: str,
    roles: Iterable[Role] = (),
    cluster_roles: Iterable[Role] = (),
    role_bindings: Iterable[Binding] = (),
    cluster_role_bindings: Iterable[Binding] = (),
) -> tuple[list[PolicyRule], list[str]]:
    """kube: rule.go RulesFor — every rule ``user`` holds in ``namespace`` ("" = cluster-wide
    only), and the resolution errors met."""
    index = _Index.build(roles, cluster_roles)
    rules: list[PolicyRule] = []
    errors: list[str] = []
    for item in _visit(user, groups, namespace, index, role_bindings, cluster_role_bindings):
        if isinstance(item, str):
            errors.append(item)
        else:
            rules.append(item[2])
    return rules, errors


# --- escalation checks (kube: component-helpers/auth/rbac/validation/policy_comparator.go) -------


def breakdown_rule(rule: PolicyRule) -> list[PolicyRule]:
    """kube: BreakdownRule — one rule per (group, resource, verb[, name]) and per (url, verb)."""
    out: list[PolicyRule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    for name in rule.resource_names:
                        out.append(PolicyRule((verb,), (group,), (resource,), (name,)))
                else:
                    out.append(PolicyRule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            out.append(PolicyRule((verb,), non_resource_urls=(url,)))
    return out


def _resource_covers_all(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    # kube: resourceCoversAll
    if _ALL in owner or all(w in owner for w in wanted):
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path:
            return False
        if "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _non_resource_url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def _rule_covers(owner: PolicyRule, sub: PolicyRule) -> bool:
    # kube: ruleCovers
    verbs = _ALL in owner.verbs or all(v in owner.verbs for v in sub.verbs)
    groups = _ALL in owner.api_groups or all(g in owner.api_groups for g in sub.api_groups)
    resources = _resource_covers_all(owner.resources, sub.resources)
    urls = all(
        any(_non_resource_url_covers(o, u) for o in owner.non_resource_urls)
        for u in sub.non_resource_urls
    )
    if not sub.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or all(
            n in owner.resource_names for n in sub.resource_names
        )
    return verbs and groups and resources and names and urls


def covers(
    owner_rules: Sequence[PolicyRule], servant_rules: Iterable[PolicyRule]
) -> tuple[bool, list[PolicyRule]]:
    """kube: Covers — whether ``owner_rules`` allow everything ``servant_rules`` do, and the
    broken-down rules they do not cover."""
    uncovered = [
        sub
        for rule in servant_rules
        for sub in breakdown_rule(rule)
        if not any(_rule_covers(owner, sub) for owner in owner_rules)
    ]
    return not uncovered, uncovered


def compact_rules(rules: Iterable[PolicyRule]) -> list[PolicyRule]:
    """kube: policy_compact.go CompactRules — merge single group/resource rules by verb."""
    out: list[PolicyRule] = []
    simple: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        if (
            not rule.resource_names
            and not rule.non_resource_urls
            and len(rule.api_groups) == 1
            and len(rule.resources) == 1
        ):
            simple.setdefault((rule.api_groups[0], rule.resources[0]), []).extend(rule.verbs)
        else:
            out.append(rule)
    out.extend(PolicyRule(tuple(v), (g,), (r,)) for (g, r), v in simple.items())
    return out


# --- denial texts -------------------------------------------------------------------------------


def forbidden_message(attrs: Attributes) -> str:
    """kube: responsewriters/errors.go forbiddenMessage (the part after "is forbidden: ")."""
    user = go_quote(attrs.user)
    if not attrs.resource_request:
        return f"User {user} cannot {attrs.verb} path {go_quote(attrs.path)}"
    resource = attrs.resource
    if attrs.subresource:
        resource = f"{resource}/{attrs.subresource}"
    if attrs.namespace:
        return (
            f"User {user} cannot {attrs.verb} resource {go_quote(resource)} in API group "
            f"{go_quote(attrs.api_group)} in the namespace {go_quote(attrs.namespace)}"
        )
    return (
        f"User {user} cannot {attrs.verb} resource {go_quote(resource)} in API group "
        f"{go_quote(attrs.api_group)} at the cluster scope"
    )
