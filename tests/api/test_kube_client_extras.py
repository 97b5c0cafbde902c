"""The official ``kubernetes`` Python client, unchanged, against a live ``sa-issuer serve`` on
SQLite and Redis: DeleteOptions (body and query) and the invalidation stream read as a custom
resource (list, get, ``watch.Watch()``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _kube_client import admin_client
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException


@pytest.fixture(params=["sqlite", "redis"])
def kube(request: pytest.FixtureRequest, issuer_factory: Any) -> Iterator[k8s.ApiClient]:
    """A kubernetes ApiClient on a fresh sa-issuer (admin bearer token)."""
    store = None if request.param == "sqlite" else request.getfixturevalue("redis_url")
    proc = issuer_factory.start(store=store, config={"key_alg": "ES256"})
    with admin_client(proc) as api_client:
        yield api_client


def test_delete_options_from_the_client(kube: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="dev")))
    for name in ("a", "b", "c"):
        core.create_namespaced_service_account(
            "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        )
    # Invalid options are 422 and delete nothing.
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_service_account(
            "a",
            "dev",
            body=k8s.V1DeleteOptions(orphan_dependents=True, propagation_policy="Orphan"),
        )
    assert e.value.status == 422
    assert "orphanDependents and deletionPropagation cannot be both set" in str(e.value.body)
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_service_account("a", "dev", propagation_policy="Later")
    assert e.value.status == 422 and 'Unsupported value: \\"Later\\"' in str(e.value.body)
    assert core.read_namespaced_service_account("a", "dev").metadata.name == "a"
    # Valid ones, in the body and in the query, delete at once.
    core.delete_namespaced_service_account(
        "a",
        "dev",
        body=k8s.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=0),
    )
    core.delete_namespaced_service_account("b", "dev", propagation_policy="Orphan")
    core.delete_namespaced_service_account("c", "dev", grace_period_seconds=-3)
    left = {sa.metadata.name for sa in core.list_namespaced_service_account("dev").items}
    assert left == {"default"}


def test_invalidations_as_a_custom_resource(kube: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(kube)
    custom = k8s.CustomObjectsApi(kube)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="dev")))
    core.create_namespaced_service_account(
        "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="gone"))
    )
    core.delete_namespaced_service_account("gone", "dev")
    listed = custom.list_cluster_custom_object("sa-oidc.dev", "v1", "invalidations")
    [item] = listed["items"]
    assert item["kind"] == "Invalidation" and item["object"]["name"] == "gone"
    got = custom.get_cluster_custom_object(
        "sa-oidc.dev", "v1", "invalidations", item["metadata"]["name"]
    )
    assert got == item
    # watch.Watch() from the list's resourceVersion sees the next deletion.
    core.create_namespaced_service_account(
        "dev", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="next"))
    )
    core.delete_namespaced_service_account("next", "dev")
    w = watch.Watch()
    seen = []
    for event in w.stream(
        custom.list_cluster_custom_object,
        "sa-oidc.dev",
        "v1",
        "invalidations",
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["object"]["object"]["name"]))
        w.stop()
    assert seen == [("ADDED", "next")]
