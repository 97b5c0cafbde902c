"""Pure decoding and validation of the ``v1`` objects this API stores (no I/O).

Two stages, as kube-apiserver has them:

1. **Decoding** (400 BadRequest): the body's ``apiVersion``/``kind`` must be the endpoint's (kube:
   apiserver endpoints/handlers/create.go "the API version in the data ... does not match");
   JSON types must fit the Go structs (kube's decoder: "json: cannot unmarshal ..."); unknown
   fields — at the top level, in ``metadata``, and at any depth below (checked against kube's
   own schema, :mod:`issuer.api.schema`: ``unknown field "spec.containers[0].imagee"``) — are
   refused: ``fieldValidation=Strict`` is our default, as ``kubectl --validate=strict``
   (kube-apiserver's own default is Warn). The query parameter ``fieldValidation=Ignore|Warn``
   drops them instead (Warn also returns a ``Warning`` header per field).
2. **Validation** (422 Invalid): names (kube: apimachinery/pkg/util/validation/validation.go
   IsDNS1123Label / IsDNS1123Subdomain; pkg/apis/core/validation ValidateObjectMeta), pod
   containers, secret keys and the service-account-token annotation (ValidateSecret), and the
   TokenRequest limits (pkg/apis/authentication/validation ValidateTokenRequest).

Server-owned metadata (uid, resourceVersion, creationTimestamp ...) in a body is dropped, as
kube's ``rest.BeforeCreate`` does; the namespace of a cluster-scoped object is cleared likewise.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from issuer.api.errors import FieldError, bad_request, invalid
from issuer.api.schema import unknown_fields
from issuer.goquote import go_quote
from issuer.names import bounded_pattern_errors, dns1123_label_errors, dns1123_subdomain_errors

__all__ = [
    "KINDS",
    "MAX_TOKEN_EXPIRATION_SECONDS",
    "MIN_TOKEN_EXPIRATION_SECONDS",
    "SA_NAME_ANNOTATION",
    "SA_TOKEN_SECRET_TYPE",
    "SA_UID_ANNOTATION",
    "Decoded",
    "FieldValidation",
    "KindInfo",
    "decode_object",
    "decode_token_request",
    "decode_token_review",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "type_error",
    "validate_object",
]

FieldValidation = Literal["Strict", "Warn", "Ignore"]

#: kube: pkg/apis/core/types.go SecretTypeServiceAccountToken and its annotations.
SA_TOKEN_SECRET_TYPE: Final = "kubernetes.io/service-account-token"  # noqa: S105
SA_NAME_ANNOTATION: Final = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION: Final = "kubernetes.io/service-account.uid"

#: kube: pkg/apis/authentication/validation ValidateTokenRequest.
MIN_TOKEN_EXPIRATION_SECONDS: Final = 10 * 60
MAX_TOKEN_EXPIRATION_SECONDS: Final = 1 << 32

# kube: apimachinery/pkg/util/validation/validation.go
_CONFIG_KEY_FMT: Final = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE: Final = re.compile(_CONFIG_KEY_FMT)


def _config_key_errors(value: str) -> list[str]:
    # kube: validation.go IsConfigMapKey (secret data keys).
    errs = bounded_pattern_errors(
        value,
        253,
        _CONFIG_KEY_RE,
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        _CONFIG_KEY_FMT,
        "key.name",
        "KEY_NAME",
        "key-name",
    )
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What the API knows about one stored kind."""

    kind: str
    resource: str
    namespaced: bool
    name_rule: Literal["label", "subdomain"]
    top_fields: frozenset[str]
    api_version: str = "v1"


