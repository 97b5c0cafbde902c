"""End to end: the real ``sa-issuer`` CLI in subprocesses, real sockets, real SQLite and Redis.

Tokens are minted the way a second process on the same data dir would: a KeyManager opened on the
same store and KEK (SQLite and Redis both allow that). Verified by PyJWT's PyJWKClient and by
Node's panva/jose against the live JWKS.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.config import load_config
from issuer.context import key_policy, load_or_create_kek
from issuer.keys import KeyManager
from issuer.store import open_store

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerFactory, IssuerProcess

AUDIENCE = "https://relying-party.example"
NODE_DIR = Path(__file__).resolve().parent.parent / "node"


# --- helpers -------------------------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def issuer_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")}


class Minter:
    """Signs tokens with the active key of a data dir / store, as another process would."""

    def __init__(self, server: IssuerProcess, store: str = "sqlite", kek: Path | None = None):
        flags: dict[str, Any] = {"data_dir": str(server.data_dir), "issuer": server.issuer}
        if store != "sqlite":
            flags["store"] = store
        if kek is not None:
            flags["kek"] = str(kek)
        self.config = load_config(flags, {})
        self.store = open_store(self.config.store, self.config.data_dir)
        kek_obj = load_or_create_kek(self.config, self.store, create=False)
        self.keys = KeyManager(self.store, kek_obj, key_policy(self.config))

    def mint(self, sub: str = "system:serviceaccount:default:e2e", lifetime: int = 1800) -> str:
        self.keys.refresh()
        now = int(time.time())
        claims = {
            "iss": self.config.issuer,
            "sub": sub,
            "aud": [AUDIENCE],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        return self.keys.signer().sign_jwt(claims)

    def close(self) -> None:
        self.store.close()


def pyjwt_verify(server: IssuerProcess, token: str) -> dict[str, Any]:
    """PyJWT the way its docs show it: PyJWKClient(jwks_uri) + jwt.decode."""
    disc = httpx.get(server.url + "/.well-known/openid-configuration", verify=server.verify)
    jwks_uri = disc.json()["jwks_uri"]
    ssl_ctx = server.verify if not isinstance(server.verify, bool) else None
    client = jwt.PyJWKClient(jwks_uri, cache_keys=False, ssl_context=ssl_ctx)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=server.issuer)


def file_state(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: (bytes, mtime_ns)."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(directory))] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def assert_one_error_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("sa-issuer: error:")]
    assert len(errors) == 1, r.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])


@pytest.fixture(scope="session")
def jose_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """panva/jose installed once per session (npm), beside a copy of our verify script."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.fail("node and npm are required for the jose cross-check", pytrace=False)
    d = tmp_path_factory.mktemp("jose")
    (d / "package.json").write_text(
        json.dumps({"name": "sa-oidc-e2e", "private": True, "type": "module"})
    )
    r = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "jose@^6"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if r.returncode != 0:
        pytest.fail(f"npm install jose failed: {r.stderr}", pytrace=False)
    shutil.copy(NODE_DIR / "verify_remote_jwks.mjs", d / "verify_remote_jwks.mjs")
    return d


