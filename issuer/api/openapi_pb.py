"""The OpenAPI v2 document as protobuf: gnostic's ``openapi.v2.Document``, what client-go reads.

client-go fetches ``/openapi/v2`` with ``Accept: application/com.github.proto-openapi.spec.v2@v1.0
+protobuf`` and decodes it with gnostic (k8s.io/client-go discovery OpenAPISchema; kubectl's
client-side validation and QueryParamVerifier use it). This module encodes a JSON OpenAPI v2
document into that message — the field numbers are those of gnostic-models
openapiv2/OpenAPIv2.proto — covering what Kubernetes' documents use: schemas (``$ref``,
types, formats, items, properties, additionalProperties, required, enums/defaults as YAML,
vendor extensions), path items, operations, body/query/path parameters and responses.
Vendor-extension and ``Any`` values are carried as YAML text; JSON is YAML, so the JSON
rendering of the value is used, as kube-openapi does for JSON-typed values. Pure.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

__all__ = ["encode_document"]

_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 negatives: two's complement, ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _bytes(num: int, data: bytes) -> bytes:
    return _key(num, _LEN) + _varint(len(data)) + data


def _str(num: int, value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        return b""
    return _bytes(num, value.encode())


def _strs(num: int, values: Any) -> bytes:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return b""
    return b"".join(_bytes(num, v.encode()) for v in values if isinstance(v, str))


def _bool(num: int, value: Any) -> bytes:
    return _key(num, _VARINT) + b"\x01" if value is True else b""


def _int(num: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        return b""
    return _key(num, _VARINT) + _varint(value)


def _double(num: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
        return b""
    return _key(num, _I64) + struct.pack("<d", float(value))


def _any(value: Any) -> bytes:
    # Any { google.protobuf.Any value = 1; string yaml = 2; }
    return _bytes(2, orjson.dumps(value))


def _msg(num: int, body: bytes) -> bytes:
    return _bytes(num, body)


def _named(num: int, items: Iterable[tuple[str, bytes]]) -> bytes:
    # Named* messages: { string name = 1; <T> value = 2; }
    return b"".join(_msg(num, _str(1, name) + _msg(2, body)) for name, body in items)


def _extensions(num: int, obj: Mapping[str, Any]) -> bytes:
    return _named(num, ((k, _any(v)) for k, v in obj.items() if k.startswith("x-")))


def schema(obj: Mapping[str, Any]) -> bytes:
    """gnostic ``Schema``."""
    out = [
        _str(1, obj.get("$ref")),
        _str(2, obj.get("format")),
        _str(3, obj.get("title")),
        _str(4, obj.get("description")),
    ]
    if "default" in obj:
        out.append(_msg(5, _any(obj["default"])))
    out += [
        _double(6, obj.get("multipleOf")),
        _double(7, obj.get("maximum")),
        _bool(8, obj.get("exclusiveMaximum")),
        _double(9, obj.get("minimum")),
        _bool(10, obj.get("exclusiveMinimum")),
        _int(11, obj.get("maxLength")),
        _int(12, obj.get("minLength")),
        _str(13, obj.get("pattern")),
        _int(14, obj.get("maxItems")),
        _int(15, obj.get("minItems")),
        _bool(16, obj.get("uniqueItems")),
        _int(17, obj.get("maxProperties")),
        _int(18, obj.get("minProperties")),
        _strs(19, obj.get("required")),
    ]
    out += [_msg(20, _any(v)) for v in obj.get("enum") or ()]
    extra = obj.get("additionalProperties")
    if isinstance(extra, Mapping):
        out.append(_msg(21, _msg(1, schema(extra))))
    elif isinstance(extra, bool):
        out.append(_msg(21, _key(2, _VARINT) + (b"\x01" if extra else b"\x00")))
    if "type" in obj:
        out.append(_msg(22, _strs(1, obj["type"])))
    items = obj.get("items")
    if isinstance(items, Mapping):
        items = [items]
    if isinstance(items, list):
        out.append(_msg(23, b"".join(_msg(1, schema(i)) for i in items)))
    out += [_msg(24, schema(s)) for s in obj.get("allOf") or ()]
    props = obj.get("properties")
    if isinstance(props, Mapping):
        out.append(_msg(25, _named(1, ((k, schema(v)) for k, v in props.items()))))
    out += [_str(26, obj.get("discriminator")), _bool(27, obj.get("readOnly"))]
    if "example" in obj:
        out.append(_msg(30, _any(obj["example"])))
    out.append(_extensions(31, obj))
    return b"".join(out)


def _non_body(param: Mapping[str, Any]) -> bytes:
    # NonBodyParameter oneof: header 1, formData 2, query 3, path 4. Field numbers of the
    # sub-schemas: query/formData put allow_empty_value at 5 (type 6 ...), path/header do not.
    where = param.get("in")
    shifted = where in ("query", "formData")
    t = 6 if shifted else 5
    body = b"".join(
        [
            _bool(1, param.get("required")),
            _str(2, where),
            _str(3, param.get("description")),
            _str(4, param.get("name")),
            _str(t, param.get("type")),
            _str(t + 1, param.get("format")),
            _bool(t + 14, param.get("uniqueItems")),
            _extensions(t + 17, param),
        ]
    )
    choice = {"header": 1, "formData": 2, "query": 3, "path": 4}.get(str(where), 3)
    return _msg(choice, body)


def parameter(param: Mapping[str, Any]) -> bytes:
    """gnostic ``Parameter`` (body or non-body)."""
    if param.get("in") == "body":
        body = b"".join(
            [
                _str(1, param.get("description")),
                _str(2, param.get("name")),
                _str(3, "body"),
                _bool(4, param.get("required")),
                _msg(5, schema(param.get("schema") or {})),
                _extensions(6, param),
            ]
        )
        return _msg(1, body)
    return _msg(2, _non_body(param))


def _parameters_item(num: int, param: Mapping[str, Any]) -> bytes:
    # ParametersItem oneof: parameter 1, json_reference 2 ({_ref 1, description 2}).
    if "$ref" in param:
        return _msg(num, _msg(2, _str(1, param["$ref"])))
    return _msg(num, _msg(1, parameter(param)))


def _responses(responses: Mapping[str, Any]) -> bytes:
    items = []
    for code, resp in responses.items():
        body = _str(1, resp.get("description"))
        if "schema" in resp:
            body += _msg(2, _msg(1, schema(resp["schema"])))  # SchemaItem.schema
        items.append((code, _msg(1, body)))  # ResponseValue.response
    return _named(1, items)


def operation(op: Mapping[str, Any]) -> bytes:
    """gnostic ``Operation``."""
    return b"".join(
        [
            _strs(1, op.get("tags")),
            _str(2, op.get("summary")),
            _str(3, op.get("description")),
            _str(5, op.get("operationId")),
            _strs(6, op.get("produces")),
            _strs(7, op.get("consumes")),
            *(_parameters_item(8, p) for p in op.get("parameters") or ()),
            _msg(9, _responses(op.get("responses") or {})),
            _strs(10, op.get("schemes")),
            _bool(11, op.get("deprecated")),
            _extensions(13, op),
        ]
    )


_OPERATIONS: Final[tuple[tuple[str, int], ...]] = (
    ("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("options", 6), ("head", 7), ("patch", 8),
)  # fmt: skip


def path_item(item: Mapping[str, Any]) -> bytes:
    """gnostic ``PathItem``."""
    out = [_str(1, item.get("$ref"))]
    out += [_msg(num, operation(item[m])) for m, num in _OPERATIONS if m in item]
    out += [_parameters_item(9, p) for p in item.get("parameters") or ()]
    out.append(_extensions(10, item))
    return b"".join(out)


def _map(num: int, items: Mapping[str, Any], encode: Callable[[Mapping[str, Any]], bytes]) -> bytes:
    return _msg(num, _named(1, ((k, encode(v)) for k, v in items.items())))


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """gnostic ``Document`` for a JSON OpenAPI v2 document."""
    info = doc.get("info") or {}
    return b"".join(
        [
            _str(1, doc.get("swagger", "2.0")),
            _msg(2, _str(1, info.get("title")) + _str(2, info.get("version"))),
            _msg(8, _named(2, ((p, path_item(i)) for p, i in (doc.get("paths") or {}).items()))),
            _map(9, doc.get("definitions") or {}, schema),
            _map(10, doc.get("parameters") or {}, parameter),
        ]
    )
