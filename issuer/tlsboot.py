"""A self-signed CA and serving certificate in the data dir, renewed before expiry.

kube-apiserver, given no serving certificate, creates a self-signed CA and a certificate for its
advertised names (apiserver pkg/server/options/serving.go ``MaybeDefaultWithSelfSignedCerts``,
client-go util/cert ``GenerateSelfSignedCertKeyWithFixtures``: a CA valid one year and a serving
certificate signed by it). ``sa-issuer serve`` does the same when its issuer URL is https and no
certificate is configured::

    DATA_DIR/ca.crt      the CA (give it to clients: curl --cacert, sa-verifier --ca-bundle,
                         kubectl's certificate-authority)                       0644
    DATA_DIR/ca.key      the CA's private key                                   0600
    DATA_DIR/tls.crt     serving certificate + CA (the chain)                   0644
    DATA_DIR/tls.key     serving private key                                    0600

The CA lives ten years; the serving certificate one year (as kube's) and is replaced by a new
one from the same CA when a third of its life remains, or when the wanted names changed, so
clients that trust ``ca.crt`` never notice. :class:`ReloadingSSL` makes a running server pick
the new files up without a restart (each TLS handshake's SNI callback swaps in a context built
from the newest files; the files are stat'ed at most once per ``check_interval``).

Pure decisions (:func:`needs_renewal`, :func:`wanted_names`) are separate from the file I/O.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_LIFETIME",
    "SERVING_LIFETIME",
    "ReloadingSSL",
    "TLSFiles",
    "ensure_self_signed",
    "needs_renewal",
    "reloading_context_factory",
    "renew_loop",
    "wanted_names",
]

log = logging.getLogger("sa_issuer.tls")

#: client-go util/cert: the self-signed CA and serving certificates live one year; our CA lives
#: longer so that a serving-certificate renewal never changes what clients trust.
CA_LIFETIME: Final = datetime.timedelta(days=3650)
SERVING_LIFETIME: Final = datetime.timedelta(days=365)
#: Renew when less than this fraction of the serving certificate's life remains.
RENEW_FRACTION: Final = 1 / 3
_ALWAYS: Final = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where the self-signed material lives in a data dir."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, data_dir: Path) -> TLSFiles:
        """The standard names under ``data_dir``."""
        return cls(
            data_dir / "ca.crt", data_dir / "ca.key", data_dir / "tls.crt", data_dir / "tls.key"
        )


def wanted_names(issuer: str, listen_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The SANs the serving certificate needs: the issuer's host, the listen host (unless a
    wildcard address), loopback names, and ``extra`` — deduplicated, in that order."""
    names: list[str] = []
    for n in (urlsplit(issuer).hostname or "", listen_host, *_ALWAYS, *extra):
        n = n.strip("[]")
        if n and n not in ("0.0.0.0", "::") and n not in names:  # noqa: S104 - not a bind
            names.append(n)
    return tuple(names)


def _split(
    names: Sequence[str],
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for n in names:
        try:
            ips.append(ipaddress.ip_address(n))
        except ValueError:
            dns.append(n)
    return dns, ips


def _cert_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out = set(san.get_values_for_type(x509.DNSName))
    out.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return out


def needs_renewal(
    cert: x509.Certificate, names: Sequence[str], now: datetime.datetime
) -> str | None:
    """Why ``cert`` must be replaced now (missing names, or less than a third of its life left),
    or None. Pure."""
    missing = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names} - _cert_names(cert)
    if missing:
        return "it lacks " + ", ".join(sorted(missing))
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end - (end - start) * RENEW_FRACTION:
        return f"it expires at {end.isoformat()}"
    return None


