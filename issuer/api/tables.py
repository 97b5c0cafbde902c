"""Server-side printing: ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` answers a GET
with a ``meta.k8s.io/v1`` Table, the columns kube's printers give each type — what ``kubectl
get`` shows (kube: pkg/printers/internalversion/printers.go, apimachinery
pkg/apis/meta/v1/types.go Table; other kinds: registry/rest/table.go DefaultTableConvertor).

=====================  ==========================================================================
kind                   columns (``priority: 1`` ones only with ``-o wide``)
=====================  ==========================================================================
Namespace              Name, Status, Age
ServiceAccount         Name, Secrets, Age
Secret                 Name, Type, Data, Age
Pod                    Name, Ready, Status, Restarts, Age | IP, Node, Nominated Node,
                       Readiness Gates
Node                   Name, Status, Roles, Age, Version | Internal-IP, External-IP, OS-Image,
                       Kernel-Version, Container-Runtime
Role, ClusterRole      Name, Created At
RoleBinding,           Name, Role, Age | Users, Groups, ServiceAccounts
ClusterRoleBinding
anything else          Name, Created At
=====================  ==========================================================================

Each row carries the object as ``includeObject`` asks (``Metadata``, the default: a
``PartialObjectMetadata``; ``Object``: the whole object; ``None``: nothing). Pure, apart from
:func:`table_response` which rewrites a JSON response at the HTTP edge. :func:`wants_table`
and :func:`rows` are what a watch needs to emit Table events.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from issuer.http.status import StatusError

__all__ = [
    "app_now",
    "column_definitions",
    "event_encoder",
    "human_duration",
    "rows",
    "table",
    "table_response",
    "wants_table",
]

_META_GROUP: Final = "meta.k8s.io"
_NAME_DOC: Final = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DOC: Final = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

Column = tuple[str, str, int, str]  # name, type, priority, description
Now = datetime.datetime


def _col(name: str, description: str, priority: int = 0, type_: str = "string") -> Column:
    return (name, type_, priority, description)


_NAME: Final = _col("Name", _NAME_DOC)
_AGE: Final = _col("Age", _AGE_DOC)
_CREATED_AT: Final = _col("Created At", _AGE_DOC, type_="date")

_COLUMNS: Final[Mapping[str, tuple[Column, ...]]] = {
    "Namespace": (_NAME, _col("Status", "The status of the namespace"), _AGE),
    "ServiceAccount": (
        _NAME,
        _col(
            "Secrets",
            "Secrets is a list of the secrets in the same namespace that pods running "
            "using this ServiceAccount are allowed to use.",
        ),
        _AGE,
    ),
    "Secret": (
        _NAME,
        _col("Type", "The type of data stored in the secret"),
        _col("Data", "The number of entries in the data/stringData"),
        _AGE,
    ),
    "Pod": (
        _NAME,
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col(
            "Restarts",
            "The number of times the containers in this pod have been restarted "
            "and when the last container in this pod has restarted.",
        ),
        _AGE,
        _col(
            "IP",
            "podIP address allocated to the pod. Routable at least within the cluster. "
            "Empty if not yet allocated.",
            1,
        ),
        _col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
        _col(
            "Nominated Node",
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
            1,
        ),
        _col(
            "Readiness Gates",
            "If specified, all readiness gates will be evaluated for pod readiness.",
            1,
        ),
    ),
    "Node": (
        _NAME,
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        _AGE,
        _col("Version", "Kubelet Version reported by the node."),
        _col("Internal-IP", "List of addresses reachable to the node.", 1),
        _col("External-IP", "List of addresses reachable to the node.", 1),
        _col("OS-Image", "OS Image reported by the node from /etc/os-release.", 1),
        _col("Kernel-Version", "Kernel Version reported by the node.", 1),
        _col("Container-Runtime", "Container Runtime Version reported by the node.", 1),
    ),
    # sa-oidc.dev/v1: one row per event of the invalidation stream.
    "Invalidation": (
        _col("Seq", "Store-wide, strictly increasing position in the stream.", type_="integer"),
        _col("Type", "ObjectDeleted, KeyRevoked or TokenRevoked."),
        _col("Object", "What was invalidated: KIND/NAMESPACE/NAME, the kid or the jti."),
        _AGE,
    ),
    "RoleBinding": (
        _NAME,
        _col("Role", "Role"),
        _AGE,
        _col("Users", "Users in the roleBinding", 1),
        _col("Groups", "Groups in the roleBinding", 1),
        _col("ServiceAccounts", "ServiceAccounts in the roleBinding", 1),
    ),
}


def column_definitions(kind: str) -> list[dict[str, Any]]:
    """kube's ``TableColumnDefinition``s for ``kind``."""
    columns = _COLUMNS.get(kind) or _COLUMNS.get(_ALIASES.get(kind, ""), (_NAME, _CREATED_AT))
    out = []
    for name, type_, priority, description in columns:
        entry: dict[str, Any] = {"name": name, "type": type_}
        if name == "Name":
            entry["format"] = "name"
        entry["description"] = description
        entry["priority"] = priority
        out.append(entry)
    return out


