"""PUT, PATCH (every patch type and server-side apply) and DELETE with options, for every stored
kind — the write paths after create (synchronous; the handlers run them in the thread pool).

One pipeline for all of them, in kube-apiserver's order (apiserver/pkg/registry/rest/update.go,
endpoints/handlers/{update,patch}.go):

1. read the current object (404; an apply, or a PUT of an RBAC object, creates instead, as
   ``AllowCreateOnUpdate`` says for each kind) — or start from the copy this process last
   stored (:mod:`issuer.lastwritten`, kube's ``cachedExistingObject``): the swap in step 6
   refuses a stale start, and any error from such a start is decided again on a fresh read;
2. build the new document: the PUT body, or the patch applied to the current object;
3. a ``metadata.resourceVersion`` in the document must be the current one (409 Conflict
   ``the object has been modified; please apply your changes to the latest version and try
   again``); without one the update is unconditional (these kinds allow it). A patch is applied
   to the current object, resourceVersion included, so it is conditional only when it sets one
   itself (kube's patcher re-applies the patch to the latest object on every retry);
4. decode and validate exactly as a create does (400/422, ``fieldValidation``), then the update
   rules: the name is the URL's (400), a ``metadata.uid`` must match (409 precondition),
   server-owned metadata and status are kept (``rest.BeforeUpdate``, the strategies'
   ``PrepareForUpdate``), immutable fields stay (422: a Secret with ``immutable: true``, pod
   specs, a binding's ``roleRef``), RBAC escalation checks again (403);
5. ``metadata.managedFields`` record the write (:mod:`issuer.api.apply`);
6. ``dryRun=All`` stops here and answers the would-be object; otherwise the store replaces it
   with compare-and-swap on the version read in step 1 — a concurrent write makes a
   conditional request 409 and an unconditional one (or a patch) start again from step 1.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
import yaml

from issuer.api import apply as ssa
from issuer.api import objects, rbac
from issuer.api.auth import CLUSTER_ROLE_BINDING, ROLE_BINDING, Caller
from issuer.api.deleteoptions import DeleteOptions
from issuer.api.errors import (
    FieldError,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
)
from issuer.api.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    json_merge_patch,
    json_patch,
    parse_patch_json,
    strategic_merge_patch,
)
from issuer.api.validation import (
    KINDS,
    SA_TOKEN_SECRET_TYPE,
    FieldValidation,
    KindInfo,
    decode_object,
    validate_object,
)
from issuer.authz import RBAC_GROUP
from issuer.context import IssuerContext
from issuer.http.status import StatusError
from issuer.store import JSON, Conflict, NotFound
from issuer.timefmt import rfc3339

__all__ = [
    "PATCH_TYPES",
    "WriteOptions",
    "delete_with_options",
    "kind_info",
    "patch_object",
    "replace_object",
]

PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, ssa.APPLY_PATCH)
#: Rebuilds of an unconditional write that lost a compare-and-swap race. kube's
#: GuaranteedUpdate retries until its request times out; each loss means another write landed,
#: so this bounds only pathological contention (then 409, "try again").
_RETRIES: Final = 100
_MODIFIED: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
#: Bound on the YAML an apply may send (after the body size cap): aliases could expand it.
_MAX_YAML_NODES: Final = 100_000


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """The query parameters of a write and who makes it."""

    caller: Caller
    manager: str
    mode: FieldValidation = "Strict"
    dry_run: bool = False
    force: bool = False
    #: The request named its manager (``fieldManager``); an apply must (kube: patch.go).
    manager_given: bool = True


def kind_info(kind: str) -> KindInfo:
    """The :class:`KindInfo` of a core or RBAC kind."""
    return KINDS.get(kind) or rbac.RBAC_KINDS[kind]


def _group(kind: str) -> str:
    return RBAC_GROUP if kind in rbac.RBAC_KINDS else ""


def _read(ctx: IssuerContext, kind: str, ns: str, name: str) -> JSON | None:
    if kind in rbac.RBAC_KINDS and rbac.builtin_object(kind, name) is not None:
        info = rbac.RBAC_KINDS[kind]
        raise forbidden(
            info.resource, name, "built-in RBAC objects are read-only in sa-oidc", group=RBAC_GROUP
        )
    try:
        return ctx.store.get_object(kind, ns, name)
    except NotFound:
        return None


def _decode(
    kind: str, ns: str, body: dict[str, Any], mode: FieldValidation
) -> tuple[JSON, list[str]]:
    if kind in rbac.RBAC_KINDS:
        return rbac.decode_rbac_object(kind, body, ns, mode)
    decoded = decode_object(body, KINDS[kind], path_namespace=ns, field_validation=mode)
    return decoded.obj, decoded.warnings


def _validate(kind: str, obj: JSON) -> None:
    if kind in rbac.RBAC_KINDS:
        rbac.validate_rbac_object(kind, obj)
    else:
        validate_object(KINDS[kind], obj)


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


#: kube: pkg/apis/core/validation ValidatePodUpdate's message.
_POD_UPDATE: Final = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def _without_images(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    for group in ("containers", "initContainers"):
        for c in out.get(group) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    out.pop("activeDeadlineSeconds", None)
    return out


def _update_errors(kind: str, old: JSON, new: JSON) -> list[FieldError]:
    """kube's ValidateXUpdate rules for the served kinds."""
    errs: list[FieldError] = []
    if kind == "Pod":
        if _without_images(old.get("spec") or {}) != _without_images(new.get("spec") or {}):
            errs.append(FieldError("Forbidden", "spec", detail=_POD_UPDATE))
    elif kind == "Secret":
        if old.get("type") != new.get("type"):
            errs.append(FieldError("Invalid", "type", new.get("type"), "field is immutable"))
        if old.get("immutable") is True:
            # kube: ValidateSecretUpdate
            if new.get("immutable") is not True:
                errs.append(
                    FieldError(
                        "Forbidden",
                        "immutable",
                        detail="field is immutable when `immutable` is set",
                    )
                )
            if (old.get("data") or {}) != (new.get("data") or {}):
                errs.append(
                    FieldError(
                        "Forbidden", "data", detail="field is immutable when `immutable` is set"
                    )
                )
    elif kind in (ROLE_BINDING, CLUSTER_ROLE_BINDING) and old.get("roleRef") != new.get("roleRef"):
        # kube: pkg/apis/rbac/validation ValidateRoleBindingUpdate
        errs.append(FieldError("Invalid", "roleRef", new.get("roleRef"), "cannot change roleRef"))
    return errs


