"""Kubernetes' ``AuthenticationConfiguration`` (the file kube-apiserver reads): load, validate, map.

Pure: no network, no clock. :func:`load_authentication_config` reads ``apiserver.config.k8s.io``
``v1beta1``/``v1`` (the ``jwt`` list, and ``anonymous``, which only matters to kube-apiserver),
decodes it strictly (an unknown field is an error, as kube's strict decoding makes it), validates
it with the rules and messages of kube's ``validation.go`` (kube:
staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go) and compiles every CEL
expression once (:mod:`verifier.cel`). Anything kube-apiserver would refuse raises
:class:`AuthConfigError` whose message is kube's ``field.ErrorList`` text, e.g.
``jwt[0].issuer.url: Invalid value: "http://x": URL scheme must be https``.

:meth:`Authenticator.user_for` then maps verified claims to a user exactly as kube's JWT
authenticator does after the signature check (kube: staging/src/k8s.io/apiserver/plugin/pkg/
authenticator/token/oidc/oidc.go ``AuthenticateToken``): username → groups → uid → extra →
``claim``/``requiredValue`` rules → ``claimValidationRules`` expressions → ``userValidationRules``.
A refusal raises ``InvalidToken("invalid_claim", <kube's log message>)``; messages name claims and
rules, never a claim's value.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from .cel import (
    CelCompileError,
    CelEvalError,
    Program,
    claims_activation,
    compile_claims_expression,
    compile_user_expression,
    references_claim,
    user_activation,
)
from .errors import InvalidToken

__all__ = [
    "API_GROUP",
    "MAX_CONFIG_BYTES",
    "SUPPORTED_VERSIONS",
    "AuthConfigError",
    "AuthenticationConfiguration",
    "Authenticator",
    "UserInfo",
    "load_authentication_config",
    "parse_authentication_config",
]

API_GROUP: Final = "apiserver.config.k8s.io"
SUPPORTED_VERSIONS: Final = (f"{API_GROUP}/v1beta1", f"{API_GROUP}/v1")
#: Cap on the configuration file (kube has none; a file this size is a mistake).
MAX_CONFIG_BYTES: Final = 1024 * 1024
#: kube validation.go: "the maximum number of allowed authenticators is 64".
MAX_AUTHENTICATORS: Final = 64
#: Verified claim sets whose mapped user is remembered, per authenticator (CEL is deterministic).
MAPPING_CACHE_ENTRIES: Final = 4096

# apimachinery validation: IsDNS1123Subdomain and IsDomainPrefixedPath's HTTP path.
_DNS1123_SUBDOMAIN_FMT: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_HTTP_PATH_FMT: Final = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"


class AuthConfigError(ValueError):
    """The configuration is refused; ``errors`` are kube's field errors, ``str()`` their list."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        # utilerrors.NewAggregate(...).Error(): one message as is, several as "[a, b]".
        text = self.errors[0] if len(self.errors) == 1 else "[" + ", ".join(self.errors) + "]"
        super().__init__(text)


# -- kube's field.Error texts (apimachinery/pkg/util/validation/field/errors.go) ------------------


def _go_quote(value: str) -> str:
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


def _required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def _invalid(path: str, value: object, detail: str) -> str:
    shown = _go_quote(value) if isinstance(value, str) else str(value)
    return f"{path}: Invalid value: {shown}: {detail}"


def _duplicate(path: str, value: str) -> str:
    return f"{path}: Duplicate value: {_go_quote(value)}"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
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


class _Decoder:
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


def _decode_jwt(d: _Decoder, raw: object, path: str) -> JWTAuthenticator:
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


# -- validation (validation.go), compiling CEL as kube does while validating ----------------------


