"""Kubernetes' ``AuthenticationConfiguration`` (the file kube-apiserver reads): load, validate, map.

Pure: no network, no clock. :func:`load_authentication_config` reads ``apiserver.config.k8s.io``
``v1beta1``/``v1`` (the ``jwt`` list, and ``anonymous``, which only matters to kube-apiserver),
decodes it strictly (an unknown field is an error, as kube's strict decoding makes it), validates
it with the rules and messages of kube's ``validation.go`` (kube:
staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go) and compiles every CEL
expression once (:mod:`verifier.cel`). Anything kube-apiserver would refuse raises
:class:`AuthConfigError` whose message is kube's ``field.ErrorList`` text, e.g.
``jwt[0].issuer.url: Invalid value: "http://x": URL scheme must be https``.

The pieces: :mod:`verifier.authspec` (the file's types, strict decoding, kube's field-error
texts), this module (issuer validation, the whole file), :mod:`verifier.usermap`
(:class:`~verifier.usermap.Authenticator`: rules and mappings validated and compiled, then
``user_for(claims)`` per token, as kube's JWT authenticator maps users).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from .authspec import (
    API_GROUP,
    SUPPORTED_VERSIONS,
    AuthConfigError,
    Issuer,
    StrictDecoder,
    UserInfo,
    decode_jwt_authenticator,
    field_duplicate,
    field_invalid,
    field_required,
)
from .usermap import MAPPING_CACHE_ENTRIES, Authenticator

__all__ = [
    "API_GROUP",
    "MAPPING_CACHE_ENTRIES",
    "MAX_CONFIG_BYTES",
    "SUPPORTED_VERSIONS",
    "AuthConfigError",
    "AuthenticationConfiguration",
    "Authenticator",
    "UserInfo",
    "load_authentication_config",
    "parse_authentication_config",
]

#: Cap on the configuration file (kube has none; a file this size is a mistake).
MAX_CONFIG_BYTES: Final = 1024 * 1024
#: kube validation.go: "the maximum number of allowed authenticators is 64".
MAX_AUTHENTICATORS: Final = 64


# -- validation (validation.go), compiling CEL as kube does while validating ----------------------


def _validate_url(url: str, path: str, disallowed: frozenset[str]) -> list[str]:
    errs = []
    if url in disallowed:
        listed = "[" + " ".join(sorted(disallowed)) + "]"
        errs.append(
            field_invalid(path, url, f"URL must not overlap with disallowed issuers: {listed}")
        )
    try:
        u = urlsplit(url)
    except ValueError as exc:
        return [*errs, field_invalid(path, url, str(exc))]
    if u.scheme != "https":
        errs.append(field_invalid(path, url, "URL scheme must be https"))
    if "@" in u.netloc:
        errs.append(field_invalid(path, url, "URL must not contain a username or password"))
    if u.query:
        errs.append(field_invalid(path, url, "URL must not contain a query"))
    if u.fragment:
        errs.append(field_invalid(path, url, "URL must not contain a fragment"))
    return errs


def _validate_issuer(issuer: Issuer, path: str, disallowed: frozenset[str]) -> list[str]:
    errs: list[str] = []
    up = f"{path}.url"
    errs += [field_required(up)] if not issuer.url else _validate_url(issuer.url, up, disallowed)
    if issuer.discovery_url:
        dp = f"{path}.discoveryURL"
        if issuer.url and issuer.url.rstrip("/") == issuer.discovery_url.rstrip("/"):
            errs.append(
                field_invalid(dp, issuer.discovery_url, "discoveryURL must be different from URL")
            )
        errs += _validate_url(issuer.discovery_url, dp, frozenset())
    ap, mp = f"{path}.audiences", f"{path}.audienceMatchPolicy"
    if not issuer.audiences:
        errs.append(field_required(ap, f"at least one {ap} is required"))
    else:
        seen: set[str] = set()
        for i, aud in enumerate(issuer.audiences):
            if not aud:
                errs.append(field_required(f"{ap}[{i}]"))
            if aud in seen:
                errs.append(field_duplicate(f"{ap}[{i}]", aud))
            seen.add(aud)
        policy = issuer.audience_match_policy
        if len(issuer.audiences) > 1 and policy != "MatchAny":
            errs.append(
                field_invalid(
                    mp, policy, "audienceMatchPolicy must be MatchAny for multiple audiences"
                )
            )
        if len(issuer.audiences) == 1 and policy not in ("", "MatchAny"):
            errs.append(
                field_invalid(
                    mp, policy, "audienceMatchPolicy must be empty or MatchAny for single audience"
                )
            )
    if issuer.certificate_authority:
        try:
            x509.load_pem_x509_certificates(issuer.certificate_authority.encode())
        except ValueError:
            # client-go cert.NewPoolFromBytes
            errs.append(
                field_invalid(
                    f"{path}.certificateAuthority",
                    "<omitted>",
                    "data does not contain any valid RSA or ECDSA certificates",
                )
            )
    if issuer.egress_selector_type not in ("", "controlplane", "cluster"):
        errs.append(
            field_invalid(
                f"{path}.egressSelectorType",
                issuer.egress_selector_type,
                "egress selector must be either controlplane or cluster",
            )
        )
    return errs


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
    d = StrictDecoder()
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
    specs = [decode_jwt_authenticator(d, raw, p) for p, raw in d.items(top, "jwt", "")]
    anonymous = d.obj(top.get("anonymous"), "anonymous", ("enabled", "conditions"))
    conditions = []
    for cp, c in d.items(anonymous, "conditions", "anonymous"):
        conditions.append(d.string(d.obj(c, cp, ("path",)), "path", cp))
    if not isinstance(anonymous.get("enabled", False), bool):
        d.errors.append("anonymous.enabled: must be a boolean")
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
            errs.append(field_duplicate(f"{path}.issuer.url", spec.issuer.url))
        seen_issuers.add(spec.issuer.url)
        if spec.issuer.discovery_url:
            if spec.issuer.discovery_url in seen_discovery:
                errs.append(
                    field_duplicate(f"{path}.issuer.discoveryURL", spec.issuer.discovery_url)
                )
            seen_discovery.add(spec.issuer.discovery_url)
    if not anonymous.get("enabled") and conditions:
        # kube validation.go; only kube-apiserver serves anonymous requests, this verifier never.
        shown = "[" + ", ".join(f"{{Path:{p}}}" for p in conditions) + "]"
        errs.append(
            f"anonymous.conditions: Invalid value: {shown}: enabled should be set to true when "
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
