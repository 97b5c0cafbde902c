"""``DeleteOptions`` (kube: apimachinery pkg/apis/meta/v1 ``DeleteOptions``): read from a DELETE's
body and query, validated as kube-apiserver does, and what each option means here. Pure.

Reading (kube: apiserver pkg/endpoints/handlers/delete.go ``DeleteResource``). The body, when
there is one, is a JSON ``DeleteOptions`` (``kind`` DeleteOptions if given, any ``apiVersion``:
kube accepts the per-group ones); a value of the wrong JSON type is 400 with Go's unmarshal text;
unknown fields are ignored. The query parameters ``gracePeriodSeconds`` (``strconv.ParseInt``:
400 on anything else), ``orphanDependents`` (``0`` or ``false`` in any case is false, anything
else true), ``propagationPolicy`` and ``dryRun`` carry the same options (kube:
``autoConvert_url_Values_To_v1_DeleteOptions``). kube reads the query only when the body is empty;
we also take from the query what the body leaves unset, so that ``?dryRun=All`` next to a body of
preconditions is never silently a real delete.

Validation (kube: apimachinery pkg/apis/meta/v1/validation ``ValidateDeleteOptions``; the handler
answers ``errors.NewInvalid(meta.k8s.io DeleteOptions, "", errs)``, 422)::

    propagationPolicy: Invalid value: "Background": orphanDependents and deletionPropagation
        cannot be both set
    propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground",
        "Background", "Orphan", "nil"
    dryRun: Unsupported value: ["Some"]: supported values: "All"

What the options mean here (docs/CONTRACTS.md "DELETE and its options"):

- ``gracePeriodSeconds`` is accepted with any int64 value, negative ones taken as 1 as kube does
  (apiserver pkg/registry/rest/delete.go ``BeforeDelete``). It changes nothing: no kubelet
  runs the pods we store, so a Pod is deleted at once, as kube deletes a pod that is not
  scheduled to a node (pkg/registry/core/pod/strategy.go ``CheckGracefulDelete``: period 0);
  the other kinds have no graceful deletion in kube either.
- ``propagationPolicy`` (and the deprecated ``orphanDependents``) say what becomes of the objects
  whose ``metadata.ownerReferences`` name the deleted one. There is no garbage collector here:
  such dependents are never deleted, whatever the policy, so ``Orphan`` is honoured exactly and
  ``Background``/``Foreground`` leave dependents where kube's collector would delete them. The
  deleted object itself goes at once under every policy (kube's ``Foreground`` keeps it, with a
  ``foregroundDeletion`` finalizer, only until its blocking dependents are gone: here there are
  none to wait for), so the answer is always 200, never kube's 202.
- ``metadata.finalizers`` are kept as written but hold no deletion: no controller here would ever
  remove them, so an object is deleted at once even when it lists some (kube would keep it, with a
  ``deletionTimestamp``, until they are removed).
- Deleting a Namespace deletes everything in it under every policy, ``Orphan`` included: in kube
  the policy only puts the ``orphan`` or ``foregroundDeletion`` finalizer on the Namespace object
  (pkg/registry/core/namespace/storage/storage.go ``shouldHaveOrphanFinalizer``), while the
  namespace controller deletes its contents regardless.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from issuer.api.errors import FieldError, bad_request, invalid

__all__ = [
    "PROPAGATION_POLICIES",
    "DeleteOptions",
    "parse_delete_options",
]

#: kube: metav1.DeletePropagationForeground, Background, Orphan (in ValidateDeleteOptions' order).
PROPAGATION_POLICIES: Final = ("Foreground", "Background", "Orphan")
_META_GROUP: Final = "meta.k8s.io"
_INT64: Final = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    """A DELETE's options once read and validated (None: not given)."""

    preconditions: Mapping[str, Any] = field(default_factory=dict)
    grace_period_seconds: int | None = None
    orphan_dependents: bool | None = None
    propagation_policy: str | None = None
    dry_run: bool = False


