"""Byte encodings shared by the backends (private): the key-set document and object/event JSON.

Both backends persist the same JSON shapes, so a dump from one can be read by the other and the
conformance suite checks one round-trip rule: every :class:`StoredKey` field comes back equal.
Anything that does not decode raises :class:`StoreCorrupt` — the store never guesses.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson

from issuer.store.base import (
    JSON,
    Change,
    ChangePage,
    Event,
    InvalidAddress,
    StoreCorrupt,
    StoredKey,
)

#: Version of the key-set document layout (inside the stored JSON, not the SQLite schema).
KEYSET_FORMAT = 1


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def encode_keys(keys: Sequence[StoredKey]) -> bytes:
    """Serialize a key set; ``private_enc`` as base64 (it is ciphertext, never plaintext)."""
    doc = {
        "format": KEYSET_FORMAT,
        "keys": [
            {
                "kid": k.kid,
                "alg": k.alg,
                "state": k.state,
                "public_jwk": dict(k.public_jwk),
                "private_enc": base64.b64encode(k.private_enc).decode("ascii"),
                "created_at": float(k.created_at),
                "activate_at": _opt_float(k.activate_at),
                "retired_at": _opt_float(k.retired_at),
                "revoked_at": _opt_float(k.revoked_at),
                "remove_at": _opt_float(k.remove_at),
                "max_token_lifetime": int(k.max_token_lifetime),
            }
            for k in keys
        ],
    }
    # allow_nan=False: NaN/inf are not JSON and would not round-trip through other readers.
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_keys(raw: bytes | str) -> tuple[StoredKey, ...]:
    """Inverse of :func:`encode_keys`; raises StoreCorrupt on anything unexpected."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != KEYSET_FORMAT:
            raise StoreCorrupt(f"key set has unknown format {doc.get('format')!r}")
        return tuple(
            StoredKey(
                kid=str(k["kid"]),
                alg=str(k["alg"]),
                state=k["state"],
                public_jwk=dict(k["public_jwk"]),
                private_enc=base64.b64decode(k["private_enc"], validate=True),
                created_at=float(k["created_at"]),
                activate_at=_opt_float(k.get("activate_at")),
                retired_at=_opt_float(k.get("retired_at")),
                revoked_at=_opt_float(k.get("revoked_at")),
                remove_at=_opt_float(k.get("remove_at")),
                max_token_lifetime=int(k.get("max_token_lifetime", 0)),
            )
            for k in doc["keys"]
        )
    except StoreCorrupt:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise StoreCorrupt(f"stored key set cannot be decoded: {e}") from e


