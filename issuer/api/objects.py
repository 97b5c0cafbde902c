"""Core ``v1`` objects: Namespaces, ServiceAccounts, Pods, Secrets, Nodes — create, get, list,
delete — with the lifecycle rules the tokens depend on.

- Creating a Namespace creates its ``default`` ServiceAccount; deleting that account brings a new
  one with a new uid (kube: pkg/controller/serviceaccount/serviceaccounts_controller.go).
- A namespaced create needs the namespace to exist (404 ``namespaces "x" not found``) and not be
  terminating (403, kube: plugin/pkg/admission/namespace/lifecycle/admission.go).
- Pods pass ServiceAccount admission (:mod:`issuer.api.admission`).
- A Secret of type ``kubernetes.io/service-account-token`` gets a legacy token
  (:mod:`issuer.api.legacy`).
- Every delete of a Pod, Secret, Node or ServiceAccount appends an ``ObjectDeleted`` invalidation
  event in the same atomic store write (``delete_object(..., uid=, event=)``): followers of the
  invalidation stream never miss a deletion that TokenReview already honours.
- Deleting a Namespace marks it ``Terminating``, deletes everything in it (each with its event),
  then the Namespace, and returns it (kube returns the Namespace too).

Everything here is synchronous (the handlers in :mod:`issuer.api` run it in the thread pool).
Failures leave the store unchanged: every check runs before the single create.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any, Final

from issuer.api import legacy
from issuer.api.admission import DEFAULT_SERVICE_ACCOUNT_NAME, admit_pod, random_suffix
from issuer.api.errors import already_exists, bad_request, forbidden, not_found
from issuer.api.listing import ListOptions, list_collection, list_response
from issuer.api.validation import (
    KINDS,
    SA_TOKEN_SECRET_TYPE,
    FieldValidation,
    KindInfo,
    decode_object,
    validate_object,
)
from issuer.context import IssuerContext
from issuer.http.status import StatusError
from issuer.store import JSON, AlreadyExists, Conflict, NotFound, Store
from issuer.timefmt import rfc3339

__all__ = [
    "TOKEN_KINDS",
    "create_object",
    "delete_object",
    "ensure_default_service_account",
    "get_object",
    "list_objects",
]

#: Kinds whose deletion invalidates tokens (bound objects and service accounts).
TOKEN_KINDS: Final = frozenset({"Pod", "Secret", "Node", "ServiceAccount"})
_NAMESPACE_CONTENTS: Final = ("Pod", "Secret", "ServiceAccount")
#: Grants go before the Namespace object does: a crash mid-delete must never leave RoleBindings
#: that a namespace recreated with the same name would inherit.
_NAMESPACE_GRANTS: Final = ("RoleBinding", "Role")
_RETRIES: Final = 8


def _namespace_phase(store: Store, namespace: str) -> str | None:
    try:
        ns = store.get_object("Namespace", "", namespace)
    except NotFound:
        return None
    return str((ns.get("status") or {}).get("phase") or "Active")


def _require_active_namespace(store: Store, info: KindInfo, namespace: str, name: str) -> None:
    phase = _namespace_phase(store, namespace)
    if phase is None:
        raise not_found("namespaces", namespace)  # kube: NamespaceLifecycle admission
    if phase == "Terminating":
        raise forbidden(
            info.resource,
            name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )


def _stamp(ctx: IssuerContext, obj: JSON, namespace: str) -> None:
    meta = obj["metadata"]
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = rfc3339(ctx.clock())
    if namespace:
        meta["namespace"] = namespace


def new_service_account(namespace: str, name: str) -> JSON:
    """A bare ServiceAccount document (uid etc. are stamped on create)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def ensure_default_service_account(ctx: IssuerContext, namespace: str) -> None:
    """Create ``default`` in ``namespace`` unless it exists or the namespace is not active."""
    if _namespace_phase(ctx.store, namespace) != "Active":
        return
    sa = new_service_account(namespace, DEFAULT_SERVICE_ACCOUNT_NAME)
    _stamp(ctx, sa, namespace)
    with contextlib.suppress(AlreadyExists):
        ctx.store.create_object("ServiceAccount", namespace, DEFAULT_SERVICE_ACCOUNT_NAME, sa)