class _GoJSON:
    """A bad value rendered as Go's ``json.Marshal`` renders it in a field error (the value kube
    reports for a pointer or a slice; field/errors.go ``ErrorBody``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        text = json.dumps(self.value, ensure_ascii=False, separators=(",", ":"))
        # encoding/json escapes these for HTML safety.
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_type(value: Any, numeric_target: bool = False) -> str:
    # encoding/json's UnmarshalTypeError.Value names: a number that does not fit a numeric field
    # is named with its literal ("number 1.5"), one for a field of another type is "number".
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}" if numeric_target else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(name: str, value: Any, go_type: str) -> Exception:
    numeric = go_type == "int64"
    return bad_request(
        f"json: cannot unmarshal {_json_type(value, numeric)} into Go struct field "
        f"DeleteOptions.{name} of type {go_type}"
    )


def _from_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The options a JSON body sets (null = unset, as Go's pointers)."""
    kind = body.get("kind")
    if kind is not None and kind != "DeleteOptions":
        # kube decodes the body as meta.k8s.io DeleteOptions and refuses any other object.
        raise bad_request("decoded object cannot be converted to DeleteOptions")
    out: dict[str, Any] = {}
    pre = body.get("preconditions")
    if pre is not None:
        if not isinstance(pre, dict):
            raise _type_error("preconditions", pre, "v1.Preconditions")
        for key in ("uid", "resourceVersion"):
            value = pre.get(key)
            if value is not None and not isinstance(value, str):
                go = "types.UID" if key == "uid" else "string"
                raise _type_error(f"preconditions.{key}", value, go)
        out["preconditions"] = {k: v for k, v in pre.items() if v is not None}
    grace = body.get("gracePeriodSeconds")
    if grace is not None:
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise _type_error("gracePeriodSeconds", grace, "int64")
        if isinstance(grace, float) or not _INT64[0] <= grace <= _INT64[1]:
            raise _type_error("gracePeriodSeconds", grace, "int64")
        out["grace"] = int(grace)
    orphan = body.get("orphanDependents")
    if orphan is not None:
        if not isinstance(orphan, bool):
            raise _type_error("orphanDependents", orphan, "bool")
        out["orphan"] = orphan
    policy = body.get("propagationPolicy")
    if policy is not None:
        if not isinstance(policy, str):
            raise _type_error("propagationPolicy", policy, "v1.DeletionPropagation")
        out["policy"] = policy
    dry = body.get("dryRun")
    if dry is not None:
        if not isinstance(dry, list) or not all(isinstance(v, str) for v in dry):
            raise _type_error("dryRun", dry, "[]string")
        out["dryRun"] = list(dry)
    return out


def _parse_int64(text: str) -> int:
    # Go strconv.ParseInt(s, 10, 64): optional sign, decimal digits only.
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise bad_request(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def _from_query(query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The options the query sets (kube: the generated url.Values conversion; first value)."""
    out: dict[str, Any] = {}
    if query.get("gracePeriodSeconds"):
        out["grace"] = _parse_int64(query["gracePeriodSeconds"][0])
    if query.get("orphanDependents"):
        raw = query["orphanDependents"][0]
        out["orphan"] = not (raw == "0" or raw.lower() == "false")
    if query.get("propagationPolicy"):
        out["policy"] = query["propagationPolicy"][0]
    if query.get("dryRun"):
        out["dryRun"] = list(query["dryRun"])
    return out


def _errors(opts: Mapping[str, Any]) -> list[FieldError]:
    """kube: ValidateDeleteOptions (and ValidateDryRun), in its order."""
    errs: list[FieldError] = []
    policy = opts.get("policy")
    if opts.get("orphan") is not None and policy is not None:
        errs.append(
            FieldError(
                "Invalid",
                "propagationPolicy",
                _GoJSON(policy),
                "orphanDependents and deletionPropagation cannot be both set",
            )
        )
    if policy is not None and policy not in PROPAGATION_POLICIES:
        supported = ", ".join(f'"{p}"' for p in (*PROPAGATION_POLICIES, "nil"))
        errs.append(
            FieldError(
                "NotSupported",
                "propagationPolicy",
                _GoJSON(policy),
                f"supported values: {supported}",
            )
        )
    dry = opts.get("dryRun") or []
    if any(v != "All" for v in dry):
        errs.append(FieldError("NotSupported", "dryRun", _GoJSON(dry), 'supported values: "All"'))
    return errs


def parse_delete_options(
    body: Mapping[str, Any] | None, query: Mapping[str, Sequence[str]]
) -> DeleteOptions:
    """The :class:`DeleteOptions` of a DELETE with JSON ``body`` (None: no body) and ``query``
    (each parameter's values): 400 for what cannot be read, 422 for what kube's validation
    refuses (see the module docstring)."""
    opts = {**_from_query(query), **(_from_body(body) if body is not None else {})}
    errs = _errors(opts)
    if errs:
        raise invalid("DeleteOptions", "", errs, group=_META_GROUP)
    grace = opts.get("grace")
    if grace is not None and grace < 0:
        grace = 1  # kube: BeforeDelete "Negative values will be treated as the value `1s`"
    return DeleteOptions(
        preconditions=opts.get("preconditions") or {},
        grace_period_seconds=grace,
        orphan_dependents=opts.get("orphan"),
        propagation_policy=opts.get("policy"),
        dry_run=bool(opts.get("dryRun")),
    )
