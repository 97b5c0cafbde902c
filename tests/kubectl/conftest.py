"""Fixtures for the kubectl acceptance suite: the REAL kubectl binary against a REAL
``sa-issuer serve`` (https with its self-signed CA, the kubeconfig it writes).

- ``kubectl_bin``: the kubectl on PATH (1.31 on the CI image). Missing: the suite fails.
- ``cluster`` (parametrized sqlite | redis): a :class:`Cluster` — the issuer process and
  ``kubectl(*args)`` with ``KUBECONFIG`` = the issuer's ``DATA_DIR/kubeconfig`` and a private
  ``HOME`` (kubectl's discovery cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _serve_fixtures
import pytest

_serve = _serve_fixtures.load()  # the one loader of tests/issuer/conftest.py
issuer_factory = _serve.issuer_factory


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """The kubectl binary (see the module docstring for a missing one)."""
    found = shutil.which("kubectl")
    if found is None:
        # A missing tool fails, never skips (kubectl 1.31 is on every machine of this kind;
        # .ci/run stops before the tests without it).
        pytest.fail(
            "kubectl is not installed: the kubectl acceptance suite needs it (kubectl 1.31)",
            pytrace=False,
        )
    return found


@dataclass
class Cluster:
    """An issuer and a kubectl configured for it."""

    issuer: Any  # tests/issuer/conftest.py IssuerProcess
    kubectl_bin: str
    home: Path

    @property
    def kubeconfig(self) -> Path:
        return self.issuer.data_dir / "kubeconfig"  # type: ignore[no-any-return]

    def kubeconfig_for(self, token: str) -> Path:
        """A kubeconfig for the same cluster whose user is ``token`` (the issuer's names the
        admin token file, which client-go prefers over ``--token``)."""
        doc = json.loads(self.kubeconfig.read_text())
        doc["users"] = [{"name": "token", "user": {"token": token}}]
        doc["contexts"][0]["context"]["user"] = "token"
        path = self.home / f"kubeconfig-{len(list(self.home.glob('kubeconfig-*')))}"
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "SA_ISSUER_"))}
        env.update(KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))
        return env

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` to completion (never raises on a non-zero exit)."""
        return subprocess.run(
            [self.kubectl_bin, *args],
            input=stdin,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        """``kubectl ARGS``, which must succeed; its stdout."""
        r = self.run(*args, stdin=stdin, env=env)
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}{r.stdout}"
        return r.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """``kubectl ARGS``, which must fail; its stderr."""
        r = self.run(*args, stdin=stdin)
        assert r.returncode != 0, f"kubectl {' '.join(args)} succeeded: {r.stdout}"
        return r.stderr

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``kubectl ARGS`` in the background (stdout piped, line-buffered)."""
        return subprocess.Popen(
            [self.kubectl_bin, *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )


@pytest.fixture(params=["sqlite", "redis"])
def cluster(
    request: pytest.FixtureRequest, issuer_factory: Any, kubectl_bin: str, tmp_path: Path
) -> Iterator[Cluster]:
    """An https issuer on each backend, and kubectl pointed at it by its kubeconfig."""
    store = None if request.param == "sqlite" else str(request.getfixturevalue("redis_url"))
    issuer = issuer_factory.start(store=store, self_signed=True)
    home = tmp_path / "home"
    home.mkdir()
    yield Cluster(issuer, kubectl_bin, home)