_ALIASES: Final = {"ClusterRoleBinding": "RoleBinding"}


def human_duration(seconds: float) -> str:
    """kube: apimachinery pkg/util/duration HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(obj: Mapping[str, Any], now: Now) -> str:
    # kube: printers.go translateTimestampSince ("<unknown>" without a timestamp).
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str) or not stamp:
        return "<unknown>"
    try:
        created = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _pod_cells(obj: Mapping[str, Any], now: Now) -> list[Any]:
    # kube: printers.go printPod (sa-oidc stores no container statuses: none ready, 0 restarts).
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if isinstance(c, Mapping) and c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses if isinstance(c, Mapping))
    reason = str(status.get("reason") or status.get("phase") or "")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        _name(obj),
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(obj, now),
        str(status.get("podIP") or "<none>"),
        str(spec.get("nodeName") or "<none>"),
        str(status.get("nominatedNodeName") or "<none>"),
        "<none>" if not gates else f"0/{len(gates)}",
    ]


def _node_cells(obj: Mapping[str, Any], now: Now) -> list[Any]:
    # kube: printers.go printNode.
    status = obj.get("status") or {}
    conditions = {
        c.get("type"): c.get("status")
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    }
    state = "Ready" if conditions.get("Ready") == "True" else "Unknown"
    if conditions.get("Ready") == "False":
        state = "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(
        k.removeprefix("node-role.kubernetes.io/")
        for k in labels
        if k.startswith("node-role.kubernetes.io/")
    )
    info = status.get("nodeInfo") or {}
    addresses = {
        a.get("type"): a.get("address")
        for a in status.get("addresses") or ()
        if isinstance(a, Mapping)
    }
    return [
        _name(obj),
        state,
        ",".join(roles) or "<none>",
        _age(obj, now),
        str(info.get("kubeletVersion") or ""),
        str(addresses.get("InternalIP") or "<none>"),
        str(addresses.get("ExternalIP") or "<none>"),
        str(info.get("osImage") or "<unknown>"),
        str(info.get("kernelVersion") or "<unknown>"),
        str(info.get("containerRuntimeVersion") or "<unknown>"),
    ]


def _binding_cells(obj: Mapping[str, Any], now: Now) -> list[Any]:
    # kube: printers.go printRoleBinding / printClusterRoleBinding.
    ref = obj.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in obj.get("subjects") or ():
        if not isinstance(s, Mapping):
            continue
        if s.get("kind") == "User":
            users.append(str(s.get("name")))
        elif s.get("kind") == "Group":
            groups.append(str(s.get("name")))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace') or ''}/{s.get('name')}")
    return [
        _name(obj),
        f"{ref.get('kind')}/{ref.get('name')}",
        _age(obj, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(sas),
    ]


def _invalidation_cells(obj: Mapping[str, Any], now: Now) -> list[Any]:
    # The followers' flat event names its object's kind; the Kubernetes list's item (issuer.stream)
    # is itself of kind Invalidation and names the object in ``object``.
    ref = obj.get("object")
    if not isinstance(ref, Mapping):
        ref = obj
    what = (
        obj.get("kid")
        or obj.get("jti")
        or "/".join(str(ref[k]) for k in ("kind", "namespace", "name") if ref.get(k))
    )
    at = obj.get("time")
    age = "<unknown>"
    if isinstance(at, int | float) and not isinstance(at, bool):
        age = human_duration(now.timestamp() - at)
    return [obj.get("seq"), str(obj.get("type") or ""), what, age]


_CELLS: Final[Mapping[str, Callable[[Mapping[str, Any], Now], list[Any]]]] = {
    "Namespace": lambda o, now: [
        _name(o), str((o.get("status") or {}).get("phase") or "Active"), _age(o, now)
    ],
    "ServiceAccount": lambda o, now: [_name(o), len(o.get("secrets") or ()), _age(o, now)],
    "Secret": lambda o, now: [
        _name(o),
        str(o.get("type") or "Opaque"),
        len(o.get("data") or {}),
        _age(o, now),
    ],
    "Pod": _pod_cells,
    "Invalidation": _invalidation_cells,
    "Node": _node_cells,
    "RoleBinding": _binding_cells,
    "ClusterRoleBinding": _binding_cells,
}  # fmt: skip


def _default_cells(obj: Mapping[str, Any], now: Now) -> list[Any]:
    return [_name(obj), (obj.get("metadata") or {}).get("creationTimestamp")]


def _row_object(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"{_META_GROUP}/v1",
        "metadata": obj.get("metadata") or {},
    }


def rows(
    kind: str, objects: Sequence[Mapping[str, Any]], now: Now, include: str = "Metadata"
) -> list[dict[str, Any]]:
    """kube's ``TableRow``s for ``objects`` of ``kind``."""
    cells = _CELLS.get(kind, _default_cells)
    out = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells(obj, now)}
        included = _row_object(obj, include)
        if included is not None:
            row["object"] = included
        out.append(row)
    return out