def create_object(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    body: dict[str, Any],
    mode: FieldValidation = "Strict",
    caller: str = "",
    *,
    stamp: Callable[[JSON], None] | None = None,
    dry_run: bool = False,
) -> tuple[JSON, list[str]]:
    """Create an object from a request body; return it (as stored) and ``Warning`` texts.

    Order (each stage refuses with a Status and stores nothing): decode (400) → validate (422)
    → namespace exists and is active (404/403) → admission / legacy token (403/422) → store
    (409 AlreadyExists). ``stamp`` (if given) finishes the object just before it is stored
    (``metadata.managedFields``, see :mod:`issuer.api.update`). ``dry_run`` (``dryRun=All``)
    runs every check, stores nothing and answers the would-be object (no resourceVersion; a
    legacy token Secret gets no token, as kube's token controller fills it later).
    """
    info = KINDS[kind]
    decoded = decode_object(body, info, path_namespace=namespace, field_validation=mode)
    obj = decoded.obj
    warnings = decoded.warnings
    meta = obj["metadata"]
    generated = not meta.get("name") and bool(meta.get("generateName"))
    if generated:
        meta["name"] = meta["generateName"] + random_suffix()
    validate_object(info, obj)
    name: str = meta["name"]
    ns = namespace if info.namespaced else ""
    if info.namespaced:
        _require_active_namespace(ctx.store, info, namespace, name)
    if kind == "Pod":
        admit_pod(
            obj, namespace, lambda sa: _get_or_none(ctx.store, "ServiceAccount", namespace, sa)
        )
    legacy_kid = None
    if kind == "Secret" and obj.get("type") == SA_TOKEN_SECRET_TYPE and not dry_run:
        legacy_kid = legacy.fill_token_secret(ctx, obj)
    _stamp(ctx, obj, ns)
    if stamp is not None:
        stamp(obj)
    if dry_run:
        if not generated and _get_or_none(ctx.store, kind, ns, name) is not None:
            raise already_exists(info.resource, name)
        return obj, warnings
    for _ in range(_RETRIES if generated else 1):
        try:
            stored = ctx.store.create_object(kind, ns, meta["name"], obj)
            break
        except AlreadyExists:
            if not generated:
                raise already_exists(info.resource, name) from None
            meta["name"] = meta["generateName"] + random_suffix()
    else:
        raise already_exists(info.resource, meta["name"])
    if kind == "Namespace":
        ensure_default_service_account(ctx, name)
    if legacy_kid is not None:
        legacy.record_issued(ctx, stored, caller, legacy_kid)
        warnings.append(legacy.LEGACY_TOKEN_WARNING)
    return stored, warnings


def _get_or_none(store: Store, kind: str, namespace: str, name: str) -> JSON | None:
    try:
        return store.get_object(kind, namespace, name)
    except NotFound:
        return None


def get_object(ctx: IssuerContext, kind: str, namespace: str, name: str) -> JSON:
    """One object, or 404 ``<resource> "name" not found``."""
    info = KINDS[kind]
    try:
        return ctx.store.get_object(kind, namespace if info.namespaced else "", name)
    except NotFound:
        raise not_found(info.resource, name) from None


def list_objects(
    ctx: IssuerContext, kind: str, namespace: str | None, opts: ListOptions | None = None
) -> JSON:
    """A ``<Kind>List`` (``namespace`` None = all namespaces), one page of it with ``limit``,
    filtered by the selectors in ``opts`` (:mod:`issuer.api.listing`)."""
    info = KINDS[kind]
    store_ns = (namespace if info.namespaced else "") if namespace is not None else None
    return list_response(
        list_collection(ctx.store, kind, store_ns, opts or ListOptions()),
        f"{kind}List",
        info.api_version,
    )


def _deleted_event(kind: str, namespace: str, name: str, uid: str, now: float) -> dict[str, Any]:
    # The invalidation stream's contract (issuer/stream.py follows these).
    return {
        "type": "ObjectDeleted",
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "time": now,
    }


