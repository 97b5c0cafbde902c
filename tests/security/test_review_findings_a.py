"""Outside review (issue 9), items 1, 5, 6 and 13, against a real ``sa-issuer serve`` process.

Item 1: ``create secrets`` alone must not yield another service account's legacy token.
Item 4: a revocation outlives every window in which the token could still be accepted.
Item 5: hybrid's TokenReview fallback keeps the offline path's legacy-token policy.
Item 6: a token revocation whose ``expirationTimestamp`` is in the past is refused (422).
Item 13: ``sa-issuer keys revoke`` takes a kid that starts with ``-``.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from issuer import crypto, revocations
from issuer.store import StoredKey, open_store
from issuer.timefmt import rfc3339
from verifier._stream import StreamFollower
from verifier.errors import InvalidToken
from verifier.hybrid import HybridVerifier
from verifier.identity import ServiceAccountIdentity
from verifier.remote import OIDCVerifier
from verifier.tokenreview import TokenReviewVerifier

NS = "team"
SA_TOKEN = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"


class Admin:
    """The admin token's API calls (setup and checks) on one issuer process."""

    def __init__(self, p: Any) -> None:
        self.p = p
        self.c: httpx.Client = p.client(headers={"Authorization": f"Bearer {p.admin_token}"})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.c.post(path, json=body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def namespace_with(self, *accounts: str) -> None:
        self.post("/api/v1/namespaces", {"metadata": {"name": NS}})
        for name in accounts:
            self.post(f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": name}})

    def grant(self, account: str, verbs: list[str]) -> None:
        """A Role on secrets with ``verbs``, bound to ``account``."""
        name = f"{account}-secrets"
        self.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles",
            {
                "metadata": {"name": name},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}],
            },
        )
        self.post(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}],
            },
        )

    def api_token(self, account: str) -> str:
        """A token of ``account`` for the API audiences (the TokenRequest default)."""
        out = self.post(f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token", {"spec": {}})
        token: str = out["status"]["token"]
        return token

    def close(self) -> None:
        self.c.close()


@pytest.fixture
def served(issuer_factory: Any) -> Iterator[Any]:
    yield issuer_factory.start()


def _token_secret(name: str, account: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {SA_NAME: account}},
        "type": SA_TOKEN,
    }


def _legacy_token(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["token"]).decode()


# --- item 1 ---------------------------------------------------------------------------------------
def test_create_secrets_alone_does_not_return_another_accounts_token(served: Any) -> None:
    admin = Admin(served)
    admin.namespace_with("attacker", "deployer", "powerful")
    admin.grant("attacker", ["create"])
    admin.grant("deployer", ["create", "get"])
    attacker = {"Authorization": f"Bearer {admin.api_token('attacker')}"}
    deployer = {"Authorization": f"Bearer {admin.api_token('deployer')}"}
    path = f"/api/v1/namespaces/{NS}/secrets"
    try:
        with served.client(headers=attacker) as c:
            r = c.post(path, json=_token_secret("steal", "powerful"))
            assert r.status_code == 201, r.text
            created = r.json()
            assert "token" not in created.get("data", {}), "the 201 body holds the token"
            assert "reading it needs get on this Secret" in r.headers.get("warning", "")
            # Reading it back is the permission kube requires; the attacker lacks it.
            assert c.get(f"{path}/steal").status_code == 403
        # The Secret was filled all the same: a caller who may read it sees a working token.
        stored = admin.c.get(f"{path}/steal").json()
        token = _legacy_token(stored)
        review = TokenReviewVerifier(
            served.url, served.admin_token, [served.issuer], insecure_allow_http=True
        )
        try:
            ident = review.verify(token)
            assert ident.service_account_name == "powerful" and ident.legacy
        finally:
            review.close()
        # A caller who may get the Secret receives the token in the 201, as before.
        with served.client(headers=deployer) as c:
            r = c.post(path, json=_token_secret("mine", "deployer"))
            assert r.status_code == 201, r.text
            assert _legacy_token(r.json()).count(".") == 2
            assert "reading it needs get" not in r.headers.get("warning", "")
        r = admin.c.post(path, json=_token_secret("by-admin", "powerful"))
        assert r.status_code == 201 and "token" in r.json()["data"]
    finally:
        admin.close()