def jose_verify(jose_dir: Path, issuer: str, tokens: list[str]) -> list[dict[str, Any]]:
    r = subprocess.run(
        ["node", "verify_remote_jwks.mjs", issuer, AUDIENCE],
        cwd=jose_dir,
        input="\n".join(tokens),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    results: list[dict[str, Any]] = json.loads(r.stdout)
    return results


# --- the console script, banner, secrets ---------------------------------------------------


def test_console_script_installed() -> None:
    exe = shutil.which("sa-issuer")
    assert exe is not None, "the sa-issuer console script is not installed (pip install -e .)"
    r = subprocess.run([exe, "export", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    assert "IRSA" in r.stdout and "openid-configuration" in r.stdout


def _banner(s: IssuerProcess) -> str:
    return (
        f"sa-issuer: INFO: serving issuer {s.issuer} "
        f"(discovery {s.issuer}/.well-known/openid-configuration); "
        f"data dir {s.data_dir}, store sqlite:{s.data_dir}/issuer.db; "
        f"admin token in {s.data_dir}/admin-token; kubeconfig {s.data_dir}/kubeconfig"
    )


def _assert_quiet_start(s: IssuerProcess) -> None:
    """A normal start says one thing, at INFO: the URL, the data dir and the admin token's path.
    Nothing on stdout, nothing that reads like a problem (the first key, the new KEK ...)."""
    assert s.stdout() == ""
    assert s.stderr().splitlines() == [_banner(s)]


def test_banner_secrets_and_restart_keeps_keys(issuer_process: IssuerProcess) -> None:
    s = issuer_process
    _assert_quiet_start(s)  # first start: KEK, admin token and first key created, all quietly
    token_file = s.data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (s.data_dir / "kek").stat().st_mode & 0o777 == 0o600
    token = s.admin_token
    assert len(token) >= 43
    kek_text = (s.data_dir / "kek").read_text().strip()
    for text in (s.stdout(), s.stderr()):
        assert token not in text
        assert kek_text not in text
    assert (s.data_dir / "kek").is_file()

    with s.client() as c:
        kid = c.get("/openid/v1/jwks").json()["keys"][0]["kid"]
        etag = c.get("/openid/v1/jwks").headers["etag"]
    s.restart()
    _assert_quiet_start(s)
    assert token not in s.stdout() + s.stderr()
    assert s.data_dir.joinpath("admin-token").read_text().strip() == token
    with s.client() as c:
        r = c.get("/openid/v1/jwks")
        assert [k["kid"] for k in r.json()["keys"]] == [kid]
        assert r.headers["etag"] == etag


def test_pyjwt_and_node_jose_verify_minted_tokens(
    issuer_process: IssuerProcess, jose_dir: Path
) -> None:
    s = issuer_process
    minter = Minter(s)
    try:
        tokens = [minter.mint(sub=f"system:serviceaccount:default:sa{i}") for i in range(3)]
    finally:
        minter.close()
    for i, t in enumerate(tokens):
        claims = pyjwt_verify(s, t)
        assert claims["sub"] == f"system:serviceaccount:default:sa{i}"
        assert claims["iss"] == s.issuer
    results = jose_verify(jose_dir, s.issuer, tokens)
    assert [r["ok"] for r in results] == [True, True, True]
    kid = httpx.get(s.url + "/openid/v1/jwks").json()["keys"][0]["kid"]
    assert {r["kid"] for r in results} == {kid}
    # and a tampered token fails in both
    bad = tokens[0][:-4] + ("AAAA" if not tokens[0].endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_verify(s, bad)
    r = subprocess.run(
        ["node", "verify_remote_jwks.mjs", s.issuer, AUDIENCE],
        cwd=jose_dir,
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert json.loads(r.stdout)[0]["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def test_export_matches_served_bytes(issuer_factory: IssuerFactory) -> None:
    s = issuer_factory.start(issuer="https://issuer.example.com/tenant-a")
    out = issuer_factory.tmp_path / "site"
    args = ["--data-dir", str(s.data_dir), "--listen", f"127.0.0.1:{s.port}"]
    r = issuer_factory.cli("export", str(out), *args, "--issuer", s.issuer)
    assert r.returncode == 0, r.stderr
    with s.client() as c:
        disc = c.get("/tenant-a/.well-known/openid-configuration")
        jwks = c.get("/tenant-a/openid/v1/jwks")
    assert (out / ".well-known" / "openid-configuration").read_bytes() == disc.content
    assert (out / "openid" / "v1" / "jwks").read_bytes() == jwks.content
    assert (
        json.loads(disc.content)["jwks_uri"] == "https://issuer.example.com/tenant-a/openid/v1/jwks"
    )
    # no temp files left behind
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["jwks", "openid-configuration"]


def test_keys_cli_against_running_server(issuer_process: IssuerProcess, tmp_path: Path) -> None:
    s = issuer_process
    f = issuer_factory_cli(s)
    r = f("keys", "list", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["keys"]
    assert [k["state"] for k in listed] == ["active"]
    active_kid = listed[0]["kid"]
    r = f("keys", "list")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split() == [
        "KID",
        "ALG",
        "STATE",
        "CREATED",
        "ACTIVATES",
        "RETIRES",
        "REMOVAL",
    ]
    assert active_kid in r.stdout

    r = f("keys", "rotate")
    assert r.returncode == 0, r.stderr
    new_kid = r.stdout.split()[2]
    # the running server picks the change up through the store watch
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = [k["kid"] for k in httpx.get(s.url + "/openid/v1/jwks").json()["keys"]]
        if new_kid in kids:
            break
        time.sleep(0.05)
    assert set(kids) == {active_kid, new_kid}

    r = f("keys", "revoke", new_kid)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = [k["kid"] for k in httpx.get(s.url + "/openid/v1/jwks").json()["keys"]]
        if new_kid not in kids:
            break
        time.sleep(0.05)
    assert kids == [active_kid]
    assert_one_error_line(f("keys", "revoke", "no-such-kid"), "no key with kid 'no-such-kid'")


def issuer_factory_cli(s: IssuerProcess) -> Any:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*s.argv[:3], *args, "--data-dir", str(s.data_dir)]
        return subprocess.run(
            cmd, env=issuer_env(), capture_output=True, text=True, timeout=60, check=False
        )

    return run


def test_workers(issuer_factory: IssuerFactory) -> None:
    s = issuer_factory.start(extra_args=["--workers", "2"])
    with s.client() as c:
        bodies = {c.get("/openid/v1/jwks").content for _ in range(20)}
    assert len(bodies) == 1
    assert s.stderr().splitlines() == [_banner(s)]  # the parent's one line; workers are quiet


# --- failures: clear message, non-zero exit, nothing changed -------------------------------


def test_failures_change_nothing(issuer_factory: IssuerFactory) -> None:
    s = issuer_factory.start()
    s.stop()
    data = s.data_dir
    before = file_state(data)
    tmp = issuer_factory.tmp_path
    cli = issuer_factory.cli
    base = ["--data-dir", str(data)]

    # bad config: flag, config file, env
    assert_one_error_line(cli("serve", *base, "--listen", "nope"), "--listen", "HOST:PORT")
    (tmp / "bad.toml").write_text("rotation_perod = '1h'\n")
    assert_one_error_line(
        cli("serve", *base, "--config", str(tmp / "bad.toml")), "rotation_perod", "unknown key"
    )
    assert_one_error_line(
        cli("serve", *base, env={"SA_ISSUER_WORKERS": "0"}), "SA_ISSUER_WORKERS", ">= 1"
    )
    # usage error: exit 2
    r = cli("serve", *base, "--workers")
    assert r.returncode == 2 and "usage:" in r.stderr

    # unreadable KEK (a directory), garbage KEK, wrong KEK
    (tmp / "kekdir").mkdir()
    assert_one_error_line(
        cli("serve", *base, "--kek", str(tmp / "kekdir")), "key-encryption key", "KEK file"
    )
    (tmp / "garbage.kek").write_text("not base64 at all!!\n")
    assert_one_error_line(
        cli("serve", *base, "--kek", str(tmp / "garbage.kek")), "not valid base64"
    )
    wrong = issuer_factory.make_kek("wrong.kek")
    for cmd in (["serve"], ["keys", "rotate"], ["keys", "revoke", "x"]):
        assert_one_error_line(cli(*cmd, *base, "--kek", str(wrong)), "cannot decrypt")

    # the store holds keys but the default KEK file is gone: refuse to mint a new KEK
    nokek = tmp / "nokek"
    shutil.copytree(data, nokek)
    (nokek / "kek").unlink()
    nokek_before = file_state(nokek)
    assert_one_error_line(cli("serve", "--data-dir", str(nokek)), "restore that KEK file")
    assert file_state(nokek) == nokek_before

    # corrupt store: garbage file, and a valid SQLite file with an undecodable key set
    for variant in ("garbage", "keyset"):
        d = tmp / f"corrupt-{variant}"
        shutil.copytree(data, d)
        db = d / "issuer.db"
        if variant == "garbage":
            db.write_bytes(b"this is not a database" * 100)
        else:
            con = sqlite3.connect(db)
            con.execute("UPDATE keyset SET doc = x'00ff00ff'")
            con.commit()
            con.close()
        for suffix in ("-wal", "-shm"):
            (d / f"issuer.db{suffix}").unlink(missing_ok=True)
        snap = file_state(d)
        for cmd in (["serve"], ["keys", "list"], ["keys", "rotate"], ["export", str(tmp / "x")]):
            assert_one_error_line(cli(*cmd, "--data-dir", str(d)), "store")
        assert file_state(d) == snap, variant
        assert not (tmp / "x").exists()

    # store unavailable
    port = unused_port()
    assert_one_error_line(
        cli("serve", *base, "--store", f"redis://127.0.0.1:{port}/0"), "store unavailable"
    )

    assert file_state(data) == before
    # and the untouched data dir still serves the same key
    s.restart()


def test_http_issuer_on_non_loopback_listen_is_refused(issuer_factory: IssuerFactory) -> None:
    port = unused_port()
    tmp = issuer_factory.tmp_path
    # --tls off makes the default issuer http://LISTEN; an explicit http issuer likewise.
    for extra in (["--tls", "off"], ["--issuer", f"http://127.0.0.1:{port}"]):
        r = issuer_factory.cli(
            "serve", "--data-dir", str(tmp / "d"), "--listen", f"0.0.0.0:{port}", *extra
        )
        assert_one_error_line(r, "--issuer", "insecure-allow-http-issuer")
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # never bound
    assert not (tmp / "d" / "kek").exists()  # refused before touching the data dir


# --- TLS ------------------------------------------------------------------------------------


def self_signed(tmp_path: Path, name: str = "tls") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sa-issuer test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls(issuer_factory: IssuerFactory, jose_dir: Path) -> None:
    cert, key = self_signed(issuer_factory.tmp_path)
    s = issuer_factory.start(tls=(cert, key))
    assert s.issuer.startswith("https://127.0.0.1:")
    with s.client() as c:
        r = c.get("/.well-known/openid-configuration")
        assert r.status_code == 200
        assert r.json()["issuer"] == s.issuer
        assert r.json()["jwks_uri"] == s.issuer + "/openid/v1/jwks"
    with pytest.raises(httpx.ConnectError):  # not trusted without the cert
        httpx.get(s.url + "/healthz", verify=True)
    minter = Minter(s)
    try:
        token = minter.mint()
    finally:
        minter.close()
    assert pyjwt_verify(s, token)["iss"] == s.issuer
    # a TLS key/cert mismatch or missing file is a clean config error
    other_cert, _ = self_signed(issuer_factory.tmp_path, "other")
    r = issuer_factory.cli(
        "serve",
        "--data-dir",
        str(s.data_dir),
        "--tls-cert",
        str(other_cert),
        "--tls-key",
        str(key),
        "--listen",
        f"127.0.0.1:{unused_port()}",
    )
    assert_one_error_line(r, "--tls-cert/--tls-key")
    r = issuer_factory.cli("serve", "--data-dir", str(s.data_dir), "--tls-cert", str(cert))
    assert_one_error_line(r, "--tls-key is missing")


# --- rotation with real processes ----------------------------------------------------------


def _jwks(client: httpx.Client, url: str) -> bytes:
    return client.get(url + "/openid/v1/jwks").content


def test_two_replicas_on_redis_rotate_once_per_period(
    issuer_factory: IssuerFactory, redis_url: str
) -> None:
    period = 6.0
    config = {
        "rotation_period": "6s",
        "jwks_max_age": 2,
        "publish_margin": "1s",
        "rotation_check_interval": "0.25s",
    }
    kek = issuer_factory.make_kek()
    a = issuer_factory.start(store=redis_url, kek=kek, config=config, wait=False)
    b = issuer_factory.start(store=redis_url, kek=kek, config=config, wait=False)
    a.wait_ready()
    b.wait_ready()

    # Observe both for ~3 periods; every disagreement between them must heal within 1 s.
    changes: list[float] = []
    disagree_since: float | None = None
    longest = 0.0
    last = None
    with httpx.Client(timeout=5) as client:
        start = time.monotonic()
        while time.monotonic() - start < 3 * period + 0.5:
            ja, jb = _jwks(client, a.url), _jwks(client, b.url)
            now = time.monotonic()
            if ja != jb:
                disagree_since = disagree_since or now
                longest = max(longest, now - disagree_since)
            else:
                disagree_since = None
                if ja != last:
                    changes.append(now - start)
                    last = ja
            time.sleep(0.05)
        assert disagree_since is None or time.monotonic() - disagree_since < 1.0
        final_a, final_b = _jwks(client, a.url), _jwks(client, b.url)
    assert longest < 1.0, f"replicas served different JWKS for {longest:.2f}s"
    assert final_a == final_b

    store = open_store(redis_url, issuer_factory.tmp_path)
    try:
        keys = sorted(store.load_keys().keys, key=lambda k: k.created_at)
    finally:
        store.close()
    created = [k.created_at for k in keys]
    gaps = [b - a for a, b in itertools.pairwise(created)]
    # Bootstrap, then the first successor after period - lead (6 - 3 = 3 s), then exactly one
    # successor per period: ~3 periods observed -> at least 3 successors, none doubled.
    assert len(keys) >= 4, (len(keys), gaps, changes)
    assert 2.4 <= gaps[0] <= 4.0, gaps
    assert all(period - 0.6 <= g <= period + 0.6 for g in gaps[1:]), gaps
    assert [k.state for k in keys].count("active") == 1
    assert len(changes) >= 3, changes  # both replicas moved together through every change
    assert len(json.loads(final_a)["keys"]) == len(keys)  # retired keys stay published (1 h)


def test_kill_9_during_rotations_loses_nothing(issuer_factory: IssuerFactory) -> None:
    config = {
        "rotation_period": "2s",
        "jwks_max_age": 1,
        "publish_margin": "0.5s",
        "rotation_check_interval": "0.1s",
    }
    s = issuer_factory.start(config=config)
    rng = random.Random(1234)
    tokens: list[tuple[str, str]] = []  # (token, kid)
    for _round in range(3):
        minter = Minter(s)
        try:
            deadline = time.monotonic() + rng.uniform(1.5, 3.0)
            while time.monotonic() < deadline:
                t = minter.mint()
                tokens.append((t, jwt.get_unverified_header(t)["kid"]))
                time.sleep(0.05)
        finally:
            minter.close()
        s.kill()  # kill -9, probably mid-rotation
        s.launch()
        s.wait_ready()
        jwks = httpx.get(s.url + "/openid/v1/jwks").json()
        keyset = jwt.PyJWKSet.from_dict(jwks)
        by_kid = {k.key_id: k for k in keyset.keys}
        for token, kid in tokens:
            assert kid in by_kid, f"key {kid} of a minted token is gone after kill -9"
            jwt.decode(
                token, by_kid[kid].key, algorithms=["RS256"], audience=AUDIENCE, issuer=s.issuer
            )
        r = issuer_factory.cli("keys", "list", "--json", "--data-dir", str(s.data_dir))
        assert r.returncode == 0, r.stderr
        states = [k["state"] for k in json.loads(r.stdout)["keys"]]
        assert states.count("active") == 1, states
    assert len({kid for _, kid in tokens}) >= 3  # rotations really happened while minting


@pytest.fixture(autouse=True)
def _no_sa_issuer_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith("SA_ISSUER_"):
            monkeypatch.delenv(k)
    yield


# --- the HTTP fast lane (issuer.http.fastlane) over raw sockets ------------------------------


def _exchange(port: int, raw: bytes, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``raw`` (possibly several pipelined requests) and parse ``n`` responses with h11."""
    import h11

    conn = h11.Connection(h11.CLIENT)
    # h11 parses a stream of responses; tell it about each request so HEAD/304 framing is right.
    methods = [m.group(1) for m in re.finditer(rb"(GET|HEAD|POST) \S+ HTTP/1\.[01]\r\n", raw)]
    out: list[tuple[int, dict[str, str], bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        for i in range(n):
            conn.send(h11.Request(method=methods[i], target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            status, headers, body = 0, {}, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            out.append((status, headers, body))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    return out


def test_fast_lane_matches_asgi_path(issuer_process: IssuerProcess) -> None:
    s = issuer_process
    with s.client() as c:
        jwks = c.get("/openid/v1/jwks")
        disc = c.get("/.well-known/openid-configuration")
    etag = jwks.headers["etag"]
    req = (
        b"GET /openid/v1/jwks HTTP/1.1\r\nHost: x\r\n\r\n"  # fast lane
        b"GET /openid/v1/jwks?via=asgi HTTP/1.1\r\nHost: x\r\n\r\n"  # query: the ASGI path
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/"
        + etag.encode()
        + b"\r\n\r\n"
        b"GET /openid/v1/jwks?x HTTP/1.1\r\nHost: x\r\nIf-None-Match: "
        + etag.encode()
        + b"\r\n\r\n"
        b"POST /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    res = _exchange(s.port, req, 8)
    assert [r[0] for r in res] == [200, 200, 200, 200, 304, 304, 405, 200]

    def headers(h: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in h.items() if k != "date"}

    assert headers(res[0][1]) == headers(res[1][1])  # same headers either way
    assert "date" in res[0][1]
    assert res[0][2] == res[1][2] == jwks.content
    assert res[2][2] == b"ok"
    assert res[3][2] == b"" and res[3][1]["content-length"] == str(len(disc.content))
    assert (
        headers(res[4][1])
        == headers(res[5][1])
        == {
            "etag": etag,
            "cache-control": jwks.headers["cache-control"],
        }
    )
    assert res[6][1]["allow"] == "GET, HEAD"
    assert res[7][2] == disc.content

    # HTTP/1.0 (no keep-alive) and Connection: close are honoured: answer, then close
    for raw in (
        b"GET /openid/v1/jwks HTTP/1.0\r\n\r\n",
        b"GET /openid/v1/jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"\r\nconnection: close" in head.lower()
        assert body == jwks.content
