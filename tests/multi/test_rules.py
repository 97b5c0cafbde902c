"""verifier.integrations.rules: route requirements and RFC 6750 §3 answers (pure)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from verifier import InvalidToken, ServiceAccountIdentity, VerifierUnavailable
from verifier.authconfig import UserInfo
from verifier.integrations.rules import (
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    NO_CREDENTIALS,
    Requirements,
    refusal_for,
)
from verifier.multi import Authenticated


def result(*, sa: bool = True, groups: tuple[str, ...] = ("g",)) -> Authenticated:
    ident = ServiceAccountIdentity("shop", "orders") if sa else None
    return Authenticated(
        UserInfo("u", groups=groups), ident, "https://i.example", ("aud1",), MappingProxyType({})
    )


def test_requirements() -> None:
    assert Requirements().check(result()) is None
    assert Requirements.of(audiences="aud2").check(result()) is INVALID_TOKEN  # RFC 6750 §3.1
    assert Requirements.of(audiences=["aud1", "aud2"]).check(result()) is None
    assert Requirements.of(namespaces=["shop"]).check(result()) is None
    assert Requirements.of(namespaces=["shop"]).check(result(sa=False)) is INSUFFICIENT_SCOPE
    assert Requirements.of(namespaces="other").check(result()) is INSUFFICIENT_SCOPE
    assert Requirements.of(service_accounts=["shop/orders"]).check(result()) is None
    assert Requirements.of(service_accounts="shop/x").check(result()) is INSUFFICIENT_SCOPE
    assert Requirements.of(groups=["g", "h"]).check(result()) is None
    assert Requirements.of(groups=["h"]).check(result()) is INSUFFICIENT_SCOPE
    for bad in ("shop", "/orders", "shop/", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            Requirements.of(service_accounts=[bad])
    with pytest.raises(ValueError, match="non-empty"):
        Requirements.of(groups=[""])


def test_answers() -> None:
    assert NO_CREDENTIALS.headers("api") == {"WWW-Authenticate": 'Bearer realm="api"'}
    assert NO_CREDENTIALS.headers() == {"WWW-Authenticate": "Bearer"}
    assert INVALID_TOKEN.status == 401 and INSUFFICIENT_SCOPE.status == 403
    challenge = INSUFFICIENT_SCOPE.headers('a"b\\c\n')["WWW-Authenticate"]
    assert challenge.startswith(
        'Bearer realm="abc", error="insufficient_scope", error_description="'
    )
    assert refusal_for(InvalidToken("expired")) is INVALID_TOKEN
    unavailable = refusal_for(VerifierUnavailable("down"))
    assert unavailable.status == 503 and unavailable.headers() == {"Retry-After": "30"}
    assert unavailable.body()["error"] == "temporarily_unavailable"
