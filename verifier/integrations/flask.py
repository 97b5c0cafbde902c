"""Flask: authlib's ``ResourceProtector`` verifying tokens through an AuthenticationConfiguration.

::

    verifier = MultiIssuerVerifier("/etc/auth/authn.yaml")
    require_sa = ServiceAccountProtector(verifier, realm="orders")

    @app.get("/orders")
    @require_sa(audiences=["https://orders.internal"], namespaces=["shop"])
    def orders():
        auth = current_token            # verifier.multi.Authenticated
        return {"user": auth.user.username}

Answers per RFC 6750 §3 (see :mod:`verifier.integrations`); ``@require_sa(optional=True)`` lets
requests without a token through with ``current_token`` None.
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token

from verifier.integrations.oauth import MultiIssuerBearerValidator, ProtectorMixin
from verifier.multi import MultiIssuerVerifier

__all__ = ["ServiceAccountProtector", "current_token"]


class ServiceAccountProtector(ProtectorMixin, ResourceProtector):  # type: ignore[misc]
    """``ResourceProtector`` with a :class:`MultiIssuerBearerValidator` registered."""

    def __init__(self, verifier: MultiIssuerVerifier, realm: str | None = None) -> None:
        super().__init__()
        self.register_token_validator(MultiIssuerBearerValidator(verifier, realm))