def _validate_url(url: str, path: str, disallowed: frozenset[str]) -> list[str]:
    errs = []
    if url in disallowed:
        listed = "[" + " ".join(sorted(disallowed)) + "]"
        errs.append(_invalid(path, url, f"URL must not overlap with disallowed issuers: {listed}"))
    try:
        u = urlsplit(url)
    except ValueError as exc:
        return [*errs, _invalid(path, url, str(exc))]
    if u.scheme != "https":
        errs.append(_invalid(path, url, "URL scheme must be https"))
    if "@" in u.netloc:
        errs.append(_invalid(path, url, "URL must not contain a username or password"))
    if u.query:
        errs.append(_invalid(path, url, "URL must not contain a query"))
    if u.fragment:
        errs.append(_invalid(path, url, "URL must not contain a fragment"))
    return errs


def _validate_issuer(issuer: Issuer, path: str, disallowed: frozenset[str]) -> list[str]:
    errs: list[str] = []
    up = f"{path}.url"
    errs += [_required(up)] if not issuer.url else _validate_url(issuer.url, up, disallowed)
    if issuer.discovery_url:
        dp = f"{path}.discoveryURL"
        if issuer.url and issuer.url.rstrip("/") == issuer.discovery_url.rstrip("/"):
            errs.append(
                _invalid(dp, issuer.discovery_url, "discoveryURL must be different from URL")
            )
        errs += _validate_url(issuer.discovery_url, dp, frozenset())
    ap, mp = f"{path}.audiences", f"{path}.audienceMatchPolicy"
    if not issuer.audiences:
        errs.append(_required(ap, f"at least one {ap} is required"))
    else:
        seen: set[str] = set()
        for i, aud in enumerate(issuer.audiences):
            if not aud:
                errs.append(_required(f"{ap}[{i}]"))
            if aud in seen:
                errs.append(_duplicate(f"{ap}[{i}]", aud))
            seen.add(aud)
        policy = issuer.audience_match_policy
        if len(issuer.audiences) > 1 and policy != "MatchAny":
            errs.append(
                _invalid(mp, policy, "audienceMatchPolicy must be MatchAny for multiple audiences")
            )
        if len(issuer.audiences) == 1 and policy not in ("", "MatchAny"):
            errs.append(
                _invalid(
                    mp, policy, "audienceMatchPolicy must be empty or MatchAny for single audience"
                )
            )
    if issuer.certificate_authority:
        try:
            x509.load_pem_x509_certificates(issuer.certificate_authority.encode())
        except ValueError:
            # client-go cert.NewPoolFromBytes
            errs.append(
                _invalid(
                    f"{path}.certificateAuthority",
                    "<omitted>",
                    "data does not contain any valid RSA or ECDSA certificates",
                )
            )
    if issuer.egress_selector_type not in ("", "controlplane", "cluster"):
        errs.append(
            _invalid(
                f"{path}.egressSelectorType",
                issuer.egress_selector_type,
                "egress selector must be either controlplane or cluster",
            )
        )
    return errs


def _compile(errs: list[str], path: str, source: str, *, want_bool: bool = False) -> Program | None:
    try:
        return compile_claims_expression(source, want_bool=want_bool)
    except CelCompileError as exc:
        errs.append(_invalid(path, source, exc.detail))
        return None