def _is_ip(n: str) -> bool:
    try:
        ipaddress.ip_address(n)
    except ValueError:
        return False
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    # Atomic replace: a reader (a handshake reloading the files) sees the old or the new file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_ca(
    files: TLSFiles, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"sa-oidc-ca@{int(now.timestamp())}")]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files.ca_key, _key_pem(key), 0o600)
    _write(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # Debug: on a first start the serve banner already names the CA (one INFO line per start).
    log.debug("created a self-signed CA in %s", files.ca_cert)
    return cert, key


def _load_ca(
    files: TLSFiles, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not files.ca_cert.exists() or not files.ca_key.exists():
        return _new_ca(files, now)
    cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key}: expected an EC private key")
    if now >= cert.not_valid_after_utc - SERVING_LIFETIME:
        # Too close to its end to sign a full serving certificate: a new CA (clients must be
        # given the new ca.crt; logged loudly).
        log.warning("the self-signed CA %s is near its expiry: replacing it", files.ca_cert)
        return _new_ca(files, now)
    return cert, key


def _new_serving(
    files: TLSFiles,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: datetime.datetime,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _split(names)
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    san += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a reloader that sees the new certificate must find its key.
    _write(files.key, _key_pem(key), 0o600)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    _write(files.cert, chain, 0o644)


def ensure_self_signed(
    data_dir: Path,
    names: Sequence[str],
    now: datetime.datetime | None = None,
) -> tuple[TLSFiles, str | None]:
    """Create or renew the CA and serving certificate in ``data_dir``; return the files and why
    the serving certificate was (re)issued (None = kept)."""
    now = now or datetime.datetime.now(datetime.UTC)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = TLSFiles.in_dir(data_dir)
    ca, ca_key = _load_ca(files, now)
    why: str | None = "none existed"
    if files.cert.exists() and files.key.exists():
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        why = needs_renewal(cert, names, now)
        if why is None and cert.issuer != ca.subject:
            why = "the CA changed"
    if why is not None:
        _new_serving(files, ca, ca_key, names, now)
        # The first certificate is routine (debug); a renewal or a reissue is news.
        level = logging.DEBUG if why == "none existed" else logging.INFO
        log.log(level, "issued a serving certificate for %s (%s)", ", ".join(names), why)
    return files, why


def renew_loop(
    data_dir: Path,
    names: Sequence[str],
    stop: threading.Event,
    interval: float = 3600.0,
) -> None:
    """Check the serving certificate every ``interval`` seconds until ``stop`` is set, renewing
    it when :func:`needs_renewal` says so (run in a daemon thread by ``serve``)."""
    while not stop.wait(interval):
        try:
            ensure_self_signed(data_dir, names)
        except Exception:  # keep serving the current certificate; try again later
            log.exception("renewing the self-signed serving certificate failed")


class ReloadingSSL:
    """Serve the newest ``cert``/``key`` files without a restart.

    :meth:`install` sets an SNI callback on the server's SSLContext; every handshake then runs
    on a context built from the files as they are now (re-read when their mtime or size changed,
    looked at no more than once per ``check_interval`` seconds).
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        configure: Callable[[ssl.SSLContext], None],
        check_interval: float = 5.0,
    ) -> None:
        self.cert, self.key = cert, key
        self._configure = configure
        self._interval = check_interval
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self._current: ssl.SSLContext | None = None

    def _stat(self) -> tuple[float, int, float, int]:
        c, k = self.cert.stat(), self.key.stat()
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def _fresh(self) -> ssl.SSLContext | None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self._interval:
                return self._current
            self._checked = now
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(self.cert, self.key)
                    self._configure(ctx)
                    self._current, self._stamp = ctx, stamp
                    log.info("reloaded the TLS certificate %s", self.cert)
            except (OSError, ssl.SSLError):
                log.exception("reloading the TLS certificate failed; serving the previous one")
            return self._current

    def _sni(
        self, sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        ctx = self._fresh()
        if ctx is not None:
            sock.context = ctx

    def install(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` (the server's context) hand each handshake the newest certificate."""
        ctx.sni_callback = self._sni


def reloading_context_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory``: uvicorn's own context for ``config.ssl_certfile``, made to
    follow changes of the certificate files (:class:`ReloadingSSL`). Module-level so that
    ``--workers`` processes (spawned) can load it; each worker reloads on its own."""
    ctx = default()
    ciphers = config.ssl_ciphers

    def configure(new: ssl.SSLContext) -> None:
        if ciphers:
            new.set_ciphers(ciphers)

    ReloadingSSL(Path(config.ssl_certfile), Path(config.ssl_keyfile), configure).install(ctx)
    return ctx
