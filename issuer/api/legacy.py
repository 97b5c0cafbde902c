"""Legacy Secret-based service-account tokens (not recommended; supported to show why).

Creating a Secret of type ``kubernetes.io/service-account-token`` with the annotation
``kubernetes.io/service-account.name`` fills it the way kube's token controller does
(kube: pkg/controller/serviceaccount/tokens_controller.go): annotation
``kubernetes.io/service-account.uid`` set to the account's uid, ``data.token`` = a legacy JWT
(claims from :func:`issuer.tokens.legacy_claims`, signed by the active key), ``data.namespace``.

Such a token has no ``exp`` and no ``aud``: it is valid for as long as the Secret holds it and the
service account lives (TokenReview checks both, :mod:`issuer.review`) — and, with rotating keys,
until its signing key leaves the JWKS. Offline verifiers cannot see the Secret at all, which is why
the response carries a ``Warning`` and an audit record is written.

The token is returned in the create response only to a caller who may ``get`` that Secret
(:func:`visible_to`). In kube the token controller fills the Secret after the create, so the 201
never holds the token and reading it needs ``get secrets``; answering it to anyone who may
``create secrets`` let such a caller become any service account of the namespace (issue 9,
item 1). The Secret is stored with its token all the same: a later GET by a reader sees it.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from issuer.api.auth import Caller, decide
from issuer.api.errors import FieldError, invalid
from issuer.api.validation import SA_NAME_ANNOTATION, SA_TOKEN_SECRET_TYPE, SA_UID_ANNOTATION
from issuer.authz import Attributes
from issuer.context import IssuerContext
from issuer.store import NotFound
from issuer.tokens import BoundRef, legacy_claims

__all__ = [
    "LEGACY_TOKEN_WARNING",
    "TOKEN_WITHHELD_WARNING",
    "fill_token_secret",
    "record_issued",
    "visible_to",
]

LEGACY_TOKEN_WARNING: Final = (
    "legacy service account tokens are not recommended: they never expire, are valid for every "  # noqa: S105
    "API audience, are only revocable by deleting the Secret, and stop verifying once the key "
    "that signed them is rotated out of the key set; use the TokenRequest API "
    "(kubectl create token) for bound, expiring tokens instead"
)


TOKEN_WITHHELD_WARNING: Final = (
    "the token is not in this response: reading it needs get on this Secret, as in Kubernetes, "  # noqa: S105
    "where the token controller fills the Secret after the create"
)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def fill_token_secret(ctx: IssuerContext, secret: dict[str, Any]) -> str:
    """Fill ``secret`` (decoded and validated, not yet stored) with a legacy token; return the
    signing kid. 422 Invalid when the service account does not exist or has another uid."""
    meta = secret["metadata"]
    namespace: str = meta["namespace"]
    annotations: dict[str, str] = meta.setdefault("annotations", {})
    sa_name = annotations[SA_NAME_ANNOTATION]
    field = f"metadata.annotations[{SA_NAME_ANNOTATION}]"
    try:
        sa = ctx.store.get_object("ServiceAccount", namespace, sa_name)
    except NotFound:
        raise invalid("Secret", meta["name"], [FieldError("NotFound", field, sa_name)]) from None
    sa_uid = str(sa["metadata"].get("uid", ""))
    given_uid = annotations.get(SA_UID_ANNOTATION)
    if given_uid and given_uid != sa_uid:
        raise invalid(
            "Secret",
            meta["name"],
            [
                FieldError(
                    "Invalid",
                    f"metadata.annotations[{SA_UID_ANNOTATION}]",
                    given_uid,
                    f"does not match the uid of service account {namespace}/{sa_name}",
                )
            ],
        )
    annotations[SA_UID_ANNOTATION] = sa_uid
    claims = legacy_claims(
        namespace=namespace,
        service_account=BoundRef(sa_name, sa_uid),
        secret_name=meta["name"],
    )
    signer = ctx.keys.signer()
    token = signer.sign_jwt(claims)
    data: dict[str, str] = secret.setdefault("data", {})
    data["token"] = _b64(token)
    data["namespace"] = _b64(namespace)
    return signer.kid


def record_issued(ctx: IssuerContext, secret: dict[str, Any], caller: str, kid: str) -> None:
    """Audit (never the token) and count a legacy token once its Secret is stored."""
    meta = secret["metadata"]
    annotations = meta.get("annotations") or {}
    ctx.audit_event(
        "legacy_token_issued",
        caller=caller,
        serviceaccount={
            "namespace": meta["namespace"],
            "name": annotations.get(SA_NAME_ANNOTATION),
            "uid": annotations.get(SA_UID_ANNOTATION),
        },
        bound={"secret": {"name": meta["name"], "uid": meta.get("uid")}},
        kid=kid,
        exp=None,
        recommended=False,
    )
    ctx.metrics.tokens_issued.inc(kind="legacy")


def visible_to(
    ctx: IssuerContext, caller: Caller, secret: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """``secret`` as the create response may show it to ``caller``, and any ``Warning`` to add.

    A service-account token Secret keeps its ``data.token`` only for a caller whom RBAC allows
    to ``get`` this Secret (the read kube requires: tokens_controller.go fills the Secret
    asynchronously, so its create response never holds the token). Blocking: may read the
    store's RBAC objects; StoreError propagates (the Secret is stored, the answer is 503/504).
    """
    data = secret.get("data")
    if secret.get("type") != SA_TOKEN_SECRET_TYPE or not isinstance(data, dict):
        return secret, []
    if "token" not in data:
        return secret, []
    meta = secret["metadata"]
    attrs = Attributes(
        user=caller.user,
        groups=caller.groups,
        verb="get",
        resource="secrets",
        namespace=meta["namespace"],
        name=meta["name"],
    )
    if decide(ctx.store, attrs).allowed:
        return secret, []
    shown = dict(secret)
    shown["data"] = {k: v for k, v in data.items() if k != "token"}
    return shown, [TOKEN_WITHHELD_WARNING]