def test_a_token_secret_created_by_apply_holds_its_token_only_for_a_reader(served: Any) -> None:
    """Server-side apply creates a missing object too: the same rule as POST."""
    admin = Admin(served)
    admin.namespace_with("applier", "powerful")
    admin.grant("applier", ["patch"])
    applier = {"Authorization": f"Bearer {admin.api_token('applier')}"}
    url = f"/api/v1/namespaces/{NS}/secrets/applied"
    body = {"apiVersion": "v1", "kind": "Secret", **_token_secret("applied", "powerful")}
    apply = {"Content-Type": "application/apply-patch+yaml"}
    try:
        with served.client(headers=applier) as c:
            r = c.patch(url, params={"fieldManager": "t"}, json=body, headers=apply)
            assert r.status_code == 201, r.text
            assert "token" not in r.json().get("data", {})
            assert "reading it needs get on this Secret" in r.headers.get("warning", "")
        assert _legacy_token(admin.c.get(url).json()).count(".") == 2
    finally:
        admin.close()


# --- item 5 ---------------------------------------------------------------------------------------
def test_hybrid_tokenreview_fallback_refuses_legacy_tokens_as_offline_does(served: Any) -> None:
    admin = Admin(served)
    admin.namespace_with("app")
    try:
        legacy = _legacy_token(
            admin.post(f"/api/v1/namespaces/{NS}/secrets", _token_secret("legacy", "app"))
        )
        audiences = [served.issuer]  # legacy tokens are valid for the API audiences
        # TokenReview alone accepts it (as kube's webhook does) and now says what it is.
        review = TokenReviewVerifier(
            served.url, served.admin_token, audiences, insecure_allow_http=True
        )
        try:
            ident = review.verify(legacy)
            assert ident.legacy and ident.expires_at is None
        finally:
            review.close()
        # Offline: refused (Policy.allow_legacy is False).
        hybrid = HybridVerifier(
            served.issuer, audiences, bearer_token=served.admin_token, insecure_allow_http=True
        )
        try:
            assert hybrid.wait_synced(10)
            with pytest.raises(InvalidToken) as offline_refusal:
                hybrid.verify(legacy)
        finally:
            hybrid.close()
        # Offline unavailable (discovery/JWKS unreachable): the TokenReview fallback must refuse
        # it for the same reason, not accept it as a non-legacy token.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        offline = OIDCVerifier(dead, audiences, insecure_allow_http=True, timeout=1.0)
        hybrid = HybridVerifier(
            served.issuer,
            audiences,
            bearer_token=served.admin_token,
            offline=offline,
            insecure_allow_http=True,
        )
        try:
            assert hybrid.wait_synced(10)
            with pytest.raises(InvalidToken) as fallback_refusal:
                hybrid.verify(legacy)
            assert hybrid.calls == 1  # it did ask TokenReview
            assert fallback_refusal.value.reason == offline_refusal.value.reason
            assert fallback_refusal.value.reason == "issuer_mismatch"
            # A bound token still passes through the same fallback.
            bound = admin.api_token("app")
            ident = hybrid.verify(bound)
            assert ident.service_account_name == "app" and not ident.legacy
        finally:
            hybrid.close()
            offline.close()
    finally:
        admin.close()


# --- item 6 ---------------------------------------------------------------------------------------
def _revocation(jti: str, exp: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"jti": jti}
    if exp is not None:
        spec["expirationTimestamp"] = rfc3339(exp)
    return {"apiVersion": "sa-oidc.dev/v1", "kind": "TokenRevocation", "spec": spec}


