"""TokenReview: ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (also ``v1beta1``, the
version older kube-apiservers send as a webhook).

Usable unchanged as kube-apiserver's ``--authentication-token-webhook-config-file`` target: the
apiserver POSTs a TokenReview with its own bearer credential (an admin token here, see
deploy/README.md) and reads ``status``. Decisions come from :func:`issuer.review.review_token`.

Answers (kube: pkg/registry/authentication/tokenreview/storage.go): 201 with the review's
``status``; an unauthenticated token is still 201 with ``authenticated: false`` and ``error``;
an empty token is 400. If the store cannot be reached the answer is 503 — never
``authenticated: true``. Successful reviews are not cached: a cached success could outlive a
deletion made on another replica; each review costs a few key-value reads.

Deliberate difference from kube: the response echoes ``spec`` with ``token`` emptied (``""``),
so the credential does not travel back through proxies and response logs; clients that require
the field (the pydantic-based ``kubernetes`` client does) still deserialize the response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from issuer import revocations
from issuer.api.validation import FieldValidation, decode_token_review
from issuer.context import IssuerContext
from issuer.review import ReviewResult, ReviewSettings, review_token

__all__ = ["API_VERSIONS", "create_review", "review"]

API_VERSIONS: Final = ("authentication.k8s.io/v1", "authentication.k8s.io/v1beta1")


def _jti_revoked(ctx: IssuerContext) -> Callable[[str], bool]:
    store = ctx.store
    return lambda jti: revocations.is_token_revoked(store, jti)


def review(ctx: IssuerContext, token: str, audiences: list[str]) -> ReviewResult:
    """Review ``token`` for ``audiences`` (empty: API audiences). StoreUnavailable propagates."""
    snapshot = ctx.keys.published()
    return review_token(
        token,
        audiences,
        keyset=snapshot.keyset,
        is_revoked=ctx.keys.is_revoked,
        objects=ctx.store,
        settings=ReviewSettings(
            issuer=ctx.config.issuer,
            api_audiences=tuple(ctx.api_audiences),
            leeway=min(int(ctx.config.leeway), 600),  # verifier.Policy's bound
        ),
        now=ctx.clock(),
        is_token_revoked=_jti_revoked(ctx),
    )


def create_review(
    ctx: IssuerContext,
    api_version: str,
    body: dict[str, Any],
    mode: FieldValidation = "Strict",
) -> tuple[dict[str, Any], list[str]]:
    """Decode, review, and build the TokenReview response object and ``Warning`` texts."""
    token, audiences, warnings = decode_token_review(body, api_version, mode)
    try:
        result = review(ctx, token, audiences)
    except Exception:
        ctx.metrics.token_reviews.inc(result="error")
        raise
    ctx.metrics.token_reviews.inc(
        result="authenticated" if result.authenticated else "unauthenticated"
    )
    # kube echoes the whole spec; the token is echoed empty (see the module docstring).
    spec: dict[str, Any] = {"token": ""}
    if audiences:
        spec["audiences"] = audiences
    response = {
        "kind": "TokenReview",
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": result.status(),
    }
    return response, warnings
