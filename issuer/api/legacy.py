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
"""

from __future__ import annotations

import base64
from typing import Any, Final

from issuer.api.errors import FieldError, invalid
from issuer.api.validation import SA_NAME_ANNOTATION, SA_UID_ANNOTATION
from issuer.context import IssuerContext
from issuer.store import NotFound
from issuer.tokens import BoundRef, legacy_claims

__all__ = ["LEGACY_TOKEN_WARNING", "fill_token_secret", "record_issued"]

LEGACY_TOKEN_WARNING: Final = (
    "legacy service account tokens are not recommended: they never expire, are valid for every "  # noqa: S105
    "API audience, are only revocable by deleting the Secret, and stop verifying once the key "
    "that signed them is rotated out of the key set; use the TokenRequest API "
    "(kubectl create token) for bound, expiring tokens instead"
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
