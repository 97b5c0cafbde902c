"""One TokenRequest to the issuer, its outcome sorted into issued / transient / refused.

``POST /api/v1/namespaces/NS/serviceaccounts/SA/token`` is the call kubelet's token manager makes
(pkg/kubelet/token/token_manager.go ``getToken`` -> ``CreateToken``). The agent's credential is
read from its file on every call (:class:`verifier.credentials.BearerTokenFile` with period 0), so
a credential another process (or this agent) rewrites is picked up at once.

Outcomes, by HTTP status (the Status bodies are kube-apiserver's, see issuer/api/tokenrequest.py):

- 201 with a token: :class:`Issued`.
- 401 (credential not accepted: expired, revoked, wrong issuer) and 403 (not allowed to create
  ``serviceaccounts/token`` for this account): :class:`Refused`, exit :data:`EXIT_CREDENTIAL`.
- 404 (the service account or the bound pod/node is gone), 409 (bound object recreated) and 410:
  :class:`Refused`, exit :data:`EXIT_GONE`.
- other 4xx (400, 422: the request itself is wrong, e.g. a pod of another account):
  :class:`Refused`, exit :data:`EXIT_ERROR` — retrying the same request cannot help.
- 429, 5xx, connection errors, timeouts, an unreadable 2xx: :class:`Transient` (retry later).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from verifier.credentials import BearerTokenFile

__all__ = [
    "EXIT_CREDENTIAL",
    "EXIT_ERROR",
    "EXIT_GONE",
    "EXIT_UNAVAILABLE",
    "Issued",
    "Refused",
    "TokenRequester",
    "Transient",
]

#: Exit codes of ``sa-issuer agent`` (0 success or SIGTERM; 2 usage error).
EXIT_ERROR: Final = 1
#: The service account, or the pod/node the tokens are bound to, no longer exists.
EXIT_GONE: Final = 3
#: The agent's own credential is refused (401) or not allowed to mint for this account (403).
EXIT_CREDENTIAL: Final = 4
#: ``--once`` could not reach the issuer before its deadline (sysexits EX_TEMPFAIL).
EXIT_UNAVAILABLE: Final = 75

#: A TokenRequest answer is a few KiB; refuse to buffer more than this from the network.
MAX_RESPONSE_BYTES: Final = 256 * 1024
#: Longest Status message quoted in a log line.
_MAX_MESSAGE: Final = 300


@dataclass(frozen=True, slots=True)
class Issued:
    """A token and the lifetime the issuer granted (``spec.expirationSeconds``, maybe shortened)."""

    token: str
    lifetime: int
    expiration_timestamp: str
    warnings: tuple[str, ...] = ()


class Transient(Exception):
    """The issuer could not be asked or did not answer usefully; asking again later may work."""


class Refused(Exception):
    """The issuer definitely refused; ``exit_code`` says why (see module docstring)."""

    def __init__(self, message: str, *, status: int, exit_code: int) -> None:
        super().__init__(message)
        self.status = status
        self.exit_code = exit_code


def _status_message(body: bytes) -> str:
    """The ``message`` of a kube ``Status`` body, else a short printable excerpt."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        text: str = doc["message"]
    else:
        text = body[:_MAX_MESSAGE].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:_MAX_MESSAGE]


def _parse_issued(body: bytes) -> Issued:
    try:
        doc: Any = orjson.loads(body)
        token = doc["status"]["token"]
        lifetime = doc["spec"]["expirationSeconds"]
        expiration = doc["status"].get("expirationTimestamp", "")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise Transient("the issuer's TokenRequest answer is not a TokenRequest") from None
    if (
        not isinstance(token, str)
        or token.count(".") != 2
        or not token.isascii()
        or not isinstance(lifetime, int)
        or isinstance(lifetime, bool)
        or lifetime <= 0
    ):
        raise Transient("the issuer's TokenRequest answer holds no usable token")
    return Issued(token, lifetime, str(expiration))


class TokenRequester:
    """Mints tokens for one service account through the TokenRequest API.

    ``server``: the issuer's API base URL; ``credential``: the agent's own bearer token file;
    ``bound``: ``("Pod" | "Node", name)`` or None; ``ca_bundle``: PEM file to trust for https;
    ``timeout``: seconds for the whole request (connect + answer).
    """

    def __init__(
        self,
        server: str,
        credential: BearerTokenFile,
        namespace: str,
        service_account: str,
        *,
        expiration_seconds: int,
        bound: tuple[str, str] | None = None,
        ca_bundle: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = (
            f"{server.rstrip('/')}/api/v1/namespaces/{namespace}/serviceaccounts/"
            f"{service_account}/token"
        )
        self.namespace = namespace
        self.service_account = service_account
        self.expiration_seconds = expiration_seconds
        self.bound = bound
        self._credential = credential
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            verify = ssl.create_default_context(cafile=ca_bundle)
        # No redirects: a redirect would carry the credential to wherever it points.
        self._client = httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def body(self, audiences: tuple[str, ...]) -> dict[str, Any]:
        """The TokenRequest object sent for ``audiences``."""
        spec: dict[str, Any] = {
            "audiences": list(audiences),
            "expirationSeconds": self.expiration_seconds,
        }
        if self.bound is not None:
            kind, name = self.bound
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": kind, "name": name}
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}

    def request(self, audiences: tuple[str, ...]) -> Issued:
        """One TokenRequest; raises :class:`Transient` or :class:`Refused`."""
        headers = {
            "Authorization": f"Bearer {self._credential.value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            with self._client.stream(
                "POST", self.url, content=orjson.dumps(self.body(audiences)), headers=headers
            ) as r:
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise Transient(f"the issuer's answer exceeds {MAX_RESPONSE_BYTES} bytes")
                status = r.status_code
                warnings = tuple(r.headers.get_list("warning"))
        except httpx.HTTPError as e:
            raise Transient(
                f"cannot reach the issuer at {self.url}: {e or type(e).__name__}"
            ) from e
        if status == 201 or status == 200:
            issued = _parse_issued(bytes(body))
            return Issued(issued.token, issued.lifetime, issued.expiration_timestamp, warnings)
        raise self._classify(status, bytes(body))

    def _classify(self, status: int, body: bytes) -> Exception:
        message = _status_message(body)
        who = f"serviceaccount {self.namespace}/{self.service_account}"
        if status == 401:
            self._credential.invalidate()
            return Refused(
                f"the issuer does not accept the agent's credential (401 Unauthorized: "
                f"{message}); it is expired, revoked or not a token of this issuer",
                status=status,
                exit_code=EXIT_CREDENTIAL,
            )
        if status == 403:
            return Refused(
                f"the agent's credential may not create tokens for {who} (403 Forbidden: "
                f"{message}); grant it 'create' on 'serviceaccounts/token' for this account",
                status=status,
                exit_code=EXIT_CREDENTIAL,
            )
        if status in (404, 409, 410):
            return Refused(
                f"{who} or its bound object is gone ({status}: {message})",
                status=status,
                exit_code=EXIT_GONE,
            )
        if status == 429 or status >= 500:
            return Transient(f"the issuer answered {status}: {message}")
        return Refused(
            f"the issuer rejected the TokenRequest for {who} ({status}: {message})",
            status=status,
            exit_code=EXIT_ERROR,
        )
