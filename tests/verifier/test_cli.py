"""``sa-verifier verify``: exit codes 0/1/2/3 against a real issuer stand-in on loopback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jwks_server import AUDIENCE, JWKSServer, rsa_key, token_for

from verifier.cli import main


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    srv.keys = [rsa_key()]
    with srv:
        yield srv


def args(srv: JWKSServer, *extra: str) -> list[str]:
    return [
        "verify",
        *extra,
        "--issuer",
        srv.issuer,
        "--audience",
        AUDIENCE,
        "--insecure-allow-http",
    ]


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_valid_token_exit_0_human_line(
    server: JWKSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = token_for(server, rsa_key(), namespace="prod", name="billing")
    assert main(args(server, token)) == 0
    out, err = capsys.readouterr()
    assert out.startswith(
        "valid: system:serviceaccount:prod:billing "
        "(pod app-7d9f uid 5f1c0a6e-2c1b-4a57-9d6c-3c1f6e0f0a01), expires in 59m"
    )
    assert token not in out + err


def test_json_prints_the_identity(server: JWKSServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args(server, token_for(server, rsa_key()), "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["username"] == "system:serviceaccount:default:app"
    assert doc["serviceAccount"] == {"name": "app", "uid": "9b1e4a2d-1f0c-4c3b-8f5e-2a7d6c5b4e03"}
    assert doc["pod"]["name"] == "app-7d9f"
    assert doc["audiences"] == [AUDIENCE]
    assert doc["issuer"] == server.issuer
    assert doc["keyId"] == rsa_key().kid
    assert set(doc) >= {"groups", "extra", "expiresAt", "tokenId", "namespace"}


def test_stdin_and_token_file(
    server: JWKSServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    token = token_for(server, rsa_key())
    feed_stdin(monkeypatch, b"  " + token.encode() + b"\n\n")
    assert main(args(server, "-")) == 0
    path = tmp_path / "token"
    path.write_text(token + "\n")
    assert main(args(server, "--token-file", str(path))) == 0
    assert token not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"audiences": ["someone-else"]}, "audience_mismatch"),
        ({"kid": "not-published"}, "unknown_key"),
        ({"ttl": -3600}, "expired"),
    ],
)
def test_invalid_token_exit_1_reason_on_stderr(
    server: JWKSServer, capsys: pytest.CaptureFixture[str], kw: dict[str, object], reason: str
) -> None:
    token = token_for(server, rsa_key(), **kw)  # type: ignore[arg-type]
    assert main(args(server, token)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"invalid token: {reason}: ")
    assert token not in err


def test_oversize_stdin_is_token_too_large(
    server: JWKSServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_stdin(monkeypatch, b"a" * 200_000)
    assert main(args(server, "-")) == 1
    assert capsys.readouterr().err.startswith("invalid token: token_too_large")


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--issuer", "https://i.test", "--audience", "a"],  # no token
        ["verify", "tok", "--issuer", "https://i.test"],  # no audience
        ["verify", "tok", "--audience", "a"],  # oidc needs an issuer
        ["verify", "tok", "--issuer", "http://i.test", "--audience", "a"],  # http, no flag
        ["verify", "tok", "--issuer", "https://i.test", "--audience", "a", "--mode", "x"],
        ["verify", "tok", "--token-file", "f", "--issuer", "https://i.test", "--audience", "a"],
        [
            "verify",
            "--token-file",
            "/nonexistent/t",
            "--issuer",
            "https://i.test",
            "--audience",
            "a",
        ],
        ["verify", "tok", "--issuer", "https://i.test", "--audience", "a", "--mode", "tokenreview"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_unavailable_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    down = JWKSServer()  # never started
    assert main(args(down, token_for(down, rsa_key()))) == 3
    err = capsys.readouterr().err
    assert err.startswith("unavailable: cannot verify tokens from issuer")
    assert err.count("\n") == 1  # one line: the fetch warning is not repeated


def test_tokenreview_mode(
    server: JWKSServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.review_status = {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:default:app",
            "uid": "9b1e4a2d-1f0c-4c3b-8f5e-2a7d6c5b4e03",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:default"],
            "extra": {"authentication.kubernetes.io/pod-name": ["app-7d9f"]},
        },
        "audiences": [AUDIENCE],
    }
    cred = tmp_path / "cred"
    cred.write_text("reviewer-credential\n")
    argv = [*args(server, token_for(server, rsa_key())), "--mode", "tokenreview"]
    argv += ["--review-url", server.url, "--bearer-token-file", str(cred)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("valid: system:serviceaccount:default:app")
    assert server.counts["tokenreview"] == 1


def test_console_script_reads_stdin(server: JWKSServer) -> None:
    token = token_for(server, rsa_key())
    proc = subprocess.run(
        [sys.executable, "-m", "verifier.cli", *args(server, "-"), "--json"],
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["namespace"] == "default"
    assert token not in proc.stdout + proc.stderr


def test_http_issuer_without_flag_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["verify", "tok", "--issuer", "http://issuer.test", "--audience", "a"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--insecure-allow-http" in err
    assert "insecure_allow_http=True" not in err