def test_revocation_with_a_past_expiration_is_refused_and_stores_nothing(served: Any) -> None:
    admin = Admin(served)
    admin.namespace_with("app")
    token = admin.api_token("app")
    review = TokenReviewVerifier(
        served.url, served.admin_token, [served.issuer], insecure_allow_http=True
    )
    try:
        jti = review.verify(token).token_id
        assert jti
        r = admin.c.post("/apis/sa-oidc.dev/v1/tokenrevocations", json=_revocation(jti, 1e9))
        assert r.status_code == 422, r.text
        status = r.json()
        assert status["kind"] == "Status" and status["reason"] == "Invalid"
        assert status["details"]["name"] == jti
        assert status["details"]["group"] == "sa-oidc.dev"
        assert status["details"]["kind"] == "TokenRevocation"
        [cause] = status["details"]["causes"]
        assert cause["field"] == "spec.expirationTimestamp"
        assert cause["reason"] == "FieldValueInvalid"
        assert "must be in the future" in status["message"]
        # Nothing stored: no event, and the token still authenticates.
        events = admin.c.get("/apis/sa-oidc.dev/v1/invalidations").json()["items"]
        assert [e for e in events if e.get("type") == "TokenRevoked"] == []
        assert review.verify(token).token_id == jti
        # The token's real exp (in the future) is accepted and revokes it.
        exp = review.verify(token).expires_at
        assert exp is not None
        r = admin.c.post("/apis/sa-oidc.dev/v1/tokenrevocations", json=_revocation(jti, exp))
        assert r.status_code == 201, r.text
        with pytest.raises(InvalidToken) as refused:
            review.verify(token)
        assert refused.value.reason == "revoked"
    finally:
        review.close()
        admin.close()


# --- item 13 --------------------------------------------------------------------------------------
def _key_with_dash_kid() -> tuple[crypto.PrivateKey, str]:
    """A real ES256 key whose kid (base64url SHA-256 of the SPKI) starts with '-' (1 in 64)."""
    for _ in range(5000):
        key = crypto.generate_private_key("ES256")
        kid = crypto.kid_for_public_key(key.public_key())
        if kid.startswith("-"):
            return key, kid
    raise AssertionError("no kid starting with '-' in 5000 keys")  # p < 1e-34


def _add_retired_key(p: Any, key: crypto.PrivateKey, kid: str) -> None:
    """Store ``key`` as a retired (still published) key of the issuer ``p``, sealed under its
    KEK, as another replica's rotation would."""
    kek = crypto.load_kek_file(p.data_dir / "kek")
    store = open_store(f"sqlite:///{p.data_dir / 'issuer.db'}", p.data_dir)
    try:
        state = store.load_keys()
        now = time.time()
        retired = StoredKey(
            kid=kid,
            alg="ES256",
            state="retired",
            public_jwk=crypto.public_jwk(key.public_key(), kid),
            private_enc=kek.encrypt(kid, crypto.private_key_to_pkcs8(key)),
            created_at=now - 60,
            activate_at=now - 60,
            retired_at=now - 30,
            remove_at=now + 86400,
            max_token_lifetime=state.keys[0].max_token_lifetime,
        )
        store.cas_keys(state.version, (*state.keys, retired))
    finally:
        store.close()


def _published_kids(p: Any) -> set[str]:
    with p.client() as c:
        return {k["kid"] for k in c.get("/openid/v1/jwks").json()["keys"]}


@pytest.mark.parametrize("form", ["bare", "double-dash", "option"])
def test_keys_revoke_takes_a_kid_starting_with_a_dash(
    issuer_factory: Any, served: Any, form: str
) -> None:
    key, kid = _key_with_dash_kid()
    _add_retired_key(served, key, kid)
    deadline = time.monotonic() + 5
    while kid not in _published_kids(served):
        assert time.monotonic() < deadline, "the issuer did not publish the added key"
        time.sleep(0.05)
    args = {"bare": [kid], "double-dash": ["--", kid], "option": [f"--kid={kid}"]}[form]
    done = issuer_factory.cli("keys", "revoke", "--data-dir", str(served.data_dir), *args)
    assert done.returncode == 0, done.stderr
    assert f"key {kid} revoked" in done.stdout
    deadline = time.monotonic() + 5
    while kid in _published_kids(served):  # removed from the served JWKS at once
        assert time.monotonic() < deadline, "the revoked key is still published"
        time.sleep(0.05)


