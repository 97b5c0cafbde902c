"""Issue 9 item 10: a ``:`` in a URL namespace or a NUL in any URL segment is 400 with a Status
body on every route (it was 500 with a traceback, and the keep-alive connection was dropped).

Over one raw keep-alive socket to a real ``sa-issuer serve``: the drop only shows there.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from _rawhttp import read_response

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py)
    from conftest import IssuerProcess

RBAC = "/apis/rbac.authorization.k8s.io/v1"

#: (method, path) pairs naming nothing that can exist; every route family is here.
BAD: tuple[tuple[str, str], ...] = (
    ("GET", "/api/v1/namespaces/a:b/serviceaccounts"),
    ("POST", "/api/v1/namespaces/a:b/serviceaccounts"),
    ("GET", "/api/v1/namespaces/a%3Ab/pods/x"),
    ("DELETE", "/api/v1/namespaces/a:b/secrets/x"),
    ("GET", "/api/v1/namespaces/a%00b/serviceaccounts/x"),
    ("GET", "/api/v1/namespaces/default/serviceaccounts/a%00b"),
    ("POST", "/api/v1/namespaces/default/serviceaccounts/a%00b/token"),
    ("POST", "/api/v1/namespaces/a:b/serviceaccounts/x/token"),
    ("GET", "/api/v1/namespaces/a%00b"),
    ("DELETE", "/api/v1/namespaces/a:b"),
    ("GET", "/api/v1/nodes/n%00"),
    ("GET", "/api/v1/secrets%00"),
    ("GET", RBAC + "/namespaces/a:b/roles"),
    ("GET", RBAC + "/namespaces/a:b/rolebindings/x"),
    ("GET", RBAC + "/clusterroles/a%00b"),
    ("GET", "/apis/sa-oidc.dev/v1/namespaces/a:b/invalidations"),
    ("GET", "/healthz%00"),
)


def _request(sock: socket.socket, method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return head.encode()


def test_bad_names_in_urls_are_400_on_every_route(issuer_process: IssuerProcess) -> None:
    token = issuer_process.admin_token
    with socket.create_connection(("127.0.0.1", issuer_process.port), timeout=10) as s:
        for method, path in BAD:
            body = b'{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"x"}}'
            _request(s, method, path, token, body if method == "POST" else b"")
            status, headers, data = read_response(s)
            assert status == 400, (method, path, status, data)
            assert headers["content-type"] == "application/json"
            st = json.loads(data)
            assert (st["kind"], st["reason"], st["code"]) == ("Status", "BadRequest", 400)
            assert "invalid" in st["message"], st
        # The same keep-alive connection still serves a good request afterwards.
        _request(s, "GET", "/api/v1/namespaces/default/serviceaccounts", token)
        assert read_response(s)[0] in (200, 404)
    # ':' is fine in names (ClusterRole system:auth-delegator) and in namespaced object names.
    with issuer_process.client(headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get(RBAC + "/clusterroles/system:auth-delegator").status_code == 200
        r = c.get("/api/v1/namespaces/default/serviceaccounts/a:b")
        assert r.status_code == 404 and r.json()["reason"] == "NotFound"
        # A namespace no object can live in, given in a body, is 400 from the store's check.
        sar = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "bob",
                "resourceAttributes": {"namespace": "a\x00b", "verb": "get", "resource": "pods"},
            },
        }
        r = c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest", r.text
        metrics = c.get("/metrics").text
    assert 'code="500"' not in metrics
    err = issuer_process.stderr()
    assert "Traceback" not in err and "ERROR" not in err, err
