"""Published test vectors: Project Wycheproof (C2SP, testvectors_v1) and RFC examples.

Vectors live in ``tests/vectors/`` (byte-identical to upstream; origin, commits, licences and
the known-defective cases are in ``tests/vectors/SOURCES.md``); a missing file is a hard failure,
never a skip.

Deliberate differences from the labels (each asserted, not skipped):

- HMAC (HS256/384/512) groups: this verifier never accepts HMAC (RFC 8725 §3.1-3.2: a public
  verifier holding a shared secret could mint tokens; HS/RS confusion, CVE-2015-9235). Their
  ``valid`` cases are asserted REJECTED with ``unsupported_algorithm``; a JWKS carrying a symmetric
  ``k`` is refused as a whole (KeySetError). The HMAC vectors are still used to test our strict
  JWS *parsing* (base64url, segments, header JSON): :func:`test_wycheproof_jws_parsing_with_hmac`
  feeds them through ``parse_compact`` and checks the MAC in the test itself.
- RSASSA-PSS (PS256/384/512) groups: PS* is not on our algorithm list (kube signs RS256 and ES*),
  so ``valid`` cases are asserted REJECTED with ``unsupported_algorithm``.
- RFC 7520 ES512 groups (tcIds 347, 351): Wycheproof gave the RFC key ``"alg": "ES521"``, which is
  not a registered JWS algorithm (RFC 7518 §3.1 has ES512). Keys with an unknown ``alg`` are
  skipped (RFC 7517 §5), so the token reads ``unknown_key``. The signature itself is checked
  valid with the same key minus its bogus ``alg``.
- ``acceptable`` cases (RSA tcId 8 "MissingNull"): we reject them (strict).

Known-defective Wycheproof cases (SOURCES.md), overridden BY tcId with the reason:
357/367/370 carry byte-identical JWS and are all treated as valid (C2SP/wycheproof#236);
372/373 have a '?' inside a base64url segment and are expected invalid (RFC 7515 §2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import InvalidToken, KeySet, KeySetError, Policy, verify
from verifier._b64 import b64url_decode
from verifier.jwk import PublicKey
from verifier.jws import parse_compact
from verifier.policy import SUPPORTED_ALGORITHMS

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
WYCHEPROOF = VECTORS / "wycheproof" / "c2sp-wycheproof_testvectors_v1"
ALL_ALGS = tuple(sorted(SUPPORTED_ALGORITHMS))

# tcId -> (result we expect, why) for the known defects listed in SOURCES.md.
JWS_OVERRIDES = {
    357: ("valid", "byte-identical to 367/370; C2SP/wycheproof#236"),
    367: ("valid", "byte-identical to 357 (labelled valid); C2SP/wycheproof#236"),
    370: ("valid", "byte-identical to 357 (labelled valid); C2SP/wycheproof#236"),
    372: ("invalid", "'?' inside a base64url segment; strict RFC 7515 §2 rejects"),
    373: ("invalid", "'?' inside a base64url segment; strict RFC 7515 §2 rejects"),
}
# RFC 7520 keys that Wycheproof labelled with the unregistered alg "ES521".
ES521_KEY_TCIDS = {347, 351}


def test_vectors_directory_exists() -> None:
    assert VECTORS.is_dir(), f"test vectors missing: {VECTORS} (see tests/vectors/SOURCES.md)"
    assert (WYCHEPROOF / "json_web_signature_test.json").is_file()


def _load(name: str) -> dict[str, Any]:
    path = WYCHEPROOF / name
    if not path.is_file():  # fail loudly, never skip
        raise FileNotFoundError(f"test vector file missing: {path}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _cases(name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for group in _load(name)["testGroups"]:
        for test in group["tests"]:
            yield group, test


def _outcome(fn: Any) -> str:
    """'valid' or the InvalidToken reason / 'keyset_error'."""
    try:
        fn()
    except InvalidToken as exc:
        return exc.reason
    except KeySetError:
        return "keyset_error"
    return "valid"


# --- json_web_signature_test.json ----------------------------------------------------------------

JWS_CASES = list(_cases("json_web_signature_test.json"))


def _group_key(group: dict[str, Any]) -> dict[str, Any]:
    return group.get("public") or group["private"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("group", "test"), JWS_CASES, ids=[f"tc{t['tcId']}-{g['comment']}" for g, t in JWS_CASES]
)
def test_wycheproof_json_web_signature(group: dict[str, Any], test: dict[str, Any]) -> None:
    tc = test["tcId"]
    expected = JWS_OVERRIDES.get(tc, (test["result"], ""))[0]
    jwk = _group_key(group)

    def run() -> None:
        keys = KeySet.from_jwks({"keys": [jwk]})
        keys.verify_signature(test["jws"], algorithms=ALL_ALGS)

    got = _outcome(run)
    kty = jwk.get("kty")
    if kty == "oct":
        # Deliberate: HMAC is never accepted; a JWKS with a secret "k" is refused outright.
        assert got == "keyset_error", (tc, got)
        return
    alg_in_token = _header_alg(test["jws"])
    if expected == "valid" and alg_in_token is not None and alg_in_token.startswith("PS"):
        # Deliberate: RSASSA-PSS is not on our list.
        assert got == "unsupported_algorithm", (tc, got)
        return
    if expected == "valid" and tc in ES521_KEY_TCIDS:
        # Deliberate: key alg "ES521" is unregistered -> key skipped -> unknown_key. The
        # signature itself is valid with the key's alg removed:
        assert got == "unknown_key", (tc, got)
        fixed = {k: v for k, v in jwk.items() if k != "alg"}
        payload = KeySet.from_jwks({"keys": [fixed]}).verify_signature(test["jws"], ALL_ALGS)
        assert payload
        return
    if expected == "valid":
        assert got == "valid", (tc, test["comment"], got)
    else:
        assert got != "valid", (tc, test["comment"])


def _header_alg(jws: str) -> str | None:
    try:
        return json.loads(b64url_decode(jws.split(".")[0])).get("alg")  # type: ignore[no-any-return]
    except Exception:
        return None


HMAC_CASES = [(g, t) for g, t in JWS_CASES if _group_key(g).get("kty") == "oct"]


@pytest.mark.parametrize(
    ("group", "test"), HMAC_CASES, ids=[f"tc{t['tcId']}-{g['comment']}" for g, t in HMAC_CASES]
)
def test_wycheproof_jws_parsing_with_hmac(group: dict[str, Any], test: dict[str, Any]) -> None:
    """Our strict compact-JWS parser against the HMAC vectors (MAC computed here, in the test).

    These groups exercise base64url strictness and segment structure (tcIds 357-377); the MAC is
    test-side because the verifier itself never does HMAC.
    """
    tc = test["tcId"]
    expected = JWS_OVERRIDES.get(tc, (test["result"], ""))[0]
    key = b64url_decode(_group_key(group)["k"])
    try:
        parsed = parse_compact(test["jws"])
        alg = parsed.header.alg
        if alg not in ("HS256", "HS384", "HS512"):
            raise InvalidToken("unsupported_algorithm")
        mac = hmac.HMAC(key, {"2": hashes.SHA256, "3": hashes.SHA384, "5": hashes.SHA512}[alg[2]]())
        mac.update(parsed.signing_input)
        ok = constant_time.bytes_eq(mac.finalize(), parsed.signature)
    except InvalidToken:
        ok = False
    assert ok == (expected == "valid"), (tc, test["comment"])


# --- json_web_key_test.json ----------------------------------------------------------------------

JWK_CASES = list(_cases("json_web_key_test.json"))


@pytest.mark.parametrize(
    ("group", "test"), JWK_CASES, ids=[f"tc{t['tcId']}-{g['comment']}" for g, t in JWK_CASES]
)
def test_wycheproof_json_web_key(group: dict[str, Any], test: dict[str, Any]) -> None:
    keyset = group.get("public") or group["private"]

    def run() -> None:
        KeySet.from_jwks(keyset).verify_signature(test["jws"], algorithms=ALL_ALGS)

    got = _outcome(run)
    has_secret = any("k" in k for k in keyset["keys"])
    if test["result"] == "valid" and has_secret:
        # Deliberate: HMAC key sets are refused (module docstring).
        assert got == "keyset_error", (test["tcId"], got)
    elif test["result"] == "valid":
        assert got == "valid", (test["tcId"], test["comment"], got)
    else:
        assert got != "valid", (test["tcId"], test["comment"])


# --- ECDSA P1363 (raw r||s, exactly the JWS ES* format) -------------------------------------------

ECDSA_FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": ("ES256", ec.SECP256R1()),
    "ecdsa_secp384r1_sha384_p1363_test.json": ("ES384", ec.SECP384R1()),
    "ecdsa_secp521r1_sha512_p1363_test.json": ("ES512", ec.SECP521R1()),
}


def _ecdsa_key(group: dict[str, Any], curve: ec.EllipticCurve, alg: str) -> PublicKey:
    pk = group["publicKey"]
    nums = ec.EllipticCurvePublicNumbers(int(pk["wx"], 16), int(pk["wy"], 16), curve)
    key = PublicKey(nums.public_key(), kid="k", alg=alg)
    if "publicKeyJwk" in group:
        # The JWK path builds the same key (RFC 7518 §6.2.1).
        from_jwk = PublicKey.from_jwk(group["publicKeyJwk"])
        assert from_jwk.key.public_numbers() == nums  # type: ignore[comparison-overlap]
    return key


@pytest.mark.parametrize("name", sorted(ECDSA_FILES))
def test_wycheproof_ecdsa_p1363(name: str) -> None:
    alg, curve = ECDSA_FILES[name]
    data = _load(name)
    counts = {"valid": 0, "invalid": 0}
    for group in data["testGroups"]:
        key = _ecdsa_key(group, curve, alg)
        for t in group["tests"]:
            ok = key.verify(alg, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]))
            expected = t["result"] == "valid"  # "acceptable" -> we reject (strict)
            assert ok == expected, (name, t["tcId"], t["comment"], t["flags"])
            counts[t["result"]] = counts.get(t["result"], 0) + 1
    assert counts["valid"] > 100 and counts["invalid"] > 50


def test_wycheproof_rsa_pkcs1_sha256() -> None:
    data = _load("rsa_signature_2048_sha256_test.json")
    seen = 0
    for group in data["testGroups"]:
        key = PublicKey.from_jwk(group["keyJwk"])
        assert "RS256" in key.algorithms
        for t in group["tests"]:
            ok = key.verify("RS256", bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]))
            expected = t["result"] == "valid"  # tcId 8 MissingNull "acceptable" -> reject
            assert ok == expected, (t["tcId"], t["comment"], t["flags"])
            seen += 1
    assert seen == data["numberOfTests"]


# --- rfc_examples.json ---------------------------------------------------------------------------


def _rfc_examples() -> list[dict[str, Any]]:
    path = VECTORS / "rfc_examples.json"
    if not path.is_file():
        raise FileNotFoundError(f"test vector file missing: {path}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


RFC = _rfc_examples()


@pytest.mark.parametrize("entry", RFC, ids=[e["name"] for e in RFC])
def test_rfc_examples(entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    compact = entry["compact"]
    alg = entry["alg"]
    jwk = entry["jwk"]
    if compact is None:
        # JSON serialization only: a compact-only verifier refuses it as malformed.
        doc = entry.get("json") or entry.get("json_general")
        assert expected == "valid-if-json-serialization-supported"
        token = doc if isinstance(doc, str) else json.dumps(doc)
        got = _outcome(lambda: KeySet.from_jwks({"keys": []}).verify_signature(token, ALL_ALGS))
        assert got == "malformed"
        return
    if jwk is None or not isinstance(jwk, dict) or "kty" not in jwk:
        keys_doc: dict[str, Any] = {"keys": []} if not isinstance(jwk, dict) else jwk
    else:
        keys_doc = {"keys": [jwk]}

    def run() -> bytes:
        return KeySet.from_jwks(keys_doc).verify_signature(compact, algorithms=ALL_ALGS)

    got = _outcome(run)
    if expected == "valid" and alg in SUPPORTED_ALGORITHMS:
        assert got == "valid", (entry["name"], got)
        payload = run()
        assert payload == entry["expected_payload"].encode("utf-8")
        if payload.startswith(b"{"):
            # RFC 7515 payloads carry exp=1300819380 (2011): full verification says "expired".
            keys = KeySet.from_jwks(keys_doc)
            policy = Policy("joe", ["any"], algorithms=(alg,), require_kid=False)
            with pytest.raises(InvalidToken) as exc:
                verify(compact, keys, policy)
            assert exc.value.reason == "expired"
            # Pinned clock before exp: signature and time pass; these are not kube tokens.
            with pytest.raises(InvalidToken) as exc:
                verify(compact, keys, policy, now=1300819380 - 3600)
            assert exc.value.reason == "missing_claim"  # no aud (RFC 7519 §4.1.3, required here)
    elif expected == "valid":
        # Deliberate: HS*, PS*, EdDSA are not accepted by this verifier.
        assert got in ("unsupported_algorithm", "keyset_error"), (entry["name"], got)
    elif expected == "invalid":
        assert got in ("unsupported_algorithm", "malformed"), (entry["name"], got)
    else:
        # valid-only-with-detached-payload / invalid-unless-rfc7797-supported
        assert got != "valid", (entry["name"], got)


def test_wycheproof_vector_counts() -> None:
    # Guard against silently shrinking inputs.
    assert len(JWS_CASES) == 401
    assert len(JWK_CASES) == 26
    assert len(RFC) == 20