KINDS: Final[dict[str, KindInfo]] = {
    "Namespace": KindInfo(
        "Namespace", "namespaces", False, "label",
        frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
    ),
    "ServiceAccount": KindInfo(
        "ServiceAccount", "serviceaccounts", True, "subdomain",
        frozenset({"apiVersion", "kind", "metadata", "secrets", "imagePullSecrets",
                   "automountServiceAccountToken"}),
    ),
    "Pod": KindInfo(
        "Pod", "pods", True, "subdomain",
        frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
    ),
    "Secret": KindInfo(
        "Secret", "secrets", True, "subdomain",
        frozenset({"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}),
    ),
    "Node": KindInfo(
        "Node", "nodes", False, "subdomain",
        frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
    ),
}  # fmt: skip

#: ObjectMeta fields a client may send. The server-owned ones are accepted and dropped.
_META_KEPT: Final = frozenset(
    {"name", "generateName", "namespace", "labels", "annotations", "ownerReferences", "finalizers"}
)
_META_DROPPED: Final = frozenset(
    {
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "selfLink",
        "generation",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)

_JSON_TYPE_NAMES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    type(None): "null",
}


def type_error(value: Any, where: str, go_type: str) -> Exception:
    """kube's JSON decoder error (400): "json: cannot unmarshal string into Go struct field X of
    type Y" — for a field of the wrong JSON type."""
    got = _JSON_TYPE_NAMES.get(type(value), "value")
    return bad_request(
        f"json: cannot unmarshal {got} into Go struct field {where} of type {go_type}"
    )


def _want_obj(value: Any, where: str, go_type: str = "object") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise type_error(value, where, go_type)
    return value


def _want_list(value: Any, where: str, go_type: str) -> list[Any]:
    if not isinstance(value, list):
        raise type_error(value, where, go_type)
    return value


def _want_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise type_error(value, where, "string")
    return value


def _want_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(value, where, "bool")
    return value


def _want_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(value, where, "int64")
    return value


def _want_str_map(value: Any, where: str) -> dict[str, str]:
    obj = _want_obj(value, where, "map[string]string")
    for v in obj.values():
        _want_str(v, where)
    return obj


@dataclass(slots=True)
class Decoded:
    """A decoded body: the object to validate/store and field warnings (fieldValidation=Warn)."""

    obj: dict[str, Any]
    warnings: list[str]


def _unknown_fields(
    obj: dict[str, Any], allowed: frozenset[str], prefix: str, mode: FieldValidation
) -> list[str]:
    unknown = [k for k in obj if k not in allowed]
    if not unknown:
        return []
    names = [f"{prefix}{k}" for k in unknown]
    if mode == "Strict":
        # kube: apimachinery runtime/serializer strict decoding errors.
        raise bad_request(
            "strict decoding error: " + ", ".join(f"unknown field {go_quote(n)}" for n in names)
        )
    for k in unknown:
        del obj[k]
    return [f"unknown field {go_quote(n)}" for n in names] if mode == "Warn" else []


def _nested_unknown_fields(obj: dict[str, Any], kind: str, mode: FieldValidation) -> list[str]:
    # Below the top level, against kube's own schema (issuer.api.schema): the same rule as
    # _unknown_fields, at any depth (kube's strict decoding reports them all).
    found = unknown_fields(obj, kind, skip=_TYPE_AND_META)
    if not found:
        return []
    if mode == "Strict":
        raise bad_request(
            "strict decoding error: "
            + ", ".join(f"unknown field {go_quote(u.path)}" for u in found)
        )
    for u in found:
        u.parent.pop(u.key, None)
    return [f"unknown field {go_quote(u.path)}" for u in found] if mode == "Warn" else []


_TYPE_AND_META: Final = frozenset({"apiVersion", "kind", "metadata"})


def _check_type_meta(body: Mapping[str, Any], kind: str, api_version: str) -> None:
    av = body.get("apiVersion")
    if av is not None and av != "":
        av = _want_str(av, f"{kind}.apiVersion")
        if av != api_version:
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version "
                f"({api_version})"
            )
    k = body.get("kind")
    if k is not None and k != "":
        k = _want_str(k, f"{kind}.kind")
        if k != kind:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {kind}): "
                f"kind {go_quote(k)} does not match"
            )


