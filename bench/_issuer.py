"""Benchmark harness: a real ``sa-issuer serve`` subprocess on a free loopback port, plus the few
API calls the benchmarks make (namespace, service account, pods, pod-bound tokens)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from issuer.store import sqlite_url

NS = "bench"
SA = "app"
AUD = "bench-audience"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Issuer:
    """``sa-issuer serve`` in a temp data dir (SQLite unless ``store`` is given)."""

    def __init__(
        self,
        store: str | None = None,
        url: str | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        #: The SQLite data dir when the issuer is ours (None for --issuer or another store).
        self.data_dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if url:
            if not token:
                raise SystemExit("--admin-token-file is required with --issuer")
            self.url = self.issuer = url.rstrip("/")
            self.admin_token = token
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="sa-bench-")
            data = Path(self._tmp.name) / "data"
            sqlite = sqlite_url(store or "sqlite", data)
            self.data_dir = data if sqlite is not None and sqlite.in_data_dir else None
            port = free_port()
            self.url = self.issuer = f"http://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "issuer", "serve", "--data-dir", str(data)]
            argv += ["--listen", f"127.0.0.1:{port}", "--issuer", self.url]
            if store:
                argv += ["--store", store]
            penv = {k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")}
            penv.update(env or {})
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=penv
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("sa-issuer serve did not become ready")
                time.sleep(0.05)
            self.admin_token = (data / "admin-token").read_text().split()[0]
        self.c = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10
        )
        for path, body in (
            ("/api/v1/namespaces", {"metadata": {"name": NS}}),
            (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": SA}}),
        ):
            r = self.c.post(path, json=body)
            if r.status_code not in (201, 409):
                raise SystemExit(f"setup failed: {r.status_code} {r.text}")

    def pod(self, name: str) -> dict[str, Any]:
        body = {
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": SA,
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "example.invalid/c:1"}],
            },
        }
        r = self.c.post(f"/api/v1/namespaces/{NS}/pods", json=body)
        if r.status_code != 201:
            raise SystemExit(f"create pod failed: {r.status_code} {r.text}")
        obj: dict[str, Any] = r.json()
        return obj

    def token(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        ref = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
        body = {"spec": {"audiences": [AUD], "expirationSeconds": 600, "boundObjectRef": ref}}
        r = self.c.post(f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token", json=body)
        if r.status_code != 201:
            raise SystemExit(f"TokenRequest failed: {r.status_code} {r.text}")
        tok: str = r.json()["status"]["token"]
        return tok

    def delete_pod(self, name: str) -> None:
        r = self.c.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
        if r.status_code != 200:
            raise SystemExit(f"delete pod failed: {r.status_code} {r.text}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of our ``sa-issuer serve`` process so far (Linux), else None."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.c.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._tmp is not None:
            self._tmp.cleanup()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]
