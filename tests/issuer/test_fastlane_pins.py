"""Pins on the uvicorn internals that the JWKS fast lane (issuer/http/fastlane.py) relies on.

``GuardedHttpToolsProtocol`` and ``FastLaneHttpToolsProtocol`` subclass uvicorn's private
``HttpToolsProtocol`` (there is no public seam that answers from the parser; an ASGI round trip
costs several times the answer, see docs/BENCHMARKS.md). Every assumption they make about that
class is asserted here, by name, so a uvicorn upgrade that changes one fails this file with a
message saying which — instead of the fast lane misbehaving quietly. The end-to-end behaviour over
real sockets is tested in tests/issuer/test_serve_e2e.py and tests/issuer/test_discovery_http.py.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from typing import Any

import httptools
import pytest
import uvicorn
import uvicorn.server
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from issuer.http.fastlane import FastLaneHttpToolsProtocol, GuardedHttpToolsProtocol, _Done


def _source_tree(obj: Any) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(obj)))


def _self_attrs(obj: Any, base: str) -> set[str]:
    """Every ``X`` in ``self.<base>.X`` inside ``obj``'s source."""
    found: set[str] = set()
    for node in ast.walk(_source_tree(obj)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == base
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            found.add(node.attr)
    return found


def _assigned_self_attrs(obj: Any) -> set[str]:
    """Every ``X`` assigned as ``self.X = ...`` (or annotated) inside ``obj``'s source."""
    found: set[str] = set()
    for node in ast.walk(_source_tree(obj)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id == "self"
            ):
                found.add(t.attr)
    return found


def test_subclasses_uvicorns_httptools_protocol() -> None:
    assert issubclass(GuardedHttpToolsProtocol, HttpToolsProtocol)
    assert issubclass(FastLaneHttpToolsProtocol, GuardedHttpToolsProtocol)
    # A plain (not buffered) asyncio protocol: bytes arrive through data_received.
    assert issubclass(HttpToolsProtocol, asyncio.Protocol)
    assert not issubclass(HttpToolsProtocol, asyncio.BufferedProtocol)


# The hooks the subclasses override or call, with uvicorn's parameter names.
HOOKS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_headers_complete": ["self"],
    "on_response_complete": ["self"],
}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hooks_keep_their_names_and_signatures(name: str) -> None:
    method = HttpToolsProtocol.__dict__.get(name)
    assert method is not None, f"uvicorn's HttpToolsProtocol no longer defines {name}()"
    assert list(inspect.signature(method).parameters) == HOOKS[name], name


def test_per_connection_and_per_request_state_keeps_its_names() -> None:
    # Read by the fast lane: self.app, .loop, .parser, .server_state, .pipeline, .cycle (set in
    # __init__), .transport (connection_made), .url and .headers (on_message_begin / on_url).
    assigned = _assigned_self_attrs(HttpToolsProtocol)
    needed = {"app", "loop", "parser", "server_state", "pipeline", "cycle", "transport", "url"}
    assert needed <= assigned, f"no longer assigned: {sorted(needed - assigned)}"
    assert "headers" in assigned
    # Request headers are a list of (lower-cased name, value) pairs built in on_header, and the
    # URL is the raw request target accumulated in on_url (the lane matches it byte for byte).
    on_header = inspect.getsource(HttpToolsProtocol.on_header)
    assert "name.lower()" in on_header and "self.headers.append((name, value))" in on_header
    assert "self.url += url" in inspect.getsource(HttpToolsProtocol.on_url)
    assert 'self.url = b""' in inspect.getsource(HttpToolsProtocol.on_message_begin)


def test_the_done_stand_in_covers_every_cycle_attribute_uvicorn_touches() -> None:
    # After a fast-lane answer, self.cycle is _DONE; every uvicorn callback that reads or writes
    # self.cycle.X must find X on it (else AttributeError in the event loop).
    touched = _self_attrs(HttpToolsProtocol, "cycle")
    missing = {a for a in touched if not hasattr(_Done, a)}
    assert not missing, f"uvicorn now uses cycle attributes the fast lane lacks: {sorted(missing)}"
    assert {"response_complete", "message_event"} <= touched


def test_pipelining_and_cycle_start_rules_are_unchanged() -> None:
    # The lane answers only when no earlier response is pending: the same test uvicorn uses to
    # decide between starting the ASGI task now and queueing it in self.pipeline.
    src = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "existing_cycle is None or existing_cycle.response_complete" in src
    assert "self.pipeline.appendleft" in src
    # The close path counts the request by hand, as on_response_complete does.
    assert "self.server_state.total_requests += 1" in inspect.getsource(
        HttpToolsProtocol.on_response_complete
    )


def test_server_state_default_headers_are_replaced_not_mutated() -> None:
    # The lane re-encodes the default headers (Date, Server) only when the list object changes.
    tick = inspect.getsource(uvicorn.server.Server)
    assert "self.server_state.default_headers = " in tick
    state = uvicorn.server.ServerState()
    assert state.default_headers == [] and state.total_requests == 0


def test_parser_methods_exist() -> None:
    for name in ("get_method", "should_upgrade", "get_http_version", "should_keep_alive"):
        assert hasattr(httptools.HttpRequestParser, name), name


def test_uvicorn_loads_the_protocol_by_import_string() -> None:
    # cli.cmd_serve passes http="issuer.http.fastlane:..." so --workers processes can load it.
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError

    for name, cls in (
        ("FastLaneHttpToolsProtocol", FastLaneHttpToolsProtocol),
        ("GuardedHttpToolsProtocol", GuardedHttpToolsProtocol),
    ):
        config = Config(app, http=f"issuer.http.fastlane:{name}", log_config=None)
        config.load()
        assert config.http_protocol_class is cls
    assert uvicorn.__version__  # for the failure report