def _decode_metadata(
    body: dict[str, Any], kind: str, mode: FieldValidation, warnings: list[str]
) -> dict[str, Any]:
    raw = body.get("metadata")
    meta = {} if raw is None else dict(_want_obj(raw, f"{kind}.metadata", "v1.ObjectMeta"))
    warnings += _unknown_fields(meta, _META_KEPT | _META_DROPPED, "metadata.", mode)
    for key in _META_DROPPED:
        meta.pop(key, None)
    for key in ("name", "generateName", "namespace"):
        if meta.get(key) is not None:
            _want_str(meta[key], f"{kind}.metadata.{key}")
        else:
            meta.pop(key, None)
    for key in ("labels", "annotations"):
        if meta.get(key) is not None:
            _want_str_map(meta[key], f"{kind}.metadata.{key}")
        else:
            meta.pop(key, None)
    if meta.get("ownerReferences") is not None:
        _want_list(
            meta["ownerReferences"], f"{kind}.metadata.ownerReferences", "[]v1.OwnerReference"
        )
    if meta.get("finalizers") is not None:
        for f in _want_list(meta["finalizers"], f"{kind}.metadata.finalizers", "[]string"):
            _want_str(f, f"{kind}.metadata.finalizers")
    return meta


def _name_refs(value: Any, where: str, go_type: str) -> list[dict[str, Any]]:
    refs = _want_list(value, where, go_type)
    for ref in refs:
        r = _want_obj(ref, where, go_type)
        if r.get("name") is not None:
            _want_str(r["name"], f"{where}.name")
    return refs


def _decode_pod_spec(spec: dict[str, Any]) -> None:
    for key in ("serviceAccountName", "serviceAccount", "nodeName"):
        if spec.get(key) is not None:
            _want_str(spec[key], f"Pod.spec.{key}")
    if spec.get("automountServiceAccountToken") is not None:
        _want_bool(spec["automountServiceAccountToken"], "Pod.spec.automountServiceAccountToken")
    if spec.get("imagePullSecrets") is not None:
        _name_refs(
            spec["imagePullSecrets"], "Pod.spec.imagePullSecrets", "[]v1.LocalObjectReference"
        )
    for vol in _want_list(spec.get("volumes") or [], "Pod.spec.volumes", "[]v1.Volume"):
        v = _want_obj(vol, "Pod.spec.volumes", "v1.Volume")
        if v.get("name") is not None:
            _want_str(v["name"], "Pod.spec.volumes.name")
        if v.get("secret") is not None:
            sec = _want_obj(v["secret"], "Pod.spec.volumes.secret", "v1.SecretVolumeSource")
            if sec.get("secretName") is not None:
                _want_str(sec["secretName"], "Pod.spec.volumes.secret.secretName")
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for c in _want_list(spec.get(group) or [], f"Pod.spec.{group}", "[]v1.Container"):
            ctr = _want_obj(c, f"Pod.spec.{group}", "v1.Container")
            for key in ("name", "image"):
                if ctr.get(key) is not None:
                    _want_str(ctr[key], f"Pod.spec.{group}.{key}")
            for env in _want_list(ctr.get("env") or [], f"Pod.spec.{group}.env", "[]v1.EnvVar"):
                e = _want_obj(env, f"Pod.spec.{group}.env", "v1.EnvVar")
                vf = e.get("valueFrom")
                if vf is not None:
                    vf = _want_obj(vf, f"Pod.spec.{group}.env.valueFrom", "v1.EnvVarSource")
                    skr = vf.get("secretKeyRef")
                    if skr is not None:
                        _want_obj(skr, f"Pod.spec.{group}.env.valueFrom.secretKeyRef")
            for ef in _want_list(
                ctr.get("envFrom") or [], f"Pod.spec.{group}.envFrom", "[]v1.EnvFromSource"
            ):
                src = _want_obj(ef, f"Pod.spec.{group}.envFrom", "v1.EnvFromSource")
                if src.get("secretRef") is not None:
                    _want_obj(src["secretRef"], f"Pod.spec.{group}.envFrom.secretRef")
            for vm in _want_list(
                ctr.get("volumeMounts") or [], f"Pod.spec.{group}.volumeMounts", "[]v1.VolumeMount"
            ):
                _want_obj(vm, f"Pod.spec.{group}.volumeMounts", "v1.VolumeMount")


