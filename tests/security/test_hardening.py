"""Hardening: size and time bounds on everything read from the network, secrets kept out of
reprs, logs, audit, metrics and the store, file modes, TLS, fail-closed TokenReview.

Real components: the issuer app in-process (``api``), real ``sa-issuer serve`` processes
(``issuer_factory``), uvicorn in a thread, private redis-servers. ``respx`` only for the hostile
answers a real issuer will not give (endless, compressed, absurdly nested, slow bodies, redirects).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import inspect
import os
import socket
import sqlite3
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _security_jwks_server as js  # loaded by conftest.py
import httpx
import pytest
import redis
import respx
import uvicorn
from _services import RedisServer, free_port
from cryptography.hazmat.primitives import serialization

from issuer.api import auth
from issuer.http.limits import GuardedHttpToolsProtocol, HttpLimits
from issuer.http.status import MAX_JSON_DEPTH
from issuer.review import _check_legacy
from verifier import OIDCVerifier, TokenReviewVerifier, VerifierUnavailable
from verifier._stream import LineParser, StreamFollower, StreamProtocolError

REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"
REVOKE = "/apis/sa-oidc.dev/v1/tokenrevocations"


def _nested(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


def _pod_body(name: str, extra_json: str) -> bytes:
    meta = '{"metadata":{"name":"' + name + '"},'
    spec = '"spec":{"containers":[{"name":"c","image":"i"}],"x":'
    return (meta + spec + extra_json + "}}").encode()


# === issuer: request bodies =====================================================================


def test_nested_bodies_are_refused_and_lists_stay_readable(api: Any) -> None:
    """A deep field under ``spec`` (never checked for unknown names) used to be stored and then
    break every GET/LIST of pods in the namespace (orjson serializes only ~255 levels)."""
    api.ns("dev")
    json_headers = {"content-type": "application/json"}
    for depth in (MAX_JSON_DEPTH + 1, 300, 1000):
        r = api.post(
            "/api/v1/namespaces/dev/pods?fieldValidation=Ignore",
            content=_pod_body(f"deep{depth}", _nested(depth)),
            headers=json_headers,
        )
        assert (r.status_code, r.json()["reason"]) == (400, "BadRequest"), r.text
        assert "nested" in r.json()["message"]
    assert api.ctx.store.list_objects("Pod", "dev") == []
    r = api.post(
        "/api/v1/namespaces/dev/pods?fieldValidation=Ignore",
        content=_pod_body("ok", _nested(50)),
        headers=json_headers,
    )
    assert r.status_code == 201, r.text
    assert api.get("/api/v1/namespaces/dev/pods").status_code == 200
    assert api.get("/api/v1/pods").status_code == 200
    # The same cap guards TokenReview and token revocation bodies.
    deep_review = '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":'
    r = api.post(REVIEW, content=(deep_review + _nested(200) + "}").encode(), headers=json_headers)
    assert r.status_code == 400
    r = api.post(REVOKE, content=_nested(200).encode(), headers=json_headers)
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("path", "cap"),
    [(REVOKE, 16 * 1024), (REVIEW, 1 << 20), ("/api/v1/namespaces", 1 << 20)],
)
@pytest.mark.parametrize("declared", [True, False])
def test_body_caps_on_every_json_endpoint(api: Any, path: str, cap: int, declared: bool) -> None:
    body = b'{"pad":"' + b"x" * cap + b'"}'
    if declared:
        r = api.post(path, content=body, headers={"content-type": "application/json"})
    else:

        def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        r = api.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["reason"]) == (413, "RequestEntityTooLarge"), r.text


# === issuer: request heads, error pages, TLS ====================================================


def _raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b"connection: close" not in out.lower():
                    break
            return out
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_request_heads_are_bounded_and_errors_leak_no_versions(
    issuer_factory: Any,
) -> None:
    proc = issuer_factory.start()
    ok = _raw(proc.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000 + b"\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
    for size in (100_000, 2_000_000):
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * size + b"\r\n\r\n"
        answer = _raw(proc.port, head)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:80]
    url = b"GET /openid/v1/jwks?" + b"q" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = _raw(proc.port, url)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:80]
    # No server header, no framework or version in any answer (error pages included).
    answers = [
        _raw(proc.port, b"GARBAGE\r\n\r\n"),
        _raw(proc.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        _raw(proc.port, b"DELETE /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        _raw(proc.port, b"GET /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        _raw(proc.port, b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ]
    for a in answers:
        assert a.startswith(b"HTTP/1.1 "), a[:80]
        low = a.lower()
        assert b"\r\nserver:" not in low
        for word in (b"uvicorn", b"starlette", b"python", b"httptools", b"traceback"):
            assert word not in low, (word, a[:300])


class _ThreadServer:
    """uvicorn in a thread on a loopback port with a given HTTP protocol class."""

    def __init__(self, app: Any, http: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", http=http
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class _QuickHeads(GuardedHttpToolsProtocol):
    limits = HttpLimits(head_timeout=0.5)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slowloris_heads_are_closed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with _ThreadServer(app, _QuickHeads) as srv:
        idle = socket.create_connection(("127.0.0.1", srv.port))
        trickle = socket.create_connection(("127.0.0.1", srv.port))
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(3):  # keep trickling, never finishing the head
                time.sleep(0.2)
                with contextlib.suppress(OSError):
                    trickle.sendall(b"X-A: b\r\n")
            assert _closed_within(trickle, 2.0)
            assert _closed_within(idle, 2.0)
        finally:
            idle.close()
            trickle.close()
        # A normal keep-alive client is unaffected: two requests on one connection.
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}") as c:
            assert c.get("/").text == "ok"
            time.sleep(0.7)  # longer than the head timeout, but between requests (keep-alive)
            assert c.get("/").text == "ok"


def test_tls_offers_only_modern_suites(issuer_factory: Any) -> None:
    cert, key = js.self_signed_tls(issuer_factory.tmp_path)
    proc = issuer_factory.start(tls=(cert, key))

    def handshake(ciphers: str | None, version: ssl.TLSVersion) -> str | None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = version
        if ciphers:
            ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
        try:
            with (
                socket.create_connection(("127.0.0.1", proc.port), timeout=5) as raw,
                ctx.wrap_socket(raw) as s,
            ):
                return s.cipher()[0]  # type: ignore[index]
        except (ssl.SSLError, OSError):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tls11 = ssl.TLSVersion.TLSv1_1
    assert handshake(None, ssl.TLSVersion.TLSv1_3) is not None
    assert handshake("ECDHE-ECDSA-AES128-GCM-SHA256", ssl.TLSVersion.TLSv1_2) is not None
    for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-NULL-SHA"):
        assert handshake(weak, ssl.TLSVersion.TLSv1_2) is None, weak
    assert handshake(None, tls11) is None


# === secrets: reprs, store, files, logs, audit, metrics =========================================


def test_reprs_hold_no_secrets(make_api: Any) -> None:
    api = make_api(store="sqlite")
    ctx = api.ctx
    admin = ctx.admin_tokens[0]
    signer = ctx.keys.signer()
    kek = ctx.keys._kek
    raw_kek = _raw_kek(ctx)
    texts = [repr(ctx), str(ctx), repr(ctx.config), repr(signer), repr(kek), repr(ctx.keys)]
    key_der = kek.decrypt(signer.kid, ctx.store.load_keys().keys[0].private_enc)
    for t in texts:
        assert admin not in t
        assert base64.b64encode(raw_kek).decode() not in t and raw_kek.hex() not in t
        assert "PRIVATE" not in t and key_der.hex() not in t


def _raw_kek(ctx: Any) -> bytes:
    return base64.b64decode((ctx.config.data_dir / "kek").read_text().strip())


def _secret_needles(ctx: Any) -> list[bytes]:
    """Byte strings that must never appear in the store or any log: admin tokens, the KEK (raw,
    base64, hex) and every private key (DER, PEM, and the DER's base64)."""
    kek = ctx.keys._kek
    raw_kek = _raw_kek(ctx)
    needles = [t.encode() for t in ctx.admin_tokens]
    needles += [raw_kek, base64.b64encode(raw_kek), base64.urlsafe_b64encode(raw_kek)]
    needles += [raw_kek.hex().encode(), b"PRIVATE KEY"]
    for k in ctx.store.load_keys().keys:
        der = kek.decrypt(k.kid, k.private_enc)
        needles += [der, base64.b64encode(der), der[-48:]]  # the tail holds the private scalar
        key = serialization.load_der_private_key(der, None)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        needles.append(pem)
    return needles


def _exercise(api: Any) -> list[str]:
    """Objects, bound and legacy tokens, reviews, a revocation, a rotation; returns the tokens."""
    api.ns("dev")
    api.sa("dev", "app")
    api.pod("dev", "web", sa="app")
    tokens = [
        api.token("dev", "app"),
        api.token("dev", "app", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "web"}),
    ]
    api.legacy_secret("dev", "legacy", "app")
    for t in tokens:
        assert api.review(t)["authenticated"] is True
    assert api.review(tokens[0] + "x")["authenticated"] is False
    r = api.post(
        REVOKE,
        {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": {"jti": "j-1"}},
    )
    assert r.status_code == 201, r.text
    api.ctx.keys.rotate()
    return tokens


def _redis_dump(url: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            out.append(key)
            kind = client.execute_command("TYPE", key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"hash":
                for f, v in client.hgetall(key).items():
                    out += [f, v]
            elif kind == b"list":
                out += client.lrange(key, 0, -1)
            elif kind == b"set":
                out += list(client.smembers(key))
            elif kind == b"zset":
                out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"stream":
                for _id, fields in client.xrange(key):
                    for f, v in fields.items():
                        out += [f, v]
            else:
                raise AssertionError(f"unexpected redis type {kind!r}")
    finally:
        client.close()
    return out


def _sqlite_path(cfg: Any) -> Path:
    if cfg.store == "sqlite":
        return Path(cfg.data_dir) / "issuer.db"
    assert cfg.store.startswith("sqlite:///")
    return Path(cfg.store.removeprefix("sqlite://"))


def _sqlite_dump(path: Path) -> list[bytes]:
    assert path.exists()
    out: list[bytes] = []
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        out.append(cell)
                    elif cell is not None:
                        out.append(str(cell).encode())
    out.append(path.read_bytes())  # the raw file too (free pages, WAL checkpointed)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        out.append(wal.read_bytes())
    return out


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_store_dump_holds_no_key_material(make_api: Any, backend: str, request: Any) -> None:
    """docs/CONTRACTS.md invariant 4: a store dump alone never yields a signing key."""
    store = request.getfixturevalue("redis_url") if backend == "redis" else None
    api = make_api(store=store)
    _exercise(api)
    needles = _secret_needles(api.ctx)
    if backend == "redis":
        values = _redis_dump(api.ctx.config.store)
    else:
        values = _sqlite_dump(_sqlite_path(api.ctx.config))
    assert len(values) > 20
    for v in values:
        for n in needles:
            assert n not in v, f"secret material found in the {backend} store"
    # What the store holds for a key is ciphertext that does not parse as a key.
    for k in api.ctx.store.load_keys().keys:
        with pytest.raises(ValueError):
            serialization.load_der_private_key(k.private_enc, None)


def test_file_modes_even_under_a_permissive_umask(make_api: Any) -> None:
    old = os.umask(0)
    try:
        api = make_api()
        _exercise(api)
        api.ctx.audit.handlers[0].flush()
    finally:
        os.umask(old)
    cfg = api.ctx.config
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700
    files = [cfg.data_dir / "kek", cfg.admin_token_file, Path(cfg.audit_log)]
    db = _sqlite_path(cfg)
    files += sorted(db.parent.glob(db.name + "*"))  # the database and its -wal / -shm
    assert len(files) >= 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))


def test_logs_audit_and_metrics_hold_no_secrets(issuer_factory: Any) -> None:
    """A live server at debug level with the access log on: nothing it prints, audits or exports
    contains a token, the admin token, the KEK or a private key."""
    proc = issuer_factory.start(extra_args=["--log-level", "debug", "--access-log"])
    headers = {"Authorization": f"Bearer {proc.admin_token}"}
    tokens: list[str] = []
    with proc.client(headers=headers) as c:
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}}).status_code == 201
        for aud in (None, ["vault"]):
            spec = {} if aud is None else {"audiences": aud}
            r = c.post("/api/v1/namespaces/dev/serviceaccounts/default/token", json={"spec": spec})
            tokens.append(r.json()["status"]["token"])
        secret = {
            "metadata": {
                "name": "legacy",
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
            "type": "kubernetes.io/service-account-token",
        }
        r = c.post("/api/v1/namespaces/dev/secrets", json=secret)
        tokens.append(base64.b64decode(r.json()["data"]["token"]).decode())
        for t in [*tokens, tokens[0][:-4] + "AAAA", "garbage." + tokens[0]]:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
            r = c.post(REVIEW, json={**body, "spec": {"token": t, "audiences": ["vault"]}})
            assert r.status_code == 201
            assert t not in r.text  # the token is not echoed back
        # Bad requests that carry a token: none of it may be echoed or logged.
        r = c.post(REVIEW, json={"spec": {"token": tokens[0]}, "bogus": tokens[1]})
        assert tokens[0] not in r.text and tokens[1] not in r.text
        metrics = c.get("/metrics").text
    # Wrong credentials are not logged either.
    httpx.get(proc.url + "/api/v1/pods", headers={"Authorization": f"Bearer {tokens[0]}"})
    proc.stop()
    kek = base64.b64decode((proc.data_dir / "kek").read_text().strip())
    audit = (proc.data_dir / "audit.log").read_text()
    assert "token_issued" in audit and "legacy_token_issued" in audit
    outputs = {"stdout": proc.stdout(), "stderr": proc.stderr(), "audit": audit, "metrics": metrics}
    assert "GET /api/v1/pods" in outputs["stderr"]  # the access log is on
    forbidden = [proc.admin_token, base64.b64encode(kek).decode(), kek.hex(), "PRIVATE KEY"]
    for t in tokens:
        forbidden += [t, t.split(".")[2]]  # the whole token and its signature
    for name, text in outputs.items():
        for needle in forbidden:
            assert needle not in text, f"a secret appears in {name}"


def test_secret_comparisons_are_constant_time() -> None:
    """Admin tokens (every candidate compared, no early exit) and legacy Secret tokens use
    hmac.compare_digest (docs/CONTRACTS.md "Legacy Secret tokens": constant-time compare)."""
    assert "compare_digest" in inspect.getsource(auth)
    assert "compare_digest" in inspect.getsource(_check_legacy)
    tokens = ("a" * 32, "b" * 32, "c" * 32)
    assert auth.match_admin_token("b" * 32, tokens) == 1
    assert auth.match_admin_token("b" * 31, tokens) is None
    assert auth.match_admin_token("\udcff" * 32, tokens) is None  # never raises on odd input


# === TokenReview fails closed ===================================================================


def test_tokenreview_fails_closed_when_redis_is_killed_mid_run(
    issuer_factory: Any, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    rs = RedisServer(tmp_path / "redis")
    rs.start()
    try:
        proc = issuer_factory.start(store=rs.url)
        headers = {"Authorization": f"Bearer {proc.admin_token}"}
        with proc.client(headers=headers) as c:
            c.post("/api/v1/namespaces", json={"metadata": {"name": "dev"}})
            r = c.post("/api/v1/namespaces/dev/serviceaccounts/default/token", json={"spec": {}})
            token = r.json()["status"]["token"]
        results: list[tuple[float, int, Any]] = []
        stop = threading.Event()

        def reviewer() -> None:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}
            with proc.client(headers=headers, timeout=10) as c:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        r = c.post(REVIEW, json={**body, "spec": {"token": token}})
                        status = r.json().get("status") if r.status_code == 201 else None
                        results.append((started, r.status_code, status))
                    except httpx.HTTPError:
                        results.append((started, 0, None))

        threads = [threading.Thread(target=reviewer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert any(s is not None and s["authenticated"] for _, _, s in results)
        assert rs._proc is not None
        rs._proc.kill()  # SIGKILL: no goodbye to the issuer's connections
        rs._proc.wait(5)
        killed_at = time.monotonic()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(15)
        after = [(code, s) for started, code, s in results if started > killed_at]
        assert len(after) >= 4
        for code, s in after:
            assert code == 503 or (s is not None and s["authenticated"] is False), (code, s)
            assert not (s and s.get("authenticated"))
        # Our TokenReview verifier reports "could not check", never valid or invalid.
        aud = [proc.issuer]  # the default API audience: the review must reach the store
        v = TokenReviewVerifier(proc.url, proc.admin_token, aud, insecure_allow_http=True)
        with v, pytest.raises(VerifierUnavailable):
            v.verify(token)
    finally:
        rs.stop()


# === verifier side: bounded reads, no redirects, timeouts =======================================

ISSUER = "https://issuer.test"


class _Endless(httpx.SyncByteStream):
    def __init__(self, chunk: bytes = b" " * 65536, delay: float = 0.0) -> None:
        self.chunks = 0
        self.chunk = chunk
        self.delay = delay

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.chunks += 1
            if self.delay:
                time.sleep(self.delay)
            yield self.chunk


def _review_verifier(**kw: Any) -> TokenReviewVerifier:
    return TokenReviewVerifier(ISSUER, "admin-bearer-credential", ["aud"], **kw)


def test_tokenreview_answers_are_bounded() -> None:
    deep = b'{"kind":"TokenReview","status":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    bomb = gzip.compress(b'{"kind":"TokenReview"' + b" " * 20_000_000 + b"}")
    cases: dict[str, tuple[httpx.Response, str]] = {
        "endless": (httpx.Response(201, stream=_Endless()), "too large"),
        "declared": (
            httpx.Response(201, headers={"content-length": "999999999"}, stream=_Endless()),
            "too large",
        ),
        "gzip bomb": (
            httpx.Response(201, content=bomb, headers={"content-encoding": "gzip"}),
            "compressed",
        ),
        "deep": (httpx.Response(201, content=deep), "not JSON"),
        "slow drip": (httpx.Response(201, stream=_Endless(b" ", delay=0.05)), "longer than"),
    }
    for name, (resp, match) in cases.items():
        with respx.mock() as mock:
            route = mock.post(ISSUER + REVIEW).mock(return_value=resp)
            v = _review_verifier(timeout=0.5)
            start = time.monotonic()
            with pytest.raises(VerifierUnavailable, match=match):
                v.verify("a.b.c")
            assert time.monotonic() - start < 3, name
            assert route.calls.last.request.headers["accept-encoding"] == "identity"
            v.close()
        stream = resp.stream
        if isinstance(stream, _Endless) and name != "slow drip":
            assert stream.chunks <= 6, name  # stopped right after the cap


def test_tokenreview_never_follows_a_redirect_with_the_token() -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(ISSUER + REVIEW).respond(307, headers={"Location": "https://evil.test/steal"})
        evil = mock.post("https://evil.test/steal").respond(201, json={})
        with _review_verifier() as v, pytest.raises(VerifierUnavailable, match="307"):
            v.verify("a.b.c")
        assert not evil.called


def test_remote_verifier_absurd_discovery_is_a_failed_fetch() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with respx.mock() as mock:
        mock.get(ISSUER + "/.well-known/openid-configuration").respond(200, content=deep)
        with (
            OIDCVerifier(ISSUER, ["aud"]) as v,
            pytest.raises(VerifierUnavailable, match="cannot verify tokens"),
        ):
            v.verify(js.sign_token(js.rsa_key(), js.claims_for(ISSUER)))


def test_stream_follower_bounds_lines_and_pages() -> None:
    # A line that completes within one chunk is checked too, not only the buffered remainder.
    parser = LineParser(max_line=100)
    parser.feed(b"x" * 60)
    with pytest.raises(StreamProtocolError, match="too long"):
        parser.feed(b"y" * 60 + b"\n")
    with pytest.raises(StreamProtocolError, match="not JSON"):
        LineParser().feed(b"[" * 5000 + b"]" * 5000 + b"\n")
    endless = _Endless(b'{"kind":"InvalidationList","items":[' + b" " * 65000)
    with respx.mock() as mock:
        route = mock.get(ISSUER + "/apis/sa-oidc.dev/v1/invalidations").mock(
            return_value=httpx.Response(200, stream=endless)
        )
        follower = StreamFollower(ISSUER, "admin-bearer-credential")
        try:
            with pytest.raises(StreamProtocolError, match="too large"):
                follower._get_json({"after": "0"})
        finally:
            follower.close()
        assert route.calls.last.request.headers["accept-encoding"] == "identity"
    assert endless.chunks <= 80  # 4 MiB cap, 64 KiB chunks


def test_every_outbound_client_has_timeouts() -> None:
    def finite(t: httpx.Timeout) -> bool:
        return all(x is not None and 0 < x <= 30 for x in (t.connect, t.read, t.write, t.pool))

    with OIDCVerifier(ISSUER, ["aud"]) as o:
        assert finite(o._client.timeout)
        assert not o._client.follow_redirects
    with _review_verifier() as r:
        assert finite(r._client.timeout)
        assert not r._client.follow_redirects
    f = StreamFollower(ISSUER, "admin-bearer-credential", heartbeat=1.0)
    try:
        assert finite(f._client.timeout) and finite(f._timeout)
        assert not f._client.follow_redirects
    finally:
        f.close()


# === DoS: concurrent watches ====================================================================


def test_max_watchers_is_a_hard_bound(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from starlette.applications import Starlette

    from issuer.store import open_store
    from issuer.stream import StreamSettings, routes

    admin = "watch-admin-token-0123456789"

    @dataclass
    class Ctx:
        store: Any
        admin_tokens: tuple[str, ...] = (admin,)
        clock: Any = time.time
        config: Any = None

    store = open_store(f"sqlite:///{tmp_path / 'i.db'}", tmp_path)
    settings = StreamSettings(max_watchers=4, watch_timeout=5)
    app = Starlette(routes=routes(settings))
    app.state.ctx = Ctx(store)
    codes: list[int] = []
    barrier = threading.Barrier(40)

    def watch(port: int) -> None:
        with httpx.Client(timeout=10) as c:
            barrier.wait()
            with c.stream(
                "GET",
                f"http://127.0.0.1:{port}/apis/sa-oidc.dev/v1/invalidations",
                params={"watch": "true", "timeoutSeconds": "1.5"},
                headers={"Authorization": f"Bearer {admin}"},
            ) as r:
                codes.append(r.status_code)
                for _ in r.iter_raw():
                    pass

    try:
        with _ThreadServer(app, "httptools") as srv:
            threads = [threading.Thread(target=watch, args=(srv.port,)) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
    finally:
        store.close()
    assert codes.count(200) <= 4, codes
    assert codes.count(429) >= 36
    assert settings.active == 0  # every place given back once its stream ended


def test_unknown_kid_flood_and_caches_are_bounded_elsewhere() -> None:
    """Pointers (kept here so the hardening list is complete): the success cache of
    TokenReviewVerifier (tests/stream/test_stream_tokenreview.py::test_success_cache_hits_ttl_and_
    bound), the verified-token cache (tests/verifier/test_fastpath.py::test_cache_is_bounded_lru),
    the hybrid's invalidation sets (pruned by server retention and token expiry,
    tests/stream/test_stream_parser.py::test_state_prune_follows_server_retention_and_expiry).
    Here: the TokenReview cache bound holds under distinct tokens."""
    from verifier.tokenreview import _SuccessCache

    cache = _SuccessCache(ttl=10, max_entries=64)
    ident = _identity()
    for i in range(10_000):
        cache.put(cache.key(f"token-{i}", ("aud",)), ident, now=0.0)
    assert len(cache) == 64


def _identity() -> Any:
    from verifier import ServiceAccountIdentity

    return ServiceAccountIdentity(namespace="ns", service_account_name="sa")
