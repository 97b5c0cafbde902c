"""Two live ``sa-issuer serve`` processes and one foreign issuer through one configuration.

Real processes over TLS, tokens from the real TokenRequest API, the real ``sa-verifier`` console
script. The foreign issuer is a real discovery + JWKS server that the configuration does not name:
its tokens are refused without it ever being contacted. Reloads are driven by rewriting the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from verifier import InvalidToken, multi
from verifier.multi import AsyncMultiIssuerVerifier, MultiIssuerVerifier

from ._live import AUDIENCE, Clusters, foreign_token, start_clusters

pytestmark = pytest.mark.slow


@pytest.fixture
def clusters(issuer_factory: Any, jwks: ModuleType, tls: tuple[Path, Path]) -> Iterator[Clusters]:
    c = start_clusters(issuer_factory, jwks, tls)
    try:
        yield c
    finally:
        c.foreign.stop()


def cli(token: str, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sa-verifier", "verify", "-", "--authentication-config", str(config), *extra],
        input=token,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_two_clusters_map_their_users_foreign_refused_reload_removes_at_once(
    clusters: Clusters, jwks: ModuleType, write_config: Callable[[str], Path]
) -> None:
    path = write_config(clusters.config_text())
    ta = clusters.mint("a")
    tb = clusters.mint("b")
    tf = foreign_token(clusters, jwks)
    with MultiIssuerVerifier(path, watch=False) as v:
        ra = v.verify(ta)
        assert ra.user.username == "cluster-a:system:serviceaccount:shop:orders"
        assert ra.user.groups == ("cluster-a", "cluster-a:shop")
        assert ra.user.extra == {"example.com/cluster": ("a",)}
        assert ra.service_account is not None
        assert ra.user.uid == ra.service_account.service_account_uid
        assert (ra.service_account.namespace, ra.service_account.service_account_name) == (
            "shop",
            "orders",
        )
        assert ra.issuer == clusters.a.issuer and ra.audiences == (AUDIENCE,)

        rb = v.verify(tb)
        assert rb.user.username == "cluster-b:system:serviceaccount:shop:orders"
        assert rb.user.groups == () and rb.user.uid == rb.claims["jti"]
        assert rb.service_account is not None and rb.service_account.issuer == clusters.b.issuer

        # the foreign issuer: refused without any request to it
        with pytest.raises(InvalidToken) as err:
            v.verify(tf)
        assert err.value.reason == "issuer_mismatch"
        assert clusters.foreign.counts["discovery"] == clusters.foreign.counts["jwks"] == 0
        # a foreign key claiming to be cluster a: a's keys do not have it
        with pytest.raises(InvalidToken) as err:
            v.verify(foreign_token(clusters, jwks, iss=clusters.a.issuer))
        assert err.value.reason == "unknown_key"
        # cluster b's claim validation rule
        with pytest.raises(InvalidToken, match="kube-system tokens are not accepted"):
            v.verify(clusters.mint("b", ns="kube-system", sa="x"))
        # an audience the issuer's entry does not list
        with pytest.raises(InvalidToken) as err:
            v.verify(clusters.mint("b", audiences=["https://elsewhere"]))
        assert err.value.reason == "audience_mismatch"

        # reload without cluster b: effective at the very next token
        write_config(clusters.config_text(with_b=False))
        assert v.reload() is True
        with pytest.raises(InvalidToken) as err:
            v.verify(tb)
        assert err.value.reason == "issuer_mismatch"
        assert v.verify(ta).user.username == ra.user.username  # a kept its key cache
        assert v.status.generation == 2 and v.status.issuers == (clusters.a.issuer,)

        # an invalid version is refused, counted, and the previous one stays
        write_config(clusters.config_text().replace('      prefix: "cluster-b:"\n', ""))
        assert v.reload() is False
        assert v.status.generation == 2 and v.status.reloads_failed == 1
        assert v.status.last_error is not None
        assert "jwt[1].claimMappings.username.prefix: Required value" in v.status.last_error
        metrics = v.metrics()
        assert (
            metrics[
                'apiserver_authentication_config_controller_automatic_reloads_total{status="failure"}'
            ]
            == 1
        )
        assert v.verify(ta).user.username == ra.user.username

    # the CLI accepts and refuses the same tokens, JSON in TokenReview status.user shape
    write_config(clusters.config_text())
    r = cli(ta, path, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("username", "uid", "groups", "extra")} == ra.user.to_dict()
    assert out["serviceAccount"]["namespace"] == "shop"
    r = cli(tb, path)
    assert r.returncode == 0 and r.stdout.startswith(f"valid: {rb.user.username}")
    r = cli(tf, path)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "invalid token: issuer_mismatch: the token's issuer is not configured"
    )
    bad = path.with_name("bad.yaml")
    bad.write_text(clusters.config_text().replace("https://127", "http://127"))
    r = cli(ta, bad)
    assert r.returncode == 2 and "URL scheme must be https" in r.stderr
    r = cli(ta, path, "--audience", "x")
    assert r.returncode == 2 and "--audience cannot be combined" in r.stderr


def test_watching_picks_up_a_new_issuer_and_async_agrees(
    clusters: Clusters, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(clusters.config_text(with_b=False))
    tb = clusters.mint("b")
    with MultiIssuerVerifier(path, poll_interval=0.05) as v:
        with pytest.raises(InvalidToken):
            v.verify(tb)
        write_config(clusters.config_text())
        deadline = time.monotonic() + 10
        while clusters.b.issuer not in v.issuers:
            assert time.monotonic() < deadline, "the watcher did not reload"
            time.sleep(0.05)
        assert v.verify(tb).user.username == "cluster-b:system:serviceaccount:shop:orders"
        assert v.status.reloads_succeeded == 1

    # no request dropped while versions swap: a thread verifies a's token throughout
    ta = clusters.mint("a")
    with MultiIssuerVerifier(path, watch=False) as v:
        v.verify(ta)
        errors: list[BaseException] = []
        done = threading.Event()

        def hammer() -> None:
            while not done.is_set():
                try:
                    v.verify(ta)
                except BaseException as exc:
                    errors.append(exc)

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            for i in range(10):
                write_config(clusters.config_text(with_b=i % 2 == 1))
                os.utime(path, ns=(i + 1, i + 1))  # a distinct mtime even within one tick
                assert v.reload() is True
        finally:
            done.set()
            worker.join()
        assert errors == [] and v.status.generation == 11

    async def run() -> None:
        async with AsyncMultiIssuerVerifier(path, watch=False) as av:
            results = await asyncio.gather(*(av.verify(tb) for _ in range(5)))
            assert {r.user.username for r in results} == {
                "cluster-b:system:serviceaccount:shop:orders"
            }
            # removing b: its verifier is retired and closed on this loop by a later verify
            monkeypatch.setattr(multi, "_RETIRE_AFTER", 0.0)
            write_config(clusters.config_text(with_b=False))
            os.utime(path, ns=(10**9, 10**9))
            assert av.reload() is True
            with pytest.raises(InvalidToken, match="issuer_mismatch"):
                await av.verify(tb)
            assert (await av.verify(ta)).issuer == clusters.a.issuer

    asyncio.run(run())
