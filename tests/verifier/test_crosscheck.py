"""Differential test: our verifier against PyJWT and panva/jose (node) on one corpus.

Every token of a corpus of valid and mutated tokens (bit flips in each segment, alg swaps, kid
dropped, claims changed and re-signed, re-signed with another key, parser tricks) is checked by
``verify`` / ``KeySet.verify_signature``, by PyJWT (``jwt.decode`` with the same key, algorithms,
audience, issuer, leeway) and by node's ``jose`` (``jwtVerify``; one node process for the whole
corpus). Accept/reject must agree.

Deliberate differences, by corpus tag (asserted: ours rejects; the others may accept):

- ``dup-json``: duplicate JSON member names. PyJWT (``json.loads``) and jose (``JSON.parse``)
  keep the last one; we reject (RFC 7515 §5.2, RFC 8725 §3.9 parser differentials).
- ``lenient-b64``: a segment that is not canonical base64url (non-zero pad bits, padding '=')
  but that a lenient decoder maps to the original bytes. PyJWT and jose decode leniently; we
  follow RFC 7515 §2 / RFC 4648 §3.5 strictly.
- ``typ``: ``typ`` other than JWT. jose/PyJWT ignore ``typ`` unless asked; we enforce it
  (RFC 8725 §3.11).
- ``no-kid``: a token without ``kid``. With a single fitting key, jose (local JWKS) and PyJWT
  (key given) accept; our policy requires a kid (``require_kid``) by default.
- ``exp-string``: PyJWT coerces ``"exp": "1700000000"`` with ``int()``; RFC 7519 §2 NumericDate
  is a JSON number, so we (and jose) reject it.
- ``iat-future``: only we reject a token whose ``iat`` is in the future beyond the leeway
  (as kube does: claims.go "issued in the future"); jose checks ``iat`` only with maxTokenAge.
"""

from __future__ import annotations

import base64
import functools
import json
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from _core_helpers import (
    AUDIENCE,
    ISSUER,
    b64,
    claims,
    ec_key,
    jwk_for,
    kube_kid,
    make_token,
    rsa_key,
)

from verifier import InvalidToken, KeySet, Policy, verify

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
RSA = rsa_key(0)
EC = ec_key("ES256")
OTHER = rsa_key(1)
JWKS = {"keys": [jwk_for(RSA), jwk_for(EC)]}
KEYS = KeySet.from_jwks(JWKS)
ALGS = ["RS256", "ES256"]
LEEWAY = 60
NOW = int(time.time())
POLICY = Policy(ISSUER, [AUDIENCE], algorithms=ALGS, leeway=LEEWAY)


@dataclass
class Case:
    name: str
    token: str
    tags: set[str] = field(default_factory=set)


def _c(**kw: Any) -> dict[str, Any]:
    base = {"exp": NOW + 3600, "iat": NOW - 5, "nbf": NOW - 5}
    base.update(kw)
    return claims(**base)