def _delete_one(ctx: IssuerContext, kind: str, namespace: str, name: str) -> JSON:
    """Delete by (kind, ns, name), conditioned on the uid just read, with its event (if any)."""
    info = KINDS[kind]
    store = ctx.store
    for _ in range(_RETRIES):
        try:
            current = store.get_object(kind, namespace, name)
        except NotFound:
            raise not_found(info.resource, name) from None
        uid = str(current.get("metadata", {}).get("uid", ""))
        event = (
            _deleted_event(kind, namespace, name, uid, ctx.clock()) if kind in TOKEN_KINDS else None
        )
        try:
            deleted, _seq = store.delete_object(kind, namespace, name, uid=uid or None, event=event)
            return deleted
        except Conflict:
            continue  # recreated between read and delete: delete the new one, with its uid
        except NotFound:
            raise not_found(info.resource, name) from None
    raise bad_request(f"{info.resource} {name!r} kept changing while being deleted; try again")


def delete_exact(
    ctx: IssuerContext, kind: str, namespace: str, name: str, uid: str, resource_version: str
) -> JSON:
    """Delete exactly this version of an object (DeleteOptions preconditions): the store
    deletes it only if uid and resourceVersion still match (Conflict otherwise), with its
    invalidation event. RBAC kinds are deleted the same way (they have no event)."""
    if kind == "Namespace":
        return delete_object(ctx, kind, namespace, name)
    event = _deleted_event(kind, namespace, name, uid, ctx.clock()) if kind in TOKEN_KINDS else None
    try:
        deleted, _seq = ctx.store.delete_object(
            kind, namespace, name, uid=uid, event=event, resource_version=resource_version
        )
    except NotFound:
        raise not_found(KINDS[kind].resource if kind in KINDS else kind, name) from None
    if kind == "ServiceAccount" and name == DEFAULT_SERVICE_ACCOUNT_NAME:
        ensure_default_service_account(ctx, namespace)
    return deleted


def delete_object(ctx: IssuerContext, kind: str, namespace: str, name: str) -> JSON:
    """Delete one object and return it (200); namespaces cascade (see module docstring)."""
    info = KINDS[kind]
    if kind == "Namespace":
        return _delete_namespace(ctx, name)
    deleted = _delete_one(ctx, kind, namespace if info.namespaced else "", name)
    if kind == "ServiceAccount" and name == DEFAULT_SERVICE_ACCOUNT_NAME:
        # kube: the serviceaccounts controller recreates "default" (new uid) in live namespaces.
        ensure_default_service_account(ctx, namespace)
    return deleted


def _mark_terminating(ctx: IssuerContext, name: str) -> JSON:
    store = ctx.store
    for _ in range(_RETRIES):
        try:
            ns = store.get_object("Namespace", "", name)
        except NotFound:
            raise not_found("namespaces", name) from None
        status = ns.get("status") or {}
        if status.get("phase") == "Terminating":
            return ns
        ns = dict(ns)
        ns["status"] = {**status, "phase": "Terminating"}
        meta = dict(ns.get("metadata") or {})
        meta.setdefault("deletionTimestamp", rfc3339(ctx.clock()))
        ns["metadata"] = meta
        try:
            return store.update_object(
                "Namespace", "", name, ns, resource_version=meta.get("resourceVersion")
            )
        except Conflict:
            continue
        except NotFound:
            raise not_found("namespaces", name) from None
    raise bad_request(f"namespace {name!r} kept changing while being deleted; try again")


def _delete_namespace(ctx: IssuerContext, name: str) -> JSON:
    ns = _mark_terminating(ctx, name)
    store = ctx.store
    # Terminating refuses new content; loop until a pass finds nothing left (racing creates).
    for _ in range(_RETRIES):
        found = 0
        for kind in _NAMESPACE_CONTENTS:
            for obj in store.list_objects(kind, name):
                found += 1
                try:
                    _delete_one(ctx, kind, name, obj["metadata"]["name"])
                except StatusError as e:
                    if e.code != 404:  # deleted meanwhile: fine
                        raise
        for kind in _NAMESPACE_GRANTS:
            for obj in store.list_objects(kind, name):
                found += 1
                with contextlib.suppress(NotFound):  # deleted meanwhile: fine
                    store.delete_object(kind, name, obj["metadata"]["name"])
        if not found:
            break
    uid = ns.get("metadata", {}).get("uid")
    try:
        store.delete_object("Namespace", "", name, uid=uid)
    except NotFound:
        raise not_found("namespaces", name) from None
    except Conflict:  # recreated meanwhile: this one is gone already
        pass
    return ns