def table(
    kind: str,
    objects: Sequence[Mapping[str, Any]],
    now: Now,
    *,
    version: str = "v1",
    include: str = "Metadata",
    list_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/<version>`` Table for ``objects`` of ``kind``."""
    return {
        "kind": "Table",
        "apiVersion": f"{_META_GROUP}/{version}",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": column_definitions(kind),
        "rows": rows(kind, objects, now, include),
    }


def wants_table(accept: str) -> str | None:
    """The Table version (``v1`` or ``v1beta1``) when ``accept`` prefers a Table to plain JSON
    (the first acceptable entry in the client's order wins), else None."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() not in ("application/json", "*/*", "application/*"):
            continue
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        as_ = opts.get("as")
        if as_ is None:
            return None  # plain JSON comes first
        if as_ == "Table" and opts.get("g") == _META_GROUP and opts.get("v") in ("v1", "v1beta1"):
            return opts["v"]
    return None


def _include_object(request: Request) -> str:
    value = request.query_params.get("includeObject", "") or "Metadata"
    if value not in ("None", "Metadata", "Object"):
        raise StatusError(
            400,
            "BadRequest",
            f"includeObject: Unsupported value: {value!r}: supported values: "
            '"None", "Metadata", "Object"',
            {},
        )
    return value


def app_now(state: Any) -> Now:
    """Now by the app's clock (``state.ctx.clock``; wall time without one), for AGE cells."""
    clock = getattr(getattr(state, "ctx", None), "clock", time.time)
    return datetime.datetime.fromtimestamp(clock(), datetime.UTC)


def event_encoder(
    request: Request, kind: str, now: Callable[[], Now]
) -> Callable[[str, Mapping[str, Any]], bytes] | None:
    """For a watch whose Accept asks for Tables: encode each ADDED/MODIFIED/DELETED event's
    object as a one-row Table (kube: handlers/watch.go transforms every event; kubectl prints the
    header once). Other events (BOOKMARK, ERROR) pass as JSON. None when no Table is wanted."""
    version = wants_table(request.headers.get("accept", ""))
    if version is None:
        return None
    include = _include_object(request)

    def encode(event_type: str, obj: Mapping[str, Any]) -> bytes:
        out: Mapping[str, Any] = obj
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            out = table(kind, [obj], now(), version=version, include=include, list_meta=meta)
        return orjson.dumps({"type": event_type, "object": out}) + b"\n"

    return encode


def table_response(request: Request, response: Response, now: Now) -> Response:
    """``response`` (a JSON object or list answering a GET) as a Table when the request's Accept
    asks for one; anything else unchanged."""
    version = wants_table(request.headers.get("accept", ""))
    if (
        version is None
        or isinstance(response, StreamingResponse)  # a watch: see event_encoder
        or request.method not in ("GET", "HEAD")
        or response.status_code != 200
        or response.media_type != "application/json"
    ):
        return response
    body = orjson.loads(bytes(response.body))
    kind = body.get("kind") if isinstance(body, dict) else None
    if not isinstance(kind, str) or kind in ("Status", "Table") or "metadata" not in body:
        return response
    include = _include_object(request)
    if kind.endswith("List") and isinstance(body.get("items"), list):
        item_kind = kind.removesuffix("List")
        items = [
            {"kind": item_kind, "apiVersion": body.get("apiVersion"), **i} for i in body["items"]
        ]
        out = table(
            item_kind, items, now, version=version, include=include, list_meta=body["metadata"]
        )
    else:
        meta = {"resourceVersion": body["metadata"].get("resourceVersion", "")}
        out = table(kind, [body], now, version=version, include=include, list_meta=meta)
    new = Response(orjson.dumps(out), status_code=200, media_type="application/json")
    for key, value in response.headers.items():
        if key.lower() not in ("content-length", "content-type"):
            new.headers.append(key, value)
    return new
