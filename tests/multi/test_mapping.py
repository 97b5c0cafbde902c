"""Claims → user with kube's JWT authenticator semantics (pure: no network, no clock).

Each row: a ``jwt[0]`` fragment, verified claims, and the expected user or refusal message
(kube: staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go, getUsername /
getGroups / getUID / getExtra / required claims / checkValidationRulesEvaluation).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
import yaml

from verifier import InvalidToken
from verifier.authconfig import Authenticator, UserInfo, parse_authentication_config

SUB = {"sub": "jane"}


def authenticator(**jwt: Any) -> Authenticator:
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1beta1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{"issuer": {"url": "https://idp.example", "audiences": ["api"]}, **jwt}],
    }
    return parse_authentication_config(yaml.safe_dump(doc)).authenticators[0]


def by_claim(claim: str = "sub", prefix: str = "") -> dict[str, Any]:
    return {"username": {"claim": claim, "prefix": prefix}}


def by_expr(expression: str) -> dict[str, Any]:
    return {"username": {"expression": expression}}


ACCEPTED: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("claim+prefix", {"claimMappings": by_claim(prefix="oidc:")}, SUB, {"username": "oidc:jane"}),
    ("claim, empty prefix", {"claimMappings": by_claim()}, SUB, {"username": "jane"}),
    (
        "email, email_verified true",
        {"claimMappings": by_claim("email")},
        {"email": "j@x.example", "email_verified": True},
        {"username": "j@x.example"},
    ),
    (
        "email without email_verified",
        {"claimMappings": by_claim("email")},
        {"email": "j@x.example"},
        {"username": "j@x.example"},
    ),
    (
        "groups claim: one string is one group (kube #33290)",
        {"claimMappings": {**by_claim(), "groups": {"claim": "role", "prefix": "idp:"}}},
        {**SUB, "role": "admin"},
        {"username": "jane", "groups": ["idp:admin"]},
    ),
    (
        "groups claim absent: no groups",
        {"claimMappings": {**by_claim(), "groups": {"claim": "groups", "prefix": ""}}},
        SUB,
        {"username": "jane"},
    ),
    (
        "groups expression: empty strings dropped, null is none",
        {
            "claimMappings": {
                **by_claim(),
                "groups": {"expression": '["a", "", claims.sub]'},
                "extra": [
                    {"key": "example.com/none", "valueExpression": "null"},
                    {"key": "example.com/empty", "valueExpression": '""'},
                    {"key": "example.com/list", "valueExpression": '["x", "y"]'},
                ],
            }
        },
        SUB,
        {"username": "jane", "groups": ["a", "jane"], "extra": {"example.com/list": ["x", "y"]}},
    ),
    (
        "uid by claim and by expression; optional syntax",
        {
            "claimMappings": {
                **by_expr("claims.?preferred_username.orValue(claims.sub)"),
                "uid": {"claim": "oid"},
            }
        },
        {**SUB, "oid": "0001"},
        {"username": "jane", "uid": "0001"},
    ),
    (
        "required claim and rules pass; user rule sees groups and extra",
        {
            "claimMappings": {
                **by_claim(),
                "groups": {"expression": '["dev"]'},
                "extra": [{"key": "example.com/t", "valueExpression": '"t1"'}],
            },
            "claimValidationRules": [
                {"claim": "hd", "requiredValue": "x.example"},
                {"expression": "claims.exp - claims.iat <= 3600", "message": "too long"},
            ],
            "userValidationRules": [
                {"expression": "'dev' in user.groups && 'example.com/t' in user.extra"}
            ],
        },
        {**SUB, "hd": "x.example", "iat": 100, "exp": 3700},
        {"username": "jane", "groups": ["dev"], "extra": {"example.com/t": ["t1"]}},
    ),
]

REFUSED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "username claim missing",
        {"claimMappings": by_claim()},
        {},
        'oidc: parse username claims "sub": claim not present',
    ),
    (
        "username claim not a string",
        {"claimMappings": by_claim()},
        {"sub": 7},
        'oidc: parse username claims "sub": claim is not a string',
    ),
    (
        "email not verified",
        {"claimMappings": by_claim("email")},
        {"email": "j@x.example", "email_verified": False},
        "oidc: email not verified",
    ),
    (
        "email_verified not a boolean",
        {"claimMappings": by_claim("email")},
        {"email": "j@x.example", "email_verified": "true"},
        "oidc: parse 'email_verified' claim: claim is not a boolean",
    ),
    (
        "username expression not a string",
        {"claimMappings": by_expr("claims.n")},
        {"n": 1},
        "oidc: error evaluating username claim expression: username claim expression must "
        "return a string",
    ),
    (
        "username expression empty",
        {"claimMappings": by_expr('""')},
        {},
        "oidc: empty username via CEL expression is not allowed",
    ),
    (
        "username expression error",
        {"claimMappings": by_expr("claims.nope")},
        {},
        "oidc: error evaluating username claim expression: expression 'claims.nope' resulted in "
        "error: ",
    ),
    (
        "groups claim of numbers",
        {"claimMappings": {**by_claim(), "groups": {"claim": "g", "prefix": ""}}},
        {**SUB, "g": [1]},
        'oidc: parse groups claim "g": not a string or list of strings',
    ),
    (
        "groups expression of numbers",
        {"claimMappings": {**by_claim(), "groups": {"expression": "[1, 2]"}}},
        SUB,
        "oidc: error evaluating group claim expression: expression must return a string or a "
        "list of strings",
    ),
    (
        "uid claim not a string",
        {"claimMappings": {**by_claim(), "uid": {"claim": "oid"}}},
        {**SUB, "oid": 5},
        'oidc: parse uid claim "oid": claim is not a string',
    ),
    (
        "uid expression not a string",
        {"claimMappings": {**by_claim(), "uid": {"expression": "claims.oid"}}},
        {**SUB, "oid": 5},
        "oidc: error evaluating uid claim expression: uid claim expression must return a string",
    ),
    (
        "extra of a map",
        {
            "claimMappings": {
                **by_claim(),
                "extra": [{"key": "example.com/m", "valueExpression": "{'a': 'b'}"}],
            }
        },
        SUB,
        "oidc: error evaluating extra claim expression: {'a': 'b'}: expression must return a "
        "string or a list of strings",
    ),
    (
        "required claim missing",
        {
            "claimMappings": by_claim(),
            "claimValidationRules": [{"claim": "hd", "requiredValue": "x"}],
        },
        SUB,
        "oidc: required claim hd not present in ID token",
    ),
    (
        "required claim differs (the token's value is not printed)",
        {
            "claimMappings": by_claim(),
            "claimValidationRules": [{"claim": "hd", "requiredValue": "x"}],
        },
        {**SUB, "hd": "secret-tenant"},
        "oidc: required claim hd value does not match. want = x",
    ),
    (
        "claim rule false",
        {
            "claimMappings": by_claim(),
            "claimValidationRules": [{"expression": "claims.sub != 'jane'", "message": "no jane"}],
        },
        SUB,
        "oidc: error evaluating claim validation expression: validation expression "
        "'claims.sub != 'jane'' failed: no jane",
    ),
    (
        "user rule false",
        {
            "claimMappings": by_claim(prefix="system:"),
            "userValidationRules": [
                {"expression": "!user.username.startsWith('system:')", "message": "reserved"}
            ],
        },
        SUB,
        "oidc: error evaluating user info validation rule: validation expression "
        "'!user.username.startsWith('system:')' failed: reserved",
    ),
    (
        "mapping errors come before claim rules (kube's order)",
        {
            "claimMappings": by_claim(),
            "claimValidationRules": [{"expression": "false", "message": "never"}],
        },
        {},
        'oidc: parse username claims "sub": claim not present',
    ),
]


@pytest.mark.parametrize(
    ("jwt", "claims", "user"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted(jwt: dict[str, Any], claims: dict[str, Any], user: dict[str, Any]) -> None:
    got = authenticator(**jwt).user_for(claims)
    assert got.to_dict() == {"uid": "", "groups": [], "extra": {}, **user}


@pytest.mark.parametrize(
    ("jwt", "claims", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused(jwt: dict[str, Any], claims: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidToken) as err:
        authenticator(**jwt).user_for(claims)
    assert err.value.reason == "invalid_claim"
    assert err.value.detail.startswith(message), err.value.detail
    assert "secret-tenant" not in err.value.detail


def test_same_verified_payload_maps_once() -> None:
    a = authenticator(claimMappings=by_expr('claims.sub + ":x"'))
    payload = b'{"sub":"jane"}'
    first = a.user_for({"sub": "jane"}, payload)
    assert first == UserInfo("jane:x")
    assert a.user_for({"sub": "jane"}, payload) is first  # the cached mapping
    assert a.user_for({"sub": "joe"}, b'{"sub":"joe"}').username == "joe:x"
    # read-only claims (as in Authenticated.claims) map the same
    assert a.user_for(MappingProxyType({"sub": "jo"})).username == "jo:x"
