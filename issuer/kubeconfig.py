"""``DATA_DIR/kubeconfig``: kubectl (and every client-go / official-client tool) pointed at this
issuer with no other setup: ``KUBECONFIG=.sa-issuer/kubeconfig kubectl get sa -A``.

The file is kube's ``Config`` (client-go tools/clientcmd/api/v1 types.go): one cluster (server =
the issuer URL, trusting ``certificate-authority`` — the self-signed CA, or the configured
certificate when it is self-issued; system roots otherwise), one user whose bearer token is read
from the admin token file by reference (``tokenFile``; a file of several tokens gets a one-token
companion, :func:`kubectl_token_file`, as client-go sends a token file whole), one context,
current. Written atomically with mode 0600 on every ``serve`` start, so it follows a
changed issuer URL or CA. Pure rendering (:func:`render`) is separate from writing (:func:`write`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import orjson
from cryptography import x509

__all__ = ["CLUSTER", "kubectl_token_file", "render", "self_issued", "write"]

#: The cluster, user and context name in the file.
CLUSTER: Final = "sa-oidc"
_USER: Final = "sa-oidc-admin"


def render(server: str, token_file: Path, ca_file: Path | None) -> bytes:
    """The kubeconfig document (JSON is YAML; client-go reads either). Paths are absolute."""
    cluster: dict[str, str] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file.absolute())
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": _USER, "user": {"tokenFile": str(token_file.absolute())}}],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": _USER}}],
        "current-context": CLUSTER,
        "preferences": {},
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def self_issued(cert_file: Path) -> bool:
    """Whether the first certificate in ``cert_file`` is its own issuer (so trusting it as a CA
    works); False when it cannot be read."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.issuer == cert.subject


def kubectl_token_file(admin_token_file: Path, tokens: tuple[str, ...], data_dir: Path) -> Path:
    """The file the kubeconfig names: the admin token file itself when it holds one token.
    client-go sends a ``tokenFile``'s whole (trimmed) content as the token, so with several
    tokens (one per line, for rotation) it gets ``DATA_DIR/kubeconfig-token`` (0600), holding
    the first one, rewritten on every start."""
    if len(tokens) == 1:
        return admin_token_file
    path = data_dir / "kubeconfig-token"
    _atomic_0600(path, tokens[0].encode() + b"\n")
    return path


def _atomic_0600(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write(path: Path, server: str, token_file: Path, ca_file: Path | None) -> None:
    """Write the kubeconfig at ``path`` (mode 0600, atomic replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_0600(path, render(server, token_file, ca_file))
