"""https out of the box: the self-signed CA and serving certificate (issuer.tlsboot), their
renewal without a restart, the kubeconfig (issuer.kubeconfig) and the ``--tls`` settings.

kube-apiserver's behaviour given no certificate (apiserver pkg/server/options/serving.go
MaybeDefaultWithSelfSignedCerts) is the model: a CA, a serving certificate for the advertised
names, clients told to trust the CA.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509

from issuer import tlsboot
from issuer.config import ConfigError, load_config

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerFactory

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "issuer", "serving"),
    [
        ({}, "https://127.0.0.1:8080", "self-signed"),
        ({"tls": "off"}, "http://127.0.0.1:8080", "off"),
        ({"issuer": "http://127.0.0.1:8080"}, "http://127.0.0.1:8080", "off"),
        # An https issuer with --tls off: a TLS-terminating proxy serves the https.
        ({"issuer": "https://id.example.com", "tls": "off"}, "https://id.example.com", "off"),
        ({"tls": "self-signed"}, "https://127.0.0.1:8080", "self-signed"),
    ],
)
def test_tls_settings(flags: dict[str, str], issuer: str, serving: str) -> None:
    config = load_config(flags, {})
    assert (config.issuer, config.serving_tls) == (issuer, serving)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"tls": "on"}, "must be one of auto, self-signed, off"),
        ({"tls": "off", "tls_cert": "c", "tls_key": "k"}, "--tls off serves plain http"),
        ({"tls": "self-signed", "tls_cert": "c", "tls_key": "k"}, "creates its own certificate"),
        ({"tls_sans": "bad name!"}, "neither an IP address nor a DNS name"),
        ({"issuer": "http://127.0.0.1:8080", "tls": "self-signed"}, "use an https issuer URL"),
    ],
)
def test_tls_settings_refused(flags: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(flags, {})


def test_tls_sans_from_env() -> None:
    config = load_config({}, {"SA_ISSUER_TLS_SANS": "id.example.com, 10.0.0.7"})
    assert config.tls_sans == ("id.example.com", "10.0.0.7")


# --- pure renewal decision ------------------------------------------------------------------------


def test_wanted_names() -> None:
    assert tlsboot.wanted_names("https://id.example.com/t", "0.0.0.0", ["10.0.0.7"]) == (
        "id.example.com",
        "localhost",
        "127.0.0.1",
        "::1",
        "10.0.0.7",
    )


def test_ensure_self_signed_creates_renews_and_keeps(tmp_path: Path) -> None:
    names = ("127.0.0.1", "localhost")
    files, why = tlsboot.ensure_self_signed(tmp_path, names, NOW)
    assert why == "none existed"
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    serving, ca = _cert(files.cert), _cert(files.ca_cert)
    assert serving.issuer == ca.subject and _names(serving) == {"127.0.0.1", "localhost"}
    serving.verify_directly_issued_by(ca)
    assert serving.not_valid_after_utc - serving.not_valid_before_utc > datetime.timedelta(days=364)
    # Unchanged: kept.
    assert tlsboot.ensure_self_signed(tmp_path, names, NOW)[1] is None
    # A new name: a new serving certificate from the same CA.
    _, why = tlsboot.ensure_self_signed(tmp_path, (*names, "id.example.com"), NOW)
    assert why == "it lacks id.example.com"
    assert _cert(files.ca_cert) == ca and "id.example.com" in _names(_cert(files.cert))
    # Two thirds into its life: renewed, well before expiry; the CA stays.
    later = NOW + datetime.timedelta(days=250)
    before = _cert(files.cert).serial_number
    _, why = tlsboot.ensure_self_signed(tmp_path, (*names, "id.example.com"), later)
    assert why is not None and why.startswith("it expires at")
    assert _cert(files.cert).serial_number != before and _cert(files.ca_cert) == ca
    assert tlsboot.needs_renewal(_cert(files.cert), names, later) is None


# --- serve --------------------------------------------------------------------------------------


def _peer_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_serve_defaults_to_https_with_a_kubeconfig(issuer_factory: IssuerFactory) -> None:
    s = issuer_factory.start(self_signed=True, extra_args=["--tls-sans", "id.example.com"])
    ca = s.data_dir / "ca.crt"
    # One INFO line, with the CA and the kubeconfig; creating them is no news (docs/CONTRACTS.md).
    assert s.stdout() == ""
    [line] = s.stderr().splitlines()
    assert line.startswith("sa-issuer: INFO: serving issuer https://"), line
    assert f"CA {ca}" in line and f"kubeconfig {s.data_dir / 'kubeconfig'}" in line
    with s.client() as c:
        assert c.get("/.well-known/openid-configuration").json()["issuer"] == s.issuer
    with pytest.raises(httpx.ConnectError):  # untrusted without the CA
        httpx.get(s.url + "/healthz")
    assert {"id.example.com", "127.0.0.1", "localhost", "::1"} <= _names(
        _cert(s.data_dir / "tls.crt")
    )
    kubeconfig_path = s.data_dir / "kubeconfig"
    assert stat.S_IMODE(kubeconfig_path.stat().st_mode) == 0o600
    kubeconfig = json.loads(kubeconfig_path.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster == {"server": s.issuer, "certificate-authority": str(ca.absolute())}
    user = kubeconfig["users"][0]["user"]
    assert user == {"tokenFile": str((s.data_dir / "admin-token").absolute())}
    assert s.admin_token not in kubeconfig_path.read_text()

    # Renewal without a restart: a new serving certificate (same CA) written beside the
    # running server is served to new connections within the reload interval.
    first = _peer_serial(s.port, ca)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from issuer import tlsboot; "
            "tlsboot.ensure_self_signed(pathlib.Path(sys.argv[1]), sys.argv[2:])",
            str(s.data_dir),
            "127.0.0.1",
            "localhost",
            "::1",
            "id.example.com",
            "renewed.example",
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("SA_ISSUER_")},
        check=True,
        timeout=30,
    )
    new = _cert(s.data_dir / "tls.crt").serial_number
    assert new != first
    deadline = time.monotonic() + 15
    while _peer_serial(s.port, ca) != new:
        assert time.monotonic() < deadline, "the renewed certificate was not picked up"
        time.sleep(0.5)
    assert s.proc is not None and s.proc.poll() is None


def test_https_issuer_with_tls_off_is_plain_http_behind_a_proxy(
    issuer_factory: IssuerFactory,
) -> None:
    s = issuer_factory.start(issuer="https://issuer.example.com")
    assert s.url.startswith("http://")
    with s.client() as c:
        assert c.get("/readyz").status_code == 200
    assert not (s.data_dir / "ca.crt").exists()
    kubeconfig = json.loads((s.data_dir / "kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"] == {"server": "https://issuer.example.com"}


def test_kubeconfig_with_several_admin_tokens(issuer_factory: IssuerFactory) -> None:
    """client-go sends a tokenFile whole: with two admin tokens the kubeconfig names a one-token
    companion file (0600) holding the first."""
    data_dir = issuer_factory.tmp_path / "multi"
    data_dir.mkdir(mode=0o700)
    first, second = "a" * 32, "b" * 32
    (data_dir / "admin-token").write_text(f"{first}\n{second}\n")
    (data_dir / "admin-token").chmod(0o600)
    s = issuer_factory.start(data_dir=data_dir, self_signed=True)
    user = json.loads((s.data_dir / "kubeconfig").read_text())["users"][0]["user"]
    companion = s.data_dir / "kubeconfig-token"
    assert user == {"tokenFile": str(companion.absolute())}
    assert companion.read_text() == f"{first}\n"
    assert stat.S_IMODE(companion.stat().st_mode) == 0o600
