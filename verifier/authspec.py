"""The ``AuthenticationConfiguration`` as written in the file: types, strict decoding, kube's
field-error texts (pure).

Types mirror kube's (staging/src/k8s.io/apiserver/pkg/apis/apiserver/types.go) with the file's
field names in snake case. :class:`StrictDecoder` reads the YAML tree the way kube's strict
decoding does: an unknown field is an error. The ``field_*`` helpers render apimachinery's
``field.Error`` (apimachinery/pkg/util/validation/field/errors.go):
``<path>: <type>[: <value>][: <detail>]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "API_GROUP",
    "SUPPORTED_VERSIONS",
    "AuthConfigError",
    "ClaimOrExpression",
    "ClaimValidationRule",
    "ExtraMapping",
    "Issuer",
    "JWTAuthenticator",
    "PrefixedClaimOrExpression",
    "StrictDecoder",
    "UserInfo",
    "UserValidationRule",
    "decode_jwt_authenticator",
    "field_duplicate",
    "field_invalid",
    "field_required",
    "go_quote",
    "regex_error",
]

API_GROUP: Final = "apiserver.config.k8s.io"
SUPPORTED_VERSIONS: Final = (f"{API_GROUP}/v1beta1", f"{API_GROUP}/v1")


class AuthConfigError(ValueError):
    """The configuration is refused; ``errors`` are kube's field errors, ``str()`` their list."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        # utilerrors.NewAggregate(...).Error(): one message as is, several as "[a, b]".
        text = self.errors[0] if len(self.errors) == 1 else "[" + ", ".join(self.errors) + "]"
        super().__init__(text)


# -- kube's field.Error texts (apimachinery/pkg/util/validation/field/errors.go) ------------------


def go_quote(value: str) -> str:
    """Go's ``%q`` for the printable strings configs hold (escapes like JSON)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def field_required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def field_invalid(path: str, value: object, detail: str) -> str:
    shown = go_quote(value) if isinstance(value, str) else str(value)
    return f"{path}: Invalid value: {shown}: {detail}"


def field_duplicate(path: str, value: str) -> str:
    return f"{path}: Duplicate value: {go_quote(value)}"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    # apimachinery validation.RegexError
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}'" for e in examples)
    return f"{msg} (e.g. {shown}, regex used for validation is '{fmt}')"


# -- the configuration (types.go; field names as in the file) -------------------------------------


@dataclass(frozen=True, slots=True)
class PrefixedClaimOrExpression:
    """``claimMappings.username`` / ``groups``: ``claim`` + ``prefix`` or ``expression``."""

    claim: str = ""
    prefix: str | None = None
    expression: str = ""


@dataclass(frozen=True, slots=True)
class ClaimOrExpression:
    """``claimMappings.uid``: ``claim`` or ``expression``."""

    claim: str = ""
    expression: str = ""


@dataclass(frozen=True, slots=True)
class ExtraMapping:
    """``claimMappings.extra[i]``: ``key`` + ``valueExpression``."""

    key: str = ""
    value_expression: str = ""


@dataclass(frozen=True, slots=True)
class ClaimValidationRule:
    """``claimValidationRules[i]``: ``claim`` + ``requiredValue``, or ``expression`` +
    ``message``."""

    claim: str = ""
    required_value: str = ""
    expression: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class UserValidationRule:
    """``userValidationRules[i]``: ``expression`` + ``message``."""

    expression: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Issuer:
    """``jwt[i].issuer``."""

    url: str = ""
    discovery_url: str = ""
    certificate_authority: str = ""
    audiences: tuple[str, ...] = ()
    audience_match_policy: str = ""
    egress_selector_type: str = ""


@dataclass(frozen=True, slots=True)
class JWTAuthenticator:
    """``jwt[i]`` as written in the file."""

    issuer: Issuer
    claim_validation_rules: tuple[ClaimValidationRule, ...] = ()
    username: PrefixedClaimOrExpression = PrefixedClaimOrExpression()
    groups: PrefixedClaimOrExpression = PrefixedClaimOrExpression()
    uid: ClaimOrExpression = ClaimOrExpression()
    extra: tuple[ExtraMapping, ...] = ()
    user_validation_rules: tuple[UserValidationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class UserInfo:
    """The mapped user, shaped like a TokenReview's ``status.user`` (kube ``user.DefaultInfo``)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """``{"username", "uid", "groups", "extra"}`` (JSON-ready)."""
        return {
            "username": self.username,
            "uid": self.uid,
            "groups": list(self.groups),
            "extra": {k: list(v) for k, v in self.extra.items()},
        }