def _prepare_update(kind: str, old: JSON, new: JSON) -> None:
    """rest.BeforeUpdate and the strategies' PrepareForUpdate: server-owned parts are kept."""
    meta, old_meta = new["metadata"], _meta(old)
    for key in ("uid", "creationTimestamp", "deletionTimestamp"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if kind in ("Pod", "Namespace", "Node") and "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    if kind == "Secret" and old.get("type") == new.get("type") == SA_TOKEN_SECRET_TYPE:
        # The token controller's keys stay, whatever the client sends (it cannot forge one).
        data = dict(new.get("data") or {})
        for key in ("token", "ca.crt", "namespace"):
            if key in (old.get("data") or {}):
                data[key] = old["data"][key]
        new["data"] = data


def _check_preconditions(kind: str, name: str, body: Mapping[str, Any], current: JSON) -> None:
    info = kind_info(kind)
    meta = _meta(body)
    uid = meta.get("uid")
    cur_uid = _meta(current).get("uid", "")
    if uid and uid != cur_uid:
        # kube: rest.BeforeUpdate / storage preconditions
        raise conflict(
            info.resource,
            name,
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {cur_uid}",
            _group(kind),
        )


def _write(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    name: str,
    make: Callable[[JSON | None], dict[str, Any]],
    opts: WriteOptions,
    *,
    operation: str,
    create_ok: bool,
) -> tuple[JSON, list[str], bool]:
    """The pipeline of the module docstring; returns (object, warnings, created)."""
    info = kind_info(kind)
    group = _group(kind)
    ns = namespace if info.namespaced else ""
    key = (kind, ns, name)
    # Start from what this process last stored, as kube's cacher does (issuer.lastwritten): the
    # compare-and-swap catches a stale start, and any refusal computed from one is recomputed
    # from a fresh read. A dry run has no swap to catch it: always fresh.
    start = None if opts.dry_run else ctx.last_written.get(key)
    if start is not None:
        try:
            return _update(ctx, kind, ns, name, start, make, opts, operation)
        except (StatusError, Conflict, NotFound):
            ctx.last_written.forget(key)  # perhaps stale: decide again on a fresh read
    for _ in range(_RETRIES):
        current = _read(ctx, kind, ns, name)
        if current is None:
            if not create_ok:
                raise not_found(info.resource, name, group)
            body = make(None)
            created = _create(ctx, kind, namespace, name, body, opts, operation)
            if not opts.dry_run:
                ctx.last_written.put(key, created[0])
            return created
        try:
            return _update(ctx, kind, ns, name, current, make, opts, operation)
        except Conflict:
            # Changed meanwhile: rebuild from the new version. A resourceVersion the request
            # itself carried (a PUT body's, or one a patch set) no longer matches then: 409.
            continue
        except NotFound:
            raise not_found(info.resource, name, group) from None
    raise conflict(info.resource, name, _MODIFIED, group)


def _update(
    ctx: IssuerContext,
    kind: str,
    ns: str,
    name: str,
    current: JSON,
    make: Callable[[JSON | None], dict[str, Any]],
    opts: WriteOptions,
    operation: str,
) -> tuple[JSON, list[str], bool]:
    """One update attempt from ``current``: StatusError when refused, store Conflict when the
    object is no longer at ``current``'s resourceVersion, NotFound when it is gone."""
    info = kind_info(kind)
    group = _group(kind)
    body = make(_json_copy(current))
    want_rv = _meta(body).get("resourceVersion")
    cur_rv = str(_meta(current).get("resourceVersion", ""))
    if want_rv not in (None, "") and str(want_rv) != cur_rv:
        raise conflict(info.resource, name, _MODIFIED, group)
    _check_preconditions(kind, name, body, current)
    body_name = _meta(body).get("name")
    if body_name and body_name != name:
        # kube: endpoints/handlers/update.go
        raise bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({name})"
        )
    managed = _meta(body).get("managedFields")
    obj, warnings = _decode(kind, ns, body, opts.mode)
    obj["metadata"]["name"] = name
    _prepare_update(kind, current, obj)
    _validate(kind, obj)
    errs = _update_errors(kind, current, obj)
    if errs:
        raise invalid(kind, name, errs, group)
    if kind in rbac.RBAC_KINDS:
        rbac.check_escalation(ctx, opts.caller, kind, ns, obj)
    now = rfc3339(ctx.clock())
    if operation == "Apply" and isinstance(managed, list):
        obj["metadata"]["managedFields"] = managed
    else:
        base = ssa.base_managed_fields(managed, _meta(current).get("managedFields") or [])
        if base is None:  # reset with [{}]
            obj["metadata"].pop("managedFields", None)
        else:
            obj["metadata"]["managedFields"] = base
            ssa.record_update(
                kind, current, obj, manager=opts.manager, api_version=info.api_version, now=now
            )
    if opts.dry_run:
        obj["metadata"]["resourceVersion"] = cur_rv
        return obj, warnings, False
    # An RBAC update may take access away: a power loss must not undo it (store ``durable``).
    stored = ctx.store.update_object(
        kind, ns, name, obj, resource_version=cur_rv, durable=kind in rbac.RBAC_KINDS
    )
    ctx.last_written.put((kind, ns, name), stored)
    if kind in rbac.RBAC_KINDS:
        ctx.audit_event(
            "rbac_updated",
            caller=opts.caller.label,
            kind=kind,
            namespace=ns,
            name=name,
            uid=stored["metadata"].get("uid", ""),
        )
    return stored, warnings, False