def decode_object(
    body: dict[str, Any],
    info: KindInfo,
    *,
    path_namespace: str = "",
    field_validation: FieldValidation = "Strict",
) -> Decoded:
    """Decode a create body for ``info.kind`` (400 BadRequest on any decoding problem).

    Sets ``apiVersion``/``kind``; for namespaced kinds fills ``metadata.namespace`` from the path or
    refuses a different one (kube: rest.BeforeCreate "the namespace of the provided object does not
    match the namespace sent on the request"). Does not validate names (see validate_object).
    """
    kind = info.kind
    _check_type_meta(body, kind, info.api_version)
    obj = dict(body)
    warnings = _unknown_fields(obj, info.top_fields, "", field_validation)
    meta = _decode_metadata(obj, kind, field_validation, warnings)
    warnings += _nested_unknown_fields(obj, kind, field_validation)
    if info.namespaced:
        ns = meta.get("namespace", "")
        if ns and ns != path_namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = path_namespace
    else:
        meta.pop("namespace", None)

    if kind == "ServiceAccount":
        for key, go_type in (
            ("secrets", "[]v1.ObjectReference"),
            ("imagePullSecrets", "[]v1.LocalObjectReference"),
        ):
            if obj.get(key) is not None:
                _name_refs(obj[key], f"ServiceAccount.{key}", go_type)
        if obj.get("automountServiceAccountToken") is not None:
            _want_bool(
                obj["automountServiceAccountToken"], "ServiceAccount.automountServiceAccountToken"
            )
    elif kind == "Pod":
        spec = obj.get("spec")
        obj["spec"] = {} if spec is None else dict(_want_obj(spec, "Pod.spec", "v1.PodSpec"))
        _decode_pod_spec(obj["spec"])
        # kube: pod strategy PrepareForCreate resets status.
        obj["status"] = {"phase": "Pending"}
    elif kind == "Secret":
        _decode_secret(obj)
    elif kind == "Namespace":
        spec = obj.get("spec")
        spec = {} if spec is None else dict(_want_obj(spec, "Namespace.spec", "v1.NamespaceSpec"))
        fin = spec.get("finalizers")
        if fin is not None:
            for f in _want_list(fin, "Namespace.spec.finalizers", "[]v1.FinalizerName"):
                _want_str(f, "Namespace.spec.finalizers")
        else:
            spec["finalizers"] = ["kubernetes"]  # kube: namespace strategy PrepareForCreate
        obj["spec"] = spec
        obj["status"] = {"phase": "Active"}
    elif kind == "Node":
        for key in ("spec", "status"):
            if obj.get(key) is not None:
                _want_obj(obj[key], f"Node.{key}")

    obj.pop("apiVersion", None)
    obj.pop("kind", None)
    obj.pop("metadata", None)
    return Decoded(
        {"apiVersion": info.api_version, "kind": kind, "metadata": meta, **obj}, warnings
    )


def _decode_secret(obj: dict[str, Any]) -> None:
    data: dict[str, str] = {}
    if obj.get("data") is not None:
        for key, value in _want_obj(obj["data"], "Secret.data", "map[string][]uint8").items():
            _want_str(value, "Secret.data")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                # kube: encoding/json decodes []byte as standard base64.
                raise bad_request(f"illegal base64 data in Secret.data[{go_quote(key)}]") from None
            data[key] = value
    if obj.get("stringData") is not None:
        # kube: secret strategy merges write-only stringData into data.
        for key, value in _want_str_map(obj["stringData"], "Secret.stringData").items():
            data[key] = base64.b64encode(value.encode()).decode()
    obj.pop("stringData", None)
    if data or "data" in obj:
        obj["data"] = data
    t = obj.get("type")
    obj["type"] = _want_str(t, "Secret.type") if t else "Opaque"
    if obj.get("immutable") is not None:
        _want_bool(obj["immutable"], "Secret.immutable")