def _domain_prefixed_path(path: str, key: str) -> list[str]:
    # apimachinery validation.IsDomainPrefixedPath
    if not key:
        return [_required(path)]
    host, slash, rest = key.partition("/")
    if not slash or not host or not rest:
        return [_invalid(path, key, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = []
    if len(host) > 253:
        errs.append(_invalid(path, host, "must be no more than 253 characters"))
    if re.fullmatch(_DNS1123_SUBDOMAIN_FMT, host) is None:
        msg = _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
        errs.append(_invalid(path, host, msg))
    if re.fullmatch(_HTTP_PATH_FMT, rest) is None:
        errs.append(_invalid(path, rest, _regex_error("Invalid path", _HTTP_PATH_FMT)))
    return errs


def _is_kubernetes_domain(key: str) -> bool:
    host, slash, _ = key.partition("/")
    if not slash:
        return False
    return host in ("kubernetes.io", "k8s.io") or host.endswith((".kubernetes.io", ".k8s.io"))


def _prefixed(
    errs: list[str], m: PrefixedClaimOrExpression, path: str, required: bool
) -> Program | None:
    if m.expression and m.claim:
        errs.append(_invalid(path, "", "claim and expression can't both be set"))
    elif not m.expression and not m.claim and required:
        errs.append(_required(path, "claim or expression is required"))
    elif m.expression:
        if m.prefix is not None:
            errs.append(
                _invalid(f"{path}.prefix", m.prefix, "may not be specified when expression is set")
            )
        return _compile(errs, f"{path}.expression", m.expression)
    elif m.claim and m.prefix is None:
        errs.append(
            _required(
                f"{path}.prefix",
                "prefix is required when claim is set. It can be set to an empty string to "
                "disable prefixing",
            )
        )
    return None


class Authenticator:
    """One validated ``jwt[i]`` with its CEL compiled; :meth:`user_for` maps verified claims."""

    def __init__(self, spec: JWTAuthenticator, path: str, errs: list[str]) -> None:
        """Validate ``spec`` (errors appended to ``errs``, kube's order) and compile it."""
        self.spec = spec
        self.issuer_url = spec.issuer.url
        self.audiences = spec.issuer.audiences
        n = len(errs)
        self._rules: list[tuple[Program, ClaimValidationRule]] = []
        self._required: list[ClaimValidationRule] = []
        uses_email_verified = False
        seen_claims: set[str] = set()
        seen_exprs: set[str] = set()
        for i, rule in enumerate(spec.claim_validation_rules):
            rp = f"{path}.claimValidationRules[{i}]"
            if rule.claim and rule.expression:
                errs.append(_invalid(rp, rule.claim, "claim and expression can't both be set"))
            elif not rule.claim and not rule.expression:
                errs.append(_required(rp, "claim or expression is required"))
            elif rule.claim:
                if rule.message:
                    errs.append(
                        _invalid(
                            f"{rp}.message", rule.message, "may not be specified when claim is set"
                        )
                    )
                if rule.claim in seen_claims:
                    errs.append(_duplicate(f"{rp}.claim", rule.claim))
                seen_claims.add(rule.claim)
                self._required.append(rule)
            else:
                if rule.required_value:
                    errs.append(
                        _invalid(
                            f"{rp}.requiredValue",
                            rule.required_value,
                            "may not be specified when expression is set",
                        )
                    )
                if rule.expression in seen_exprs:
                    errs.append(_duplicate(f"{rp}.expression", rule.expression))
                    continue
                seen_exprs.add(rule.expression)
                prog = _compile(errs, f"{rp}.expression", rule.expression, want_bool=True)
                if prog is not None:
                    self._rules.append((prog, rule))
                    uses_email_verified |= references_claim(rule.expression, "email_verified")
        mp = f"{path}.claimMappings"
        self._username = _prefixed(errs, spec.username, f"{mp}.username", True)
        uses_email = False
        if self._username is not None:
            uses_email = references_claim(spec.username.expression, "email")
            uses_email_verified |= references_claim(spec.username.expression, "email_verified")
        self._groups = _prefixed(errs, spec.groups, f"{mp}.groups", False)
        self._uid: Program | None = None
        if spec.uid.claim and spec.uid.expression:
            errs.append(_invalid(f"{mp}.uid", "", "claim and expression can't both be set"))
        elif spec.uid.expression:
            self._uid = _compile(errs, f"{mp}.uid.expression", spec.uid.expression)
        self._extra: list[tuple[str, Program]] = []
        seen_keys: set[str] = set()
        for i, ex in enumerate(spec.extra):
            ep = f"{mp}.extra[{i}]"
            errs += _domain_prefixed_path(f"{ep}.key", ex.key)
            if ex.key != ex.key.lower():
                errs.append(_invalid(f"{ep}.key", ex.key, "must be lowercase"))
            if _is_kubernetes_domain(ex.key):
                errs.append(
                    _invalid(
                        f"{ep}.key",
                        ex.key,
                        "k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes "
                        "use",
                    )
                )
            if ex.key in seen_keys:
                errs.append(_duplicate(f"{ep}.key", ex.key))
                continue
            seen_keys.add(ex.key)
            if not ex.value_expression:
                errs.append(_required(f"{ep}.valueExpression"))
                continue
            prog = _compile(errs, f"{ep}.valueExpression", ex.value_expression)
            if prog is not None:
                self._extra.append((ex.key, prog))
                uses_email_verified |= references_claim(ex.value_expression, "email_verified")
        if uses_email and not uses_email_verified:
            errs.append(
                _invalid(
                    f"{mp}.username.expression",
                    spec.username.expression,
                    "claims.email_verified must be used in claimMappings.username.expression or "
                    "claimMappings.extra[*].valueExpression or claimValidationRules[*].expression "
                    "when claims.email is used in claimMappings.username.expression",
                )
            )
        self._user_rules: list[tuple[Program, UserValidationRule]] = []
        seen_exprs = set()
        for i, urule in enumerate(spec.user_validation_rules):
            up = f"{path}.userValidationRules[{i}]"
            if not urule.expression:
                errs.append(_required(f"{up}.expression"))
                continue
            if urule.expression in seen_exprs:
                errs.append(_duplicate(f"{up}.expression", urule.expression))
                continue
            seen_exprs.add(urule.expression)
            try:
                self._user_rules.append((compile_user_expression(urule.expression), urule))
            except CelCompileError as exc:
                errs.append(_invalid(f"{up}.expression", urule.expression, exc.detail))
        self.valid = len(errs) == n
        self._needs_claims_cel = bool(
            self._rules or self._username or self._groups or self._uid or self._extra
        )
        # Mapped users by keyed hash of the verified payload bytes (CEL has no clock or I/O, so
        # the same claims always map to the same user); bounded LRU, successes only.
        self._cache: OrderedDict[bytes, UserInfo] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._hasher = hashlib.blake2b(key=os.urandom(32), digest_size=32)

    # -- per token --------------------------------------------------------------------------------

    def user_for(self, claims: Mapping[str, Any], payload: bytes | None = None) -> UserInfo:
        """Map verified ``claims`` to a :class:`UserInfo` or raise ``InvalidToken``.

        ``payload`` (the verified payload bytes the claims were decoded from) enables the
        mapping cache; without it every call evaluates the expressions.
        """
        if payload is None:
            return self._map(claims)
        h = self._hasher.copy()
        h.update(payload)
        key = h.digest()
        cache = self._cache
        user = cache.get(key)
        if user is not None:
            return user
        user = self._map(claims)
        with self._cache_lock:
            cache[key] = user
            if len(cache) > MAPPING_CACHE_ENTRIES:
                cache.popitem(last=False)
        return user

    def _map(self, claims: Mapping[str, Any]) -> UserInfo:
        act = claims_activation(claims) if self._needs_claims_cel else None
        username = self._get_username(claims, act)
        groups = self._get_groups(claims, act)
        uid = self._get_uid(claims, act)
        extra: dict[str, tuple[str, ...]] = {}
        for key, prog in self._extra:
            where = "oidc: error evaluating extra claim expression"
            values = _string_list(_run(prog, act, where), f"{where}: {prog.source}")
            if values:
                extra[key] = values
        for rule in self._required:
            self._check_required(claims, rule)
        for prog, crule in self._rules:
            where = "oidc: error evaluating claim validation expression"
            _check_rule(prog, _run(prog, act, where), crule.message, where)
        user = UserInfo(username, uid, groups, MappingProxyType(extra))
        if self._user_rules:
            uact = user_activation(user.to_dict())
            for prog, urule in self._user_rules:
                where = "oidc: error evaluating user info validation rule"
                _check_rule(prog, _run(prog, uact, where), urule.message, where)
        return user

    def _get_username(self, claims: Mapping[str, Any], act: Any) -> str:
        if self._username is not None:
            where = "oidc: error evaluating username claim expression"
            value = _run(self._username, act, where)
            if type(value) is not str:
                raise _refuse(f"{where}: username claim expression must return a string")
            if not value:
                raise _refuse("oidc: empty username via CEL expression is not allowed")
            return value
        name = self.spec.username.claim
        value = claims.get(name)
        if name not in claims:
            raise _refuse(f'oidc: parse username claims "{name}": claim not present')
        if type(value) is not str:
            raise _refuse(f'oidc: parse username claims "{name}": claim is not a string')
        if name == "email" and "email_verified" in claims:
            # OIDC Core §5.1: a present email_verified must be true (kube getUsername).
            verified = claims["email_verified"]
            if type(verified) is not bool:
                raise _refuse("oidc: parse 'email_verified' claim: claim is not a boolean")
            if not verified:
                raise _refuse("oidc: email not verified")
        return (self.spec.username.prefix or "") + value

    def _get_groups(self, claims: Mapping[str, Any], act: Any) -> tuple[str, ...]:
        name = self.spec.groups.claim
        if name:
            if name not in claims:
                return ()
            value = claims[name]
            # A single string is one group (kube #33290: "role" claims).
            if type(value) is str:
                groups: tuple[str, ...] = (value,)
            elif type(value) is list and all(type(g) is str for g in value):
                groups = tuple(value)
            else:
                raise _refuse(f'oidc: parse groups claim "{name}": not a string or list of strings')
            prefix = self.spec.groups.prefix or ""
            return tuple(prefix + g for g in groups) if prefix else groups
        if self._groups is None:
            return ()
        where = "oidc: error evaluating group claim expression"
        return _string_list(_run(self._groups, act, where), where)

    def _get_uid(self, claims: Mapping[str, Any], act: Any) -> str:
        name = self.spec.uid.claim
        if name:
            value = claims.get(name)
            if name not in claims:
                raise _refuse(f'oidc: parse uid claim "{name}": claim not present')
            if type(value) is not str:
                raise _refuse(f'oidc: parse uid claim "{name}": claim is not a string')
            return value
        if self._uid is None:
            return ""
        where = "oidc: error evaluating uid claim expression"
        value = _run(self._uid, act, where)
        if type(value) is not str:
            raise _refuse(f"{where}: uid claim expression must return a string")
        return value

    @staticmethod
    def _check_required(claims: Mapping[str, Any], rule: ClaimValidationRule) -> None:
        name = rule.claim
        if name not in claims:
            raise _refuse(f"oidc: required claim {name} not present in ID token")
        if type(claims[name]) is not str:
            # only string values are supported as required claim values (kube)
            raise _refuse(f"oidc: parse claim {name}: claim is not a string")
        if claims[name] != rule.required_value:
            # kube also prints the token's value ("Got = ..."); claim values stay out of logs here.
            raise _refuse(
                f"oidc: required claim {name} value does not match. want = {rule.required_value}"
            )


def _refuse(detail: str) -> InvalidToken:
    return InvalidToken("invalid_claim", detail)


def _run(prog: Program, act: Any, where: str) -> Any:
    try:
        return prog.eval(act)
    except CelEvalError as exc:
        # kube authentication/cel/mapper.go: "expression '%s' resulted in error: %w"
        raise _refuse(f"{where}: expression '{prog.source}' resulted in error: {exc}") from None


def _check_rule(prog: Program, value: Any, message: str, where: str) -> None:
    # kube oidc.go checkValidationRulesEvaluation
    if type(value) is not bool:
        raise _refuse(f"{where}: validation expression must return a boolean")
    if not value:
        raise _refuse(f"{where}: validation expression '{prog.source}' failed: {message}")


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    """kube oidc.go convertCELValueToStringList: a string or a list of strings; "" dropped."""
    if value is None:
        return ()
    if type(value) is str:
        return (value,) if value else ()
    if type(value) is list:
        if not all(type(v) is str for v in value):
            raise _refuse(f"{where}: expression must return a string or a list of strings")
        return tuple(v for v in value if v)
    raise _refuse(f"{where}: expression must return a string or a list of strings")


@dataclass(frozen=True, slots=True)
class AuthenticationConfiguration:
    """A loaded, validated configuration: its authenticators by issuer URL."""

    api_version: str
    authenticators: tuple[Authenticator, ...]
    source: str = ""

    def by_issuer(self) -> dict[str, Authenticator]:
        """``{issuer.url: Authenticator}`` (URLs are unique after validation)."""
        return {a.issuer_url: a for a in self.authenticators}


def parse_authentication_config(
    text: str | bytes, *, source: str = "", disallowed_issuers: Sequence[str] = ()
) -> AuthenticationConfiguration:
    """Decode, validate and compile a configuration; raise :class:`AuthConfigError` as kube would.

    ``disallowed_issuers``: issuer URLs no authenticator may use (kube passes its own
    ``--service-account-issuer`` values).
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise AuthConfigError([f"configuration is larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AuthConfigError(
            ["error converting YAML to JSON: " + " ".join(str(exc).split())]
        ) from None
    d = _Decoder()
    top = d.obj(doc, "", ("apiVersion", "kind", "jwt", "anonymous"))
    api_version, kind = top.get("apiVersion"), top.get("kind")
    if kind != "AuthenticationConfiguration":
        raise AuthConfigError(
            [f"Object 'Kind' is missing or wrong in {kind!r} (want AuthenticationConfiguration)"]
        )
    if api_version not in SUPPORTED_VERSIONS:
        # kube's scheme: 'no kind "AuthenticationConfiguration" is registered for version ...'
        raise AuthConfigError(
            [
                f'no kind "AuthenticationConfiguration" is registered for version "{api_version}" '
                f"(this verifier reads {' and '.join(SUPPORTED_VERSIONS)})"
            ]
        )
    specs = [_decode_jwt(d, raw, p) for p, raw in d.items(top, "jwt", "")]
    anonymous = d.obj(top.get("anonymous"), "anonymous", ("enabled", "conditions"))
    if d.errors:
        raise AuthConfigError(d.errors)
    errs: list[str] = []
    if len(specs) > MAX_AUTHENTICATORS:
        raise AuthConfigError(
            [f"jwt: Too many: {len(specs)}: must have at most {MAX_AUTHENTICATORS} items"]
        )
    disallowed = frozenset(disallowed_issuers)
    authenticators = []
    seen_issuers: set[str] = set()
    seen_discovery: set[str] = set()
    for i, spec in enumerate(specs):
        path = f"jwt[{i}]"
        errs += _validate_issuer(spec.issuer, f"{path}.issuer", disallowed)
        authenticators.append(Authenticator(spec, path, errs))
        if spec.issuer.url in seen_issuers:
            errs.append(_duplicate(f"{path}.issuer.url", spec.issuer.url))
        seen_issuers.add(spec.issuer.url)
        if spec.issuer.discovery_url:
            if spec.issuer.discovery_url in seen_discovery:
                errs.append(_duplicate(f"{path}.issuer.discoveryURL", spec.issuer.discovery_url))
            seen_discovery.add(spec.issuer.discovery_url)
    if anonymous and not anonymous.get("enabled") and anonymous.get("conditions"):
        errs.append(
            "anonymous.conditions: Invalid value: ...: enabled should be set to true when "
            "conditions are defined"
        )
    if errs:
        raise AuthConfigError(errs)
    return AuthenticationConfiguration(str(api_version), tuple(authenticators), source)


def load_authentication_config(
    path: str | os.PathLike[str], *, disallowed_issuers: Sequence[str] = ()
) -> AuthenticationConfiguration:
    """:func:`parse_authentication_config` on a file (read with a size cap)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise AuthConfigError([f"cannot read {str(p)!r}: {exc.strerror}"]) from None
    return parse_authentication_config(data, source=str(p), disallowed_issuers=disallowed_issuers)
