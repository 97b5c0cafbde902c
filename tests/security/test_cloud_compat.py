"""Cloud federation compatibility against a live ``sa-issuer serve`` (docs/CONTRACTS.md
"Cloud consumers").

- GCP workload identity federation takes an uploaded JWKS with only the members kty, alg, use, kid,
  n, e, x, y, crv: the served JWKS must hold nothing else.
- Entra ID accepts RS256 only and a single audience ``api://AzureADTokenExchange``; AWS and GCP
  accept RS256 too: the default must be RS256, and a TokenRequest for that one audience must yield
  exactly that one audience.
- AWS gives up on a JWKS that takes over 5 s: discovery and JWKS must answer far faster, also as
  the very first requests after a cold start.
- Self-hosted issuers are often two static files in a bucket: ``sa-issuer export DIR`` served by a
  plain static file server must work for PyJWT's PyJWKClient and for our OIDCVerifier.
- ES384 / ES512 configurations publish ``alg`` and ``crv`` right (P-384, P-521).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _sa_issuer_serve_fixtures as serve  # loaded by conftest.py (tests/issuer/conftest.py)
import httpx
import jwt
import pytest

from verifier import OIDCVerifier

GCP_JWK_MEMBERS = {"kty", "alg", "use", "kid", "n", "e", "x", "y", "crv"}
ENTRA_AUDIENCE = "api://AzureADTokenExchange"
AWS_JWKS_LIMIT = 5.0


def _header(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))  # type: ignore[no-any-return]


def _payload(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))  # type: ignore[no-any-return]


def _mint(proc: Any, audiences: list[str] | None = None) -> dict[str, Any]:
    with proc.client(headers={"Authorization": f"Bearer {proc.admin_token}"}) as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": "fed"}})
        assert r.status_code in (201, 409), r.text
        spec: dict[str, Any] = {"expirationSeconds": 3600}
        if audiences is not None:
            spec["audiences"] = audiences
        r = c.post("/api/v1/namespaces/fed/serviceaccounts/default/token", json={"spec": spec})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


class _Static:
    """``python -m http.server`` on loopback serving a directory: a bucket stand-in."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = serve.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("static server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, _Static, float]]:
    """A default (RS256) issuer whose issuer URL is a static server, and how long (s) its first
    discovery request took after the process started listening."""
    tmp = tmp_path_factory.mktemp("cloud")
    factory = serve.IssuerFactory(tmp)
    static_dir = tmp / "bucket"
    static_dir.mkdir()
    static = _Static(static_dir)
    try:
        proc = factory.start(issuer=static.url, wait=False)
        first = _first_answer(proc.url + "/.well-known/openid-configuration", proc)
        proc.wait_ready()
        static.wait()
        yield proc, static, first
    finally:
        factory.close()
        static.stop()