def _create(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    name: str,
    body: dict[str, Any],
    opts: WriteOptions,
    operation: str,
) -> tuple[JSON, list[str], bool]:
    meta = body.setdefault("metadata", {})
    if meta.get("name") and meta["name"] != name:
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
        )
    meta["name"] = name
    managed = meta.get("managedFields") if operation == "Apply" else None
    stamp = stamp_managed(ctx, kind, opts.manager, managed)
    if kind in rbac.RBAC_KINDS:
        stored, warnings = rbac.create_rbac_object(
            ctx, kind, namespace, body, opts.mode, opts.caller, stamp=stamp, dry_run=opts.dry_run
        )
    else:
        stored, warnings = objects.create_object(
            ctx,
            kind,
            namespace,
            body,
            opts.mode,
            opts.caller.label,
            stamp=stamp,
            dry_run=opts.dry_run,
        )
    return stored, warnings, True


def stamp_managed(
    ctx: IssuerContext, kind: str, manager: str, managed: list[Any] | None = None
) -> Callable[[JSON], None]:
    """:func:`issuer.api.apply.create_stamp` for ``kind`` at the context's time."""
    return ssa.create_stamp(
        kind, kind_info(kind).api_version, manager, rfc3339(ctx.clock()), managed
    )


# --- PUT ----------------------------------------------------------------------------------------


