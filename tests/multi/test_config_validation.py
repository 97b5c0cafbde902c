"""Configurations kube-apiserver refuses are refused here, with kube's messages.

Messages are those of kube's validation.go (staging/src/k8s.io/apiserver/pkg/apis/apiserver/
validation/validation.go) rendered as apimachinery's ``field.Error`` does
(``<path>: <type>: <value>: <detail>``); several errors read as ``[a, b]`` (utilerrors aggregate).
Nothing here touches the network: validation and CEL compilation are pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from verifier.authconfig import (
    AuthConfigError,
    load_authentication_config,
    parse_authentication_config,
)

DATA = Path(__file__).resolve().parent / "data"


def config(**jwt: Any) -> str:
    """A valid one-issuer configuration with ``jwt[0]`` fields replaced/added."""
    base: dict[str, Any] = {
        "issuer": {"url": "https://issuer.example", "audiences": ["api"]},
        "claimMappings": {"username": {"claim": "sub", "prefix": ""}},
    }
    for key, value in jwt.items():
        if key == "issuer":
            base["issuer"] = {**base["issuer"], **value}
        else:
            base[key] = value
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [base],
    }
    return yaml.safe_dump(doc)


USER = {"username": {"expression": "claims.sub"}}

REFUSED: list[tuple[str, str, list[str]]] = [
    (
        "http-url",
        config(issuer={"url": "http://issuer.example"}),
        ['jwt[0].issuer.url: Invalid value: "http://issuer.example": URL scheme must be https'],
    ),
    (
        "url-userinfo-query-fragment",
        config(issuer={"url": "https://u:p@issuer.example/?a=b#c"}),
        [
            'jwt[0].issuer.url: Invalid value: "https://u:p@issuer.example/?a=b#c": URL must not '
            "contain a username or password",
            'jwt[0].issuer.url: Invalid value: "https://u:p@issuer.example/?a=b#c": URL must not '
            "contain a query",
            'jwt[0].issuer.url: Invalid value: "https://u:p@issuer.example/?a=b#c": URL must not '
            "contain a fragment",
        ],
    ),
    ("missing-url", config(issuer={"url": ""}), ["jwt[0].issuer.url: Required value"]),
    (
        "discovery-equals-url",
        config(issuer={"discoveryURL": "https://issuer.example/"}),
        [
            'jwt[0].issuer.discoveryURL: Invalid value: "https://issuer.example/": discoveryURL '
            "must be different from URL"
        ],
    ),
    (
        "no-audiences",
        config(issuer={"audiences": []}),
        [
            "jwt[0].issuer.audiences: Required value: at least one jwt[0].issuer.audiences is "
            "required"
        ],
    ),
    (
        "two-audiences-without-matchany",
        config(issuer={"audiences": ["a", "b"]}),
        [
            'jwt[0].issuer.audienceMatchPolicy: Invalid value: "": audienceMatchPolicy must be '
            "MatchAny for multiple audiences"
        ],
    ),
    (
        "duplicate-audience",
        config(issuer={"audiences": ["a", "a"], "audienceMatchPolicy": "MatchAny"}),
        ['jwt[0].issuer.audiences[1]: Duplicate value: "a"'],
    ),
    (
        "bad-match-policy-single",
        config(issuer={"audienceMatchPolicy": "MatchAll"}),
        [
            'jwt[0].issuer.audienceMatchPolicy: Invalid value: "MatchAll": audienceMatchPolicy '
            "must be empty or MatchAny for single audience"
        ],
    ),
    (
        "bad-ca",
        config(issuer={"certificateAuthority": "not a certificate"}),
        [
            'jwt[0].issuer.certificateAuthority: Invalid value: "<omitted>": data does not '
            "contain any valid RSA or ECDSA certificates"
        ],
    ),
    (
        "username-claim-without-prefix",
        config(claimMappings={"username": {"claim": "sub"}}),
        [
            "jwt[0].claimMappings.username.prefix: Required value: prefix is required when claim "
            "is set. It can be set to an empty string to disable prefixing"
        ],
    ),
    (
        "username-missing",
        config(claimMappings={"groups": {"claim": "g", "prefix": ""}}),
        ["jwt[0].claimMappings.username: Required value: claim or expression is required"],
    ),
    (
        "prefix-with-expression",
        config(claimMappings={"username": {"expression": "claims.sub", "prefix": "x:"}}),
        [
            'jwt[0].claimMappings.username.prefix: Invalid value: "x:": may not be specified '
            "when expression is set"
        ],
    ),
    (
        "email-without-email-verified",
        config(claimMappings={"username": {"expression": "claims.email"}}),
        [
            'jwt[0].claimMappings.username.expression: Invalid value: "claims.email": '
            "claims.email_verified must be used in claimMappings.username.expression or "
            "claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when "
            "claims.email is used in claimMappings.username.expression"
        ],
    ),
    (
        "cel-syntax-error",
        config(claimMappings={"username": {"expression": "claims.sub +"}}),
        [
            'jwt[0].claimMappings.username.expression: Invalid value: "claims.sub +": '
            "compilation failed: ERROR: <input>:1:13: Syntax error:"
        ],
    ),
    (
        "validation-rule-not-bool",
        config(claimMappings=USER, claimValidationRules=[{"expression": "claims.hd"}]),
        [
            'jwt[0].claimValidationRules[0].expression: Invalid value: "claims.hd": must '
            "evaluate to bool"
        ],
    ),
    (
        "rule-claim-and-expression",
        config(
            claimMappings=USER,
            claimValidationRules=[{"claim": "hd", "expression": "true", "message": "m"}],
        ),
        [
            'jwt[0].claimValidationRules[0]: Invalid value: "hd": claim and expression can\'t '
            "both be set"
        ],
    ),
    (
        "rule-claim-with-message",
        config(
            claimMappings=USER,
            claimValidationRules=[{"claim": "hd", "requiredValue": "x", "message": "m"}],
        ),
        [
            'jwt[0].claimValidationRules[0].message: Invalid value: "m": may not be specified when '
            "claim is set"
        ],
    ),
    (
        "duplicate-rule-expression",
        config(
            claimMappings=USER,
            claimValidationRules=[{"expression": "true"}, {"expression": "true"}],
        ),
        ['jwt[0].claimValidationRules[1].expression: Duplicate value: "true"'],
    ),
    (
        "extra-key-reserved-uppercase-not-prefixed",
        config(
            claimMappings={
                **USER,
                "extra": [
                    {"key": "kubernetes.io/x", "valueExpression": "claims.sub"},
                    {"key": "example.com/Tenant", "valueExpression": "claims.sub"},
                    {"key": "tenant", "valueExpression": "claims.sub"},
                    {"key": "example.com/t", "valueExpression": ""},
                ],
            }
        ),
        [
            'jwt[0].claimMappings.extra[0].key: Invalid value: "kubernetes.io/x": k8s.io, '
            "kubernetes.io and their subdomains are reserved for Kubernetes use",
            'jwt[0].claimMappings.extra[1].key: Invalid value: "example.com/Tenant": must be '
            "lowercase",
            'jwt[0].claimMappings.extra[2].key: Invalid value: "tenant": must be a '
            'domain-prefixed path (such as "acme.io/foo")',
            "jwt[0].claimMappings.extra[3].valueExpression: Required value",
        ],
    ),
    (
        "user-rule-not-bool",
        config(claimMappings=USER, userValidationRules=[{"expression": "user.username"}]),
        [
            'jwt[0].userValidationRules[0].expression: Invalid value: "user.username": must '
            "evaluate to bool"
        ],
    ),
    (
        "unknown-field",
        config(issuer={"clientID": "x"}),
        ['strict decoding error: unknown field "jwt[0].issuer.clientID"'],
    ),
    (
        "egress-selector",
        config(issuer={"egressSelectorType": "internet"}),
        [
            'jwt[0].issuer.egressSelectorType: Invalid value: "internet": egress selector must '
            "be either controlplane or cluster"
        ],
    ),
]


@pytest.mark.parametrize(("text", "errors"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_kube_refuses_so_do_we(text: str, errors: list[str]) -> None:
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(text)
    assert len(err.value.errors) == len(errors), err.value.errors
    for got, want in zip(err.value.errors, errors, strict=True):
        assert got.startswith(want), (got, want)
    text_of = str(err.value)
    if len(errors) == 1:
        assert text_of == err.value.errors[0]
    else:
        assert text_of == "[" + ", ".join(err.value.errors) + "]"  # utilerrors aggregate


def test_the_annotated_documentation_example_is_refused_as_kube_refuses_it() -> None:
    # The long "CAUTION: this is an example configuration" file of the documentation sets claim
    # AND expression for username, groups and uid, and placeholders for the CA and egress type.
    with pytest.raises(AuthConfigError) as err:
        load_authentication_config(DATA / "annotated-example.yaml")
    assert err.value.errors == (
        'jwt[0].issuer.certificateAuthority: Invalid value: "<omitted>": data does not contain '
        "any valid RSA or ECDSA certificates",
        'jwt[0].issuer.egressSelectorType: Invalid value: "<egress-selector-type>": egress '
        "selector must be either controlplane or cluster",
        'jwt[0].claimMappings.username: Invalid value: "": claim and expression can\'t both be set',
        'jwt[0].claimMappings.groups: Invalid value: "": claim and expression can\'t both be set',
        'jwt[0].claimMappings.uid: Invalid value: "": claim and expression can\'t both be set',
    )


def test_duplicate_issuers_and_too_many() -> None:
    doc = yaml.safe_load(config())
    doc["jwt"].append(doc["jwt"][0])
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(yaml.safe_dump(doc))
    assert str(err.value) == 'jwt[1].issuer.url: Duplicate value: "https://issuer.example"'
    doc["jwt"] = [
        {**doc["jwt"][0], "issuer": {"url": f"https://i{n}.example", "audiences": ["a"]}}
        for n in range(65)
    ]
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(yaml.safe_dump(doc))
    assert str(err.value) == "jwt: Too many: 65: must have at most 64 items"


def test_disallowed_issuer_version_kind_and_yaml() -> None:
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(config(), disallowed_issuers=["https://issuer.example"])
    assert str(err.value) == (
        'jwt[0].issuer.url: Invalid value: "https://issuer.example": URL must not overlap with '
        "disallowed issuers: [https://issuer.example]"
    )
    for version in ("apiserver.config.k8s.io/v2", "v1", None):
        text = config().replace("apiserver.config.k8s.io/v1", str(version))
        with pytest.raises(AuthConfigError, match='no kind "AuthenticationConfiguration"'):
            parse_authentication_config(text)
    with pytest.raises(AuthConfigError, match="error converting YAML to JSON"):
        parse_authentication_config("jwt: [")
    with pytest.raises(AuthConfigError, match="larger than"):
        parse_authentication_config(b"#" * (1024 * 1024 + 1))


def test_both_versions_and_zero_authenticators_load() -> None:
    for version in ("v1beta1", "v1"):
        text = config().replace("apiserver.config.k8s.io/v1", f"apiserver.config.k8s.io/{version}")
        loaded = parse_authentication_config(text)
        assert loaded.api_version == f"apiserver.config.k8s.io/{version}"
        assert [a.issuer_url for a in loaded.authenticators] == ["https://issuer.example"]
    empty = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
    assert parse_authentication_config(empty).authenticators == ()  # kube allows 0


def test_anonymous_is_validated_as_kube_does_and_otherwise_ignored() -> None:
    doc = yaml.safe_load(config())
    doc["anonymous"] = {"enabled": False, "conditions": [{"path": "/livez"}]}
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(yaml.safe_dump(doc))
    assert str(err.value) == (
        "anonymous.conditions: Invalid value: [{Path:/livez}]: enabled should be set to true "
        "when conditions are defined"
    )
    doc["anonymous"]["enabled"] = True  # kube-apiserver's business; no token is ever anonymous
    assert len(parse_authentication_config(yaml.safe_dump(doc)).authenticators) == 1
    doc["anonymous"]["conditions"] = [{"path": "/livez", "verb": "get"}]
    with pytest.raises(AuthConfigError) as err:
        parse_authentication_config(yaml.safe_dump(doc))
    assert str(err.value) == 'strict decoding error: unknown field "anonymous.conditions[0].verb"'
