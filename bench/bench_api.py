"""TokenRequest and TokenReview served per second, against the bare ``cryptography`` signing rate.

    python bench/bench_api.py [--seconds 3] [--threads 8] [--store redis://...]

For each algorithm, in one run:

1. **bare** — ``cryptography`` signing a Kubernetes-sized JWS signing input with a key of the same
   type (RSA-2048 PKCS#1 v1.5 SHA-256; P-256 ECDSA SHA-256 + DER→P1363), one thread: the anchor.
2. **mint** — ``issuer.crypto.Signer.sign_jwt`` on the claims ``issuer.tokens`` builds: our token
   assembly in-process, no HTTP.
3. **http** — ``POST .../serviceaccounts/NAME/token`` (pod-bound) against a real ``sa-issuer
   serve`` (1 worker, SQLite unless ``--store``) over loopback: sequential p50/p99 latency and
   req/s from one httpx client, then ``--threads`` client threads for aggregate req/s (these are
   bounded by the Python client as much as by the server).
4. **wrk** — server capacity: ``wrk -t1 -c16`` POSTing the same TokenRequest, then a TokenReview
   of a valid pod-bound token (full online checks), with p50/p99 latency under that load.

Ratios are printed against the bare signing rate. Not a test; exits 0.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _issuer import AUD, NS, SA, Issuer, pct
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from issuer.crypto import Signer

# A pod-bound token's signing input is ~700 bytes; the exact content does not change the cost.
SIGNING_INPUT = b"e" * 700


def rate(fn: object, seconds: float) -> float:
    call = fn  # type: ignore[assignment]
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(20):
            call()  # type: ignore[operator]
        n += 20
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def bare_signer(alg: str) -> object:
    if alg == "RS256":
        rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return lambda: rk.sign(SIGNING_INPUT, padding.PKCS1v15(), hashes.SHA256())
    ek = ec.generate_private_key(ec.SECP256R1())

    def sign() -> bytes:
        r, s = decode_dss_signature(ek.sign(SIGNING_INPUT, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def mint_fn(alg: str) -> object:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    signer = Signer(key)
    now = int(time.time())
    claims = {
        "aud": [AUD],
        "exp": now + 3600,
        "iat": now,
        "iss": "https://issuer.example.com",
        "jti": "0b4b2a0c-5d6e-4f7a-8b9c-0d1e2f3a4b5c",
        "kubernetes.io": {
            "namespace": NS,
            "node": {"name": "node-1", "uid": "3f7c1d2e-0000-4000-8000-000000000001"},
            "pod": {"name": "web-0", "uid": "3f7c1d2e-0000-4000-8000-000000000002"},
            "serviceaccount": {"name": SA, "uid": "3f7c1d2e-0000-4000-8000-000000000003"},
            "warnafter": now + 3000,
        },
        "nbf": now,
        "sub": f"system:serviceaccount:{NS}:{SA}",
    }
    return lambda: signer.sign_jwt(claims)


def http_bench(iss: Issuer, seconds: float, threads: int) -> tuple[float, float, float, float]:
    pod = iss.pod(f"tr-{int(time.time() * 1000) % 10**9}")
    meta = pod["metadata"]
    ref = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
    body = {"spec": {"audiences": [AUD], "expirationSeconds": 3600, "boundObjectRef": ref}}
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token"

    def one(c: httpx.Client) -> None:
        r = c.post(path, json=body)
        if r.status_code != 201:
            raise SystemExit(f"TokenRequest failed: {r.status_code} {r.text}")

    for _ in range(50):  # warm up
        one(iss.c)
    lat: list[float] = []
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < seconds:
        t0 = time.perf_counter()
        one(iss.c)
        lat.append(time.perf_counter() - t0)
    seq_rate = len(lat) / (time.perf_counter() - t_start)

    counts = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        with httpx.Client(base_url=iss.url, headers=iss.c.headers, timeout=30) as c:
            while not stop.is_set():
                one(c)
                counts[i] += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    par_rate = sum(counts) / (time.perf_counter() - t0)
    return pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, seq_rate, par_rate


def wrk(
    url: str, body: dict[str, object], token: str, seconds: float
) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) from ``wrk -t1 -c16`` POSTing ``body`` to ``url``."""
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(lua)
        f.flush()
        argv = [exe, "-t1", "-c16", f"-d{max(1, round(seconds))}s", "--latency", "-s", f.name, url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        if m is None:
            raise SystemExit(f"cannot parse wrk output:\n{out}")
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        return float(m.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, ms("50%"), ms("99%")


def server_capacity(
    iss: Issuer, seconds: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """wrk against TokenRequest (pod-bound) and TokenReview (a valid pod-bound token)."""
    pod = iss.pod(f"wrk-{int(time.time() * 1000) % 10**9}")
    meta = pod["metadata"]
    ref = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
    tr_body = {"spec": {"audiences": [AUD], "expirationSeconds": 3600, "boundObjectRef": ref}}
    tr = wrk(
        f"{iss.url}/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token",
        tr_body,
        iss.admin_token,
        seconds,
    )
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": iss.token(pod), "audiences": [AUD]},
    }
    rv = wrk(
        f"{iss.url}/apis/authentication.k8s.io/v1/tokenreviews", review, iss.admin_token, seconds
    )
    return tr, rv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    store = args.store or "sqlite"
    print(f"TokenRequest benchmark — store {store}, {args.seconds:.0f} s per phase")
    header = (
        f"{'alg':6} {'bare sign/s':>12} {'mint/s':>9} {'mint/bare':>10} "
        f"{'http p50 ms':>12} {'p99 ms':>8} {'http/s seq':>11} {'http/s x' + str(args.threads):>11}"
        f" {'http/bare':>10}"
    )
    print(header)
    print("-" * len(header))
    served: list[tuple[str, tuple[float, float, float], tuple[float, float, float]]] = []
    bares: dict[str, float] = {}
    for alg in ("RS256", "ES256"):
        bare = rate(bare_signer(alg), args.seconds)
        mint = rate(mint_fn(alg), args.seconds)
        store_url = args.store
        if store_url and store_url.startswith("redis"):
            # Each run has a fresh data dir, so a fresh KEK: give it its own keys in Redis (the
            # issuer rightly refuses a store whose keys another KEK encrypted).
            sep = "&" if "?" in store_url else "?"
            store_url += f"{sep}prefix=bench-{alg}-{time.time_ns()}"
        iss = Issuer(store=store_url, env={"SA_ISSUER_KEY_ALG": alg})
        try:
            p50, p99, seq, par = http_bench(iss, args.seconds, args.threads)
            served.append((alg, *server_capacity(iss, args.seconds)))
        finally:
            iss.close()
        print(
            f"{alg:6} {bare:12.0f} {mint:9.0f} {mint / bare:9.2f}x "
            f"{p50:12.2f} {p99:8.2f} {seq:11.0f} {par:11.0f} {max(seq, par) / bare:9.2f}x"
        )
        bares[alg] = bare
    print(
        "\nmint/bare: in-process token assembly + signing vs the bare signature (1.00x = free);"
        "\nhttp/bare: the best of sequential and threaded TokenRequest/s vs the bare signing rate"
        " of one core."
    )
    print(f"\nServer capacity (wrk -t1 -c16, 1 worker, store {store}):")
    head = (
        f"{'alg':6} {'endpoint':13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare sign':>13}"
    )
    print(head)
    print("-" * len(head))
    for alg, tr, rv in served:
        for name, (rps, p50, p99) in (("TokenRequest", tr), ("TokenReview", rv)):
            print(f"{alg:6} {name:13} {rps:8.0f} {p50:8.2f} {p99:8.2f} {rps / bares[alg]:12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
