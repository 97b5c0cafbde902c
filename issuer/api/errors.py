"""Kubernetes API errors, built the way k8s.io/apimachinery does (pkg/api/errors/errors.go,
pkg/util/validation/field/errors.go), so messages, reasons and ``details`` match kube-apiserver's.

Every constructor returns an :class:`issuer.http.status.StatusError`; the API handlers raise it and
:func:`issuer.api._http.endpoint` renders it as a ``Status`` object.

Field errors render like Go's ``field.Error``::

    metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of ...
    spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

# go_quote and go_quote_list live in issuer.goquote (below every layer); they are re-exported
# here for callers that build their texts next to these errors.
from issuer.goquote import go_quote, go_quote_list
from issuer.http.status import StatusError

__all__ = [
    "FieldError",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "go_quote",
    "go_quote_list",
    "internal_error",
    "invalid",
    "method_not_allowed",
    "not_found",
    "service_unavailable",
    "unauthorized",
]

#: field.ErrorType -> (text in messages, metav1.CauseType) (kube: field/errors.go).
_ERROR_TYPES: Final[dict[str, tuple[str, str]]] = {
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "Required": ("Required value", "FieldValueRequired"),
    "NotFound": ("Not found", "FieldValueNotFound"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
}


def _go_value(value: Any) -> str:
    # field.Error.ErrorBody: strings with %q, numbers and bools with %v, nil as "null".
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``field.Error``: ``type`` is a key of the field error types (Invalid, Required ...)."""

    type: str
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """Go's ``ErrorBody()``: the message without the field path."""
        text = _ERROR_TYPES[self.type][0]
        if self.type in ("Required", "Forbidden", "TooLong"):
            s = text
        else:
            s = f"{text}: {_go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict[str, str]:
        """The ``metav1.StatusCause`` kube reports for this error."""
        return {"reason": _ERROR_TYPES[self.type][1], "message": self.body(), "field": self.field}


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    return out


def bad_request(message: str) -> StatusError:
    """400 BadRequest (kube: errors.NewBadRequest)."""
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    """401 Unauthorized, with ``WWW-Authenticate: Bearer`` (RFC 6750 §3)."""
    return StatusError(401, "Unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(resource: str, name: str, why: str, group: str = "") -> StatusError:
    """403 Forbidden: ``pods "x" is forbidden: why`` (kube: errors.NewForbidden)."""
    qualified = f"{resource}.{group}" if group else resource
    if name:
        message = f"{qualified} {go_quote(name)} is forbidden: {why}"
    else:
        message = f"{qualified} is forbidden: {why}"
    return StatusError(403, "Forbidden", message, _details(name, group, resource))


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    """404 NotFound: ``serviceaccounts "x" not found`` (kube: errors.NewNotFound)."""
    qualified = f"{resource}.{group}" if group else resource
    return StatusError(
        404, "NotFound", f"{qualified} {go_quote(name)} not found", _details(name, group, resource)
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    """409 AlreadyExists: ``serviceaccounts "x" already exists`` (kube: errors.NewAlreadyExists)."""
    qualified = f"{resource}.{group}" if group else resource
    return StatusError(
        409,
        "AlreadyExists",
        f"{qualified} {go_quote(name)} already exists",
        _details(name, group, resource),
    )


def conflict(resource: str, name: str, why: str, group: str = "") -> StatusError:
    """409 Conflict: ``Operation cannot be fulfilled on R "x": why`` (kube: errors.NewConflict)."""
    qualified = f"{resource}.{group}" if group else resource
    return StatusError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {qualified} {go_quote(name)}: {why}",
        _details(name, group, resource),
    )


def invalid(kind: str, name: str, errs: Sequence[FieldError], group: str = "") -> StatusError:
    """422 Invalid: ``Kind "name" is invalid: <errors>`` with one cause per field error
    (kube: errors.NewInvalid; several errors aggregate as ``[e1, e2]``)."""
    qualified = f"{kind}.{group}" if group else kind
    if not errs:
        message = f"{qualified} {go_quote(name)} is invalid"
    elif len(errs) == 1:
        message = f"{qualified} {go_quote(name)} is invalid: {errs[0]}"
    else:
        message = f"{qualified} {go_quote(name)} is invalid: [{', '.join(str(e) for e in errs)}]"
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errs]
    return StatusError(422, "Invalid", message, details)


def method_not_allowed() -> StatusError:
    """405 MethodNotAllowed (kube: errors.NewMethodNotSupported's generic text)."""
    return StatusError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def internal_error(message: str) -> StatusError:
    """500 InternalError."""
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    """503 ServiceUnavailable (the store could not be reached; nothing was decided)."""
    return StatusError(503, "ServiceUnavailable", message)


#: apimachinery errors.go (FromObject/NewGenericServerResponse) words a 504 this way; client-go
#: shows it for StatusReasonTimeout: the request may or may not have been applied.
OUTCOME_UNKNOWN_MESSAGE = (
    "the server was unable to return a response in the time allotted, but may still be "
    "processing the request (the store did not answer the write in time: it may or may not "
    "have been applied; read the object before retrying)"
)


def outcome_unknown() -> StatusError:
    """504 Timeout: a write reached the store but its answer did not come back in time.

    Kubernetes answers a storage timeout with reason Timeout and code 504 (apimachinery
    ``errors.NewTimeoutError``); unlike 503 it does not promise that nothing changed.
    """
    return StatusError(
        504, "Timeout", OUTCOME_UNKNOWN_MESSAGE, {"retryAfterSeconds": 1}, {"Retry-After": "1"}
    )