def replace_object(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    name: str,
    body: dict[str, Any],
    opts: WriteOptions,
) -> tuple[JSON, list[str], bool]:
    """PUT: replace the object with ``body`` (RBAC objects are created when missing, as kube's
    rbac strategies allow; core kinds are 404)."""
    return _write(
        ctx,
        kind,
        namespace,
        name,
        lambda _cur: copy.deepcopy(body),
        opts,
        operation="Update",
        create_ok=kind in rbac.RBAC_KINDS,
    )


# --- PATCH --------------------------------------------------------------------------------------


class _ApplyLoader(yaml.SafeLoader):
    """YAML 1.1 as sigs.k8s.io/yaml reads it into JSON: a timestamp-looking scalar stays a string
    (go-yaml v2 decodes timestamps into interface{} as strings "for backward compatibility")."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_apply(raw: bytes) -> dict[str, Any]:
    """The apply configuration: YAML (JSON is YAML too), one mapping."""
    try:
        loader = _ApplyLoader(raw.decode("utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None and _count_nodes(node) > _MAX_YAML_NODES:
                raise bad_request("the apply configuration is too large")
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding YAML: {e}") from None
    if not isinstance(doc, dict):
        raise bad_request("the apply configuration must be a YAML or JSON object")
    # As sigs.k8s.io/yaml's YAMLToJSON: what is stored is JSON. Non-string keys become strings
    # (1 -> "1", true -> "true"); values JSON cannot hold (.nan, .inf: kube's json.Marshal says
    # "unsupported value") are refused here, so the store's encoder never meets them.
    try:
        normal = json.loads(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise bad_request(f"error converting YAML to JSON: {e}") from None
    return cast(dict[str, Any], normal)


def _json_copy(doc: JSON) -> dict[str, Any]:
    """A deep copy of a JSON document (orjson round trip: several times faster than deepcopy)."""
    return cast(dict[str, Any], orjson.loads(orjson.dumps(doc)))


def _count_nodes(node: Any) -> int:
    """Nodes reachable from ``node``, aliases counted each time (a billion-laughs guard)."""
    total = 0
    stack = [node]
    while stack:
        n = stack.pop()
        total += 1
        if total > _MAX_YAML_NODES:
            return total
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode):
            stack += list(n.value)
    return total


def patch_object(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    name: str,
    content_type: str,
    raw: bytes,
    opts: WriteOptions,
) -> tuple[JSON, list[str], bool]:
    """PATCH with ``content_type`` (one of :data:`PATCH_TYPES`; 415 otherwise)."""
    media = content_type.split(";", 1)[0].strip().lower()
    info = kind_info(kind)
    if media == ssa.APPLY_PATCH:
        if not opts.manager_given:
            raise invalid(
                "PatchOptions",
                "",
                [FieldError("Required", "fieldManager", detail="is required for apply patch")],
                group="meta.k8s.io",
            )
        config = _load_apply(raw)
        _check_type(config, kind, info)

        def applied(current: JSON | None) -> dict[str, Any]:
            return ssa.apply_config(
                kind,
                current,
                config,
                manager=opts.manager,
                api_version=info.api_version,
                now=rfc3339(ctx.clock()),
                force=opts.force,
                resource=info.resource,
                group=_group(kind),
            )

        return _write(ctx, kind, namespace, name, applied, opts, operation="Apply", create_ok=True)
    if opts.force:
        raise bad_request("force is only allowed for apply patches")  # kube: patch.go
    if media not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
        raise StatusError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}",
        )
    doc = parse_patch_json(raw)

    def patched(current: JSON | None) -> dict[str, Any]:
        assert current is not None  # create_ok is False
        if media == JSON_PATCH:
            return json_patch(current, doc)
        if not isinstance(doc, dict):
            raise bad_request("the merge patch must be a JSON object")
        if media == MERGE_PATCH:
            out = json_merge_patch(current, doc)
            return out if isinstance(out, dict) else {}
        return strategic_merge_patch(kind, current, doc)

    return _write(ctx, kind, namespace, name, patched, opts, operation="Update", create_ok=False)


def _check_type(config: Mapping[str, Any], kind: str, info: KindInfo) -> None:
    # kube: an apply configuration must say what it is (fieldmanager "apiVersion must be set").
    if not config.get("apiVersion"):
        raise bad_request("apiVersion must be set in the apply configuration")
    if not config.get("kind"):
        raise bad_request("kind must be set in the apply configuration")
    if config["apiVersion"] != info.api_version or config["kind"] != kind:
        raise bad_request(
            f"the API version in the data ({config['apiVersion']}) does not match the expected "
            f"API version ({info.api_version})"
            if config["apiVersion"] != info.api_version
            else f"the object provided is unrecognized (must be of type {kind})"
        )


# --- DELETE with options ------------------------------------------------------------------------


def delete_with_options(
    ctx: IssuerContext,
    kind: str,
    namespace: str,
    name: str,
    options: DeleteOptions,
    caller: Caller,
) -> JSON:
    """DELETE honouring ``DeleteOptions`` (read and validated by
    :func:`issuer.api.deleteoptions.parse_delete_options`, which also says what
    ``propagationPolicy`` and ``gracePeriodSeconds`` mean here): ``preconditions`` (uid,
    resourceVersion: 409 Conflict ``Precondition failed: ...`` when they do not hold) and
    ``dryRun``. Every policy and grace period deletes the object at once."""
    info = kind_info(kind)
    group = _group(kind)
    ns = namespace if info.namespaced else ""
    pre = options.preconditions
    want_uid, want_rv = pre.get("uid"), pre.get("resourceVersion")
    if want_uid is not None or want_rv is not None or options.dry_run:
        current = _read(ctx, kind, ns, name)
        if current is None:
            raise not_found(info.resource, name, group)
        meta = _meta(current)
        if want_uid is not None and want_uid != meta.get("uid", ""):
            raise conflict(
                info.resource,
                name,
                f"Precondition failed: UID in precondition: "
                f"{want_uid}, UID in object meta: {meta.get('uid', '')}",
                group,
            )
        if want_rv is not None and str(want_rv) != str(meta.get("resourceVersion", "")):
            raise conflict(
                info.resource,
                name,
                f"Precondition failed: ResourceVersion in "
                f"precondition: {want_rv}, ResourceVersion in object meta: "
                f"{meta.get('resourceVersion', '')}",
                group,
            )
        if options.dry_run:
            return current
        if want_rv is not None:
            # The store deletes conditioned on the uid; the version is checked on the same read.
            return _delete_exact(ctx, kind, ns, name, current, caller)
    if kind in rbac.RBAC_KINDS:
        return rbac.delete_rbac_object(ctx, kind, namespace, name, caller)
    return objects.delete_object(ctx, kind, namespace, name)


def _delete_exact(
    ctx: IssuerContext, kind: str, ns: str, name: str, current: JSON, caller: Caller
) -> JSON:
    info = kind_info(kind)
    meta = _meta(current)
    try:
        deleted = objects.delete_exact(
            ctx, kind, ns, name, str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
        )
    except Conflict:
        raise conflict(info.resource, name, _MODIFIED, _group(kind)) from None
    if kind in rbac.RBAC_KINDS:
        ctx.audit_event(
            "rbac_deleted",
            caller=caller.label,
            kind=kind,
            namespace=ns,
            name=name,
            uid=meta.get("uid", ""),
        )
    return deleted