def _lenient(seg: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(seg.rstrip("=") + "=" * (-len(seg.rstrip("=")) % 4))
    except Exception:
        return None


def _corpus() -> list[Case]:
    rng = random.Random(20240611)
    out: list[Case] = []
    bases = {
        "rs256": make_token(RSA, "RS256", _c()),
        "es256": make_token(EC, "ES256", _c()),
    }
    for bname, tok in bases.items():
        out.append(Case(f"{bname} valid", tok))
        segs = tok.split(".")
        # Bit flips in the decoded bytes of each segment, re-encoded canonically.
        for i, seg in enumerate(segs):
            raw = bytearray(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
            for _ in range(20):
                pos = rng.randrange(len(raw))
                bit = 1 << rng.randrange(8)
                m = bytearray(raw)
                m[pos] ^= bit
                s2 = list(segs)
                s2[i] = b64(bytes(m))
                out.append(Case(f"{bname} flip seg{i} byte{pos} bit{bit}", ".".join(s2)))
        # Character substitutions in the encoded form (may hit pad bits: lenient-b64).
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        for i, seg in enumerate(segs):
            for pos in (0, len(seg) // 2, len(seg) - 1):
                for ch in rng.sample(alphabet, 3):
                    if ch == seg[pos]:
                        continue
                    s2 = list(segs)
                    s2[i] = seg[:pos] + ch + seg[pos + 1 :]
                    tags = {"lenient-b64"} if _lenient(s2[i]) == _lenient(seg) else set()
                    out.append(Case(f"{bname} char seg{i}@{pos}={ch}", ".".join(s2), tags))
        out.append(Case(f"{bname} padded sig", tok + "=" * (-len(segs[2]) % 4 or 0), set()))
        out.append(Case(f"{bname} truncated sig", tok[:-2]))
        out.append(Case(f"{bname} empty sig", ".".join(segs[:2]) + "."))
        # Alg swaps, keeping the original signature.
        for alg in ("RS256", "ES256", "RS384", "PS256", "HS256", "none", "ES512"):
            hdr = json.loads(base64.urlsafe_b64decode(segs[0] + "=" * (-len(segs[0]) % 4)))
            hdr["alg"] = alg
            out.append(
                Case(f"{bname} alg->{alg}", ".".join([b64(json.dumps(hdr).encode()), *segs[1:]]))
            )
    for t in list(out):
        if t.token.endswith("=") and "padded" in t.name:
            t.tags.add("lenient-b64")
    # Claim changes, re-signed with the right key.
    claim_cases: dict[str, tuple[dict[str, Any], set[str]]] = {
        "expired": (_c(exp=NOW - 600), set()),
        "expired within leeway": (_c(exp=NOW - 30), set()),
        "nbf future": (_c(nbf=NOW + 600), set()),
        "nbf within leeway": (_c(nbf=NOW + 30), set()),
        "iat future": (_c(iat=NOW + 600), {"iat-future"}),
        "iss other": (_c(iss="https://evil.example"), set()),
        "iss trailing slash": (_c(iss=ISSUER + "/"), set()),
        "aud other": (_c(aud=["other"]), set()),
        "aud string": (_c(aud=AUDIENCE), set()),
        "aud list with ours": (_c(aud=["x", AUDIENCE]), set()),
        "aud missing": (_c(aud=None), set()),
        "exp missing": (_c(exp=None), set()),
        "exp string": (_c(exp=str(NOW + 3600)), {"exp-string"}),
        "exp float": (_c(exp=NOW + 3600.5), set()),
    }
    for name, (payload, tags) in claim_cases.items():
        payload = {k: v for k, v in payload.items() if v is not None}
        out.append(Case(f"claims {name}", make_token(RSA, "RS256", payload), tags))
        out.append(Case(f"claims {name} es", make_token(EC, "ES256", payload), tags))
    # Keys and headers.
    out += [
        Case("other key, our kid", make_token(OTHER, kid=kube_kid(RSA), payload=_c())),
        Case("other key, own kid", make_token(OTHER, payload=_c())),
        Case("no kid", make_token(RSA, kid=None, payload=_c()), {"no-kid"}),
        Case("no kid es", make_token(EC, "ES256", kid=None, payload=_c()), {"no-kid"}),
        Case("embedded jwk", make_token(OTHER, header={"jwk": jwk_for(OTHER)}, payload=_c())),
        Case("typ JWT", make_token(RSA, header={"typ": "JWT"}, payload=_c())),
        Case("typ at+jwt", make_token(RSA, header={"typ": "at+jwt"}, payload=_c()), {"typ"}),
        Case("crit", make_token(RSA, header={"crit": ["exp"], "exp": 1}, payload=_c())),
        Case("rs256 token with ES kid", make_token(RSA, kid=kube_kid(EC), payload=_c())),
    ]
    # Duplicate members whose LAST value is the acceptable one: lenient parsers accept.
    evil = json.dumps(_c(iss="https://evil.example"), separators=(",", ":")).encode()
    out.append(
        Case(
            "dup iss",
            make_token(RSA, payload=evil[:-1] + b',"iss":"' + ISSUER.encode() + b'"}'),
            {"dup-json"},
        )
    )
    stale = json.dumps(_c(exp=NOW - 999), separators=(",", ":")).encode()
    out.append(
        Case(
            "dup exp",
            make_token(RSA, payload=stale[:-1] + f',"exp":{NOW + 999}}}'.encode()),
            {"dup-json"},
        )
    )
    hdr = f'{{"alg":"none","kid":"{kube_kid(RSA)}","alg":"RS256"}}'.encode()
    out.append(Case("dup alg header", make_token(RSA, raw_header=hdr, payload=_c()), {"dup-json"}))
    return out


@functools.cache
def corpus() -> list[Case]:
    """The corpus, built on first use against the current clock: PyJWT reads the real clock at
    check time (it takes no ``now``), so building it at collection time would let the "within
    leeway" cases drift out of the leeway in a long test run."""
    global NOW
    NOW = int(time.time())
    return _corpus()


def _ours(token: str) -> bool:
    try:
        verify(token, KEYS, POLICY, now=NOW)
    except InvalidToken:
        return False
    return True


def _pyjwt(token: str) -> bool:
    jwks = jwt.PyJWKSet.from_dict(JWKS)
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        # Without a kid, try each key, as PyJWT with a key given directly would ("no-kid" tag).
        candidates = list(jwks.keys) if kid is None else [k for k in jwks.keys if k.key_id == kid]
        for key in candidates:
            try:
                jwt.decode(
                    token,
                    key=key,
                    algorithms=ALGS,
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    leeway=LEEWAY,
                    options={"require": ["exp", "iss", "aud"]},
                )
                return True
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAlgorithmError:
                continue
        return False
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return False


@pytest.fixture(scope="session")
def jose_results() -> dict[int, bool]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the jose cross-check")
    if not (NODE_DIR / "node_modules" / "jose").is_dir():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            check=True,
            capture_output=True,
            timeout=180,
        )
    lines = [
        json.dumps(
            {
                "id": i,
                "token": c.token,
                "jwks": JWKS,
                "algorithms": ALGS,
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "leeway": LEEWAY,
                "now": NOW,
            }
        )
        for i, c in enumerate(corpus())
    ]
    proc = subprocess.run(
        [node, str(NODE_DIR / "jose_verify.mjs")],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=NODE_DIR,
        check=True,
    )
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        out[r["id"]] = r["ok"]
    assert len(out) == len(corpus()), proc.stderr[-2000:]
    return out


# Libraries allowed to disagree per tag (they accept what we reject).
ALLOWED = {
    "dup-json": {"pyjwt", "jose"},
    "lenient-b64": {"pyjwt", "jose"},
    "typ": {"pyjwt", "jose"},
    "no-kid": {"pyjwt", "jose"},
    "iat-future": {"pyjwt", "jose"},
    "exp-string": {"pyjwt"},
}


def test_corpus_is_substantial() -> None:
    assert len(corpus()) > 200
    assert sum(_ours(c.token) for c in corpus()) >= 8  # valid controls present


def test_crosscheck(jose_results: dict[int, bool]) -> None:
    disagreements = []
    for i, case in enumerate(corpus()):
        ours = _ours(case.token)
        others = {"pyjwt": _pyjwt(case.token), "jose": jose_results[i]}
        allowed = set().union(*(ALLOWED[t] for t in case.tags)) if case.tags else set()
        if case.tags:
            assert ours is False, f"{case.name}: tagged {case.tags} but we accepted"
        for lib, res in others.items():
            if res != ours and lib not in allowed:
                disagreements.append(f"{case.name}: ours={ours} {lib}={res}")
    assert not disagreements, "\n".join(disagreements)


def test_tags_are_not_overbroad(jose_results: dict[int, bool]) -> None:
    # Every tag must mark at least one real disagreement, else it documents nothing.
    used: dict[str, int] = {}
    for i, case in enumerate(corpus()):
        if case.tags and (_pyjwt(case.token) or jose_results[i]):
            for t in case.tags:
                used[t] = used.get(t, 0) + 1
    assert set(used) == set(ALLOWED), used


def test_signature_only_path_agrees_with_verify() -> None:
    # Every token verify() accepts passes verify_signature() too, with the same payload.
    for case in corpus():
        if _ours(case.token):
            payload = KEYS.verify_signature(case.token, algorithms=ALGS)
            assert json.loads(payload)["sub"].startswith("system:serviceaccount:")
