# ruff: noqa: E501  (the clouds' error texts are kept on one line each, as they are sent)
"""Local stand-ins for the clouds' token endpoints, each on a real TLS socket.

No cloud is reachable from CI, so these play the parts of the services the SDKs call:

- :class:`AwsSts`: ``AssumeRoleWithWebIdentity`` (Query API, form POST; XML answers and the STS
  ``ErrorResponse`` shape; codes InvalidIdentityToken, ExpiredTokenException, AccessDenied).
- :class:`GoogleSts`: the Security Token Service ``POST /v1/token`` token exchange (RFC 8693 form
  fields; JSON answers; ``{"error": "invalid_grant", "error_description": ...}`` on refusal).
- :class:`EntraAuthority`: an Entra tenant: OIDC discovery for ``/{tenant}/v2.0`` and the
  ``/{tenant}/oauth2/v2.0/token`` endpoint with ``client_credentials`` + a ``client_assertion``
  (JSON answers; ``invalid_client`` with ``AADSTS...`` descriptions on refusal).

Each validates the presented token on its own, independently of this project's verifier: PyJWT
with the issuer's live JWKS (found through its discovery document, over verified TLS), with that
cloud's rules (:class:`TokenChecker`): issuer registered, algorithm allowed, signature, audience,
expiry, then the trust condition on ``sub``. Optionally a :class:`verifier.HybridVerifier`
(following the issuer's invalidation stream) refuses tokens whose bound pod was deleted — what a
cloud cannot know by itself. Every request and the token it carried is recorded in ``.requests``.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import jwt
from _tls import Pki

from verifier import InvalidToken, VerifierUnavailable


class Refusal(Exception):
    """The token fails a rule: ``kind`` (issuer, algorithm, signature, audience, expired,
    lifetime, subject, revoked, malformed) and a detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class TokenChecker:
    """Validates tokens of one trusted issuer with PyJWT and the issuer's live JWKS."""

    issuer: str
    ca: str
    algorithms: tuple[str, ...]
    hybrid: Any = None
    #: seconds added to the wall clock (a stand-in whose clock is ahead sees tokens expire)
    clock_offset: float = 0.0
    max_lifetime: int | None = None
    _jwks: jwt.PyJWKClient | None = field(default=None, init=False)

    def jwks(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            ctx = ssl.create_default_context(cafile=self.ca)
            import urllib.request

            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                discovery = json.loads(r.read())
            assert discovery["issuer"] == self.issuer
            self._jwks = jwt.PyJWKClient(discovery["jwks_uri"], ssl_context=ctx, timeout=5)
        return self._jwks

    def now(self) -> float:
        return time.time() + self.clock_offset

    def check(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        """The claims, or :class:`Refusal`."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise Refusal("malformed", str(e)) from None
        if unverified.get("iss") != self.issuer:
            raise Refusal("issuer", str(unverified.get("iss")))
        if header.get("alg") not in self.algorithms:
            raise Refusal("algorithm", str(header.get("alg")))
        try:
            key = self.jwks().get_signing_key_from_jwt(token)
        except jwt.PyJWTError as e:
            raise Refusal("signature", f"no key: {e}") from None
        auds = list(audiences)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                audience=auds,
                issuer=self.issuer,
                # a stand-in whose clock runs ahead checks exp itself, below
                options={"require": ["exp", "iat", "sub", "aud", "iss"],
                         "verify_exp": not self.clock_offset},
            )  # fmt: skip
            if claims["exp"] <= self.now():
                raise jwt.ExpiredSignatureError("Signature has expired")
        except jwt.ExpiredSignatureError:
            raise Refusal("expired", f"exp {unverified.get('exp')}") from None
        except jwt.InvalidAudienceError:
            raise Refusal("audience", json.dumps(unverified.get("aud"))) from None
        except jwt.PyJWTError as e:
            raise Refusal("signature", str(e)) from None
        if self.max_lifetime is not None and claims["exp"] - claims["iat"] >= self.max_lifetime:
            raise Refusal("lifetime", f"{claims['exp'] - claims['iat']} s")
        if self.hybrid is not None:
            try:
                self.hybrid.verify(token)
            except InvalidToken as e:
                raise Refusal("revoked", e.reason) from None
            except VerifierUnavailable as e:
                raise Refusal("unavailable", str(e)) from None
        return claims


# --- a small TLS HTTP server ------------------------------------------------------------------

Answer = tuple[int, str, bytes]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self, method: str) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(size, 1 << 20)) if size else b""
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, ctype, data = self.server.standin.handle(method, self.path, body, headers)
        except Exception as e:  # a stand-in bug must show, not look like a network fault
            status, ctype, data = 500, "text/plain", f"stand-in failed: {e!r}".encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    standin: StandIn


class StandIn:
    """A stand-in service on ``https://127.0.0.1:PORT`` (``.url``) until :meth:`close`."""

    def __init__(self, pki: Pki) -> None:
        self.requests: list[dict[str, Any]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.chain, pki.key)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        raise NotImplementedError

    def tokens(self) -> list[str]:
        """Every token presented so far, in order."""
        return [r["token"] for r in self.requests if r.get("token")]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _form(body: bytes) -> dict[str, str]:
    return {
        k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()
    }


# --- AWS STS ----------------------------------------------------------------------------------

_STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class AwsSts(StandIn):
    """``AssumeRoleWithWebIdentity`` for one IAM OIDC provider (``checker.issuer``) with client
    IDs ``client_ids`` and roles whose trust policy requires ``ISSUER:sub`` StringEquals."""

    def __init__(
        self, pki: Pki, checker: TokenChecker, roles: dict[str, str], account: str = "123456789012"
    ) -> None:
        super().__init__(pki)
        self.checker = checker
        self.client_ids = ["sts.amazonaws.com"]
        self.roles = roles
        self.account = account
        self.credential_seconds = 300  # short: botocore refreshes inside its 10-minute window

    @staticmethod
    def _error(status: int, code: str, message: str, sender: bool = True) -> Answer:
        xml = (
            f'<ErrorResponse xmlns="{_STS_NS}">\n  <Error>\n'
            f"    <Type>{'Sender' if sender else 'Receiver'}</Type>\n"
            f"    <Code>{escape(code)}</Code>\n    <Message>{escape(message)}</Message>\n"
            f"  </Error>\n  <RequestId>{uuid.uuid4()}</RequestId>\n</ErrorResponse>\n"
        )
        return status, "text/xml", xml.encode()

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        form = _form(body)
        token = form.get("WebIdentityToken", "")
        self.requests.append({"path": path, "form": form, "token": token})
        if method != "POST" or form.get("Action") != "AssumeRoleWithWebIdentity":
            return self._error(400, "InvalidAction", "Could not find operation")
        role = form.get("RoleArn", "")
        provider = self.checker.issuer.removeprefix("https://")
        try:
            claims = self.checker.check(token, self.client_ids)
        except Refusal as r:
            if r.kind == "issuer":
                return self._error(
                    400,
                    "InvalidIdentityToken",
                    f"No OpenIDConnect provider found in your account for {r.detail}",
                )
            if r.kind == "audience":
                return self._error(400, "InvalidIdentityToken", "Incorrect token audience")
            if r.kind == "expired":
                now = int(self.checker.now())
                return self._error(
                    400,
                    "ExpiredTokenException",
                    f"Token expired: current date/time {now} must be before the expiration "
                    f"date/time{jwt.decode(token, options={'verify_signature': False})['exp']}",
                )
            return self._error(400, "InvalidIdentityToken", f"Token is not valid: {r}")
        want_sub = self.roles.get(role)
        if want_sub is None or claims["sub"] != want_sub:
            # the role's trust policy: Condition StringEquals {"ISSUER:sub": want_sub}
            return self._error(
                403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"
            )
        session = form.get("RoleSessionName", "session")
        expiration = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.credential_seconds)
        )
        role_name = role.rsplit("/", 1)[-1]
        xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="{_STS_NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>{escape(claims["sub"])}</SubjectFromWebIdentityToken>
    <Audience>{escape(claims["aud"][0])}</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{self.account}:assumed-role/{escape(role_name)}/{escape(session)}</Arn>
      <AssumedRoleId>AROA{uuid.uuid4().hex[:17].upper()}:{escape(session)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIA{uuid.uuid4().hex[:16].upper()}</AccessKeyId>
      <SecretAccessKey>{uuid.uuid4().hex}</SecretAccessKey>
      <SessionToken>{uuid.uuid4().hex}{uuid.uuid4().hex}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <Provider>arn:aws:iam::{self.account}:oidc-provider/{escape(provider)}</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{uuid.uuid4()}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""
        return 200, "text/xml", xml.encode()


# --- Google STS -------------------------------------------------------------------------------


class GoogleSts(StandIn):
    """The token exchange of one workload identity pool provider (``provider``: its resource
    name), allowed audiences empty (so the provider name, with or without ``https:``), and the
    attribute condition ``assertion.sub == subject``. Google accepts RS256 and ES256 and tokens
    living less than 48 h."""

    def __init__(
        self,
        pki: Pki,
        checker: TokenChecker,
        provider: str,
        subject: str,
        service_account: str = "app@project.iam.gserviceaccount.com",
    ) -> None:
        super().__init__(pki)
        self.checker = checker
        self.provider = provider
        self.subject = subject
        self.service_account = service_account
        self.issued: set[str] = set()

    @staticmethod
    def _error(error: str, description: str, status: int = 400) -> Answer:
        body = json.dumps({"error": error, "error_description": description})
        return status, "application/json", body.encode()

    def _generate_access_token(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """IAM Credentials ``generateAccessToken`` for a service account the federated
        principal may impersonate (roles/iam.workloadIdentityUser), authorized by an STS token."""
        self.requests.append({"path": path, "body": body})
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            body_401 = {"error": {"code": 401, "message": "Request had invalid authentication "
                                  "credentials.", "status": "UNAUTHENTICATED"}}  # fmt: skip
            return 401, "application/json", json.dumps(body_401).encode()
        email = path.removeprefix("/v1/projects/-/serviceAccounts/").removesuffix(
            ":generateAccessToken"
        )
        if email != self.service_account:
            body_403 = {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts."
                                  "getAccessToken' denied on resource (or it may not exist).",
                                  "status": "PERMISSION_DENIED"}}  # fmt: skip
            return 403, "application/json", json.dumps(body_403).encode()
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        answer = {"accessToken": f"ya29.impersonated.{uuid.uuid4().hex}", "expireTime": expire}
        return 200, "application/json", json.dumps(answer).encode()

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if method == "POST" and path.endswith(":generateAccessToken"):
            return self._generate_access_token(path, body, headers)
        form = _form(body)
        token = form.get("subject_token", "")
        self.requests.append({"path": path, "form": form, "token": token})
        if path != "/v1/token" or method != "POST":
            return 404, "application/json", b'{"error":"not_found"}'
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return self._error("unsupported_grant_type", "Unsupported grant type.")
        if form.get("subject_token_type") not in (
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:ietf:params:oauth:token-type:id_token",
        ):
            return self._error("invalid_request", "Invalid subject token type.")
        if form.get("audience") != self.provider:
            return self._error(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid.',
            )
        audiences = [self.provider, "https:" + self.provider]
        try:
            claims = self.checker.check(token, audiences)
        except Refusal as r:
            if r.kind == "audience":
                shown = ", ".join(json.loads(r.detail))
                text = f"The audience in ID Token [{shown}] does not match the expected audience."
            else:
                text = {
                    "issuer": f"The issuer in ID Token {r.detail} does not match the expected ones",
                    "expired": "ID Token has expired.",
                    "lifetime": "The lifetime of the ID Token must be less than 48 hours.",
                    "algorithm": f"Unsupported signing algorithm {r.detail}: must be RS256 or ES256.",
                }.get(r.kind, f"Invalid ID Token: {r}")
            return self._error("invalid_grant", text)
        if claims["sub"] != self.subject:
            return self._error(
                "invalid_grant", "The given credential is rejected by the attribute condition."
            )
        access_token = f"ya29.stand-in.{uuid.uuid4().hex}"
        self.issued.add(access_token)
        answer = {
            "access_token": access_token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        return 200, "application/json", json.dumps(answer).encode()


# --- Microsoft Entra --------------------------------------------------------------------------

ENTRA_AUDIENCE = "api://AzureADTokenExchange"


class EntraAuthority(StandIn):
    """One tenant with one app (``client_id``) carrying one federated identity credential:
    ``checker.issuer`` + ``subject`` + audience ``api://AzureADTokenExchange``; RS256 only."""

    def __init__(
        self, pki: Pki, checker: TokenChecker, tenant: str, client_id: str, subject: str
    ) -> None:
        super().__init__(pki)
        self.checker = checker
        self.tenant = tenant
        self.client_id = client_id
        self.subject = subject
        self.access_token_seconds = 3599

    def _error(self, error: str, code: int, description: str) -> Answer:
        body = {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} "
            f"Correlation ID: {uuid.uuid4()} Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ')}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        return 400, "application/json; charset=utf-8", json.dumps(body).encode()

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        base = f"{self.url}/{self.tenant}"
        if method == "GET" and path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            self.requests.append({"path": path})
            doc = {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
            return 200, "application/json", json.dumps(doc).encode()
        if not (method == "POST" and path == f"/{self.tenant}/oauth2/v2.0/token"):
            return 404, "application/json", b'{"error":"not_found"}'
        form = _form(body)
        token = form.get("client_assertion", "")
        self.requests.append({"path": path, "form": form, "token": token})
        if form.get("client_id") != self.client_id:
            return self._error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        if (
            form.get("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self._error("invalid_request", 50027, "JWT token is invalid or malformed.")
        try:
            claims = self.checker.check(token, [ENTRA_AUDIENCE])
        except Refusal as r:
            if r.kind == "issuer":
                return self._error(
                    "invalid_client",
                    700211,
                    f"No matching federated identity record found for presented assertion issuer '{r.detail}'.",
                )
            if r.kind == "audience":
                aud = json.loads(r.detail)
                shown = aud[0] if isinstance(aud, list) and aud else aud
                return self._error(
                    "invalid_client",
                    700212,
                    f"No matching federated identity record found for presented assertion audience '{shown}'.",
                )
            if r.kind == "expired":
                return self._error(
                    "invalid_client",
                    700024,
                    f"Client assertion is not within its valid time range. Current time: {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(self.checker.now()))}.",
                )
            if r.kind == "algorithm":
                return self._error(
                    "invalid_client",
                    5002738,
                    f"Invalid JWT token. '{r.detail}' is not a supported signature algorithm.",
                )
            return self._error("invalid_client", 50027, f"JWT token is invalid or malformed ({r}).")
        if claims["sub"] != self.subject:
            return self._error(
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion subject '{claims['sub']}'.",
            )
        answer = {
            "token_type": "Bearer",
            "expires_in": self.access_token_seconds,
            "ext_expires_in": self.access_token_seconds,
            "access_token": f"eyJ0eXAiOiJKV1QifQ.stand-in.{uuid.uuid4().hex}",
        }
        return 200, "application/json; charset=utf-8", json.dumps(answer).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