def _first_answer(url: str, proc: Any, budget: float = 60.0) -> float:
    """Poll ``url`` until the port accepts a connection; return the latency of the first request
    that got any HTTP answer (the cold-start request)."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.stderr()
        start = time.perf_counter()
        try:
            r = httpx.get(url, timeout=AWS_JWKS_LIMIT)
        except httpx.ConnectError:
            time.sleep(0.01)
            continue
        elapsed = time.perf_counter() - start
        assert r.status_code == 200, r.text
        return elapsed
    raise AssertionError("issuer never answered")


# --- GCP: uploaded-JWKS member allow-list -------------------------------------------------------


def test_default_jwks_has_only_gcp_allowed_members(bucket: tuple[Any, _Static, float]) -> None:
    proc, _, _ = bucket
    r = httpx.get(proc.url + "/openid/v1/jwks")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    doc = r.json()
    assert set(doc) == {"keys"} and doc["keys"]
    for jwk in doc["keys"]:
        assert set(jwk) <= GCP_JWK_MEMBERS, sorted(set(jwk) - GCP_JWK_MEMBERS)
        assert jwk["use"] == "sig"


# --- Entra / AWS / GCP: RS256 by default; Entra's single audience -------------------------------


def test_default_algorithm_is_rs256(bucket: tuple[Any, _Static, float]) -> None:
    proc, _, _ = bucket
    disc = httpx.get(proc.url + "/.well-known/openid-configuration").json()
    assert disc["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = httpx.get(proc.url + "/openid/v1/jwks").json()["keys"]
    assert {(k["kty"], k["alg"]) for k in keys} == {("RSA", "RS256")}
    header = _header(_mint(proc)["status"]["token"])
    assert header["alg"] == "RS256" and header["kid"] in {k["kid"] for k in keys}


def test_entra_single_audience(bucket: tuple[Any, _Static, float]) -> None:
    proc, _, _ = bucket
    out = _mint(proc, [ENTRA_AUDIENCE])
    assert out["spec"]["audiences"] == [ENTRA_AUDIENCE]
    claims = _payload(out["status"]["token"])
    # Entra compares the token's audience with exactly one configured value.
    assert claims["aud"] == [ENTRA_AUDIENCE]


# --- AWS: JWKS and discovery well under 5 s, also on a cold start -------------------------------


def test_discovery_and_jwks_answer_fast_from_cold(bucket: tuple[Any, _Static, float]) -> None:
    proc, _, first = bucket
    assert first < 1.0, f"first discovery request after start took {first:.3f} s"
    for path in ("/openid/v1/jwks", "/.well-known/openid-configuration"):
        start = time.perf_counter()
        with httpx.Client(timeout=AWS_JWKS_LIMIT) as fresh:  # a new connection each, like AWS
            r = fresh.get(proc.url + path)
        elapsed = time.perf_counter() - start
        assert r.status_code == 200
        assert elapsed < 0.5, f"{path} took {elapsed:.3f} s"


# --- static bucket: `sa-issuer export` + a plain file server ------------------------------------


def test_export_works_as_a_static_bucket_issuer(bucket: tuple[Any, _Static, float]) -> None:
    proc, static, _ = bucket
    res = serve.IssuerFactory(proc.data_dir.parent).cli(
        "export", str(static.directory), "--data-dir", str(proc.data_dir), "--issuer", proc.issuer
    )
    assert res.returncode == 0, res.stderr
    token = _mint(proc, ["sts.amazonaws.com"])["status"]["token"]

    # PyJWT, as a relying party would use it against the bucket.
    disc = httpx.get(static.url + "/.well-known/openid-configuration").json()
    assert disc["issuer"] == static.url
    assert disc["jwks_uri"] == static.url + "/openid/v1/jwks"
    client = jwt.PyJWKClient(disc["jwks_uri"])
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="sts.amazonaws.com", issuer=static.url
    )
    assert claims["sub"] == "system:serviceaccount:fed:default"

    # Our offline verifier, discovery + JWKS from the bucket only.
    with OIDCVerifier(static.url, ["sts.amazonaws.com"], insecure_allow_http=True) as v:
        ident = v.verify(token)
    assert (ident.namespace, ident.service_account_name) == ("fed", "default")


# --- ES384 / ES512 ------------------------------------------------------------------------------


def test_es384_and_es512_publish_alg_and_crv(tmp_path: Path) -> None:
    factory = serve.IssuerFactory(tmp_path)
    try:
        procs = {
            alg: factory.start(config={"key_alg": alg}, wait=False) for alg in ("ES384", "ES512")
        }
        for alg, crv in (("ES384", "P-384"), ("ES512", "P-521")):
            proc = procs[alg]
            proc.wait_ready()
            keys = httpx.get(proc.url + "/openid/v1/jwks").json()["keys"]
            assert [(k["kty"], k["crv"], k["alg"]) for k in keys] == [("EC", crv, alg)]
            assert set(keys[0]) <= GCP_JWK_MEMBERS
            size = 48 if alg == "ES384" else 66
            for coord in ("x", "y"):
                assert len(base64.urlsafe_b64decode(keys[0][coord] + "==")) == size
            disc = httpx.get(proc.url + "/.well-known/openid-configuration").json()
            assert disc["id_token_signing_alg_values_supported"] == [alg]
            token = _mint(proc, ["sts.amazonaws.com"])["status"]["token"]
            assert _header(token)["alg"] == alg
            pub = jwt.PyJWK(keys[0]).key
            jwt.decode(token, pub, algorithms=[alg], audience="sts.amazonaws.com")
            with OIDCVerifier(
                proc.issuer,
                ["sts.amazonaws.com"],
                algorithms=(alg,),
                insecure_allow_http=True,
            ) as v:
                assert v.verify(token).key_id == keys[0]["kid"]
    finally:
        factory.close()
