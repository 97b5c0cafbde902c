"""Fixtures for the multi-issuer tests (tests/multi/).

- ``jwks``: tests/verifier/jwks_server.py (a discovery + JWKS server on a real loopback socket, TLS
  with a self-signed certificate here, since kube accepts only https issuers).
- ``issuer_factory``: tests/issuer/conftest.py (real ``sa-issuer serve`` subprocesses).
- ``tls``: (cert, key) of a self-signed certificate for 127.0.0.1; ``tls_pem`` its PEM text.
- ``write_config``: writes an AuthenticationConfiguration (YAML text) to a file in tmp_path.

Helper modules of other directories are loaded by path under private names (tests/ is not a
package), as tests/security/conftest.py does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import _serve_fixtures
import pytest

TESTS = Path(__file__).resolve().parents[1]


serve_fixtures = _serve_fixtures.load()
issuer_factory = serve_fixtures.issuer_factory
jwks_module = _serve_fixtures.load_module(
    "_multi_jwks_server", TESTS / "verifier" / "jwks_server.py"
)


@pytest.fixture
def jwks() -> ModuleType:
    """The tests/verifier/jwks_server.py module."""
    return jwks_module


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate (CA:true) for 127.0.0.1 and its key."""
    d = tmp_path / "tls"
    d.mkdir()
    return jwks_module.self_signed_tls(d)  # type: ignore[no-any-return]


@pytest.fixture
def tls_pem(tls: tuple[Path, Path]) -> str:
    """The certificate of ``tls`` as PEM text (for ``certificateAuthority``)."""
    return tls[0].read_text()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to tmp_path/authn.yaml (replacing it atomically) and return the path."""
    path = tmp_path / "authn.yaml"

    def write(text: str) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    return write
