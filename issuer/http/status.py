"""Kubernetes ``Status`` error responses and a size-capped JSON body reader, shared by every route.

Errors look like kube-apiserver's (k8s.io/apimachinery pkg/api/errors, metav1.Status) so the
official ``kubernetes`` client raises its usual ``ApiException`` with the right code and reason::

    {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
     "message":"...","reason":"NotFound","details":{...},"code":404}

``read_json_body`` streams the request body and stops at ``max_bytes`` (413 before reading more),
refuses non-JSON content types (415) and malformed or non-object JSON (400). Raise
:class:`StatusError` from an endpoint and the app turns it into the matching Status response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "REASON_CODES",
    "Reason",
    "StatusError",
    "parse_json_object",
    "read_body",
    "read_json_body",
    "status_body",
    "status_response",
]

Reason = Literal[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Invalid",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "MethodNotAllowed",
    "NotAcceptable",
    "ServiceUnavailable",
    "InternalError",
    "Timeout",
    "TooManyRequests",
]

#: The HTTP code kube-apiserver pairs with each reason (metav1.StatusReason docs).
REASON_CODES: Final[Mapping[str, int]] = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Invalid": 422,
    "RequestEntityTooLarge": 413,
    "UnsupportedMediaType": 415,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "ServiceUnavailable": 503,
    "InternalError": 500,
    "Timeout": 504,
    "TooManyRequests": 429,
}

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
#: Deepest JSON nesting a request body may have. Kubernetes objects stay far below it (a pod spec
#: is ~10 levels); orjson parses up to 1024 levels but serializes only ~255, so without this cap a
#: deeply nested unchecked field (anything under ``spec``) is stored and then breaks every GET and
#: LIST that has to render it again.
MAX_JSON_DEPTH: Final = 100


class StatusError(Exception):
    """An error that becomes a Kubernetes Status response (see :func:`status_response`)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers

    def response(self) -> Response:
        """The Status response for this error."""
        return status_response(self.code, self.reason, self.message, self.details, self.headers)


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> bytes:
    """The JSON bytes of a failure Status (field order as kube-apiserver writes it)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = dict(details)
    body["code"] = code
    return orjson.dumps(body)


def status_response(
    code: int,
    reason: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A Kubernetes ``Status`` failure response with HTTP status ``code``."""
    return Response(
        status_body(code, reason, message, details),
        status_code=code,
        media_type="application/json",
        headers=dict(headers) if headers else None,
    )


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """The raw request body, at most ``max_bytes`` (413 ``RequestEntityTooLarge`` as soon as the
    declared or received length passes the cap: the rest is never buffered)."""
    too_large = StatusError(
        413, "RequestEntityTooLarge", f"the request body is larger than {max_bytes} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise too_large
        except ValueError:
            raise StatusError(400, "BadRequest", "invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(
    request: Request, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> dict[str, Any]:
    """Read the request body as a JSON object, enforcing ``max_bytes`` while streaming.

    Raises :class:`StatusError`: 413 ``RequestEntityTooLarge`` as soon as the declared or received
    length passes the cap (the rest is never buffered), 415 ``UnsupportedMediaType`` for a
    non-JSON ``Content-Type`` (a missing one is accepted, as kubectl always sends one), 400
    ``BadRequest`` for an empty body, invalid UTF-8/JSON, JSON that is not an object, or JSON nested
    deeper than :data:`MAX_JSON_DEPTH`.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json_media_type(content_type):
        raise StatusError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json (got {content_type!r})",
        )
    data = await read_body(request, max_bytes)
    if not data.strip():
        raise StatusError(400, "BadRequest", "the request body is empty")
    return parse_json_object(data)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """``data`` as a JSON object (400 for invalid JSON, a non-object, or nesting deeper than
    :data:`MAX_JSON_DEPTH`)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise StatusError(400, "BadRequest", f"the request body is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise StatusError(400, "BadRequest", "the request body must be a JSON object")
    if _too_deep(obj, MAX_JSON_DEPTH):
        raise StatusError(
            400, "BadRequest", f"the request body is nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return obj


def _too_deep(obj: Any, limit: int) -> bool:
    """True if ``obj`` nests objects/arrays more than ``limit`` levels (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False
