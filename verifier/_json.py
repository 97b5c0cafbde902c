"""Strict JSON object parsing for JOSE headers and JWT claims.

Rules (RFC 8259, RFC 7515 §5.2, RFC 7519 §7.2):

- UTF-8 only, no byte-order mark (RFC 8259 §8.1); lone surrogates refused.
- The top level must be an object.
- Duplicate member names are refused. RFC 7515 §5.2 step 4 allows "reject" or "lexically last";
  rejecting removes any chance that two parsers (ours and a downstream one) read different values.
- ``NaN``/``Infinity`` and numbers that overflow a double are refused (not JSON, RFC 8259 §6).
- Nesting deeper than ``max_depth`` is refused (cheap DoS guard; claims are shallow).
- Integers beyond 64 bits become floats (orjson's behaviour, mirrored on the slow path); claim
  checks then bound them (a 2^70 ``exp`` is an ``invalid_claim``, not a crash).

Fast path: orjson (rejects NaN, BOM, invalid UTF-8 and lone surrogates; ~7x faster than ``json``)
plus an exact duplicate-member test: if re-serialising the parsed object gives back the input byte
for byte, the input cannot have held a duplicate member (a dict never serialises one twice). That
holds for compact JSON without escapes, which is what issuers emit (kube-apiserver, this project's
issuer). Anything else (whitespace, escapes, ``1e3``-style numbers) takes the slow path:
``json.loads`` with an ``object_pairs_hook``. tests/verifier/test_attacks.py cross-checks the paths.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from .policy import MAX_JSON_DEPTH

__all__ = ["NOT_OPENERS", "JSONError", "loads_object", "loads_object_slow"]


class JSONError(ValueError):
    """The input is not a strict JSON object."""


_MAX_INT_DIGITS: Final = 20  # ~u64; longer integers become floats, as orjson does


def _check_depth(obj: Any, depth: int, max_depth: int) -> None:
    """Raise :class:`JSONError` if ``obj`` nests deeper than ``max_depth``."""
    if depth > max_depth:
        raise JSONError("JSON nested too deeply")
    children = obj.values() if type(obj) is dict else obj
    for v in children:
        if type(v) is dict or type(v) is list:
            _check_depth(v, depth + 1, max_depth)


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise JSONError("duplicate member name")
    return out


def _reject_constant(name: str) -> Any:
    raise JSONError(f"{name} is not JSON")


def _parse_int(text: str) -> int | float:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _parse_float(text)
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONError("number overflows a double")
    return value


#: Every byte except the two openers: deleting them leaves only the '{' and '[' of the text (a
#: cheap upper bound on nesting depth; used here and by the core's fast path).
NOT_OPENERS: Final = bytes(c for c in range(256) if c not in b"{[")


def _depth_ok(raw: bytes, max_depth: int) -> bool:
    # Every level of nesting needs one '{' or '['; if there are at most max_depth of them in the
    # whole text, the depth cannot exceed it (brackets inside strings only make this conservative).
    # One translate-with-delete counts both (two bytes.count calls are two byte-by-byte passes).
    return len(raw.translate(None, NOT_OPENERS)) <= max_depth


def loads_object_slow(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Reference parser (stdlib ``json``): same contract as :func:`loads_object`, slower."""
    if raw[:3] == b"\xef\xbb\xbf":
        raise JSONError("byte-order mark")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_pairs_hook,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except JSONError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JSONError("invalid JSON") from exc
    if type(obj) is not dict:
        raise JSONError("JSON value is not an object")
    # Lone surrogates ("\ud800") are legal for json.loads but not UTF-8 text; orjson refuses them.
    if "\\u" in text and "\\ud" in text.lower():
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError("lone surrogate in string") from None
    if not _depth_ok(raw, max_depth):
        _check_depth(obj, 1, max_depth)
    return obj


def loads_object(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse ``raw`` as a strict JSON object (see the module docstring); else :class:`JSONError`."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise JSONError("invalid JSON") from None
    if type(obj) is not dict:
        raise JSONError("JSON value is not an object")
    # Inline _depth_ok (hot path).
    if orjson.dumps(obj) == raw and len(raw.translate(None, NOT_OPENERS)) <= max_depth:
        return obj
    return loads_object_slow(raw, max_depth)