# -- strict decoding ------------------------------------------------------------------------------


class StrictDecoder:
    """Reads the YAML tree strictly: unknown fields and wrong types are collected as errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def obj(self, value: object, path: str, fields: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.append(f"{path or 'config'}: must be an object")
            return {}
        for key in value:
            if key not in fields:
                # kube's strict decoding: "strict decoding error: unknown field \"jwt[0].foo\""
                where = f"{path}.{key}" if path else str(key)
                self.errors.append(f'strict decoding error: unknown field "{where}"')
        return value

    def string(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = obj.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.errors.append(f"{path}.{key}: must be a string")
            return ""
        return value

    def opt_string(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        if key not in obj or obj[key] is None:
            return None
        return self.string(obj, key, path)

    def strings(self, obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.errors.append(f"{path}.{key}: must be a list of strings")
            return ()
        return tuple(value)

    def items(self, obj: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.append(f"{path}.{key}: must be a list")
            return []
        return [(f"{path}.{key}[{i}]" if path else f"{key}[{i}]", v) for i, v in enumerate(value)]


def decode_jwt_authenticator(d: StrictDecoder, raw: object, path: str) -> JWTAuthenticator:
    top = d.obj(
        raw,
        path,
        ("issuer", "claimValidationRules", "claimMappings", "userValidationRules"),
    )
    ip = f"{path}.issuer"
    iss = d.obj(
        top.get("issuer"),
        ip,
        (
            "url",
            "discoveryURL",
            "certificateAuthority",
            "audiences",
            "audienceMatchPolicy",
            "egressSelectorType",
        ),
    )
    issuer = Issuer(
        url=d.string(iss, "url", ip),
        discovery_url=d.string(iss, "discoveryURL", ip),
        certificate_authority=d.string(iss, "certificateAuthority", ip),
        audiences=d.strings(iss, "audiences", ip),
        audience_match_policy=d.string(iss, "audienceMatchPolicy", ip),
        egress_selector_type=d.string(iss, "egressSelectorType", ip),
    )
    rules = []
    for rp, r in d.items(top, "claimValidationRules", path):
        o = d.obj(r, rp, ("claim", "requiredValue", "expression", "message"))
        rules.append(
            ClaimValidationRule(
                claim=d.string(o, "claim", rp),
                required_value=d.string(o, "requiredValue", rp),
                expression=d.string(o, "expression", rp),
                message=d.string(o, "message", rp),
            )
        )
    mp = f"{path}.claimMappings"
    m = d.obj(top.get("claimMappings"), mp, ("username", "groups", "uid", "extra"))

    def prefixed(key: str) -> PrefixedClaimOrExpression:
        p = f"{mp}.{key}"
        o = d.obj(m.get(key), p, ("claim", "prefix", "expression"))
        return PrefixedClaimOrExpression(
            claim=d.string(o, "claim", p),
            prefix=d.opt_string(o, "prefix", p),
            expression=d.string(o, "expression", p),
        )

    uo = d.obj(m.get("uid"), f"{mp}.uid", ("claim", "expression"))
    extra = []
    for ep, e in d.items(m, "extra", mp):
        o = d.obj(e, ep, ("key", "valueExpression"))
        extra.append(
            ExtraMapping(
                key=d.string(o, "key", ep), value_expression=d.string(o, "valueExpression", ep)
            )
        )
    user_rules = []
    for up, u in d.items(top, "userValidationRules", path):
        o = d.obj(u, up, ("expression", "message"))
        user_rules.append(
            UserValidationRule(
                expression=d.string(o, "expression", up), message=d.string(o, "message", up)
            )
        )
    return JWTAuthenticator(
        issuer=issuer,
        claim_validation_rules=tuple(rules),
        username=prefixed("username"),
        groups=prefixed("groups"),
        uid=ClaimOrExpression(
            claim=d.string(uo, "claim", f"{mp}.uid"),
            expression=d.string(uo, "expression", f"{mp}.uid"),
        ),
        extra=tuple(extra),
        user_validation_rules=tuple(user_rules),
    )
