"""DeleteOptions: ``propagationPolicy``, ``orphanDependents``, ``gracePeriodSeconds`` and
``dryRun`` in the body and the query of a DELETE, on the real app and both stores.

Expected texts are kube-apiserver's: ValidateDeleteOptions
(apimachinery pkg/apis/meta/v1/validation/validation.go) answered as
``errors.NewInvalid(meta.k8s.io DeleteOptions, "")`` by handlers/delete.go; unreadable values are
400 with Go's ``encoding/json`` / ``strconv.ParseInt`` texts. The semantics (no garbage collector,
pods deleted at once, namespaces always emptied) are in issuer/api/deleteoptions.py and
docs/CONTRACTS.md.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _api_support import Api

from issuer.api.deleteoptions import DeleteOptions, parse_delete_options
from issuer.http.status import StatusError

SA = "/api/v1/namespaces/dev/serviceaccounts"
PODS = "/api/v1/namespaces/dev/pods"
BOTH = (
    'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "Background": '
    "orphanDependents and deletionPropagation cannot be both set"
)
UNSUPPORTED = (
    'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": '
    'supported values: "Foreground", "Background", "Orphan", "nil"'
)


@pytest.fixture
def dev(api: Api) -> Api:
    api.ns("dev")
    api.sa("dev", "app")
    return api


def _delete(
    api: Api, path: str, body: Any = None, params: dict[str, Any] | None = None
) -> httpx.Response:
    return api.client.request("DELETE", path, headers=api.headers, json=body, params=params)


# --- reading and validation, pure -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "query", "want"),
    [
        (None, {}, DeleteOptions()),
        ({"propagationPolicy": "Background"}, {}, DeleteOptions(propagation_policy="Background")),
        (
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
            {},
            DeleteOptions(propagation_policy="Foreground"),
        ),
        (
            {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "orphanDependents": True},
            {},
            DeleteOptions(orphan_dependents=True),
        ),
        # kubectl --grace-period=0 --force; --now sends 1.
        (
            {"gracePeriodSeconds": 0, "propagationPolicy": "Orphan"},
            {},
            DeleteOptions(grace_period_seconds=0, propagation_policy="Orphan"),
        ),
        # Negative grace periods are taken as 1 (kube: rest.BeforeDelete).
        ({"gracePeriodSeconds": -5}, {}, DeleteOptions(grace_period_seconds=1)),
        (None, {"gracePeriodSeconds": ["-1"]}, DeleteOptions(grace_period_seconds=1)),
        (None, {"gracePeriodSeconds": ["+30"]}, DeleteOptions(grace_period_seconds=30)),
        (None, {"propagationPolicy": ["Orphan"]}, DeleteOptions(propagation_policy="Orphan")),
        # Query bools: "0" and "false" (any case) are false, anything else true.
        (None, {"orphanDependents": ["FALSE"]}, DeleteOptions(orphan_dependents=False)),
        (None, {"orphanDependents": ["0"]}, DeleteOptions(orphan_dependents=False)),
        (None, {"orphanDependents": ["yes"]}, DeleteOptions(orphan_dependents=True)),
        (None, {"orphanDependents": [""]}, DeleteOptions(orphan_dependents=True)),
        (None, {"dryRun": ["All"]}, DeleteOptions(dry_run=True)),
        ({"dryRun": []}, {}, DeleteOptions()),
        # A body's field wins over the query's; the query fills what the body leaves unset.
        (
            {"propagationPolicy": "Foreground"},
            {"propagationPolicy": ["Orphan"], "dryRun": ["All"]},
            DeleteOptions(propagation_policy="Foreground", dry_run=True),
        ),
        # Nulls are unset (Go pointers); unknown fields are ignored.
        (
            {"propagationPolicy": None, "orphanDependents": False, "colour": "blue"},
            {},
            DeleteOptions(orphan_dependents=False),
        ),
        (
            {"preconditions": {"uid": "u", "resourceVersion": None}},
            {},
            DeleteOptions(preconditions={"uid": "u"}),
        ),
    ],
)
def test_options_read(
    body: dict[str, Any] | None, query: dict[str, list[str]], want: DeleteOptions
) -> None:
    assert parse_delete_options(body, query) == want


@pytest.mark.parametrize(
    ("body", "query", "code", "message"),
    [
        ({"orphanDependents": True, "propagationPolicy": "Background"}, {}, 422, BOTH),
        (None, {"orphanDependents": ["false"], "propagationPolicy": ["Background"]}, 422, BOTH),
        ({"orphanDependents": False}, {"propagationPolicy": ["Background"]}, 422, BOTH),
        ({"propagationPolicy": "Sideways"}, {}, 422, UNSUPPORTED),
        (None, {"propagationPolicy": ["Sideways"]}, 422, UNSUPPORTED),
        # Case matters, as in kube.
        (
            {"propagationPolicy": "background"},
            {},
            422,
            'propagationPolicy: Unsupported value: "background": supported values: '
            '"Foreground", "Background", "Orphan", "nil"',
        ),
        (
            {"propagationPolicy": ""},
            {},
            422,
            'propagationPolicy: Unsupported value: "": supported values: '
            '"Foreground", "Background", "Orphan", "nil"',
        ),
        # Both errors at once, aggregated in kube's order.
        (
            {"orphanDependents": True, "propagationPolicy": "Sideways"},
            {},
            422,
            'DeleteOptions.meta.k8s.io "" is invalid: [propagationPolicy: Invalid value: '
            '"Sideways": orphanDependents and deletionPropagation cannot be both set, '
            'propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", '
            '"Background", "Orphan", "nil"]',
        ),
        (
            {"dryRun": ["Some"]},
            {},
            422,
            'DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Some"]: '
            'supported values: "All"',
        ),
        (
            None,
            {"dryRun": ["All", "x"]},
            422,
            'dryRun: Unsupported value: ["All","x"]: supported values: "All"',
        ),
        # Unreadable values: 400 with Go's texts.
        (
            {"gracePeriodSeconds": "30"},
            {},
            400,
            "json: cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds "
            "of type int64",
        ),
        (
            {"gracePeriodSeconds": 1.5},
            {},
            400,
            "json: cannot unmarshal number 1.5 into Go struct field "
            "DeleteOptions.gracePeriodSeconds of type int64",
        ),
        (
            {"gracePeriodSeconds": 2**64},
            {},
            400,
            "json: cannot unmarshal number 18446744073709551616 into Go struct field "
            "DeleteOptions.gracePeriodSeconds of type int64",
        ),
        (
            {"orphanDependents": "true"},
            {},
            400,
            "json: cannot unmarshal string into Go struct field DeleteOptions.orphanDependents "
            "of type bool",
        ),
        (
            {"propagationPolicy": 1},
            {},
            400,
            "json: cannot unmarshal number into Go struct field DeleteOptions.propagationPolicy "
            "of type v1.DeletionPropagation",
        ),
        (
            {"dryRun": "All"},
            {},
            400,
            "json: cannot unmarshal string into Go struct field DeleteOptions.dryRun "
            "of type []string",
        ),
        (
            {"preconditions": []},
            {},
            400,
            "json: cannot unmarshal array into Go struct field DeleteOptions.preconditions "
            "of type v1.Preconditions",
        ),
        (
            None,
            {"gracePeriodSeconds": ["soon"]},
            400,
            'strconv.ParseInt: parsing "soon": invalid syntax',
        ),
        (
            None,
            {"gracePeriodSeconds": ["9223372036854775808"]},
            400,
            'strconv.ParseInt: parsing "9223372036854775808": value out of range',
        ),
        (
            {"kind": "Pod"},
            {},
            400,
            "decoded object cannot be converted to DeleteOptions",
        ),
    ],
)
def test_options_refused(
    body: dict[str, Any] | None, query: dict[str, list[str]], code: int, message: str
) -> None:
    with pytest.raises(StatusError) as e:
        parse_delete_options(body, query)
    assert e.value.code == code
    assert message in e.value.message


# --- over HTTP, both stores -----------------------------------------------------------------------


def test_invalid_combinations_are_422_and_delete_nothing(dev: Api) -> None:
    r = _delete(dev, f"{SA}/app", {"orphanDependents": True, "propagationPolicy": "Background"})
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["reason"] == "Invalid" and status["message"] == BOTH
    # No "name": kube's StatusDetails omits an empty one.
    assert status["details"] == {
        "group": "meta.k8s.io",
        "kind": "DeleteOptions",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "Background": orphanDependents and '
                "deletionPropagation cannot be both set",
                "field": "propagationPolicy",
            }
        ],
    }
    r = _delete(dev, f"{SA}/app", params={"propagationPolicy": "Sideways"})
    assert r.status_code == 422 and r.json()["message"] == UNSUPPORTED
    [cause] = r.json()["details"]["causes"]
    assert cause["reason"] == "FieldValueNotSupported" and cause["field"] == "propagationPolicy"
    r = _delete(dev, f"{SA}/app", params={"gracePeriodSeconds": "soon"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    # Validation comes before the object is looked at: a missing one is still 422.
    r = _delete(dev, f"{SA}/ghost", {"propagationPolicy": "Sideways"})
    assert r.status_code == 422
    assert dev.get(f"{SA}/app").status_code == 200


@pytest.mark.parametrize(
    "options",
    [
        {"propagationPolicy": "Background"},  # kubectl delete
        {"propagationPolicy": "Foreground"},  # --cascade=foreground
        {"propagationPolicy": "Orphan"},  # --cascade=orphan
        {"gracePeriodSeconds": 0, "propagationPolicy": "Background"},  # --grace-period=0 --force
        {"gracePeriodSeconds": 1, "propagationPolicy": "Background"},  # --now
        {"orphanDependents": False},
        {"orphanDependents": True},
    ],
)
def test_every_policy_deletes_at_once(dev: Api, options: dict[str, Any]) -> None:
    pod = dev.pod("dev", "web", sa="app", terminationGracePeriodSeconds=30)
    r = _delete(dev, f"{PODS}/web", {"kind": "DeleteOptions", "apiVersion": "v1", **options})
    assert r.status_code == 200, r.text  # never kube's 202: nothing is left pending
    assert r.json()["metadata"]["uid"] == pod["metadata"]["uid"]
    assert dev.get(f"{PODS}/web").status_code == 404
    # The pod's deletion event is in the invalidation stream, whatever the options.
    events = dev.ctx.store.read_events(0).events
    assert any(e.data.get("uid") == pod["metadata"]["uid"] for e in events)


def test_dependents_are_never_collected(dev: Api) -> None:
    """No garbage collector: an object owned by a deleted one stays, under every policy."""
    owner = dev.pod("dev", "owner", sa="app")
    ref = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    dev.secret("dev", "owned", metadata={"name": "owned", "ownerReferences": [ref]})
    r = _delete(dev, f"{PODS}/owner", {"propagationPolicy": "Foreground"})
    assert r.status_code == 200, r.text
    assert dev.get(f"{PODS}/owner").status_code == 404
    assert dev.get("/api/v1/namespaces/dev/secrets/owned").status_code == 200


@pytest.mark.parametrize("policy", ["Orphan", "Background", "Foreground"])
def test_namespace_is_emptied_under_every_policy(api: Api, policy: str) -> None:
    api.ns("dev")
    api.sa("dev", "app")
    api.pod("dev", "web", sa="app")
    r = _delete(api, "/api/v1/namespaces/dev", {"propagationPolicy": policy})
    assert r.status_code == 200, r.text
    assert r.json()["status"]["phase"] == "Terminating"
    assert api.get("/api/v1/namespaces/dev").status_code == 404
    api.ns("dev")  # recreated: nothing of the old one survived
    assert api.get(f"{SA}/app").status_code == 404
    assert api.get(f"{PODS}/web").status_code == 404


def test_dry_run_in_the_query_or_the_body_deletes_nothing(dev: Api) -> None:
    for body, params in (
        ({"propagationPolicy": "Background"}, {"dryRun": "All"}),
        ({"dryRun": ["All"], "propagationPolicy": "Orphan"}, None),
        (None, {"dryRun": "All", "propagationPolicy": "Foreground"}),
    ):
        r = _delete(dev, f"{SA}/app", body, params)
        assert r.status_code == 200, r.text
        assert dev.get(f"{SA}/app").status_code == 200
    r = _delete(dev, f"{SA}/app", {"dryRun": ["Everything"]})
    assert r.status_code == 422
    assert r.json()["details"]["causes"][0]["field"] == "dryRun"


def test_rbac_deletes_take_the_same_options(dev: Api) -> None:
    path = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles"
    role = {"metadata": {"name": "r"}, "rules": []}
    assert dev.post(path, role).status_code == 201
    r = _delete(dev, f"{path}/r", {"orphanDependents": True, "propagationPolicy": "Orphan"})
    assert r.status_code == 422
    r = _delete(
        dev,
        f"{path}/r",
        {"kind": "DeleteOptions", "apiVersion": "rbac.authorization.k8s.io/v1"},
        params={"propagationPolicy": "Orphan"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "Status" and r.json()["status"] == "Success"
    assert dev.get(f"{path}/r").status_code == 404


def test_finalizers_hold_no_deletion(dev: Api) -> None:
    """No controller would ever remove them: the object goes at once (kube would keep it with a
    deletionTimestamp until they are gone)."""
    body = {"metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}}
    assert dev.post(SA, body).status_code == 201
    r = _delete(dev, f"{SA}/held", {"propagationPolicy": "Foreground"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["finalizers"] == ["example.com/cleanup"]
    assert dev.get(f"{SA}/held").status_code == 404
