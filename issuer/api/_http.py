"""Edges shared by the API handlers: JSON responses, ``Warning`` headers, error mapping.

Handlers are ``async`` only to read the body; everything touching the store runs in Starlette's
thread pool (:func:`run_sync`). :func:`endpoint` turns the typed failures into ``Status`` responses:
:class:`StatusError` as given, :class:`InvalidAddress` as 400, :class:`StoreOutcomeUnknown` as
504, :class:`StoreUnavailable` as 503 (nothing was decided, nothing changed), :class:`NoActiveKey`
as 503.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, ParamSpec, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from issuer.api.errors import (
    FieldError,
    bad_request,
    internal_error,
    invalid,
    outcome_unknown,
    service_unavailable,
)
from issuer.api.tables import app_now, table_response
from issuer.api.validation import FieldValidation
from issuer.context import IssuerContext
from issuer.http.status import StatusError
from issuer.keys.manager import NoActiveKey
from issuer.store import InvalidAddress, StoreCorrupt, StoreOutcomeUnknown, StoreUnavailable
from issuer.store.outage import STORE_OUTAGE

__all__ = [
    "context",
    "dry_run",
    "endpoint",
    "field_manager",
    "field_validation",
    "json_response",
    "run_sync",
]

log = logging.getLogger("sa_issuer.api")

P = ParamSpec("P")
T = TypeVar("T")


def context(request: Request) -> IssuerContext:
    """The process's :class:`IssuerContext`."""
    ctx: IssuerContext = request.app.state.ctx
    return ctx


def _warning_value(text: str) -> str:
    # RFC 7234 §5.5 warn-code 299 with agent "-" (kube: apiserver/pkg/warning); quote-escaped.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def json_response(obj: Any, status_code: int = 200, warnings: Iterable[str] = ()) -> Response:
    """A JSON response; each warning becomes one ``Warning`` header."""
    response = Response(orjson.dumps(obj), status_code=status_code, media_type="application/json")
    for w in warnings:
        response.headers.append("Warning", _warning_value(w))
    return response


#: kube: metav1 validation ValidateFieldManager (at most 128 characters).
_MAX_MANAGER: Final = 128


def field_manager(request: Request) -> str:
    """The ``fieldManager`` parameter, else the User-Agent's product name (``kubectl``; kube:
    endpoints/handlers/rest.go prefixFromUserAgent), else ``unknown``. 422 when too long."""
    manager = request.query_params.get("fieldManager", "")
    if not manager:
        agent = request.headers.get("user-agent", "")
        manager = agent.split("/", 1)[0].strip()[:_MAX_MANAGER] or "unknown"
    if len(manager) > _MAX_MANAGER:
        raise invalid(
            "PatchOptions",
            "",
            [
                FieldError(
                    "TooLong", "fieldManager", detail=f"may not be longer than {_MAX_MANAGER}"
                )
            ],
            group="meta.k8s.io",
        )
    return manager


def dry_run(request: Request) -> bool:
    """``dryRun=All`` (422 for any other value; kube: metav1 validation ValidateDryRun)."""
    values = request.query_params.getlist("dryRun")
    for v in values:
        if v != "All":
            raise invalid(
                "UpdateOptions",
                "",
                [FieldError("NotSupported", "dryRun", v, 'supported values: "All"')],
                group="meta.k8s.io",
            )
    return bool(values)


def field_validation(request: Request) -> FieldValidation:
    """The ``fieldValidation`` query parameter (default Strict; see issuer.api.validation)."""
    value = request.query_params.get("fieldValidation", "") or "Strict"
    if value == "Strict":
        return "Strict"
    if value == "Warn":
        return "Warn"
    if value == "Ignore":
        return "Ignore"
    raise bad_request(
        f"fieldValidation parameter unsupported: {value!r} (must be one of Ignore, Warn, Strict)"
    )


async def run_sync(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking store work in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


def endpoint(
    fn: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: typed failures become Kubernetes ``Status`` responses; a GET answered
    with JSON becomes a Table when the client asks for one (:mod:`issuer.api.tables`)."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            response = await fn(request)
            if "as=Table" in request.headers.get("accept", ""):
                # Server-side printing for kubectl get (content negotiation, one place).
                response = table_response(request, response, app_now(request.app.state))
            return response
        except StatusError as e:
            return e.response()
        except InvalidAddress as e:
            # A ':' or NUL where no object can exist (issue 9 item 10); normally caught earlier
            # by issuer.http.paths for URL segments, this covers any other route to the store.
            return bad_request(str(e)).response()
        except StoreOutcomeUnknown as e:
            STORE_OUTAGE.failed(f"a write serving {request.method} {request.url.path}", e)
            _count_store_error(request)
            return outcome_unknown().response()
        except StoreUnavailable as e:
            STORE_OUTAGE.failed(f"serving {request.method} {request.url.path}", e)
            _count_store_error(request)
            return service_unavailable(
                "the store is unavailable; nothing was changed, try again"
            ).response()
        except StoreCorrupt:
            log.error("store data could not be read serving %s", request.url.path, exc_info=True)
            return internal_error("stored data could not be read").response()
        except NoActiveKey:
            return service_unavailable("no active signing key yet; try again").response()

    return wrapper


def _count_store_error(request: Request) -> None:
    try:
        context(request).metrics.store_errors.inc(operation=request.method.lower())
    except Exception:  # metrics must never turn an error response into a crash
        log.debug("could not count store error", exc_info=True)
