"""The pure pieces on their own: Go-style quoting and field errors, name rules, expiration
planning, claim building, pod admission and review decisions (no app, no store)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from issuer.api.admission import admit_pod
from issuer.api.errors import FieldError, invalid
from issuer.api.validation import dns1123_label_errors, dns1123_subdomain_errors
from issuer.crypto import Signer
from issuer.goquote import go_quote, go_quote_list
from issuer.http.status import StatusError
from issuer.review import ReviewSettings, review_token
from issuer.store import NotFound, StoreUnavailable
from issuer.tokens import BoundRef, bound_claims, legacy_claims, plan_expiration
from verifier import KeySet


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("a", '"a"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\tnew\nline", '"tab\\tnew\\nline"'),
        ("\x00", '"\\x00"'),
        ("é", '"é"'),
    ],
)
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


def test_go_quote_list() -> None:
    assert go_quote_list(["a", "b"]) == '["a" "b"]'
    assert go_quote_list([]) == "[]"


def test_field_errors_render_like_go() -> None:
    errs = [
        FieldError("Invalid", "spec.x", 5, "too small"),
        FieldError("Required", "metadata.name", detail="name or generateName is required"),
        FieldError("NotFound", "a", "b"),
    ]
    assert [str(e) for e in errs] == [
        "spec.x: Invalid value: 5: too small",
        "metadata.name: Required value: name or generateName is required",
        'a: Not found: "b"',
    ]
    err = invalid("Pod", "p", errs)
    assert isinstance(err, StatusError) and err.code == 422
    assert err.message.startswith('Pod "p" is invalid: [spec.x: Invalid value: 5: too small, ')
    assert err.details is not None and len(err.details["causes"]) == 3


@pytest.mark.parametrize(
    ("name", "label_ok", "subdomain_ok"),
    [
        ("a", True, True),
        ("a-b", True, True),
        ("a.b", False, True),
        ("A", False, False),
        ("-a", False, False),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("a" * 254, False, False),
        ("a..b", False, False),
    ],
)
def test_dns1123(name: str, label_ok: bool, subdomain_ok: bool) -> None:
    assert (not dns1123_label_errors(name)) is label_ok
    assert (not dns1123_subdomain_errors(name)) is subdomain_ok


SHORTENED_3607 = "requested expiration of 3607 seconds shortened to 3600 seconds"


@pytest.mark.parametrize(
    ("requested", "max_exp", "extended", "pod", "auds", "expect"),
    [
        (3600, 86400, False, True, ["api"], (3600, 3600, 0, "")),
        (
            100_000,
            86400,
            False,
            False,
            ["x"],
            (86400, 86400, 0, "requested expiration of 100000 seconds shortened to 86400 seconds"),
        ),
        (3607, 86400, True, True, ["api"], (3607, 31536000, 3607, "")),
        (3607, 86400, True, True, [], (3607, 31536000, 3607, "")),
        (3607, 86400, True, True, ["api", "x"], (3607, 3607, 0, "")),
        (3607, 3600, True, True, ["api"], (3600, 3600, 0, SHORTENED_3607)),
    ],
)  # fmt: skip
def test_plan_expiration(
    requested: int,
    max_exp: int,
    extended: bool,
    pod: bool,
    auds: list[str],
    expect: tuple[int, int, int, str],
) -> None:
    plan = plan_expiration(
        requested,
        max_expiration=max_exp,
        extended_expiration=extended,
        pod_bound=pod,
        audiences=auds,
        api_audiences=["api"],
    )
    assert (plan.expiration_seconds, plan.exp_seconds, plan.warn_after_seconds, plan.warning) == (
        expect
    )


def test_claims_refuse_two_bindings() -> None:
    plan = plan_expiration(
        3600,
        max_expiration=0,
        extended_expiration=False,
        pod_bound=True,
        audiences=["a"],
        api_audiences=["a"],
    )
    with pytest.raises(ValueError, match="one object type"):
        bound_claims(
            issuer="https://i",
            namespace="ns",
            service_account=BoundRef("sa", "u"),
            audiences=["a"],
            now=100,
            plan=plan,
            jti="j",
            pod=BoundRef("p", "pu"),
            secret=BoundRef("s", "su"),
        )


def test_legacy_claims_shape() -> None:
    assert legacy_claims(namespace="ns", service_account=BoundRef("sa", "u"), secret_name="s") == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "ns",
        "kubernetes.io/serviceaccount/secret.name": "s",
        "kubernetes.io/serviceaccount/service-account.name": "sa",
        "kubernetes.io/serviceaccount/service-account.uid": "u",
        "sub": "system:serviceaccount:ns:sa",
    }


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], **spec}}


def test_admission_without_service_account_is_forbidden() -> None:
    with pytest.raises(StatusError) as err:
        admit_pod(_pod(), "ns", lambda name: None)
    assert err.value.code == 403
    assert err.value.message == (
        'pods "p" is forbidden: error looking up service account ns/default: serviceaccount '
        '"default" not found'
    )


def test_admission_reuses_existing_token_volume() -> None:
    pod = _pod(volumes=[{"name": "kube-api-access-abcde", "projected": {}}])
    admit_pod(pod, "ns", lambda name: {"metadata": {"name": name}}, suffix=lambda: "zzzzz")
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["kube-api-access-abcde"]
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-abcde"


class _Objects:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if self.fail:
            raise StoreUnavailable("down")
        raise NotFound(name)


def _token_and_keys() -> tuple[str, KeySet]:
    signer = Signer(ec.generate_private_key(ec.SECP256R1()))
    claims = bound_claims(
        issuer="https://i",
        namespace="ns",
        service_account=BoundRef("sa", "u"),
        audiences=["a"],
        now=1000,
        plan=plan_expiration(
            3600,
            max_expiration=0,
            extended_expiration=False,
            pod_bound=False,
            audiences=["a"],
            api_audiences=["a"],
        ),
        jti="j",
    )
    return signer.sign_jwt(claims), KeySet.from_jwks({"keys": [signer.public_jwk()]})


def test_review_store_errors_propagate_never_authenticate() -> None:
    token, keys = _token_and_keys()
    kw: dict[str, Any] = {
        "keyset": keys,
        "is_revoked": lambda kid: False,
        "settings": ReviewSettings(issuer="https://i", api_audiences=("a",)),
        "now": 1500,
    }
    with pytest.raises(StoreUnavailable):
        review_token(token, [], objects=_Objects(fail=True), **kw)
    result = review_token(token, [], objects=_Objects(fail=False), **kw)
    assert not result.authenticated
    assert result.error == 'serviceaccounts "sa" not found'
    assert result.reason == "service_account_not_found"
    only_empty = review_token(token, [""], objects=_Objects(fail=False), **kw)
    assert not only_empty.authenticated and only_empty.reason == "audience_mismatch"