def _name_field_errors(info: KindInfo, meta: Mapping[str, Any]) -> list[FieldError]:
    name = meta.get("name", "")
    if not name:
        return [FieldError("Required", "metadata.name", detail="name or generateName is required")]
    rule = dns1123_label_errors if info.name_rule == "label" else dns1123_subdomain_errors
    return [FieldError("Invalid", "metadata.name", name, msg) for msg in rule(name)]


def validate_object(info: KindInfo, obj: Mapping[str, Any]) -> None:
    """Raise 422 Invalid when a decoded object breaks kube's validation rules."""
    meta = obj["metadata"]
    errs = _name_field_errors(info, meta)
    if info.kind == "Pod":
        errs += _pod_errors(obj["spec"])
    elif info.kind == "Secret":
        errs += _secret_errors(obj)
    elif info.kind == "ServiceAccount":
        for key in ("secrets", "imagePullSecrets"):
            for i, ref in enumerate(obj.get(key) or []):
                if not ref.get("name"):
                    errs.append(FieldError("Required", f"{key}[{i}].name"))
    if errs:
        raise invalid(info.kind, meta.get("name", ""), errs)


def _pod_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    # kube: pkg/apis/core/validation ValidatePodSpec (the parts this API relies on).
    errs: list[FieldError] = []
    containers = spec.get("containers") or []
    if not containers:
        errs.append(FieldError("Required", "spec.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            path = f"spec.{group}[{i}]"
            name = c.get("name") or ""
            if not name:
                errs.append(FieldError("Required", f"{path}.name"))
            else:
                errs += [
                    FieldError("Invalid", f"{path}.name", name, m)
                    for m in dns1123_label_errors(name)
                ]
                if name in seen:
                    errs.append(FieldError("Duplicate", f"{path}.name", name))
                seen.add(name)
            if not c.get("image"):
                errs.append(FieldError("Required", f"{path}.image"))
    vols: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        name = v.get("name") or ""
        if not name:
            errs.append(FieldError("Required", f"spec.volumes[{i}].name"))
        elif name in vols:
            errs.append(FieldError("Duplicate", f"spec.volumes[{i}].name", name))
        vols.add(name)
    for key in ("serviceAccountName", "nodeName"):
        value = spec.get(key) or ""
        if value:
            errs += [
                FieldError("Invalid", f"spec.{key}", value, m)
                for m in dns1123_subdomain_errors(value)
            ]
    return errs


def _secret_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    # kube: pkg/apis/core/validation ValidateSecret.
    errs: list[FieldError] = []
    for key in obj.get("data") or {}:
        errs += [FieldError("Invalid", f"data[{key}]", key, m) for m in _config_key_errors(key)]
    if obj.get("type") == SA_TOKEN_SECRET_TYPE:
        annotations = obj["metadata"].get("annotations") or {}
        if not annotations.get(SA_NAME_ANNOTATION):
            errs.append(FieldError("Required", f"metadata.annotations[{SA_NAME_ANNOTATION}]"))
    return errs


# --- TokenRequest / TokenReview bodies ----------------------------------------------------------

_TR_TOP: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_TR_SPEC: Final = frozenset({"audiences", "expirationSeconds", "boundObjectRef"})
_TR_REF: Final = frozenset({"kind", "apiVersion", "name", "uid"})
_REVIEW_SPEC: Final = frozenset({"token", "audiences"})


def _audiences(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    out = []
    for a in _want_list(value, where, "[]string"):
        out.append(_want_str(a, where))
    return out


def decode_token_request(
    body: dict[str, Any], mode: FieldValidation = "Strict"
) -> tuple[dict[str, Any], list[str]]:
    """Decode an ``authentication.k8s.io/v1`` TokenRequest body (400 on decoding errors).

    Returns ``(request, warnings)``; ``spec.expirationSeconds`` defaults to 3600 (kube:
    pkg/apis/authentication/v1/defaults.go) and ``spec.audiences`` to ``[]``.
    """
    _check_type_meta(body, "TokenRequest", "authentication.k8s.io/v1")
    obj = dict(body)
    warnings = _unknown_fields(obj, _TR_TOP, "", mode)
    meta = _decode_metadata(obj, "TokenRequest", mode, warnings)
    spec = dict(_want_obj(obj.get("spec") or {}, "TokenRequest.spec", "v1.TokenRequestSpec"))
    warnings += _unknown_fields(spec, _TR_SPEC, "spec.", mode)
    spec["audiences"] = _audiences(spec.get("audiences"), "TokenRequest.spec.audiences")
    exp = spec.get("expirationSeconds")
    spec["expirationSeconds"] = (
        3600 if exp is None else _want_int(exp, "TokenRequest.spec.expirationSeconds")
    )
    ref = spec.get("boundObjectRef")
    if ref is not None:
        ref = dict(_want_obj(ref, "TokenRequest.spec.boundObjectRef", "v1.BoundObjectReference"))
        warnings += _unknown_fields(ref, _TR_REF, "spec.boundObjectRef.", mode)
        for key in _TR_REF:
            if ref.get(key) is not None:
                _want_str(ref[key], f"TokenRequest.spec.boundObjectRef.{key}")
        spec["boundObjectRef"] = ref
    else:
        spec.pop("boundObjectRef", None)
    return {"metadata": meta, "spec": spec}, warnings


def validate_token_request(name: str, spec: Mapping[str, Any]) -> None:
    """kube: ValidateTokenRequest — 422 for a lifetime under 10 minutes or over 2^32 seconds."""
    exp = spec["expirationSeconds"]
    errs: list[FieldError] = []
    if exp < MIN_TOKEN_EXPIRATION_SECONDS:
        errs.append(
            FieldError(
                "Invalid",
                "spec.expirationSeconds",
                exp,
                "may not specify a duration less than 10 minutes",
            )
        )
    if exp > MAX_TOKEN_EXPIRATION_SECONDS:
        errs.append(
            FieldError(
                "Invalid",
                "spec.expirationSeconds",
                exp,
                "may not specify a duration larger than 2^32 seconds",
            )
        )
    if errs:
        # kube: token.go errors.NewInvalid(gvk.GroupKind(), "", errs)
        raise invalid("TokenRequest", "", errs, group="authentication.k8s.io")


def decode_token_review(
    body: dict[str, Any], api_version: str, mode: FieldValidation = "Strict"
) -> tuple[str, list[str], list[str]]:
    """Decode a TokenReview body; return ``(token, audiences, warnings)`` (400 on decoding errors).

    An empty token is 400 "token is required for TokenReview in authentication" (kube:
    pkg/registry/authentication/tokenreview/storage.go).
    """
    _check_type_meta(body, "TokenReview", api_version)
    obj = dict(body)
    warnings = _unknown_fields(obj, _TR_TOP, "", mode)
    meta = _decode_metadata(obj, "TokenReview", mode, warnings)
    if meta.get("namespace"):
        raise bad_request(f"namespace is not allowed on this type: {meta['namespace']}")
    spec = dict(_want_obj(obj.get("spec") or {}, "TokenReview.spec", "v1.TokenReviewSpec"))
    warnings += _unknown_fields(spec, _REVIEW_SPEC, "spec.", mode)
    token = spec.get("token")
    token = "" if token is None else _want_str(token, "TokenReview.spec.token")
    if not token:
        raise bad_request("token is required for TokenReview in authentication")
    auds = _audiences(spec.get("audiences"), "TokenReview.spec.audiences")
    return token, auds, warnings
