"""A real issuer on a real socket (uvicorn in-process) for the watch tests: :func:`serve` and
:class:`Served`, an admin HTTP client with watch helpers."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from _api_support import config_for
from stream._helpers import ServerThread

from issuer.api.watch import WatchSettings
from issuer.app import create_app
from issuer.context import IssuerContext, build_context


class Served:
    """A real server on the test's store, with an admin HTTP client."""

    def __init__(self, ctx: IssuerContext, server: ServerThread, app: Any) -> None:
        self.ctx = ctx
        self.app = app
        self.url = server.url
        self.headers = {"Authorization": f"Bearer {ctx.admin_tokens[0]}"}
        self.http = httpx.Client(base_url=server.url, headers=self.headers, timeout=10)

    def create_sa(self, name: str, ns: str = "dev") -> dict[str, Any]:
        r = self.http.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": name}}
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def events(
        self, path: str, until: int, timeout: float = 10, **params: str
    ) -> list[dict[str, Any]]:
        """Open a watch, read ``until`` events (or until it ends / times out)."""
        out: list[dict[str, Any]] = []
        with self.http.stream(
            "GET", path, params={"watch": "true", **params}, timeout=timeout
        ) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("application/json")
            for line in r.iter_lines():
                if line:
                    out.append(json.loads(line))
                if len(out) >= until:
                    break
        return out

    def wait_watchers(self, n: int) -> None:
        """Until ``n`` watch streams are subscribed (then every later write reaches them)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hub = getattr(self.app.state, "watch_hub", None)
            if hub is not None and hub.watchers >= n:
                return
            time.sleep(0.01)
        raise AssertionError(f"{n} watchers did not subscribe")

    def watch_in_background(
        self, path: str, until: int, **params: str
    ) -> tuple[threading.Thread, list[dict[str, Any]]]:
        got: list[dict[str, Any]] = []

        def run() -> None:
            got.extend(self.events(path, until, **params))

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, got


@contextlib.contextmanager
def serve(tmp_path: Path, store_url: str) -> Iterator[Served]:
    """An issuer on ``store_url`` with short bookmark and poll intervals and namespace ``dev``."""
    ctx = build_context(config_for(tmp_path, store_url, key_alg="ES256"))
    app = create_app(ctx, manage_lifecycle=False)
    app.state.watch_settings = WatchSettings(bookmark_interval=0.3, poll_interval=0.2)
    server = ServerThread(app).start()
    s = Served(ctx, server, app)
    r = s.http.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}})
    assert r.status_code == 201
    try:
        yield s
    finally:
        s.http.close()
        server.stop()
        ctx.close()


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, name) of each event."""
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]