def test_keys_revoke_usage_errors(issuer_factory: Any, served: Any) -> None:
    data = ["--data-dir", str(served.data_dir)]
    for args in ([], ["a", "--kid=b"]):
        done = issuer_factory.cli("keys", "revoke", *data, *args)
        assert done.returncode == 2 and "give the kid once" in done.stderr
    done = issuer_factory.cli("keys", "revoke", *data, "-" + "A" * 42)
    assert done.returncode == 1 and "no key with kid '-AAAA" in done.stderr


# --- item 4 ---------------------------------------------------------------------------------------
def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def _revoked_token(admin: Admin) -> tuple[str, dict[str, Any]]:
    """A token of ``app`` revoked by jti with its real exp."""
    admin.namespace_with("app")
    token = admin.api_token("app")
    claims = _claims(token)
    r = admin.c.post(
        "/apis/sa-oidc.dev/v1/tokenrevocations", json=_revocation(claims["jti"], claims["exp"])
    )
    assert r.status_code == 201, r.text
    return token, claims


def test_a_revocation_outlives_the_longest_leeway(served: Any) -> None:
    """Between exp+60 and exp+600 a verifier with leeway=600 still accepts the token offline:
    its revocation must still be known on both sides — the issuer's upkeep must not prune it,
    and a follower must not drop it."""
    admin = Admin(served)
    try:
        token, claims = _revoked_token(admin)
        later = claims["exp"] + 300.0  # past exp+60, within exp+600
        shift = later - time.time()
        # Issuer side: another replica's upkeep at that moment keeps the revocation.
        store = open_store(f"sqlite:///{served.data_dir / 'issuer.db'}", served.data_dir)
        try:
            done = revocations.upkeep(store, retention=86400, holder="other-replica", now=later)
            assert done is not None and done["pruned"] == 0
            assert revocations.is_token_revoked(store, claims["jti"])
        finally:
            store.close()
        # Follower side: a follower living at that moment keeps the jti.
        follower = StreamFollower(
            served.url, served.admin_token, wall_clock=lambda: time.time() + shift
        )
        follower.start()
        try:
            assert follower.wait_synced(10)
            ident = ServiceAccountIdentity(NS, "app", token_id=claims["jti"])
            assert follower.why_invalid(ident) == "token revoked"
        finally:
            follower.close()
        # And end to end: hybrid with leeway=600 at that moment refuses it, offline accepted it.
        offline = OIDCVerifier(
            served.issuer,
            [served.issuer],
            leeway=600,
            insecure_allow_http=True,
            clock=lambda: time.time() + shift,
        )
        assert offline.verify(token).token_id == claims["jti"]  # within exp + 600
        hybrid = HybridVerifier(
            served.issuer,
            [served.issuer],
            bearer_token=served.admin_token,
            offline=offline,
            wall_clock=lambda: time.time() + shift,
            insecure_allow_http=True,
        )
        try:
            assert hybrid.wait_synced(10) and hybrid.leeway == 600
            with pytest.raises(InvalidToken) as refused:
                hybrid.verify(token)
            assert refused.value.reason == "revoked" and hybrid.calls == 0
        finally:
            hybrid.close()
            offline.close()
    finally:
        admin.close()


def test_hybrid_does_not_trust_a_stream_kept_shorter_than_its_leeway(issuer_factory: Any) -> None:
    short = issuer_factory.start(config={"retention_leeway": "60s"})
    admin = Admin(short)
    try:
        admin.namespace_with("app")
        token = admin.api_token("app")
        meta = admin.c.get("/apis/sa-oidc.dev/v1/invalidations").json()["metadata"]
        assert meta["retentionLeeway"] == 60.0
        for leeway, fresh in ((60, True), (600, False)):
            hybrid = HybridVerifier(
                short.issuer,
                [short.issuer],
                bearer_token=short.admin_token,
                leeway=leeway,
                insecure_allow_http=True,
            )
            try:
                assert hybrid.wait_synced(10)
                assert wait_for(lambda h=hybrid: h.status().retention_leeway == 60.0)
                assert hybrid.verify(token).service_account_name == "app"
                assert hybrid.is_fresh() is fresh
                # Not fresh: every check asks TokenReview (on_stale="tokenreview").
                assert hybrid.calls == (0 if fresh else 1)
            finally:
                hybrid.close()
    finally:
        admin.close()


def wait_for(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
