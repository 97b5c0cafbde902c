"""JWKS / discovery serving throughput: ``sa-issuer serve`` against nginx serving the same bytes.

Both servers run on loopback with one worker process each; nginx serves the files written by
``sa-issuer export`` with the same Content-Type, Cache-Control and a (weak-ish, mtime-based) ETag.
``wrk`` drives each for the JWKS and the discovery document; the output is req/s and the ratio
ours / nginx (the goal is >= 0.6). Not a test: it prints numbers and exits 0 unless a tool fails.

    python bench/bench_jwks.py [--duration 5] [--connections 32] [--threads 1] [--workers 1]

Needs nginx and wrk on PATH (Debian: nginx-light, wrk).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PATHS = {"jwks": "/openid/v1/jwks", "discovery": "/.well-known/openid-configuration"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited early ({proc.returncode}): {proc.args}\n{log.read_text()}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {timeout}s")


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server_tokens off;
    sendfile on;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {site};
        etag on;
        location = /openid/v1/jwks {{
            default_type application/jwk-set+json;
            add_header Cache-Control "public, max-age=3600";
        }}
        location = /.well-known/openid-configuration {{
            default_type application/json;
            add_header Cache-Control "public, max-age=3600";
        }}
    }}
}}
"""


def wrk(url: str, duration: float, connections: int, threads: int) -> float:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise SystemExit(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses")
    return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="sa-issuer worker processes")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument(
        "--repeat", type=int, default=3, help="alternating rounds per document; medians reported"
    )
    args = p.parse_args(argv)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH")

    tmp = Path(tempfile.mkdtemp(prefix="bench-jwks-"))
    os.chmod(tmp, 0o755)
    data_dir = tmp / "data"
    ours_port, nginx_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{ours_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")}
    common = ["--data-dir", str(data_dir), "--listen", f"127.0.0.1:{ours_port}", "--tls", "off"]
    ours = subprocess.Popen(
        [sys.executable, "-m", "issuer", "serve", *common, "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "issuer.log", "wb"),  # noqa: SIM115
    )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        wait_http(issuer + "/readyz", ours, tmp / "issuer.log")
        site = tmp / "site"
        subprocess.run(
            [sys.executable, "-m", "issuer", "export", str(site), *common],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tmp / "nginx" / "tmp").mkdir(parents=True)
        conf = tmp / "nginx" / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(
            NGINX_CONF.format(user=user, prefix=tmp / "nginx", port=nginx_port, site=site)
        )
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp / "nginx"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "nginx" / "stderr.log", "wb"),  # noqa: SIM115
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        wait_http(nginx_url + PATHS["jwks"], nginx, tmp / "nginx" / "stderr.log")
        for name, path in PATHS.items():
            a = httpx.get(issuer + path).content
            b = httpx.get(nginx_url + path).content
            if a != b:
                raise SystemExit(f"{name}: nginx and sa-issuer serve different bytes")

        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s x{args.repeat} "
            f"(alternating, medians), sa-issuer workers={args.workers}, "
            f"nginx worker_processes=1, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print(f"{'document':<10} {'sa-issuer req/s':>16} {'nginx req/s':>12} {'ratio':>7}")
        for name, path in PATHS.items():
            samples: dict[str, list[float]] = {"ours": [], "nginx": []}
            ratios = []
            for base in (issuer, nginx_url):
                wrk(base + path, args.warmup, args.connections, args.threads)
            for _ in range(args.repeat):
                for label, base in (("ours", issuer), ("nginx", nginx_url)):
                    samples[label].append(
                        wrk(base + path, args.duration, args.connections, args.threads)
                    )
                ratios.append(samples["ours"][-1] / samples["nginx"][-1])
            ours_rps = statistics.median(samples["ours"])
            nginx_rps = statistics.median(samples["nginx"])
            ratio = statistics.median(ratios)
            print(f"{name:<10} {ours_rps:>16.0f} {nginx_rps:>12.0f} {ratio:>7.2f}")
    finally:
        for proc in (nginx, ours):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is ours else signal.SIGQUIT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
