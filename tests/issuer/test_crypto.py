"""issuer.crypto: Kubernetes kid, public JWKs, the KEK, and signatures checked by PyJWT."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from issuer import crypto
from issuer.crypto import Kek, KekError, Signer

ALGS = ["RS256", "ES256", "ES384", "ES512"]
EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}


@pytest.fixture(scope="module", params=ALGS)
def key(request: pytest.FixtureRequest) -> crypto.PrivateKey:
    return crypto.generate_private_key(request.param)


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _kube_kid(public_key: crypto.PublicKey) -> str:
    # Independent transcription of kube pkg/serviceaccount/jwt.go keyIDFromPublicKey:
    # x509.MarshalPKIXPublicKey -> sha256 -> base64.RawURLEncoding.
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


# --- key generation and kid ------------------------------------------------------------------


def test_generated_key_types() -> None:
    for bits in (2048, 3072):
        k = crypto.generate_private_key("RS256", bits)
        assert isinstance(k, rsa.RSAPrivateKey) and k.key_size == bits
    curves = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
    for alg, curve in curves.items():
        k = crypto.generate_private_key(alg)
        assert isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == curve
        assert crypto.alg_for_key(k) == alg


@pytest.mark.parametrize(
    ("alg", "bits"),
    [("RS256", 1024), ("RS256", 2047), ("RS384", 2048), ("HS256", 2048), ("none", 0)],
)
def test_generate_refuses(alg: str, bits: int) -> None:
    with pytest.raises(ValueError):
        crypto.generate_private_key(alg, bits)


def test_rsa_signs_rs256_only() -> None:
    # kube: RSA keys sign RS256 whatever their size.
    k = crypto.generate_private_key("RS256", 4096)
    assert crypto.alg_for_key(k) == "RS256"
    assert Signer(k).alg == "RS256"


def test_kid_is_kubernetes_key_id(key: crypto.PrivateKey) -> None:
    kid = crypto.kid_for_public_key(key.public_key())
    assert kid == _kube_kid(key.public_key())
    assert len(kid) == 43 and "=" not in kid
    assert Signer(key).kid == kid


def test_kid_agrees_with_verifier(key: crypto.PrivateKey) -> None:
    from verifier.jwk import kid_for_public_key

    assert crypto.kid_for_public_key(key.public_key()) == kid_for_public_key(key.public_key())


def test_kid_known_vector() -> None:
    # A fixed P-256 key: kid computed by hand with openssl-equivalent steps.
    priv = ec.derive_private_key(1, ec.SECP256R1())
    der = priv.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert crypto.kid_for_public_key(priv.public_key()) == expected


# --- public JWK ------------------------------------------------------------------------------


def test_public_jwk_members_and_order(key: crypto.PrivateKey) -> None:
    jwk = crypto.public_jwk(key.public_key())
    if isinstance(key, rsa.RSAPrivateKey):
        assert list(jwk) == ["use", "kty", "kid", "alg", "n", "e"]
        nums = key.public_key().public_numbers()
        n, e = _b64d(jwk["n"]), _b64d(jwk["e"])
        assert n[0] != 0 and e[0] != 0  # minimal big-endian
        assert int.from_bytes(n, "big") == nums.n and int.from_bytes(e, "big") == nums.e
        assert jwk["e"] == "AQAB"
    else:
        assert list(jwk) == ["use", "kty", "kid", "crv", "alg", "x", "y"]
        size = EC_SIZES[jwk["alg"]]
        pn = key.public_key().public_numbers()
        assert len(_b64d(jwk["x"])) == size and len(_b64d(jwk["y"])) == size
        assert int.from_bytes(_b64d(jwk["x"]), "big") == pn.x
        assert int.from_bytes(_b64d(jwk["y"]), "big") == pn.y
    assert jwk["use"] == "sig" and jwk["kid"] == crypto.kid_for_public_key(key.public_key())
    assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk)
    assert all("=" not in v for v in jwk.values())


def test_ec_coordinates_zero_padded() -> None:
    # Find P-256/P-521 keys whose x has a leading zero byte: it must still be full width.
    for alg, curve, size in [("ES256", ec.SECP256R1(), 32), ("ES512", ec.SECP521R1(), 66)]:
        for d in range(1, 5000):
            k = ec.derive_private_key(d, curve)
            if k.public_key().public_numbers().x.bit_length() <= (size - 1) * 8:
                break
        else:  # pragma: no cover
            pytest.fail("no short-x key found")
        jwk = crypto.public_jwk(k.public_key())
        assert jwk["alg"] == alg
        x = _b64d(jwk["x"])
        assert len(x) == size and x[0] == 0


def test_public_jwk_loads_in_pyjwt_and_verifier(key: crypto.PrivateKey) -> None:
    from verifier.jwk import KeySet

    jwk = crypto.public_jwk(key.public_key())
    assert jwt.PyJWK(jwk).key_id == jwk["kid"]
    ks = KeySet.from_jwks({"keys": [jwk]})
    assert jwk["kid"] in ks


# --- KEK -------------------------------------------------------------------------------------


def test_kek_round_trip_and_layout() -> None:
    kek = Kek.generate()
    pkcs8 = crypto.private_key_to_pkcs8(crypto.generate_private_key("ES256"))
    blob = kek.encrypt("kid-1", pkcs8)
    assert pkcs8 not in blob and len(blob) == 12 + len(pkcs8) + 16
    assert kek.decrypt("kid-1", blob) == pkcs8
    assert kek.encrypt("kid-1", pkcs8)[:12] != blob[:12]  # random nonce each time


def test_kek_wrong_key() -> None:
    blob = Kek.generate().encrypt("k", b"secret")
    with pytest.raises(KekError, match="wrong KEK"):
        Kek.generate().decrypt("k", blob)


@pytest.mark.parametrize("where", [0, 12, -1])
def test_kek_tampered_blob(where: int) -> None:
    kek = Kek.generate()
    blob = bytearray(kek.encrypt("k", b"secret-key-bytes"))
    blob[where] ^= 0x01
    with pytest.raises(KekError):
        kek.decrypt("k", bytes(blob))


def test_kek_truncated_blob() -> None:
    with pytest.raises(KekError, match="truncated"):
        Kek.generate().decrypt("k", b"short")


def test_kek_aad_binds_kid() -> None:
    # Swap blobs between two kids: neither decrypts (docs/CONTRACTS.md invariant 4, AAD = kid).
    kek = Kek.generate()
    a, b = kek.encrypt("kid-a", b"key-a"), kek.encrypt("kid-b", b"key-b")
    with pytest.raises(KekError):
        kek.decrypt("kid-a", b)
    with pytest.raises(KekError):
        kek.decrypt("kid-b", a)


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_kek_wrong_length(n: int) -> None:
    with pytest.raises(KekError, match="exactly 32 bytes"):
        Kek(os.urandom(n))
    with pytest.raises(KekError, match="exactly 32 bytes"):
        Kek.from_base64(base64.b64encode(os.urandom(n)).decode())


def test_kek_repr_and_pickle_hide_material() -> None:
    raw = os.urandom(32)
    kek = Kek(raw)
    assert repr(kek) == "Kek(<redacted>)" and str(kek) == "Kek(<redacted>)"
    assert raw.hex() not in repr(kek)
    with pytest.raises(TypeError):
        pickle.dumps(kek)


def test_signer_repr_and_pickle_hide_material() -> None:
    s = Signer(crypto.generate_private_key("ES256"))
    assert repr(s) == f"Signer(kid={s.kid!r}, alg='ES256')"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_load_kek_from_base64_variants() -> None:
    raw = os.urandom(32)
    for text in (
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode() + "\n",
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        kek = crypto.load_kek(text)
        assert kek.decrypt("k", Kek(raw).encrypt("k", b"x")) == b"x"


def test_load_kek_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv("SA_ISSUER_KEK", base64.b64encode(raw).decode())
    assert crypto.load_kek().decrypt("k", Kek(raw).encrypt("k", b"x")) == b"x"
    monkeypatch.delenv("SA_ISSUER_KEK")
    with pytest.raises(KekError, match="SA_ISSUER_KEK"):
        crypto.load_kek()


def test_load_kek_garbage() -> None:
    with pytest.raises(KekError, match="neither an existing file nor usable base64"):
        crypto.load_kek("not base64 !!")
    with pytest.raises(KekError, match="neither"):
        crypto.load_kek("/nonexistent/kek")
    with pytest.raises(KekError, match="empty"):
        crypto.load_kek("  ")


def test_create_and_load_kek_file(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    kek = crypto.create_kek_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes())) == 32
    assert [p.name for p in tmp_path.iterdir()] == ["kek"]  # no temp file left behind
    for source in (path, str(path)):
        loaded = crypto.load_kek(source)
        assert loaded.decrypt("k", kek.encrypt("k", b"x")) == b"x"


def test_create_kek_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        crypto.create_kek_file(path)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["kek"]


def test_create_kek_file_ignores_umask(tmp_path: Path) -> None:
    code = (
        "import os, sys; os.umask(0); from issuer.crypto import create_kek_file; "
        "create_kek_file(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "kek")], check=True)
    assert stat.S_IMODE((tmp_path / "kek").stat().st_mode) == 0o600


def test_load_kek_file_raw_bytes(tmp_path: Path) -> None:
    raw = os.urandom(32)
    path = tmp_path / "kek.bin"
    path.write_bytes(raw)
    path.chmod(0o600)
    assert crypto.load_kek(path).decrypt("k", Kek(raw).encrypt("k", b"x")) == b"x"


@pytest.mark.parametrize("content", [b"", os.urandom(16), base64.b64encode(os.urandom(31))])
def test_load_kek_file_wrong_length(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kek"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KekError, match=str(path)):
        crypto.load_kek(path)


def test_load_kek_file_warns_when_readable_by_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kek"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="issuer.crypto"):
        crypto.load_kek(path)
    assert "chmod 600" in caplog.text
    assert path.read_text().strip() not in caplog.text


def test_load_kek_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KekError, match="cannot read KEK file"):
        crypto.load_kek(tmp_path / "missing")


# --- signing ---------------------------------------------------------------------------------


def test_sign_jwt_verifies_with_pyjwt(key: crypto.PrivateKey) -> None:
    signer = Signer(key)
    claims = {"iss": "https://issuer.example", "sub": "system:serviceaccount:ns:sa", "aud": ["a"]}
    token = signer.sign_jwt(claims)
    pub = jwt.PyJWK(signer.public_jwk()).key
    assert jwt.decode(token, pub, algorithms=[signer.alg], audience="a") == claims
    # ... and a tampered payload does not.
    h, _p, s = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{h}.{forged}.{s}", pub, algorithms=[signer.alg])


def test_sign_jwt_header_is_exactly_alg_and_kid(key: crypto.PrivateKey) -> None:
    signer = Signer(key)
    token = signer.sign_jwt({"a": 1})
    header_b64, payload_b64, sig_b64 = token.split(".")
    # kube: pkg/serviceaccount/jwt.go — header carries only alg and kid.
    assert (
        _b64d(header_b64)
        == json.dumps({"alg": signer.alg, "kid": signer.kid}, separators=(",", ":")).encode()
    )
    assert _b64d(payload_b64) == b'{"a":1}'
    assert "=" not in token
    if signer.alg in EC_SIZES:
        assert len(_b64d(sig_b64)) == 2 * EC_SIZES[signer.alg]  # raw r||s, not DER


def test_sign_is_p1363_fixed_width() -> None:
    s = Signer(crypto.generate_private_key("ES512"))
    for _ in range(20):  # r or s with leading zeros must still be 66 bytes each
        assert len(s.sign(os.urandom(8))) == 132


def test_sign_jwt_verifies_with_verifier_core(key: crypto.PrivateKey) -> None:
    from verifier import KeySet, Policy, verify

    signer = Signer(key)
    claims = {
        "iss": "https://issuer.example",
        "sub": "system:serviceaccount:ns:sa",
        "aud": ["api"],
        "iat": 1000,
        "nbf": 1000,
        "exp": 4600,
        "jti": "j",
        "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
    }
    keys = KeySet.from_jwks({"keys": [signer.public_jwk()]})
    policy = Policy("https://issuer.example", ["api"], algorithms=(signer.alg,))
    ident = verify(signer.sign_jwt(claims), keys, policy, now=2000)
    assert ident.namespace == "ns"


def test_sign_jwt_accepts_any_mapping() -> None:
    from types import MappingProxyType

    s = Signer(crypto.generate_private_key("ES256"))
    token = s.sign_jwt(MappingProxyType({"x": 1}))
    assert _b64d(token.split(".")[1]) == b'{"x":1}'


def test_signer_from_pkcs8_round_trip() -> None:
    k = crypto.generate_private_key("ES384")
    kek = Kek.generate()
    kid = crypto.kid_for_public_key(k.public_key())
    s = Signer.from_pkcs8(kek.decrypt(kid, kek.encrypt(kid, crypto.private_key_to_pkcs8(k))))
    assert s.kid == kid and s.alg == "ES384"


def test_signer_max_token_lifetime_guard() -> None:
    s = Signer(crypto.generate_private_key("ES256"), max_token_lifetime=3600)
    s.sign_jwt({"iat": 1000, "exp": 4600})
    s.sign_jwt({"sub": "legacy token: no exp"})
    with pytest.raises(ValueError, match="max_token_lifetime"):
        s.sign_jwt({"iat": 1000, "exp": 4601})
    with pytest.raises(ValueError, match="max_token_lifetime"):
        s.sign_jwt({"iat": 1000, "exp": "soon"})
