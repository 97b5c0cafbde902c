"""Who may call the API, and what they may do: authentication, then RBAC, in one place.

Every API route calls :func:`authorize` first (the invalidation stream and token revocations in
:mod:`issuer.stream` too). It follows kube-apiserver's filter chain
(apiserver/pkg/endpoints/filters/authentication.go, authorization.go):

1. **Authenticate** the ``Authorization: Bearer`` credential, else 401 ``Unauthorized`` with
   ``WWW-Authenticate: Bearer`` (RFC 6750 §3) and a generic message:

   - a bootstrap admin token (constant-time compare against *every* configured token, no early
     exit) → user ``sa-oidc:admin``, groups ``system:masters``, ``system:authenticated``;
     audit label ``admin-token#N`` (never the token or a hash of it);
   - a service-account token issued by this issuer — bound or legacy Secret-based — that passes
     the TokenReview checks (:func:`issuer.api.tokenreview.review`) for the API audiences →
     user ``system:serviceaccount:NS:NAME``, groups ``system:serviceaccounts``,
     ``system:serviceaccounts:NS``, ``system:authenticated`` (kube: serviceaccount/util.go).
     Reviewed on every request: deleting the account (or its pod, secret, key) locks it out.

2. **Authorize** the request's :func:`issuer.authz.request_info` attributes with RBAC
   (:func:`issuer.authz.authorize`) over the built-in roles and the stored Roles, ClusterRoles and
   bindings that name the caller, found in the in-memory RBAC index (:mod:`issuer.rbac_index`).
   Each decision first reads the RBAC revisions (one constant-cost store read), so a binding
   created or deleted through any replica takes effect at once, everywhere. The admin tokens are
   decided by the built-in ``cluster-admin`` binding without a store read.
   A denial is 403 ``Forbidden`` with kube's text::

       serviceaccounts "x" is forbidden: User "system:serviceaccount:dev:app" cannot create
       resource "serviceaccounts/token" in API group "" in the namespace "dev"

1b. **Impersonate** when the request carries ``Impersonate-User`` (and optionally
   ``Impersonate-Group`` (repeatable), ``Impersonate-Uid``, ``Impersonate-Extra-<key>``), as
   kube's impersonation filter (apiserver/pkg/endpoints/filters/impersonation.go): the
   authenticated caller needs the ``impersonate`` verb on ``users`` (or
   ``serviceaccounts`` NAME in NS for ``system:serviceaccount:NS:NAME``), ``groups``, ``uids``
   and ``userextras/<key>`` (group ``authentication.k8s.io``) for each value, else 403 with kube's
   text; groups/uid/extra without a user is 400. The request then runs as the impersonated
   user: a service account gets its fixed groups unless groups were given, and everyone but
   ``system:anonymous`` is in ``system:authenticated``. The headers are never ignored.

A store that cannot be reached is 503 (never a guess either way).
"""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from issuer import authz
from issuer.api.errors import (
    forbidden,
    internal_error,
    outcome_unknown,
    service_unavailable,
    unauthorized,
)
from issuer.authz import Attributes, Decision
from issuer.http.status import StatusError
from issuer.rbac_index import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
    PolicyObjects,
    index_for,
)
from issuer.store import StoreCorrupt, StoreError, StoreOutcomeUnknown, StoreUnavailable
from verifier.middleware import bearer_token as header_bearer_token

__all__ = [
    "CLUSTER_ROLE",
    "CLUSTER_ROLE_BINDING",
    "ROLE",
    "ROLE_BINDING",
    "Caller",
    "Impersonation",
    "PolicyObjects",
    "authenticate",
    "authenticate_token",
    "authorize",
    "bearer_token",
    "decide",
    "forbidden_error",
    "impersonated",
    "impersonation_request",
    "load_policy",
    "match_admin_token",
]

log = logging.getLogger("sa_issuer.api")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: kube's user.Info plus the label audit records use."""

    user: str
    groups: tuple[str, ...]
    label: str
    uid: str = ""
    #: user.Info's extra (sorted (key, values) pairs); set by impersonation only.
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header (scheme case-insensitive,
    RFC 7235 §2.1), or None — parsed as the verifier's middleware does."""
    return header_bearer_token(request.headers)


def match_admin_token(presented: str, admin_tokens: Sequence[str]) -> int | None:
    """The index of the admin token equal to ``presented`` (constant time, no early exit)."""
    given = presented.encode("utf-8", "surrogatepass")
    found: int | None = None
    for i, candidate in enumerate(admin_tokens):
        if hmac.compare_digest(given, candidate.encode("utf-8", "surrogatepass")) and found is None:
            found = i
    return found


def _admin(index: int) -> Caller:
    return Caller(authz.ADMIN_USER, authz.ADMIN_GROUPS, f"admin-token#{index + 1}")


