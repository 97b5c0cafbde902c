"""OpenAPI (v2 form) of the ``sa-oidc.dev/v1`` group, which Kubernetes has no definitions for:
the invalidation stream's list page and events, and TokenRevocation (:mod:`issuer.stream`,
:mod:`issuer.revocations`). Merged into the served documents by :mod:`issuer.api.openapi`, so
``kubectl explain tokenrevocations`` works as for the kube types. Pure data.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DEFINITIONS", "PATHS"]

_GROUP: Final = "sa-oidc.dev"
_META: Final = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_OBJECT_REFERENCE: Final = "#/definitions/io.k8s.api.core.v1.ObjectReference"
_INT: Final = {"type": "integer", "format": "int64"}


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _gvk(kind: str) -> list[dict[str, str]]:
    return [{"group": _GROUP, "version": "v1", "kind": kind}]


DEFINITIONS: Final[dict[str, Any]] = {
    "dev.sa-oidc.v1.TokenRevocation": {
        "description": "TokenRevocation revokes one token of this issuer by its jti, until its "
        "exp. Created once; creating it again answers the stored object.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": _str("sa-oidc.dev/v1"),
            "kind": _str("TokenRevocation"),
            "metadata": {"$ref": _META, "description": "name is the jti."},
            "spec": {"$ref": "#/definitions/dev.sa-oidc.v1.TokenRevocationSpec"},
            "status": {"$ref": "#/definitions/dev.sa-oidc.v1.TokenRevocationStatus"},
        },
        "x-kubernetes-group-version-kind": _gvk("TokenRevocation"),
    },
    "dev.sa-oidc.v1.TokenRevocationSpec": {
        "description": "Which token, and until when the revocation must be kept.",
        "type": "object",
        "required": ["jti"],
        "properties": {
            "jti": _str("The token's jti claim: 1-256 characters of A-Za-z0-9._:-."),
            "expirationTimestamp": {
                "type": "string",
                "format": "date-time",
                "description": "The token's exp, in the future. Omitted: the longest token "
                "lifetime the issuer allows.",
            },
        },
    },
    "dev.sa-oidc.v1.TokenRevocationStatus": {
        "description": "Where the revocation sits in the invalidation stream.",
        "type": "object",
        "properties": {"seq": {**_INT, "description": "The TokenRevoked event's seq."}},
    },
    "dev.sa-oidc.v1.Invalidation": {
        "description": "One event that invalidates issued tokens: ObjectDeleted (object), "
        "KeyRevoked (kid) or TokenRevoked (jti, exp). This is the item of a list without "
        "after=SEQ (kubectl); with after=SEQ the items are the bare events, whose kind, "
        "namespace, name and uid are those of the deleted object.",
        "type": "object",
        "required": ["seq", "type"],
        "properties": {
            "apiVersion": _str("sa-oidc.dev/v1"),
            "kind": _str("Invalidation"),
            "metadata": {
                "$ref": _META,
                "description": "name is the seq; creationTimestamp is the event's time.",
            },
            "seq": {**_INT, "description": "Store-wide, strictly increasing."},
            "type": _str("ObjectDeleted, KeyRevoked or TokenRevoked."),
            "time": {"type": "number", "description": "When it happened (POSIX seconds)."},
            "object": {
                "$ref": _OBJECT_REFERENCE,
                "description": "ObjectDeleted: the deleted Pod, Secret, Node or ServiceAccount "
                "(apiVersion, kind, namespace, name, uid).",
            },
            "kid": _str("KeyRevoked: the key's kid."),
            "jti": _str("TokenRevoked: the token's jti."),
            "exp": {**_INT, "description": "TokenRevoked: the token's exp."},
        },
        "x-kubernetes-group-version-kind": _gvk("Invalidation"),
    },
    "dev.sa-oidc.v1.InvalidationList": {
        "description": "One page of the invalidation stream (after=SEQ, or continue).",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": _str("sa-oidc.dev/v1"),
            "kind": _str("InvalidationList"),
            "metadata": {
                "type": "object",
                "description": "lastSeq, oldestSeq, epoch, retentionLeeway, continue.",
                "properties": {
                    "lastSeq": _INT,
                    "oldestSeq": _INT,
                    "epoch": {"type": "string"},
                    "retentionLeeway": {"type": "number"},
                    "continue": {"type": "string"},
                },
            },
            "items": {
                "type": "array",
                "items": {"$ref": "#/definitions/dev.sa-oidc.v1.Invalidation"},
            },
        },
        "x-kubernetes-group-version-kind": _gvk("InvalidationList"),
    },
}


def _query(name: str, type_: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "type": type_,
        "uniqueItems": True,
        "description": description,
    }


PATHS: Final[dict[str, Any]] = {
    "/apis/sa-oidc.dev/v1/invalidations": {
        "get": {
            "description": "list (or, with watch=true, stream) the events after a seq",
            "operationId": "listSaOidcDevV1Invalidation",
            "produces": ["application/json"],
            "parameters": [
                _query(
                    "after",
                    "integer",
                    "Events with a larger seq (0: all retained), as bare events. Without it, "
                    "the list is a Kubernetes list paged by limit and continue.",
                ),
                _query("continue", "string", "The token of the previous page (without after)."),
                _query(
                    "resourceVersion",
                    "string",
                    "Without after, with watch=true: a Kubernetes watch of the events after this "
                    "seq (the list's or an item's resourceVersion).",
                ),
                _query("limit", "integer", "At most this many events."),
                _query("epoch", "string", "The store history the client follows."),
                _query("watch", "boolean", "Stream the events as newline-delimited JSON."),
                _query("timeoutSeconds", "integer", "End a watch after this long."),
            ],
            "responses": {
                "200": {
                    "description": "OK",
                    "schema": {"$ref": "#/definitions/dev.sa-oidc.v1.InvalidationList"},
                },
                "410": {"description": "Gone: re-list from after=0"},
            },
            "tags": ["saOidcDev_v1"],
            "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": {
                "group": _GROUP,
                "version": "v1",
                "kind": "Invalidation",
            },
        }
    },
    "/apis/sa-oidc.dev/v1/invalidations/{name}": {
        "get": {
            "description": "read one retained event (name: its seq)",
            "operationId": "readSaOidcDevV1Invalidation",
            "produces": ["application/json"],
            "responses": {
                "200": {
                    "description": "OK",
                    "schema": {"$ref": "#/definitions/dev.sa-oidc.v1.Invalidation"},
                },
                "404": {"description": "Not found: trimmed or never assigned"},
            },
            "tags": ["saOidcDev_v1"],
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": {
                "group": _GROUP,
                "version": "v1",
                "kind": "Invalidation",
            },
        },
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "type": "string",
                "uniqueItems": True,
                "description": "The event's seq.",
            }
        ],
    },
    "/apis/sa-oidc.dev/v1/tokenrevocations": {
        "post": {
            "description": "revoke a token by jti",
            "operationId": "createSaOidcDevV1TokenRevocation",
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "parameters": [
                {
                    "name": "body",
                    "in": "body",
                    "required": True,
                    "schema": {"$ref": "#/definitions/dev.sa-oidc.v1.TokenRevocation"},
                }
            ],
            "responses": {
                "200": {
                    "description": "OK (already revoked)",
                    "schema": {"$ref": "#/definitions/dev.sa-oidc.v1.TokenRevocation"},
                },
                "201": {
                    "description": "Created",
                    "schema": {"$ref": "#/definitions/dev.sa-oidc.v1.TokenRevocation"},
                },
            },
            "tags": ["saOidcDev_v1"],
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": {
                "group": _GROUP,
                "version": "v1",
                "kind": "TokenRevocation",
            },
        }
    },
}
