"""Label and field selectors, parsed and matched as Kubernetes does. Pure: no I/O.

::

    parse_label_selector("app=web,tier in (a,b),!legacy")    (kube: labels/selector.go Parse)
        -> LabelSelector (requirements sorted by key)
    label_selector_from_json({"matchLabels": ..., "matchExpressions": [...]})
        -> LabelSelector | None (None matches nothing)        (kube: apis/meta/v1/helpers.go
                                                                LabelSelectorAsSelector)
    parse_field_selector("metadata.name=x,status.phase!=Running")
        -> FieldSelector                                      (kube: fields/selector.go)

(kube paths relative to k8s.io/apimachinery/pkg.)

Errors are :class:`SelectorError` with kube's texts (``unable to parse requirement: found 'b',
expected: '('``; ``invalid selector: 'x'; can't understand 'x'``), which the API returns as 400
BadRequest, as kube-apiserver does for a bad ``labelSelector``/``fieldSelector`` query parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from issuer.goquote import go_quote
from issuer.names import label_value_errors, qualified_name_errors

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "SelectorError",
    "label_selector_from_json",
    "parse_field_selector",
    "parse_label_selector",
]


class SelectorError(ValueError):
    """A selector that kube would refuse; ``str()`` is kube's message."""


# kube: selection/operator.go
_IN: Final = "in"
_NOT_IN: Final = "notin"
_EQUALS: Final = "="
_DOUBLE_EQUALS: Final = "=="
_NOT_EQUALS: Final = "!="
_GT: Final = "gt"
_LT: Final = "lt"
_EXISTS: Final = "exists"
_DOES_NOT_EXIST: Final = "!"
_BINARY_OPERATORS: Final = "in, notin, =, ==, !=, gt, lt"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement (kube: labels.Requirement): ``key``, an operator, its values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """kube: Requirement.Matches."""
        op = self.operator
        if op in (_IN, _EQUALS, _DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (_NOT_IN, _NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == _EXISTS:
            return self.key in labels
        if op == _DOES_NOT_EXIST:
            return self.key not in labels
        if op in (_GT, _LT):
            try:
                have = _go_int(labels[self.key])
                want = _go_int(self.values[0])
            except (KeyError, ValueError, IndexError):
                return False
            return have > want if op == _GT else have < want
        return False


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of requirements; no requirements matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every requirement holds for ``labels``."""
        return all(r.matches(labels) for r in self.requirements)

    def exact(self, key: str) -> str | None:
        """kube: RequiresExactMatch — the one value ``key`` must have, if the selector says so."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (_EQUALS, _DOUBLE_EQUALS, _IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None


def _go_int(s: str) -> int:
    # strconv.ParseInt(s, 10, 64): optional sign, decimal digits, 64-bit range.
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError(s)
    value = int(s)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(s)
    return value


def _invalid(path: str, value: str, details: Sequence[str]) -> str:
    # kube: field.Invalid(path, value, strings.Join(errs, "; ")).Error(); a nil path prints <nil>.
    return f"{path}: Invalid value: {go_quote(value)}: {'; '.join(details)}"


def _aggregate(errors: Sequence[str]) -> str:
    # kube: utilerrors.Aggregate.Error — one error bare, several as "[a, b]".
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _new_requirement(key: str, op: str, values: Sequence[str]) -> Requirement:
    """kube: NewRequirement (the parser's path is nil: key errors say ``key``, value errors
    ``values[i][key]``)."""
    errs: list[str] = []
    key_errs = qualified_name_errors(key)
    if key_errs:
        errs.append(_invalid("key", key, key_errs))
    vals = sorted(set(values))  # kube: sets.String(...).List()
    if op in (_IN, _NOT_IN) and not vals:
        errs.append("values: Invalid value: []string{}: for 'in', 'notin' operators, values set "
                    "can't be empty")  # fmt: skip
    if op in (_GT, _LT):
        for i, v in enumerate(vals):
            try:
                _go_int(v)
            except ValueError:
                errs.append(
                    _invalid(
                        f"values[{i}]",
                        v,
                        ["for 'Gt', 'Lt' operators, the value must be an integer"],
                    )
                )
    for i, v in enumerate(vals):
        value_errs = label_value_errors(v)
        if value_errs:
            errs.append(_invalid(f"values[{i}][{key}]", v, value_errs))
    if errs:
        raise SelectorError(_aggregate(errs))
    return Requirement(key, op, tuple(vals))


# --- the label selector parser (kube: labels/selector.go Lexer and Parser) ----------------------

_ERROR, _END, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT_T, _ID, _IN_T, _LT_T, _NEQ, _NOTIN_T, _OPEN = (
    range(14)
)
_STRING_TO_TOKEN: Final = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT_T,
    "in": _IN_T,
    "<": _LT_T,
    "!=": _NEQ,
    "notin": _NOTIN_T,
    "(": _OPEN,
}
_SPECIAL: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(s)
    while True:
        while pos < n and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_END, ""))
            return items
        if s[pos] in _SPECIAL:
            # kube: scanSpecialSymbol — the longest run of special symbols that is a token.
            buf, last = "", (_ERROR, "")
            while pos < n and s[pos] in _SPECIAL:
                buf += s[pos]
                tok = _STRING_TO_TOKEN.get(buf)
                if tok is not None:
                    last = (tok, buf)
                    pos += 1
                elif last[0] != _ERROR:
                    break
                else:
                    pos += 1
            if last[0] == _ERROR:
                items.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                items.append(last)
            continue
        start = pos
        while pos < n and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE:
            pos += 1
        word = s[start:pos]
        items.append((_STRING_TO_TOKEN.get(word, _ID), word))