def authenticate_token(ctx: Any, token: str) -> Caller | None:
    """The caller a bearer token authenticates as, or None (blocking: may read the store).

    ``ctx`` is the app's :class:`issuer.context.IssuerContext`. Service-account tokens are
    checked for the API audiences with the TokenReview logic; StoreUnavailable propagates.
    """
    index = match_admin_token(token, ctx.admin_tokens)
    if index is not None:
        return _admin(index)
    # Only a compact JWS can be a service-account token; contexts without a key manager (test
    # doubles serving only the stream routes) accept admin tokens alone.
    if token.count(".") != 2 or getattr(ctx, "keys", None) is None:
        return None
    from issuer.api.tokenreview import review  # late: tokenreview -> review -> api.errors

    result = review(ctx, token, [])
    ident = result.identity
    if not result.authenticated or ident is None:
        log.debug("API bearer token refused: %s", result.reason)
        return None
    return Caller(
        ident.username, tuple(ident.groups), ident.username, ident.service_account_uid or ""
    )


# --- RBAC objects from the index -----------------------------------------------------------------


def load_policy(store: Any, user: str, groups: Sequence[str], namespace: str) -> PolicyObjects:
    """The bindings that apply to ``user`` (cluster-wide, and in ``namespace`` when given) and the
    roles they reference, from the process's RBAC index of ``store`` — current as of this call
    (:mod:`issuer.rbac_index`: one revision read, then memory). StoreError propagates."""
    return index_for(store).policy(user, groups, namespace)


def decide(store: Any, attrs: Attributes) -> Decision:
    """RBAC for ``attrs``: the built-ins first (no I/O), then the stored objects (blocking)."""
    decision = authz.authorize(attrs)
    if decision.allowed:
        return decision
    policy = load_policy(store, attrs.user, attrs.groups, attrs.namespace)
    return authz.authorize(
        attrs,
        policy.roles,
        policy.cluster_roles,
        policy.role_bindings,
        policy.cluster_role_bindings,
    )


def forbidden_error(attrs: Attributes, reason: str = "") -> StatusError:
    """kube's 403 (responsewriters/errors.go Forbidden + apimachinery errors.NewForbidden)."""
    why = authz.forbidden_message(attrs)
    if reason:
        why = f"{why}: {reason}"
    if not attrs.resource_request:
        return StatusError(403, "Forbidden", f"forbidden: {why}", {})
    return forbidden(attrs.resource, attrs.name, why, group=attrs.api_group)


def _store_failure(e: StoreError) -> StatusError:
    if isinstance(e, StoreOutcomeUnknown):
        return outcome_unknown()
    if isinstance(e, StoreUnavailable):
        return service_unavailable("the store is unavailable; nothing was changed, try again")
    if isinstance(e, StoreCorrupt):
        log.error("stored RBAC data could not be read", exc_info=True)
        return internal_error("stored data could not be read")
    return internal_error("the store failed")


# --- impersonation (kube: apiserver/pkg/endpoints/filters/impersonation.go) -----------------------

_USER_HEADER: Final = "impersonate-user"
_GROUP_HEADER: Final = "impersonate-group"
_UID_HEADER: Final = "impersonate-uid"
_EXTRA_PREFIX: Final = "impersonate-extra-"
_ANONYMOUS: Final = "system:anonymous"
_SA_PREFIX: Final = "system:serviceaccount:"
_UNAUTHENTICATED: Final = "system:unauthenticated"


