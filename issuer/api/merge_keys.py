"""How the lists of the served types merge: strategic merge patch and server-side apply metadata.

Transcribed from the struct tags and markers of k8s.io/api (core/v1/types.go, rbac/v1/types.go,
apimachinery meta/v1/types.go): ``patchStrategy:"merge" patchMergeKey:"K"`` makes a list merge
item by item on key ``K`` in a strategic merge patch; ``+listType=map +listMapKey=K`` does the same
for server-side apply, ``+listType=set`` makes a list of scalars a set. Every other list is
*atomic*: a patch or an apply replaces it whole (``ServiceAccount.imagePullSecrets`` has no tags,
so ``kubectl patch sa app -p '{"imagePullSecrets":[...]}'`` replaces the list, as on a real
cluster).

A path is the field names from the object's root, list items skipped:
``("spec", "containers", "env")`` is the ``env`` list of every container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["ListRule", "list_rule"]


@dataclass(frozen=True, slots=True)
class ListRule:
    """How one list merges: ``map`` (by ``keys``) or ``set`` (scalars); absent means atomic."""

    type: Literal["map", "set"]
    keys: tuple[str, ...] = ()

    @property
    def patch_key(self) -> str | None:
        """The strategic-merge-patch merge key (the first map key), None for sets."""
        return self.keys[0] if self.keys else None


_NAME: Final = ListRule("map", ("name",))

#: Lists every object has (ObjectMeta): finalizers merge as a set, ownerReferences by uid.
_META: Final[dict[tuple[str, ...], ListRule]] = {
    ("metadata", "finalizers"): ListRule("set"),
    ("metadata", "ownerReferences"): ListRule("map", ("uid",)),
}

_CONTAINER: Final[dict[tuple[str, ...], ListRule]] = {
    ("ports",): ListRule("map", ("containerPort", "protocol")),
    ("env",): _NAME,
    ("volumeMounts",): ListRule("map", ("mountPath",)),
    ("volumeDevices",): ListRule("map", ("devicePath",)),
    ("resizePolicy",): ListRule("map", ("resourceName",)),
}


def _pod_spec(prefix: tuple[str, ...]) -> dict[tuple[str, ...], ListRule]:
    out: dict[tuple[str, ...], ListRule] = {
        (*prefix, "volumes"): _NAME,
        (*prefix, "imagePullSecrets"): _NAME,
        (*prefix, "hostAliases"): ListRule("map", ("ip",)),
        (*prefix, "resourceClaims"): _NAME,
        (*prefix, "schedulingGates"): _NAME,
    }
    for group in ("containers", "initContainers", "ephemeralContainers"):
        out[(*prefix, group)] = _NAME
        for sub, rule in _CONTAINER.items():
            out[(*prefix, group, *sub)] = rule
    return out


_KIND_LISTS: Final[dict[str, dict[tuple[str, ...], ListRule]]] = {
    # core/v1 ServiceAccount.Secrets: patchStrategy merge, patchMergeKey name.
    "ServiceAccount": {("secrets",): _NAME},
    "Pod": {
        **_pod_spec(("spec",)),
        ("status", "conditions"): ListRule("map", ("type",)),
    },
    "Node": {
        ("spec", "taints"): ListRule("map", ("key", "effect")),
        ("status", "conditions"): ListRule("map", ("type",)),
        ("status", "addresses"): ListRule("map", ("type",)),
    },
    "Namespace": {("status", "conditions"): ListRule("map", ("type",))},
}


def list_rule(kind: str, path: tuple[str, ...]) -> ListRule | None:
    """The merge rule of the list at ``path`` in a ``kind`` object; None when it is atomic."""
    rule = _META.get(path)
    if rule is not None:
        return rule
    table = _KIND_LISTS.get(kind)
    return table.get(path) if table is not None else None
