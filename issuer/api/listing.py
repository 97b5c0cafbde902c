"""List requests: ``limit``/``continue`` pagination and ``labelSelector``/``fieldSelector``,
as kube-apiserver serves them (k8s.io/apiserver/pkg/storage: continue.go, etcd3/store.go GetList).

- ``limit=N`` returns at most N items and, when more may follow, ``metadata.continue``: kube's
  token (base64url of ``{"v":"meta.k8s.io/v1","rv":RV,"start":"<key>\\u0000"}``, the key being
  ``ns/name`` in an all-namespaces list and ``name`` otherwise). Each page is one range read of
  the store's (namespace, name) order (:meth:`issuer.store.Store.list_objects_page`), so its
  cost depends on N, not on the collection. Pages are not one snapshot: an object written
  between two pages appears if it sorts after the last one returned (kube gives that guarantee
  only until its etcd compaction; a client must not rely on it here).
- A label selector that requires one value (``key=value``, ``key==value``, ``key in (value)``)
  carried by fewer than one object in :data:`INDEX_RATIO` is answered from the label index
  (:mod:`issuer.label_index`): only the objects carrying that pair are read, however few they
  are among however many.
- Other selectors filter the objects read in (namespace, name) order. With ``limit``, one
  request reads at most :data:`SCAN_BUDGET` objects: a page may hold fewer than N items and still
  carry a ``continue`` token, which kube allows ("the server may return fewer than limit
  items... clients must use the continue field"). Without ``limit`` the whole collection is
  read, as kube does.
- A bad ``limit``, selector or token is 400 BadRequest with kube's message; a field selector on
  a field the kind does not support is 400 ``field label not supported: F`` (kube: the kinds'
  ``*FieldLabelConversionFunc``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from issuer.api.errors import bad_request
from issuer.label_index import label_index_for
from issuer.selectors import (
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from issuer.store import JSON, NotFound, Store

__all__ = [
    "INDEX_RATIO",
    "INVALID_CONTINUE",
    "SCAN_BUDGET",
    "ListOptions",
    "ListResult",
    "decode_continue",
    "encode_continue",
    "field_set",
    "list_collection",
    "list_response",
    "parse_list_options",
    "selector_predicate",
    "store_resource_version",
    "with_name",
]

#: Most objects one paginated request with a selector reads before it answers (with a continue
#: token if the page is not full).
SCAN_BUDGET: Final = 5000
#: A required label pair carried by fewer than one object in this many is served from the label
#: index (one read per object found); more common pairs by the scan, whose reads of neighbouring
#: objects are cheaper than that many single reads.
INDEX_RATIO: Final = 20
#: Objects read per store round trip while filtering.
_CHUNK: Final = 500

_CONTINUE_VERSION: Final = "meta.k8s.io/v1"
#: kube: storage.ErrInvalidContinue's text (apiserver pkg/storage/continue.go).
INVALID_CONTINUE: Final = "invalid continue token: continue key is not valid"

# kube: the kinds' field label conversion funcs (pkg/apis/core/v1/conversion.go,
# pkg/registry/core/*/strategy.go ToSelectableFields). Every kind has metadata.name and
# metadata.namespace (DefaultMetaV1FieldSelectorConversion).
_META_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})
_KIND_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
}


def _go_bool(value: Any) -> str:
    return "true" if value is True else "false"


def field_set(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` (kube: ToSelectableFields), absent ones as ""."""
    meta = obj.get("metadata") or {}
    out = {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
    }
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    if kind == "Pod":
        for f in ("nodeName", "restartPolicy", "schedulerName", "serviceAccountName"):
            out[f"spec.{f}"] = str(spec.get(f) or "")
        out["spec.hostNetwork"] = _go_bool(spec.get("hostNetwork"))
        for f in ("phase", "podIP", "nominatedNodeName"):
            out[f"status.{f}"] = str(status.get(f) or "")
    elif kind == "Secret":
        out["type"] = str(obj.get("type") or "")
    elif kind == "Namespace":
        out["status.phase"] = str(status.get("phase") or "")
    elif kind == "Node":
        out["spec.unschedulable"] = _go_bool(spec.get("unschedulable"))
    return out


@dataclass(frozen=True, slots=True)
class ListOptions:
    """What a list request asked for: ``limit`` 0 means everything."""

    limit: int = 0
    after: tuple[str, str] | None = None
    token_rv: int = 0
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    @property
    def filtered(self) -> bool:
        """Whether a selector restricts the items."""
        return bool(
            (self.labels and self.labels.requirements) or (self.fields and self.fields.requirements)
        )


@dataclass(frozen=True, slots=True)
class ListResult:
    """One list response's items, its resourceVersion and its continue token ("" = none)."""

    items: list[JSON]
    resource_version: int
    continue_token: str = ""