def dump_json(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON bytes for an object or event body (orjson: every write encodes the
    object twice, for the row and the change log, and this is most of a PATCH's own CPU).

    Keys must be strings and integers fit in 64 bits (the API's JSON bodies are parsed by orjson
    too, so they always do; YAML apply configurations are normalized on the way in). A
    non-finite float is written as ``null``; no API input can carry one.
    """
    try:
        return orjson.dumps(obj)
    except TypeError as e:  # orjson.JSONEncodeError is a TypeError
        # Caller error (e.g. bytes inside the object): say so before anything is written.
        raise ValueError(f"object is not JSON-serializable: {e}") from e


def load_json(raw: bytes | str, what: str) -> JSON:
    """Parse a stored JSON object; StoreCorrupt if it is not one."""
    try:
        v = orjson.loads(raw)
    except ValueError as e:  # orjson.JSONDecodeError is a ValueError
        raise StoreCorrupt(f"stored {what} is not valid JSON: {e}") from e
    if not isinstance(v, dict):
        raise StoreCorrupt(f"stored {what} is not a JSON object")
    return cast(JSON, v)


def strip_rv(obj: Mapping[str, Any]) -> JSON:
    """A deep copy of ``obj`` without ``metadata.resourceVersion``: the store owns that field and
    keeps it beside the document, so the stored bytes never disagree with the counter."""
    copy = cast(JSON, orjson.loads(dump_json(obj)))
    meta = copy.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("object metadata must be a JSON object")
    if isinstance(meta, dict):
        meta.pop("resourceVersion", None)
    return copy


def with_rv(obj: JSON, rv: int) -> JSON:
    """Set ``metadata.resourceVersion`` (a string, as in Kubernetes) on ``obj`` in place."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise StoreCorrupt("stored object metadata is not a JSON object")
    meta["resourceVersion"] = str(rv)
    return obj


def object_uid(obj: Mapping[str, Any]) -> str:
    """``metadata.uid`` or "" (the caller owns uids; the store only compares them)."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        uid = meta.get("uid")
        if isinstance(uid, str):
            return uid
    return ""


def check_address(kind: str, namespace: str, name: str) -> None:
    """Reject addresses every backend cannot store alike (:class:`InvalidAddress`).

    ``kind`` and ``namespace`` may not contain ':' (it separates Redis key parts; Kubernetes kinds
    and namespaces never do); ``name`` may ("system:auth-delegator"). None may contain NUL.
    """
    for what, value in (("kind", kind), ("namespace", namespace), ("name", name)):
        if "\x00" in value or (what != "name" and ":" in value):
            raise InvalidAddress(f"invalid {what} {value!r}: may not contain ':' or NUL")
    if not kind or not name:
        raise InvalidAddress("kind and name must not be empty")


def make_event(seq: int, raw: bytes | str) -> Event:
    """Build an Event from its stored JSON body."""
    return Event(seq=seq, data=load_json(raw, f"event {seq}"))


def dump_change(change: str, body: Mapping[str, Any], rv: int, prev: bytes | None = None) -> bytes:
    """One change-log entry: ``{"type": ADDED|MODIFIED|DELETED, "object": <body at rv>}``, and
    ``"prev": <the replaced body>`` when ``prev`` (a stored object document, JSON bytes as
    :func:`dump_json` wrote them) is given: spliced in as it is, never re-encoded."""
    obj = dict(body)
    meta = obj.get("metadata")
    obj["metadata"] = {**(meta if isinstance(meta, dict) else {}), "resourceVersion": str(rv)}
    doc = dump_json({"type": change, "object": obj})
    if prev is None:
        return doc
    return doc[:-1] + b',"prev":' + prev + b"}"


def load_change(rv: int, kind: str, namespace: str, name: str, raw: bytes | str) -> Change:
    """Inverse of :func:`dump_change` (StoreCorrupt if it is not one); a DELETED change's
    ``prev`` is its last state (:attr:`Change.prev`)."""
    doc = load_json(raw, f"change {rv}")
    obj = doc.get("object")
    change = doc.get("type")
    prev = doc.get("prev")
    if (
        not isinstance(obj, dict)
        or change not in ("ADDED", "MODIFIED", "DELETED")
        or not (prev is None or isinstance(prev, dict))
    ):
        raise StoreCorrupt(f"stored change {rv} is not a change record")
    if change == "DELETED":
        prev = obj
    elif change == "ADDED":
        prev = None
    return Change(
        rv=rv, type=change, kind=kind, namespace=namespace, name=name, object=obj, prev=prev
    )


def change_page(
    rows: Sequence[tuple[Any, Any, Any, Any, Any]],
    since: int,
    limit: int,
    kind: str | None,
    floor: int,
    last_rv: int,
) -> ChangePage:
    """A :class:`ChangePage` from ``(rv, kind, namespace, name, doc)`` rows read after ``since``
    (at most ``limit`` of them, all kinds): filtered to ``kind``; ``next_rv`` is where to go on."""
    changes: list[Change] = []
    cursor = since
    for rv, k, ns, name, doc in rows:
        cursor = int(rv)
        if kind is None or k == kind:
            changes.append(load_change(cursor, str(k), str(ns), str(name), doc))
    if len(rows) < limit:
        cursor = max(cursor, last_rv)  # nothing more was logged up to the counter
    return ChangePage(tuple(changes), floor=floor, last_rv=last_rv, next_rv=cursor)