@dataclass(frozen=True, slots=True)
class Impersonation:
    """What the ``Impersonate-*`` headers ask for."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def impersonation_request(headers: Any) -> Impersonation | None:
    """Parse the ``Impersonate-*`` headers (Starlette ``Headers``); None when there are none.
    400 for groups, uid or extra without a user (kube: "requested ... without impersonating a
    user"). Extra keys are lower-cased and percent-decoded, as kube's ``unescapeExtraKey``."""
    user = headers.get(_USER_HEADER) or None  # kube: an empty header impersonates no one
    groups = tuple(headers.getlist(_GROUP_HEADER))
    uid = headers.get(_UID_HEADER)
    extra: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith(_EXTRA_PREFIX) and len(lname) > len(_EXTRA_PREFIX):
            key = urllib.parse.unquote(lname[len(_EXTRA_PREFIX) :])
            extra.setdefault(key, []).append(value)
    if user is None:
        asked = [
            what
            for what, present in (("groups", groups), ("uid", uid is not None), ("extra", extra))
            if present
        ]
        if asked:
            raise StatusError(
                400,
                "BadRequest",
                f"requested impersonation of {', '.join(asked)} without impersonating a user",
                {},
            )
        return None
    return Impersonation(
        user,
        groups,
        uid or "",
        tuple(sorted((k, tuple(v)) for k, v in extra.items())),
    )


def _impersonation_checks(imp: Impersonation) -> list[Attributes]:
    """The ``impersonate`` requests the caller must be allowed (kube: buildImpersonationRequests
    then the per-kind attributes in WithImpersonation)."""
    checks: list[Attributes] = []
    ns, _, name = imp.user.removeprefix(_SA_PREFIX).partition(":")
    if imp.user.startswith(_SA_PREFIX) and ns and name and ":" not in name:
        checks.append(
            Attributes(verb="impersonate", resource="serviceaccounts", namespace=ns, name=name)
        )
    else:
        checks.append(Attributes(verb="impersonate", resource="users", name=imp.user))
    checks += [Attributes(verb="impersonate", resource="groups", name=g) for g in imp.groups]
    if imp.uid:
        checks.append(Attributes(verb="impersonate", resource="uids", name=imp.uid))
    checks += [
        Attributes(
            verb="impersonate",
            api_group="authentication.k8s.io",
            resource="userextras",
            subresource=key,
            name=value,
        )
        for key, values in imp.extra
        for value in values
    ]
    return checks


def impersonated(caller: Caller, imp: Impersonation) -> Caller:
    """The caller the request runs as (kube: WithImpersonation's user.DefaultInfo)."""
    groups = list(imp.groups)
    ns, _, name = imp.user.removeprefix(_SA_PREFIX).partition(":")
    if imp.user.startswith(_SA_PREFIX) and ns and name and not groups:
        # A service account's groups are a fixed mapping (kube: serviceaccount.MakeGroupNames).
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    implied = _UNAUTHENTICATED if imp.user == _ANONYMOUS else authz.AUTHENTICATED_GROUP
    if implied not in groups:
        groups.append(implied)
    return Caller(
        imp.user,
        tuple(groups),
        f"{caller.label} as {imp.user}",
        imp.uid,
        imp.extra,
    )


def _impersonate(ctx: Any, caller: Caller, imp: Impersonation) -> Caller:
    """Authorize each impersonation (403 with kube's text on the first refused) and return the
    impersonated caller. Blocking (store reads)."""
    for check in _impersonation_checks(imp):
        attrs = check.as_user(caller.user, caller.groups)
        decision = decide(ctx.store, attrs)
        if not decision.allowed:
            log.info("impersonation of %s refused to %s", imp.user, caller.user)
            raise forbidden_error(attrs, decision.reason)
    ctx.audit_event("impersonation", caller=caller.label, user=imp.user)
    return impersonated(caller, imp)


def _authenticate_and_decide(
    ctx: Any, token: str, attrs: Attributes, imp: Impersonation | None = None
) -> tuple[Caller | None, Decision]:
    caller = authenticate_token(ctx, token)
    if caller is None:
        return None, Decision(False)
    if imp is not None:
        caller = _impersonate(ctx, caller, imp)
    return caller, decide(ctx.store, attrs.as_user(caller.user, caller.groups))


def _authenticate_and_impersonate(ctx: Any, token: str, imp: Impersonation) -> Caller | None:
    caller = authenticate_token(ctx, token)
    return None if caller is None else _impersonate(ctx, caller, imp)


async def authenticate(request: Request) -> Caller:
    """The caller a request acts as — its bearer token, then any impersonation — without
    authorizing the request itself (for endpoints any authenticated caller may use). Raise
    401, 400, 403 or 503 as a StatusError."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    ctx = request.app.state.ctx
    imp = impersonation_request(request.headers)
    try:
        if imp is None:
            index = match_admin_token(token, ctx.admin_tokens)
            if index is not None:
                return _admin(index)
            caller = await run_in_threadpool(authenticate_token, ctx, token)
        else:
            caller = await run_in_threadpool(_authenticate_and_impersonate, ctx, token, imp)
    except StoreError as e:
        raise _store_failure(e) from None
    if caller is None:
        raise unauthorized()
    return caller


async def authorize(request: Request, attrs: Attributes | None = None) -> Caller:
    """Authenticate the request's bearer token, apply any impersonation, and authorize ``attrs``
    (default: the request's own, :func:`issuer.authz.request_info`). Raise 401, 400, 403 or 503
    as a StatusError."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    ctx = request.app.state.ctx
    if attrs is None:
        attrs = authz.request_info(request.method, request.scope["path"], request.query_params)
    imp = impersonation_request(request.headers)
    index = match_admin_token(token, ctx.admin_tokens) if imp is None else None
    caller: Caller | None
    if index is not None:
        # Fast lane: system:masters is allowed by the built-in cluster-admin binding, in-loop.
        caller = _admin(index)
        decision = authz.authorize(attrs.as_user(caller.user, caller.groups))
    else:
        try:
            caller, decision = await run_in_threadpool(
                _authenticate_and_decide, ctx, token, attrs, imp
            )
        except StoreError as e:
            raise _store_failure(e) from None
    if caller is None:
        raise unauthorized()
    if not decision.allowed:
        denied = attrs.as_user(caller.user, caller.groups)
        log.info(
            "RBAC denied %s %s to %s%s",
            attrs.verb,
            attrs.resource or attrs.path,
            caller.user,
            f" in {attrs.namespace}" if attrs.namespace else "",
        )
        raise forbidden_error(denied, decision.reason)
    return caller
