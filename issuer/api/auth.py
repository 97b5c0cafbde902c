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

A store that cannot be reached is 503 (never a guess either way).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    "PolicyObjects",
    "authenticate_token",
    "authorize",
    "bearer_token",
    "decide",
    "forbidden_error",
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


def _authenticate_and_decide(
    ctx: Any, token: str, attrs: Attributes
) -> tuple[Caller | None, Decision]:
    caller = authenticate_token(ctx, token)
    if caller is None:
        return None, Decision(False)
    return caller, decide(ctx.store, attrs.as_user(caller.user, caller.groups))


async def authorize(request: Request, attrs: Attributes | None = None) -> Caller:
    """Authenticate the request's bearer token and authorize ``attrs`` (default: the request's
    own, :func:`issuer.authz.request_info`). Raise 401, 403 or 503 as a StatusError."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    ctx = request.app.state.ctx
    if attrs is None:
        attrs = authz.request_info(request.method, request.scope["path"], request.query_params)
    index = match_admin_token(token, ctx.admin_tokens)
    caller: Caller | None
    if index is not None:
        # Fast lane: system:masters is allowed by the built-in cluster-admin binding, in-loop.
        caller = _admin(index)
        decision = authz.authorize(attrs.as_user(caller.user, caller.groups))
    else:
        try:
            caller, decision = await run_in_threadpool(_authenticate_and_decide, ctx, token, attrs)
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
