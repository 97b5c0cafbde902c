"""Kubernetes' name and label validation texts (k8s.io/apimachinery/pkg/util/validation/
validation.go), pure, below :mod:`issuer.api` in the import graph (only :mod:`issuer.goquote`
under it), so that :mod:`issuer.selectors` and :mod:`issuer.authz` can use them while
:mod:`issuer.api` is still being imported."""

from __future__ import annotations

import re
from typing import Final

from issuer.goquote import regex_error

__all__ = [
    "bounded_pattern_errors",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "label_value_errors",
    "qualified_name_errors",
]

# kube: apimachinery/pkg/util/validation/validation.go
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_LABEL_RE: Final = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)


def bounded_pattern_errors(
    value: str, max_len: int, pattern: re.Pattern[str], msg: str, fmt: str, *examples: str
) -> list[str]:
    """The two checks every kube string validator makes: the length cap, then the pattern
    (validation.go's MaxLenError + RegexError), in kube's order and words."""
    errs: list[str] = []
    if len(value) > max_len:
        errs.append(f"must be no more than {max_len} characters")
    if pattern.fullmatch(value) is None:
        errs.append(regex_error(msg, fmt, *examples))
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    """kube: IsDNS1123Label — namespaces, container names."""
    return bounded_pattern_errors(
        value,
        63,
        _DNS1123_LABEL_RE,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character",
        _DNS1123_LABEL_FMT,
        "my-name",
        "123-abc",
    )


def dns1123_subdomain_errors(value: str) -> list[str]:
    """kube: IsDNS1123Subdomain — service accounts, pods, secrets, nodes."""
    return bounded_pattern_errors(
        value,
        253,
        _DNS1123_SUBDOMAIN_RE,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
        "or '.', and must start and end with an alphanumeric character",
        _DNS1123_SUBDOMAIN_FMT,
        "example.com",
    )


_QUALIFIED_NAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE: Final = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE_FMT: Final = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_RE: Final = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_MAX_LABEL_LENGTH: Final = 63


def qualified_name_errors(value: str) -> list[str]:
    """kube: IsQualifiedName — label keys (``[prefix/]name``)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += [f"prefix part {m}" for m in dns1123_subdomain_errors(prefix)]
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > _MAX_LABEL_LENGTH:
        errs.append(f"name part must be no more than {_MAX_LABEL_LENGTH} characters")
    if name and _QUALIFIED_NAME_RE.fullmatch(name) is None:
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """kube: IsValidLabelValue."""
    return bounded_pattern_errors(
        value,
        _MAX_LABEL_LENGTH,
        _LABEL_VALUE_RE,
        _LABEL_VALUE_MSG,
        _LABEL_VALUE_FMT,
        "MyValue",
        "my_value",
        "12345",
    )
