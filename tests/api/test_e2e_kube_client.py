"""End to end: the official ``kubernetes`` Python client, unchanged, against a LIVE
``sa-issuer serve`` subprocess over HTTP, on SQLite and on Redis.

The story a cluster operator would run: namespace → service account → pod → a token bound to the
pod (TokenRequest) → TokenReview says who it is → the pod goes away and the token with it → a new
pod with the same name does not revive it → audiences are enforced → a legacy Secret token works
until its Secret is deleted.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from _kube_client import admin_client
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

API_AUD = "https://kubernetes.default.svc"


@pytest.fixture(params=["sqlite", "redis"])
def kube(request: pytest.FixtureRequest, issuer_factory: Any) -> Iterator[k8s.ApiClient]:
    """A kubernetes ApiClient configured against a fresh sa-issuer (admin bearer token)."""
    store = None if request.param == "sqlite" else request.getfixturevalue("redis_url")
    proc = issuer_factory.start(
        store=store, config={"key_alg": "ES256", "api_audiences": [API_AUD]}
    )
    with admin_client(proc) as api_client:
        yield api_client


def _review(auth: k8s.AuthenticationV1Api, token: str, audiences: list[str] | None = None) -> Any:
    body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=audiences))
    return auth.create_token_review(body).status


def _pod(name: str, sa: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1PodSpec(
            service_account_name=sa,
            containers=[k8s.V1Container(name="app", image="busybox")],
        ),
    )


def test_kubernetes_client_end_to_end(kube: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube)
    auth = k8s.AuthenticationV1Api(kube)

    ns = core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="dev")))
    assert ns.metadata.name == "dev" and ns.status.phase == "Active"
    assert [n.metadata.name for n in core.list_namespace().items] == ["dev"]
    assert core.read_namespaced_service_account("default", "dev").metadata.uid

    sa = core.create_namespaced_service_account(
        "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
    )
    pod = core.create_namespaced_pod("dev", _pod("web", "app"))
    assert pod.spec.service_account_name == "app"
    assert any(v.name.startswith("kube-api-access-") for v in pod.spec.volumes)
    assert pod.spec.containers[0].volume_mounts[0].mount_path == (
        "/var/run/secrets/kubernetes.io/serviceaccount"
    )

    tr = core.create_namespaced_service_account_token(
        "app",
        "dev",
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=3600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name="web", uid=pod.metadata.uid
                ),
            )
        ),
    )
    token = tr.status.token
    assert tr.status.expiration_timestamp is not None

    status = _review(auth, token)
    assert status.authenticated is True
    assert status.user.username == "system:serviceaccount:dev:app"
    assert status.user.uid == sa.metadata.uid
    assert status.user.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:dev",
        "system:authenticated",
    ]
    assert status.user.extra["authentication.kubernetes.io/pod-name"] == ["web"]
    assert status.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    assert status.user.extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    assert status.audiences == [API_AUD]

    # Another audience is refused with kube's text.
    other = _review(auth, token, ["vault"])
    assert other.authenticated is False
    assert (
        other.error
        == f'token audiences ["{API_AUD}"] is invalid for the target audiences ["vault"]'
    )

    # The pod goes: so does the token; a new pod with the same name does not bring it back.
    core.delete_namespaced_pod("web", "dev")
    gone = _review(auth, token)
    assert gone.authenticated is False
    assert gone.error == "service account token has been invalidated"
    new_pod = core.create_namespaced_pod("dev", _pod("web", "app"))
    again = _review(auth, token)
    assert again.authenticated is False
    assert again.error == (
        f"pod UID ({new_pod.metadata.uid}) does not match service account pod ref claim "
        f"({pod.metadata.uid})"
    )

    # Errors come back as ApiException with kube's status and reason.
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service_account(
            "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="app"))
        )
    assert err.value.status == 409 and '"reason":"AlreadyExists"' in err.value.body

    # A legacy Secret token works until its Secret is deleted.
    core.create_namespaced_secret(
        "dev",
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="app-token", annotations={"kubernetes.io/service-account.name": "app"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )
    secret = core.read_namespaced_secret("app-token", "dev")
    legacy = base64.b64decode(secret.data["token"]).decode()
    legacy_status = _review(auth, legacy)
    assert legacy_status.authenticated is True
    assert legacy_status.user.username == "system:serviceaccount:dev:app"
    core.delete_namespaced_secret("app-token", "dev")
    assert _review(auth, legacy).error == "Token has been invalidated"

    # Namespace deletion through the client (it expects a Status-or-object body).
    core.delete_namespace("dev")
    assert core.list_namespaced_pod("dev").items == []
    assert _review(auth, legacy).authenticated is False
