"""Server-side apply and field ownership (``metadata.managedFields``) — pure.

After kube-apiserver's field manager (k8s.io/apimachinery pkg/util/managedfields, built on
sigs.k8s.io/structured-merge-diff; https://kubernetes.io/docs/reference/using-api/server-side-apply/):

- Every write records who set which fields. An **Update** (create, PUT, PATCH) gives its manager
  the fields whose value it changed and takes them from the other managers; fields it removed
  leave every manager. An **Apply** (``PATCH`` with ``application/apply-patch+yaml``) makes its
  manager own exactly the fields of its configuration.
- An apply that would change a field another manager owns is refused with 409 Conflict, one
  cause per field (``conflict with "kubectl-client-side-apply" using v1``), unless ``force=true``,
  which takes the fields over. Applying the value a field already has shares it, no conflict.
- Fields an applier set before and leaves out now are removed, unless another manager owns them.
- ``kubectl``'s first server-side apply of an object applied client-side takes over the fields
  still at their last-applied value without conflicts (kube: lastappliedmanager.go), so
  ``kubectl apply --server-side`` after ``kubectl apply`` just works, as on a cluster.
- Lists merge by their key (:mod:`issuer.api.merge_keys`): keyed items are owned one by one,
  sets value by value, other lists whole.

Field sets are Python sets of paths; a path is a tuple of structured-merge-diff path elements
(``f:name``, ``k:{"name":"x"}``, ``v:"x"``), serialised as ``fieldsV1`` trees and shown in
errors like fieldpath.Path.String(): ``.spec.containers[name="app"].image``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from issuer.api.errors import go_quote
from issuer.api.merge_keys import ListRule, list_rule
from issuer.http.status import StatusError

__all__ = [
    "APPLY_PATCH",
    "Path",
    "apply_config",
    "base_managed_fields",
    "create_stamp",
    "field_set",
    "fields_v1",
    "from_fields_v1",
    "path_string",
    "record_update",
]

APPLY_PATCH: Final = "application/apply-patch+yaml"
Path = tuple[str, ...]

#: Fields no manager owns: identity and server-set metadata, and status (reset on the main
#: resource, as the pod/namespace/node strategies' GetResetFields do).
_TOP_IGNORED: Final = frozenset({"apiVersion", "kind", "status"})
_META_IGNORED: Final = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _key_element(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    # structured-merge-diff: keys sorted by name, compact JSON.
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys)}, separators=(",", ":"))


def _walk(kind: str, obj: Any, schema: tuple[str, ...], path: Path, out: set[Path]) -> None:
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            if not path and key in _TOP_IGNORED:
                continue
            if schema == ("metadata",) and key in _META_IGNORED:
                continue
            _walk(kind, value, (*schema, key), (*path, f"f:{key}"), out)
        if not obj:
            out.add(path)
        return
    if isinstance(obj, list) and obj:
        rule = list_rule(kind, schema)
        if rule is not None:
            for item in obj:
                elem = _list_element(rule, item)
                if elem is None:
                    out.add(path)  # not keyable (malformed): owned whole
                    return
                out.add((*path, elem))
                if rule.type == "map":
                    _walk(kind, item, schema, (*path, elem), out)
            return
    if path:
        out.add(path)


def _list_element(rule: ListRule, item: Any) -> str | None:
    if rule.type == "set":
        return "v:" + json.dumps(item, separators=(",", ":"))
    if isinstance(item, dict) and all(k in item for k in rule.keys[:1]):
        return _key_element(item, tuple(k for k in rule.keys if k in item))
    return None


def field_set(kind: str, obj: Mapping[str, Any]) -> set[Path]:
    """Every field path ``obj`` sets (leaves, and keyed list items themselves)."""
    out: set[Path] = set()
    _walk(kind, dict(obj), (), (), out)
    return out


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` tree of a field set (a node that is itself owned has a ``"."`` entry)."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for elem in path:
            node = node.setdefault(elem, {})
    for path in paths:
        node = root
        for elem in path:
            node = node[elem]
        if node:
            node["."] = {}
    return root


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    """Inverse of :func:`fields_v1` (anything malformed is ignored)."""
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    if not tree and prefix:
        out.add(prefix)
    for key, sub in tree.items():
        if key == ".":
            out.add(prefix)
        else:
            out |= from_fields_v1(sub, (*prefix, key))
    return out


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): ``.metadata.labels.app``, ``.secrets[name="x"]``, ``[="v"]``."""
    out = []
    for elem in path:
        tag, _, rest = elem.partition(":")
        if tag == "f":
            out.append("." + rest)
        elif tag == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        elif tag == "v":
            out.append(f"[={rest}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


def _resolve(kind: str, obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    schema: tuple[str, ...] = ()
    for elem in path:
        tag, _, rest = elem.partition(":")
        if tag == "f":
            if not isinstance(node, dict) or rest not in node:
                return False, None
            node = node[rest]
            schema = (*schema, rest)
        elif tag == "k":
            rule = list_rule(kind, schema)
            keys = json.loads(rest)
            if not isinstance(node, list) or rule is None:
                return False, None
            match = [
                i
                for i in node
                if isinstance(i, dict) and all(i.get(k) == v for k, v in keys.items())
            ]
            if not match:
                return False, None
            node = match[0]
        elif tag == "v":
            value = json.loads(rest)
            if not isinstance(node, list) or value not in node:
                return False, None
            node = value
        else:
            return False, None
    return True, node


def _entries(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = obj.get("metadata") or {}
    raw = meta.get("managedFields") or []
    return [dict(e) for e in raw if isinstance(e, dict)]


def _entry_set(entry: Mapping[str, Any]) -> set[Path]:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _entry(
    manager: str, operation: str, api_version: str, now: str, paths: set[Path]
) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(paths),
    }


def _same(entry: Mapping[str, Any], manager: str, operation: str) -> bool:
    return entry.get("manager") == manager and entry.get("operation") == operation


def _print_manager(entry: Mapping[str, Any]) -> str:
    # apimachinery managedfields/internal/conflict.go printManager.
    out = go_quote(str(entry.get("manager", "")))
    if entry.get("operation") == "Update":
        if entry.get("time"):
            return f"{out} using {entry.get('apiVersion', '')} at {entry['time']}"
        return f"{out} using {entry.get('apiVersion', '')}"
    return out


def _conflict_error(
    kind: str, resource: str, name: str, group: str, conflicts: list[tuple[dict[str, Any], Path]]
) -> StatusError:
    """kube: errors.NewApplyConflict with managedfields/internal/conflict.go's message."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_print_manager(e)}",
            "field": path_string(p),
        }
        for e, p in conflicts
    ]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(e)}: " + (
            path_string(p)
        )
    else:
        by_manager: dict[str, list[str]] = {}
        for e, p in conflicts:
            by_manager.setdefault(_print_manager(e), []).append(path_string(p))
        lines: list[str] = []
        for m in sorted(by_manager):
            lines.append(f"conflicts with {m}:")
            lines += [f"- {p}" for p in by_manager[m]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    details: dict[str, Any] = {"name": name, "kind": resource, "causes": causes}
    if group:
        details["group"] = group
    return StatusError(409, "Conflict", message, details)


#: The one manager whose applies upgrade client-side apply's ownership (kube: only "kubectl").
_KUBECTL: Final = "kubectl"
#: kube: corev1.LastAppliedConfigAnnotation.
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied_fields(kind: str, live: Mapping[str, Any]) -> set[Path]:
    """Fields of ``live``'s last-applied configuration whose live value is still the applied
    one (kube: lastAppliedManager.allowedConflictsFromLastApplied)."""
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(raw, str):
        return set()
    try:
        applied = json.loads(raw)
    except ValueError:
        return set()
    if not isinstance(applied, dict):
        return set()
    out = set()
    for path in field_set(kind, applied):
        had, value = _resolve(kind, live, path)
        _, wanted = _resolve(kind, applied, path)
        if had and value == wanted:
            out.add(path)
    return out


def _remove_path(kind: str, obj: dict[str, Any], path: Path) -> None:
    """Delete the field or list item at ``path`` (no-op when absent)."""
    if not path:
        return
    found, parent = _resolve(kind, obj, path[:-1])
    if not found:
        return
    tag, _, rest = path[-1].partition(":")
    if tag == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif tag == "k" and isinstance(parent, list):
        keys = json.loads(rest)
        parent[:] = [
            i
            for i in parent
            if not (isinstance(i, dict) and all(i.get(k) == v for k, v in keys.items()))
        ]
    elif tag == "v" and isinstance(parent, list):
        value = json.loads(rest)
        parent[:] = [i for i in parent if i != value]


def _merge(kind: str, schema: tuple[str, ...], base: Any, config: Any) -> Any:
    """Structural merge of an applied configuration into the live object."""
    if isinstance(config, dict) and isinstance(base, dict):
        out = dict(base)
        for key, value in config.items():
            out[key] = _merge(kind, (*schema, key), base.get(key), value)
        return out
    if isinstance(config, list) and isinstance(base, list):
        rule = list_rule(kind, schema)
        if rule is None:
            return copy.deepcopy(config)
        merged = list(base)
        for item in config:
            elem = _list_element(rule, item)
            index = next((i for i, b in enumerate(merged) if _list_element(rule, b) == elem), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            elif rule.type == "map":
                merged[index] = _merge(kind, schema, merged[index], item)
        return merged
    return copy.deepcopy(config)


def _prune_empty(kind: str, obj: dict[str, Any], removed: Iterable[Path]) -> None:
    # Removing the last field of a map leaves the map empty: drop it as SMD does.
    for path in sorted(removed, key=len, reverse=True):
        for cut in range(len(path) - 1, 0, -1):
            found, node = _resolve(kind, obj, path[:cut])
            if found and node in ({}, []) and path[cut - 1].startswith("f:"):
                _remove_path(kind, obj, path[:cut])
            else:
                break


def apply_config(
    kind: str,
    live: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    force: bool,
    resource: str,
    group: str = "",
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live`` (None: apply creates), with
    its managedFields; 409 Conflict when it overrules another manager (see the module docstring).
    """
    name = str((config.get("metadata") or {}).get("name", ""))
    applied = field_set(kind, config)
    entries = _entries(live) if live is not None else []
    base = copy.deepcopy(live) if live is not None else {}
    conflicts: list[tuple[dict[str, Any], Path]] = []
    for entry in entries:
        if _same(entry, manager, "Apply"):
            continue
        for path in sorted(_entry_set(entry) & applied):
            had, old = _resolve(kind, base, path)
            _, new = _resolve(kind, config, path)
            if had and old != new and not path[-1].startswith("k:"):
                conflicts.append((entry, path))
    if conflicts and not force and manager == _KUBECTL:
        # kube: lastappliedmanager.go — kubectl's first server-side apply of an object it
        # applied client-side takes over, without conflicts, the fields whose live value is
        # still the one in the last-applied annotation.
        allowed = _last_applied_fields(kind, base)
        remaining = [(e, p) for e, p in conflicts if p not in allowed]
        if remaining:
            raise _conflict_error(kind, resource, name, group, remaining)
        force = True
    if conflicts and not force:
        raise _conflict_error(kind, resource, name, group, conflicts)
    taken = {p for _, p in conflicts}
    others: set[Path] = set()
    kept: list[dict[str, Any]] = []
    previous: set[Path] = set()
    for entry in entries:
        if _same(entry, manager, "Apply"):
            previous = _entry_set(entry)
            continue
        paths = _entry_set(entry) - taken
        others |= paths
        if paths:
            kept.append({**entry, "fieldsV1": fields_v1(paths)})
    removed = {p for p in previous - applied if p not in others}
    for path in sorted(removed, key=len, reverse=True):
        _remove_path(kind, base, path)
    _prune_empty(kind, base, removed)
    meta_live = dict(base.get("metadata") or {})
    merged = _merge(kind, (), base, config)
    meta = dict(merged.get("metadata") or {})
    for key in ("uid", "creationTimestamp"):
        if key in meta_live:
            meta[key] = meta_live[key]
    # A resourceVersion in the configuration is a precondition; without one the apply is
    # unconditional (the live version passes the check).
    if "resourceVersion" in meta_live and not (config.get("metadata") or {}).get("resourceVersion"):
        meta["resourceVersion"] = meta_live["resourceVersion"]
    meta["managedFields"] = [*kept, _entry(manager, "Apply", api_version, now, applied)]
    merged["metadata"] = meta
    return dict(merged)


def record_update(
    kind: str,
    old: Mapping[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
) -> None:
    """Set ``new``'s managedFields after an Update by ``manager`` (create when ``old`` is None):
    it takes the fields it changed; fields that are gone leave every manager. The entries start
    from ``new``'s own managedFields when it has them (see :func:`base_managed_fields`), else
    from ``old``'s."""
    new_set = field_set(kind, new)
    if (new.get("metadata") or {}).get("managedFields") is not None:
        entries = _entries(new)
    else:
        entries = _entries(old) if old is not None else []
    if old is None:
        changed = new_set
        gone: set[Path] = set()
    else:
        old_set = field_set(kind, old)
        gone = old_set - new_set
        changed = {p for p in new_set if _resolve(kind, old, p) != _resolve(kind, new, p)}
    out: list[dict[str, Any]] = []
    mine: set[Path] = set(changed)
    for entry in entries:
        paths = _entry_set(entry) - gone
        if _same(entry, manager, "Update"):
            mine |= paths
            continue
        paths -= changed
        if paths:
            out.append({**entry, "fieldsV1": fields_v1(paths)})
    if mine:
        out.append(_entry(manager, "Update", api_version, now, mine))
    meta = new.setdefault("metadata", {})
    if out:
        meta["managedFields"] = out
    else:
        meta.pop("managedFields", None)


def create_stamp(
    kind: str, api_version: str, manager: str, now: str, managed: list[Any] | None = None
) -> Callable[[dict[str, Any]], None]:
    """A create hook setting managedFields: ``managed`` as given (an apply that creates), else
    an Update by ``manager`` owning every field of the new object."""

    def stamp(obj: dict[str, Any]) -> None:
        if managed is not None:
            obj["metadata"]["managedFields"] = managed
        elif manager:
            record_update(kind, None, obj, manager=manager, api_version=api_version, now=now)

    return stamp


def base_managed_fields(given: Any, live: list[Any]) -> list[dict[str, Any]] | None:
    """What an update's field tracking starts from (kube: managedfields/internal/fieldmanager.go
    decodeLiveOrNew): the managedFields the request wrote, when it wrote decodable ones — so a
    client may rewrite them, as kubectl does when it moves an object from client-side to
    server-side apply — else the live ones (clients that drop them do not erase them). None for
    ``[{}]``, which resets them: the object then has none."""
    if given == [{}]:
        return None
    if isinstance(given, list) and given and all(_valid_entry(e) for e in given):
        return [dict(e) for e in given]
    return [dict(e) for e in live if isinstance(e, dict)]


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("manager"), str)
        and entry.get("operation") in ("Apply", "Update")
        and isinstance(entry.get("fieldsV1", {}), dict)
    )
