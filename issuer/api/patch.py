"""PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch — pure.

Each function takes the current object (as stored, without ``managedFields``) and the patch and
returns the patched document, which then goes through the same decoding, validation and
admission as a PUT body (:mod:`issuer.api.update`).

Errors follow kube-apiserver (apiserver/pkg/endpoints/handlers/patch.go): a patch that is not
valid JSON of the right shape is 400 BadRequest; a JSON patch that cannot be applied (missing
path, failed ``test``) is 422 with the library's reason.

Strategic merge patch (k8s.io/apimachinery pkg/util/strategicpatch, documented in
https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md):
maps merge recursively and ``null`` deletes a key; lists with a merge key
(:mod:`issuer.api.merge_keys`) merge item by item, other lists are replaced; the directives
``$patch: replace|delete|merge``, ``$retainKeys``, ``$deleteFromPrimitiveList/<list>`` and
``$setElementOrder/<list>`` are honoured.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import jsonpatch
import orjson

from issuer.api.errors import bad_request
from issuer.api.merge_keys import list_rule
from issuer.http.status import StatusError

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "json_merge_patch",
    "json_patch",
    "parse_patch_json",
    "strategic_merge_patch",
]

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"

_DIRECTIVE: Final = "$patch"
_RETAIN: Final = "$retainKeys"
_DELETE_PRIMITIVE: Final = "$deleteFromPrimitiveList/"
_ORDER: Final = "$setElementOrder/"


def parse_patch_json(raw: bytes) -> Any:
    """The patch document (400 when it is not JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"error decoding patch: {e}") from None


def json_patch(current: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902: apply ``ops`` (a list of operations) to a copy of ``current``."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise bad_request('the JSON patch must be a list of operations with an "op"')
    try:
        patch = jsonpatch.JsonPatch(ops)
        out = patch.apply(current, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        # kube: patch.go applyJSPatch -> 422 with the library's error text.
        raise StatusError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from None
    except (TypeError, KeyError, IndexError, ValueError) as e:
        raise bad_request(f"invalid JSON patch: {e}") from None
    if not isinstance(out, dict):
        raise bad_request("the patched document is not a JSON object")
    return out


def json_merge_patch(current: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    target = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = json_merge_patch(target.get(key), value)
    return target


def strategic_merge_patch(kind: str, current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a strategic merge patch for a ``kind`` object."""
    if not isinstance(patch, dict):
        raise bad_request("the strategic merge patch must be a JSON object")
    out = _merge_map(kind, (), current, patch)
    if out is None:
        raise bad_request("a strategic merge patch may not delete the whole object")
    return out


def _merge_map(
    kind: str, path: tuple[str, ...], original: Any, patch: dict[str, Any]
) -> dict[str, Any] | None:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    target = dict(original) if isinstance(original, dict) else {}
    retain = patch.get(_RETAIN)
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN) or key.startswith(_ORDER):
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(value, list) and isinstance(target.get(field), list):
                target[field] = [v for v in target[field] if v not in value]
            continue
        sub = (*path, key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(kind, sub, target.get(key), value)
            if merged is None:
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            target[key] = _merge_list(kind, sub, target.get(key), value)
        else:
            target[key] = copy.deepcopy(value)
    for key, value in patch.items():
        if key.startswith(_ORDER) and isinstance(value, list):
            field = key[len(_ORDER) :]
            if isinstance(target.get(field), list):
                target[field] = _reorder(kind, (*path, field), target[field], value)
    if isinstance(retain, list):
        target = {k: v for k, v in target.items() if k in retain}
    return target


def _merge_list(kind: str, path: tuple[str, ...], original: Any, patch: list[Any]) -> list[Any]:
    rule = list_rule(kind, path)
    current = list(original) if isinstance(original, list) else []
    if rule is None:
        return [_strip_directives(v) for v in patch if not _is_directive_item(v)]
    if any(isinstance(v, dict) and v.get(_DIRECTIVE) == "replace" for v in patch):
        return [_strip_directives(v) for v in patch if not _is_directive_item(v)]
    key = rule.patch_key
    if key is None:  # a set of scalars: union, in order
        for v in patch:
            if v not in current:
                current.append(copy.deepcopy(v))
        return current
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"the patch item {item!r} of {'.'.join(path)} is not an object")
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next(
            (i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if index is not None:
                del current[index]
            continue
        if index is None:
            current.append(_strip_directives(item))
        else:
            merged = _merge_map(kind, path, current[index], item)
            if merged is not None:
                current[index] = merged
    return current


def _is_directive_item(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {_DIRECTIVE}


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {
            k: _strip_directives(x) for k, x in v.items() if not k.startswith("$") and x is not None
        }
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


def _reorder(kind: str, path: tuple[str, ...], items: list[Any], order: list[Any]) -> list[Any]:
    rule = list_rule(kind, path)
    key = rule.patch_key if rule is not None else None

    def ident(v: Any) -> Any:
        return v.get(key) if key is not None and isinstance(v, dict) else v

    wanted = [ident(o) for o in order]
    ranked = [x for w in wanted for x in items if ident(x) == w]
    rest = [x for x in items if ident(x) not in wanted]
    return ranked + rest