def encode_continue(after: tuple[str, str], all_namespaces: bool, rv: int) -> str:
    """kube: storage.EncodeContinue — the next page starts after ``after``."""
    start = f"{after[0]}/{after[1]}" if all_namespaces else after[1]
    raw = json.dumps({"v": _CONTINUE_VERSION, "rv": rv, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str, namespace: str | None) -> tuple[tuple[str, str], int]:
    """kube: storage.DecodeContinue -> (``after`` for the store, the token's rv); 400 with
    kube's texts when it is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        if any(c in token for c in "+/="):
            raise binascii.Error("illegal base64 data")
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as e:
        raise bad_request(f"{INVALID_CONTINUE}: {e}") from None
    if not isinstance(data, dict):
        raise bad_request(f"{INVALID_CONTINUE}: not a continue token")
    version, rv, start = data.get("v"), data.get("rv"), data.get("start")
    if version != _CONTINUE_VERSION:
        raise bad_request(
            f"{INVALID_CONTINUE}: server does not recognize this encoded version {version}"
        )
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise bad_request(
            "invalid continue token: continue key is not valid: incorrect encoded start "
            "resourceVersion (version meta.k8s.io/v1)"
        )
    if not isinstance(start, str) or not start:
        raise bad_request(
            "invalid continue token: continue key is not valid: encoded start key empty "
            "(version meta.k8s.io/v1)"
        )
    key = start.removesuffix("\x00")
    parts = key.split("/")
    if namespace is None and len(parts) == 2 and all(parts):
        return (parts[0], parts[1]), rv
    if namespace is not None and len(parts) == 1 and parts[0]:
        return (namespace, parts[0]), rv
    raise bad_request(f"{INVALID_CONTINUE}: {start}")


def parse_list_options(query: Mapping[str, str], kind: str, namespace: str | None) -> ListOptions:
    """The list parameters of a request's query; 400 for bad ones (kube's texts)."""
    limit = 0
    raw = query.get("limit")
    if raw:
        try:
            limit = int(raw, 10)
        except ValueError:
            raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
    limit = max(0, limit)  # kube: limit <= 0 means no limit
    after: tuple[str, str] | None = None
    token_rv = 0
    token = query.get("continue")
    if token:
        after, token_rv = decode_continue(token, namespace)
    try:
        labels = parse_label_selector(query.get("labelSelector") or "")
        fields = parse_field_selector(query.get("fieldSelector") or "")
    except SelectorError as e:
        raise bad_request(str(e)) from None
    unsupported = fields.unsupported(_META_FIELDS | _KIND_FIELDS.get(kind, frozenset()))
    if unsupported is not None:
        raise bad_request(f"field label not supported: {unsupported}")
    return ListOptions(limit, after, token_rv, labels, fields)


def with_name(opts: ListOptions, name: str | None) -> ListOptions:
    """The options of a request naming one object in its path (the deprecated ``.../watch/...
    /{name}``): a watch with ``fieldSelector metadata.name={name}``, as kube-apiserver serves
    it (k8s.io/apiserver pkg/endpoints/handlers/get.go ListResource: "the allowed field
    selectors in this branch are: nil, fields.Everything and field selector matching
    metadata.name for our name"; any other is 400). ``name`` None: ``opts`` as they are."""
    if name is None:
        return opts
    if opts.fields is not None and opts.fields.requirements:
        if opts.fields.exact("metadata.name") != name:
            raise bad_request("fieldSelector metadata.name doesn't match requested name")
        return opts
    only = FieldSelector((FieldRequirement("metadata.name", name),))
    return replace(opts, fields=only)


def list_response(result: ListResult, list_kind: str, api_version: str) -> JSON:
    """The ``<Kind>List`` document (``metadata.continue`` only when more may follow)."""
    meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
    if result.continue_token:
        meta["continue"] = result.continue_token
    return {"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": result.items}


def _exact_pair(labels: LabelSelector | None) -> tuple[str, str] | None:
    """A ``key=value`` every match must carry (kube: RequiresExactMatch), if the selector has
    one."""
    if labels is None:
        return None
    for requirement in labels.requirements:
        value = labels.exact(requirement.key)
        if value is not None:
            return (requirement.key, value)
    return None


def _indexed(
    store: Store,
    kind: str,
    namespace: str | None,
    opts: ListOptions,
    pair: tuple[str, str],
    keep: Callable[[Mapping[str, Any]], bool],
    snapshot: int,
) -> ListResult:
    """A list whose label selector requires ``pair``: only the objects carrying it are read, in
    (namespace, name) order, found in the label index (:mod:`issuer.label_index`); each is read
    from the store and checked against the whole selector (it may have changed since)."""
    index = label_index_for(store, kind)
    out: list[JSON] = []
    after = opts.after
    read = max_rv = 0

    def rv() -> int:
        return opts.token_rv or snapshot or max_rv

    while True:
        keys = index.keys_after(pair, namespace, after, _CHUNK)
        for ns, name in keys:
            read += 1
            after = (ns, name)
            try:
                obj = store.get_object(kind, ns, name)
            except NotFound:
                continue  # deleted since the index caught up
            max_rv = max(max_rv, _rv(obj))
            if keep(obj):
                out.append(obj)
                if opts.limit and len(out) == opts.limit:
                    more = bool(index.keys_after(pair, namespace, after, 1))
                    return _result(out, after, namespace, rv(), more)
            if opts.limit and read >= SCAN_BUDGET:
                return _result(out, after, namespace, rv(), True)
        if len(keys) < _CHUNK:
            return _result(out, after, namespace, rv(), False)


def _result(
    out: list[JSON], after: tuple[str, str] | None, namespace: str | None, rv: int, more: bool
) -> ListResult:
    token = encode_continue(after, namespace is None, max(1, rv)) if more and after else ""
    return ListResult(out, rv, token)


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def selector_predicate(
    kind: str,
    opts: ListOptions,
    fields: Callable[[str, Mapping[str, Any]], Mapping[str, str]] = field_set,
) -> Callable[[Mapping[str, Any]], bool] | None:
    """Whether an object passes the request's label and field selectors; None when no selector
    restricts anything (lists and watches filter alike)."""
    if not opts.filtered:
        return None

    def keep(obj: Mapping[str, Any]) -> bool:
        if opts.labels is not None and opts.labels.requirements:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if not opts.labels.matches(labels if isinstance(labels, Mapping) else {}):
                return False
        if opts.fields is not None and opts.fields.requirements:
            return opts.fields.matches(fields(kind, obj))
        return True

    return keep


def store_resource_version(store: Store) -> int:
    """The store's newest resourceVersion (every write takes one; its change log knows it)."""
    return store.read_changes(2**62, 1).last_rv


def list_collection(
    store: Store,
    kind: str,
    namespace: str | None,
    opts: ListOptions,
    extra: Sequence[JSON] = (),
    fields: Callable[[str, Mapping[str, Any]], Mapping[str, str]] = field_set,
) -> ListResult:
    """The items of one list request (``namespace`` None: every namespace; "" for cluster-scoped
    kinds). ``extra`` are objects that are listed but not stored (built-in RBAC objects); they
    are merged into the (namespace, name) order."""
    # kube: a fieldSelector metadata.namespace=X narrows an all-namespaces list to X.
    if namespace is None and opts.fields is not None:
        only = opts.fields.exact("metadata.namespace")
        if only is not None:
            namespace = only

    keep = selector_predicate(kind, opts, fields) or (lambda _obj: True)

    def key(obj: Mapping[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def extra_between(lo: tuple[str, str] | None, hi: tuple[str, str] | None) -> list[JSON]:
        return [
            e
            for e in extra
            if (lo is None or key(e) > lo)
            and (hi is None or key(e) <= hi)
            and (namespace is None or key(e)[0] == namespace)
        ]

    # The list's resourceVersion is the store's, read before the objects: a watch started from
    # it (kubectl get -w, informers) then sees every later change, at worst one it already has
    # (kube's is the etcd revision of the read; the newest item's version would skip deletes).
    snapshot = store_resource_version(store)
    pair = _exact_pair(opts.labels) if not extra else None
    if pair is not None and label_index_for(store, kind).selective(pair, INDEX_RATIO):
        return _indexed(store, kind, namespace, opts, pair, keep, snapshot)
    if opts.limit == 0:
        items = store.list_objects(kind, namespace)
        merged = sorted([*items, *extra_between(opts.after, None)], key=key)
        if opts.after is not None:
            merged = [o for o in merged if key(o) > opts.after]
        kept = [o for o in merged if keep(o)]
        return ListResult(kept, snapshot)

    out: list[JSON] = []
    after = opts.after
    scanned = max_rv = 0

    def result(more: bool) -> ListResult:
        return _result(out, after, namespace, opts.token_rv or snapshot or max_rv, more)

    growth = 2
    while True:
        want = opts.limit - len(out)
        size = want
        if opts.filtered:
            # Read a little more than is missing, then more each round (selective selectors).
            size = max(1, min(want * growth, _CHUNK, SCAN_BUDGET - scanned))
            growth *= 2
        page = store.list_objects_page(kind, namespace, size, after)
        # Built-ins up to this page's last stored object (to the end on the last page).
        upper = key(page.items[-1]) if page.next_after is not None else None
        candidates = sorted([*page.items, *extra_between(after, upper)], key=key)
        for i, obj in enumerate(candidates):
            scanned += 1
            max_rv = max(max_rv, _rv(obj))
            after = key(obj)
            if keep(obj):
                out.append(obj)
                if len(out) == opts.limit:
                    return result(i + 1 < len(candidates) or page.next_after is not None)
        if page.next_after is None:
            return result(False)
        if scanned >= SCAN_BUDGET:
            return result(True)  # bounded: a short page, and where to go on