class _Parser:
    def __init__(self, s: str) -> None:
        self.items = _lex(s)
        self.pos = 0

    def lookahead(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values and tok in (_IN_T, _NOTIN_T):
            tok = _ID
        return tok, lit

    def consume(self, values: bool) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(True)
            if tok in (_ID, _NOT):
                try:
                    reqs.append(self.requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, lit = self.consume(True)
                if t == _END:
                    return reqs
                if t == _COMMA:
                    t2, lit2 = self.lookahead(True)
                    if t2 not in (_ID, _NOT):
                        raise SelectorError(f"found '{lit2}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            if tok == _END:
                return reqs
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = ""
        tok, lit = self.consume(True)
        if tok == _NOT:
            op = _DOES_NOT_EXIST
            tok, lit = self.consume(True)
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key_errs = qualified_name_errors(lit)
        if key_errs:
            raise SelectorError(_invalid("<nil>", lit, key_errs))
        if op or self.lookahead(True)[0] in (_END, _COMMA):
            # kube: "!key" is complete on its own; "!key=v" then fails at the '=' in parse().
            return _new_requirement(lit, op or _EXISTS, ())
        key = lit
        tok, lit = self.consume(False)
        ops = {
            _IN_T: _IN,
            _EQ: _EQUALS,
            _DEQ: _DOUBLE_EQUALS,
            _GT_T: _GT,
            _LT_T: _LT,
            _NOTIN_T: _NOT_IN,
            _NEQ: _NOT_EQUALS,
        }
        if tok not in ops:
            raise SelectorError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        op = ops[tok]
        values = self.set_values() if op in (_IN, _NOT_IN) else self.exact_value()
        return _new_requirement(key, op, values)

    def set_values(self) -> list[str]:
        tok, lit = self.consume(True)
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(True)
        if tok in (_ID, _COMMA):
            values = self.identifiers()
            if self.consume(True)[0] != _CLOSE:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.consume(True)
            return [""]
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        out: set[str] = set()
        while True:
            tok, lit = self.consume(True)
            if tok == _ID:
                out.add(lit)
                tok2, lit2 = self.lookahead(True)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return sorted(out)
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not out:
                    out.add("")
                tok2, _ = self.lookahead(True)
                if tok2 == _CLOSE:
                    out.add("")
                    return sorted(out)
                if tok2 == _COMMA:
                    out.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.lookahead(True)
        if tok in (_END, _COMMA):
            return [""]
        tok, lit = self.consume(True)
        if tok == _ID:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(selector: str) -> LabelSelector:
    """kube: labels.Parse — ``""`` matches everything. Raises SelectorError."""
    reqs = _Parser(selector).parse()
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


_JSON_OPERATORS: Final = {
    "In": _IN,
    "NotIn": _NOT_IN,
    "Exists": _EXISTS,
    "DoesNotExist": _DOES_NOT_EXIST,
}


def label_selector_from_json(obj: Any) -> LabelSelector | None:
    """kube: metav1.LabelSelectorAsSelector — ``None`` (a nil selector) matches nothing, ``{}``
    everything. Raises SelectorError for an unknown operator or invalid keys/values."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise SelectorError("a label selector must be an object")
    match_labels = obj.get("matchLabels") or {}
    expressions = obj.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise SelectorError("matchLabels must be an object and matchExpressions a list")
    reqs: list[Requirement] = []
    for key, value in match_labels.items():
        reqs.append(_new_requirement(str(key), _EQUALS, [str(value)]))
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError("a matchExpressions item must be an object")
        op = str(expr.get("operator") or "")
        values = [str(v) for v in expr.get("values") or []]
        if op not in _JSON_OPERATORS:
            raise SelectorError(f"{go_quote(op)} is not a valid label selector operator")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(
                "values: Invalid value: "
                + "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
                + ": values set must be empty for exists and does not exist"
            )  # fmt: skip
        reqs.append(_new_requirement(str(expr.get("key") or ""), _JSON_OPERATORS[op], values))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# --- field selectors (kube: apimachinery/pkg/fields/selector.go) -------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """``field == value`` or, with ``negate``, ``field != value``."""

    field: str
    value: str
    negate: bool = False


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field requirements; none matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """True when every requirement holds for ``fields`` (absent fields read as "")."""
        for r in self.requirements:
            equal = fields.get(r.field, "") == r.value
            if equal == r.negate:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """kube: RequiresExactMatch."""
        for r in self.requirements:
            if r.field == field and not r.negate:
                return r.value
        return None

    def unsupported(self, supported: frozenset[str]) -> str | None:
        """The first field outside ``supported``, or None."""
        for r in self.requirements:
            if r.field not in supported:
                return r.field
        return None


def _try(piece: str, op: str) -> tuple[str, str] | None:
    parts = piece.split(op)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def parse_field_selector(selector: str) -> FieldSelector:
    """kube: fields.ParseSelector — terms ``f=v``, ``f==v``, ``f!=v`` joined by ``,``."""
    out: list[FieldRequirement] = []
    for part in sorted(selector.split(",")):
        if not part:
            continue
        if (hit := _try(part, "!=")) is not None:
            out.append(FieldRequirement(hit[0], hit[1], negate=True))
        elif (hit := _try(part, "==")) is not None or (hit := _try(part, "=")) is not None:
            out.append(FieldRequirement(hit[0], hit[1]))
        else:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
    return FieldSelector(tuple(out))
