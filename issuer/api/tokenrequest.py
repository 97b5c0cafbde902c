"""TokenRequest: ``POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token``.

Follows kube: pkg/registry/core/serviceaccount/storage/token.go ``TokenREST.Create`` step by step:

1. body metadata name/namespace must match the URL if given (422);
2. the service account must exist (404 ``serviceaccounts "x" not found``);
3. empty ``spec.audiences`` → the API audiences;
4. ValidateTokenRequest: 600 <= expirationSeconds <= 2^32 (422);
5. ``boundObjectRef``: core-group Pod, Node or Secret (else 400 ``cannot bind token to object of
   type /v1, Kind=X``); the object must exist (404); a Pod must run as this account (400); a
   given uid must be the live one (409 Conflict); a pod's node is recorded when it exists;
6. the configured maximum shortens longer requests (``Warning``); optional extended expiration;
7. claims (:func:`issuer.tokens.bound_claims`), signature, one audit line, a metric.

The response echoes the request with ``status: {token, expirationTimestamp}`` (201).
"""

from __future__ import annotations

from typing import Any, Final

from issuer.api.errors import FieldError, bad_request, conflict, invalid, not_found
from issuer.api.validation import FieldValidation, decode_token_request, validate_token_request
from issuer.context import IssuerContext
from issuer.store import JSON, NotFound
from issuer.timefmt import rfc3339
from issuer.tokens import BoundRef, bound_claims, new_token_id, plan_expiration

__all__ = ["API_GROUP", "create_token"]

API_GROUP: Final = "authentication.k8s.io"
_API_VERSION: Final = "authentication.k8s.io/v1"
#: kind -> (store kind, resource name, namespaced)
_BINDABLE: Final = {
    "Pod": ("pods", True),
    "Secret": ("secrets", True),
    "Node": ("nodes", False),
}


def _ref(obj: JSON) -> BoundRef:
    meta = obj.get("metadata") or {}
    return BoundRef(str(meta.get("name", "")), str(meta.get("uid", "")))


def _split_api_version(api_version: str) -> tuple[str, str]:
    # apimachinery schema.ParseGroupVersion: "" | "v1" | "group/version"; otherwise unparsable.
    if not api_version:
        return "", ""
    if api_version.count("/") == 0:
        return "", api_version
    if api_version.count("/") == 1:
        group, version = api_version.split("/")
        return group, version
    return "", ""


def _invalid_meta(name: str, field: str, value: str, what: str) -> Exception:
    return invalid(
        "TokenRequest",
        name,
        [
            FieldError(
                "Invalid", field, value, f"must match the service account {what} if specified"
            )
        ],
        group=API_GROUP,
    )


def create_token(
    ctx: IssuerContext,
    namespace: str,
    name: str,
    body: dict[str, Any],
    mode: FieldValidation = "Strict",
    caller: str = "",
) -> tuple[JSON, list[str]]:
    """Mint a bound token; return the TokenRequest response object and ``Warning`` texts."""
    req, warnings = decode_token_request(body, mode)
    meta, spec = req["metadata"], req["spec"]
    if meta.get("name") and meta["name"] != name:
        raise _invalid_meta(name, "metadata.name", meta["name"], "name")
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise _invalid_meta(name, "metadata.namespace", meta["namespace"], "namespace")

    store = ctx.store
    try:
        sa = store.get_object("ServiceAccount", namespace, name)
    except NotFound:
        raise not_found("serviceaccounts", name) from None
    audiences: list[str] = spec["audiences"] or list(ctx.api_audiences)
    spec["audiences"] = audiences
    validate_token_request(name, spec)

    pod = secret = node = None
    ref = spec.get("boundObjectRef")
    if ref is not None:
        kind = ref.get("kind", "")
        group, version = _split_api_version(ref.get("apiVersion", ""))
        if group != "" or kind not in _BINDABLE:
            # kube: token.go; gvk.String() is "group/version, Kind=kind".
            raise bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        resource, namespaced = _BINDABLE[kind]
        ref_name = ref.get("name", "")
        if not ref_name:
            raise bad_request("Name parameter required.")  # kube: registry NamespaceKeyFunc
        try:
            obj = store.get_object(kind, namespace if namespaced else "", ref_name)
        except NotFound:
            raise not_found(resource, ref_name) from None
        if kind == "Pod":
            sa_of_pod = (obj.get("spec") or {}).get("serviceAccountName", "")
            if sa_of_pod != name:
                raise bad_request(
                    f'cannot bind token for serviceaccount "{name}" to pod running with different '
                    "serviceaccount name."
                )
            pod = _ref(obj)
            node_name = (obj.get("spec") or {}).get("nodeName", "")
            if node_name:
                # ServiceAccountTokenPodNodeInfo: record the pod's node. A missing Node object does
                # not fail the request; its name is still embedded, without a uid (kube: token.go
                # "if the referenced Node object does not exist, we still embed just the ... name").
                try:
                    node = _ref(store.get_object("Node", "", node_name))
                except NotFound:
                    node = BoundRef(node_name, "")
            live_uid = pod.uid
        elif kind == "Node":
            node = _ref(obj)
            live_uid = node.uid
        else:
            secret = _ref(obj)
            live_uid = secret.uid
        if ref.get("uid") and ref["uid"] != live_uid:
            raise conflict(
                kind,
                ref_name,
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                "record. The object might have been deleted and then recreated",
            )

    plan = plan_expiration(
        spec["expirationSeconds"],
        max_expiration=ctx.config.token_max_expiration,
        extended_expiration=ctx.config.extended_expiration,
        pod_bound=pod is not None,
        audiences=audiences,
        api_audiences=ctx.api_audiences,
    )
    if plan.warning:
        warnings.append(plan.warning)
    spec["expirationSeconds"] = plan.expiration_seconds

    now = int(ctx.clock())
    sa_ref = _ref(sa)
    claims = bound_claims(
        issuer=ctx.config.issuer,
        namespace=namespace,
        service_account=sa_ref,
        audiences=audiences,
        now=now,
        plan=plan,
        jti=new_token_id(),
        pod=pod,
        secret=secret,
        node=node,
    )
    signer = ctx.keys.signer()
    token = signer.sign_jwt(claims)

    bound_kind = "pod" if pod else "secret" if secret else "node" if node else "none"
    bound: dict[str, Any] = {}
    for key, r in (("pod", pod), ("secret", secret), ("node", node)):
        if r is not None:
            bound[key] = {"name": r.name, "uid": r.uid}
    ctx.audit_event(
        "token_issued",
        caller=caller,
        serviceaccount={"namespace": namespace, "name": sa_ref.name, "uid": sa_ref.uid},
        bound=bound,
        audiences=audiences,
        jti=claims["jti"],
        kid=signer.kid,
        iat=claims["iat"],
        exp=claims["exp"],
    )
    ctx.metrics.tokens_issued.inc(kind=bound_kind)

    out_meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "creationTimestamp": rfc3339(now),
    }
    response = {
        "kind": "TokenRequest",
        "apiVersion": _API_VERSION,
        "metadata": out_meta,
        "spec": spec,
        # kube: expirationTimestamp is now + spec.expirationSeconds, even when exp was extended.
        "status": {"token": token, "expirationTimestamp": rfc3339(now + plan.expiration_seconds)},
    }
    return response, warnings
