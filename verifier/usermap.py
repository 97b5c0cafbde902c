"""Claims → user for one ``jwt[i]``: validated and compiled once, applied per token.

:class:`Authenticator` validates the rules and mappings of one authenticator with kube's rules and
messages (kube: staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go,
``validateClaimValidationRules`` / ``validateClaimMappings`` / ``validateUserValidationRules``),
compiling every CEL expression (:mod:`verifier.cel`). :meth:`Authenticator.user_for` then maps
verified claims as kube's JWT authenticator does after the signature check (kube:
staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go ``AuthenticateToken``):
username → groups → uid → extra → ``claim``/``requiredValue`` rules → ``claimValidationRules``
expressions → ``userValidationRules``. A refusal raises ``InvalidToken("invalid_claim", <kube's log
message>)``; messages name claims and rules, never a claim's value.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from .authspec import (
    ClaimValidationRule,
    JWTAuthenticator,
    PrefixedClaimOrExpression,
    UserInfo,
    UserValidationRule,
    field_duplicate,
    field_invalid,
    field_required,
    regex_error,
)
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

__all__ = ["MAPPING_CACHE_ENTRIES", "Authenticator"]

#: Verified claim sets whose mapped user is remembered, per authenticator (CEL is deterministic).
MAPPING_CACHE_ENTRIES: Final = 4096

# apimachinery validation: IsDNS1123Subdomain and IsDomainPrefixedPath's HTTP path.
_DNS1123_SUBDOMAIN_FMT: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_HTTP_PATH_FMT: Final = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"


def _compile(errs: list[str], path: str, source: str, *, want_bool: bool = False) -> Program | None:
    try:
        return compile_claims_expression(source, want_bool=want_bool)
    except CelCompileError as exc:
        errs.append(field_invalid(path, source, exc.detail))
        return None


def _domain_prefixed_path(path: str, key: str) -> list[str]:
    # apimachinery validation.IsDomainPrefixedPath
    if not key:
        return [field_required(path)]
    host, slash, rest = key.partition("/")
    if not slash or not host or not rest:
        return [field_invalid(path, key, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = []
    if len(host) > 253:
        errs.append(field_invalid(path, host, "must be no more than 253 characters"))
    if re.fullmatch(_DNS1123_SUBDOMAIN_FMT, host) is None:
        msg = regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
        errs.append(field_invalid(path, host, msg))
    if re.fullmatch(_HTTP_PATH_FMT, rest) is None:
        errs.append(field_invalid(path, rest, regex_error("Invalid path", _HTTP_PATH_FMT)))
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
        errs.append(field_invalid(path, "", "claim and expression can't both be set"))
    elif not m.expression and not m.claim and required:
        errs.append(field_required(path, "claim or expression is required"))
    elif m.expression:
        if m.prefix is not None:
            errs.append(
                field_invalid(
                    f"{path}.prefix", m.prefix, "may not be specified when expression is set"
                )
            )
        return _compile(errs, f"{path}.expression", m.expression)
    elif m.claim and m.prefix is None:
        errs.append(
            field_required(
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
        self.field_required: list[ClaimValidationRule] = []
        uses_email_verified = False
        seen_claims: set[str] = set()
        seen_exprs: set[str] = set()
        for i, rule in enumerate(spec.claim_validation_rules):
            rp = f"{path}.claimValidationRules[{i}]"
            if rule.claim and rule.expression:
                errs.append(field_invalid(rp, rule.claim, "claim and expression can't both be set"))
            elif not rule.claim and not rule.expression:
                errs.append(field_required(rp, "claim or expression is required"))
            elif rule.claim:
                if rule.message:
                    errs.append(
                        field_invalid(
                            f"{rp}.message", rule.message, "may not be specified when claim is set"
                        )
                    )
                if rule.claim in seen_claims:
                    errs.append(field_duplicate(f"{rp}.claim", rule.claim))
                seen_claims.add(rule.claim)
                self.field_required.append(rule)
            else:
                if rule.required_value:
                    errs.append(
                        field_invalid(
                            f"{rp}.requiredValue",
                            rule.required_value,
                            "may not be specified when expression is set",
                        )
                    )
                if rule.expression in seen_exprs:
                    errs.append(field_duplicate(f"{rp}.expression", rule.expression))
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
            errs.append(field_invalid(f"{mp}.uid", "", "claim and expression can't both be set"))
        elif spec.uid.expression:
            self._uid = _compile(errs, f"{mp}.uid.expression", spec.uid.expression)
        self._extra: list[tuple[str, Program]] = []
        seen_keys: set[str] = set()
        for i, ex in enumerate(spec.extra):
            ep = f"{mp}.extra[{i}]"
            errs += _domain_prefixed_path(f"{ep}.key", ex.key)
            if ex.key != ex.key.lower():
                errs.append(field_invalid(f"{ep}.key", ex.key, "must be lowercase"))
            if _is_kubernetes_domain(ex.key):
                errs.append(
                    field_invalid(
                        f"{ep}.key",
                        ex.key,
                        "k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes "
                        "use",
                    )
                )
            if ex.key in seen_keys:
                errs.append(field_duplicate(f"{ep}.key", ex.key))
                continue
            seen_keys.add(ex.key)
            if not ex.value_expression:
                errs.append(field_required(f"{ep}.valueExpression"))
                continue
            prog = _compile(errs, f"{ep}.valueExpression", ex.value_expression)
            if prog is not None:
                self._extra.append((ex.key, prog))
                uses_email_verified |= references_claim(ex.value_expression, "email_verified")
        if uses_email and not uses_email_verified:
            errs.append(
                field_invalid(
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
                errs.append(field_required(f"{up}.expression"))
                continue
            if urule.expression in seen_exprs:
                errs.append(field_duplicate(f"{up}.expression", urule.expression))
                continue
            seen_exprs.add(urule.expression)
            try:
                self._user_rules.append((compile_user_expression(urule.expression), urule))
            except CelCompileError as exc:
                errs.append(field_invalid(f"{up}.expression", urule.expression, exc.detail))
        self.valid = len(errs) == n
        self._needs_claims_cel = bool(
            self._rules or self._username or self._groups or self._uid or self._extra
        )
        # Mapped users by keyed hash of the verified payload bytes (CEL has no clock or I/O, so
        # the same claims always map to the same user); bounded, oldest evicted first, successes
        # only.
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
        for rule in self.field_required:
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
