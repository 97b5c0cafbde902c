"""Django: authlib's ``ResourceProtector`` verifying tokens through an AuthenticationConfiguration.

::

    verifier = MultiIssuerVerifier("/etc/auth/authn.yaml")
    require_sa = ServiceAccountProtector(verifier, realm="orders")

    @require_sa(audiences=["https://orders.internal"], groups=["cluster-a"])
    def orders(request):
        auth = request.oauth_token      # verifier.multi.Authenticated
        return JsonResponse({"user": auth.user.username})

Answers per RFC 6750 §3 (see :mod:`verifier.integrations`).
"""

from __future__ import annotations

from authlib.integrations.django_oauth2 import ResourceProtector

from verifier.integrations.oauth import MultiIssuerBearerValidator, ProtectorMixin
from verifier.multi import MultiIssuerVerifier

__all__ = ["ServiceAccountProtector"]


class ServiceAccountProtector(ProtectorMixin, ResourceProtector):  # type: ignore[misc]
    """``ResourceProtector`` with a :class:`MultiIssuerBearerValidator` registered."""

    def __init__(self, verifier: MultiIssuerVerifier, realm: str | None = None) -> None:
        super().__init__()
        self.register_token_validator(MultiIssuerBearerValidator(verifier, realm))
