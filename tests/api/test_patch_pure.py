"""Table-driven semantics of the patch types and of server-side apply (pure functions), against the
documents that define them: RFC 7386 Appendix A, RFC 6902, Kubernetes' strategic merge patch
document (community/contributors/devel/sig-api-machinery/strategic-merge-patch.md) with the list
merge keys of k8s.io/api core/v1 types.go, and the server-side apply documentation
(https://kubernetes.io/docs/reference/using-api/server-side-apply/)."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.api.apply import apply_config, field_set, fields_v1, from_fields_v1, path_string
from issuer.api.apply import record_update as record
from issuer.api.patch import json_merge_patch, json_patch, strategic_merge_patch
from issuer.http.status import StatusError

# --- RFC 7386 Appendix A: every example, verbatim -------------------------------------------------

RFC7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_EXAMPLES)
def test_json_merge_patch_rfc7386_appendix_a(target: Any, patch: Any, result: Any) -> None:
    assert json_merge_patch(target, patch) == result


# --- RFC 6902 ------------------------------------------------------------------------------------

SA = {"metadata": {"name": "app", "labels": {"a": "1"}}, "secrets": [{"name": "s1"}]}

JSON_PATCHES: list[tuple[str, list[dict[str, Any]], Any]] = [
    (
        "add label",
        [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
        {"a": "1", "b": "2"},
    ),
    ("remove label", [{"op": "remove", "path": "/metadata/labels/a"}], {}),
    ("replace label", [{"op": "replace", "path": "/metadata/labels/a", "value": "9"}], {"a": "9"}),
    (
        "test then replace",
        [
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
        ],
        {"a": "3"},
    ),
    (
        "copy",
        [{"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}],
        {"a": "1", "c": "1"},
    ),
    (
        "move",
        [{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/z"}],
        {"z": "1"},
    ),
]


@pytest.mark.parametrize(("what", "ops", "labels"), JSON_PATCHES, ids=[p[0] for p in JSON_PATCHES])
def test_json_patch_rfc6902(what: str, ops: list[dict[str, Any]], labels: Any) -> None:
    out = json_patch(SA, ops)
    assert out["metadata"]["labels"] == labels
    assert SA["metadata"]["labels"] == {"a": "1"}  # never in place


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([{"op": "test", "path": "/metadata/labels/a", "value": "2"}], 422),  # test fails
        ([{"op": "remove", "path": "/metadata/nope"}], 422),  # missing member
        ([{"op": "replace", "path": "/secrets/5", "value": {}}], 422),  # index out of range
        ({"op": "add"}, 400),  # not a list
        ([{"path": "/a"}], 400),  # no op
    ],
)
def test_json_patch_failures(ops: Any, code: int) -> None:
    with pytest.raises(StatusError) as e:
        json_patch(SA, ops)
    assert e.value.code == code


# --- strategic merge patch -----------------------------------------------------------------------

POD: dict[str, Any] = {
    "metadata": {"name": "p", "finalizers": ["a"]},
    "spec": {
        "containers": [
            {"name": "app", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "envoy"},
        ],
        "volumes": [{"name": "v1", "emptyDir": {}}],
        "tolerations": [{"key": "k1"}],
    },
}

SMP_CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], Any, tuple[str, ...]]] = [
    # ServiceAccount.secrets: patchStrategy merge, patchMergeKey name.
    (
        "SA secrets merge by name",
        "ServiceAccount",
        {"secrets": [{"name": "s1"}, {"name": "s2"}]},
        {"secrets": [{"name": "s3"}]},
        [{"name": "s1"}, {"name": "s2"}, {"name": "s3"}],
        ("secrets",),
    ),
    (
        "SA secrets $patch delete",
        "ServiceAccount",
        {"secrets": [{"name": "s1"}, {"name": "s2"}]},
        {"secrets": [{"name": "s1", "$patch": "delete"}]},
        [{"name": "s2"}],
        ("secrets",),
    ),
    (
        "SA secrets $patch replace",
        "ServiceAccount",
        {"secrets": [{"name": "s1"}, {"name": "s2"}]},
        {"secrets": [{"name": "s9"}, {"$patch": "replace"}]},
        [{"name": "s9"}],
        ("secrets",),
    ),
    # ServiceAccount.imagePullSecrets has no patch tags: the list is replaced.
    (
        "SA imagePullSecrets replaced",
        "ServiceAccount",
        {"imagePullSecrets": [{"name": "old"}]},
        {"imagePullSecrets": [{"name": "regcred"}]},
        [{"name": "regcred"}],
        ("imagePullSecrets",),
    ),
    (
        "null deletes a key",
        "ServiceAccount",
        {"automountServiceAccountToken": False, "secrets": []},
        {"automountServiceAccountToken": None},
        None,
        ("automountServiceAccountToken",),
    ),
    # PodSpec.containers: merge by name; Container.env: merge by name.
    (
        "container env merged by name",
        "Pod",
        POD,
        {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}},
        [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        ("spec", "containers", 0, "env"),
    ),
    (
        "container image changed in place",
        "Pod",
        POD,
        {"spec": {"containers": [{"name": "side", "image": "envoy:2"}]}},
        "envoy:2",
        ("spec", "containers", 1, "image"),
    ),
    (
        "new container appended",
        "Pod",
        POD,
        {"spec": {"containers": [{"name": "new", "image": "x"}]}},
        ["app", "side", "new"],
        ("spec", "containers", "*name"),
    ),
    # PodSpec.tolerations have no merge key: replaced.
    (
        "tolerations replaced",
        "Pod",
        POD,
        {"spec": {"tolerations": [{"key": "k2"}]}},
        [{"key": "k2"}],
        ("spec", "tolerations"),
    ),
    # ObjectMeta.finalizers: patchStrategy merge on a list of strings: union.
    (
        "finalizers merged as a set",
        "Pod",
        POD,
        {"metadata": {"finalizers": ["b", "a"]}},
        ["a", "b"],
        ("metadata", "finalizers"),
    ),
    (
        "$deleteFromPrimitiveList",
        "Pod",
        POD,
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        [],
        ("metadata", "finalizers"),
    ),
    (
        "$setElementOrder reorders",
        "Pod",
        POD,
        {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}},
        ["side", "app"],
        ("spec", "containers", "*name"),
    ),
    (
        "$retainKeys drops other keys",
        "Pod",
        POD,
        {
            "spec": {
                "volumes": [
                    {"name": "v1", "secret": {"secretName": "s"}, "$retainKeys": ["name", "secret"]}
                ]
            }
        },
        [{"name": "v1", "secret": {"secretName": "s"}}],
        ("spec", "volumes"),
    ),
    (
        "map $patch replace",
        "Pod",
        POD,
        {"metadata": {"$patch": "replace", "name": "p"}},
        {"name": "p"},
        ("metadata",),
    ),
]


def _dig(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if isinstance(p, str) and p.startswith("*"):
            return [item[p[1:]] for item in obj]
        if isinstance(obj, dict) and p not in obj:
            return None
        obj = obj[p]
    return obj


@pytest.mark.parametrize(
    ("what", "kind", "original", "patch", "expected", "path"),
    SMP_CASES,
    ids=[c[0] for c in SMP_CASES],
)
def test_strategic_merge_patch(
    what: str,
    kind: str,
    original: dict[str, Any],
    patch: dict[str, Any],
    expected: Any,
    path: tuple[Any, ...],
) -> None:
    out = strategic_merge_patch(kind, original, patch)
    assert _dig(out, path) == expected


def test_strategic_merge_patch_needs_the_merge_key() -> None:
    with pytest.raises(StatusError) as e:
        strategic_merge_patch("ServiceAccount", {}, {"secrets": [{"namespace": "x"}]})
    assert e.value.code == 400
    assert "does not contain declared merge key: name" in e.value.message


# --- server-side apply ---------------------------------------------------------------------------


def _sa(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "app", "namespace": "dev", **fields.pop("meta", {})},
        **fields,
    }


def _apply(live: Any, config: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
    return apply_config(
        "ServiceAccount",
        live,
        config,
        manager=manager,
        api_version="v1",
        now="2026-01-01T00:00:00Z",
        force=force,
        resource="serviceaccounts",
    )


def _owned(obj: dict[str, Any]) -> dict[str, set[str]]:
    return {
        f"{e['manager']}/{e['operation']}": {path_string(p) for p in from_fields_v1(e["fieldsV1"])}
        for e in obj["metadata"]["managedFields"]
    }


def test_field_set_and_fieldsv1_round_trip() -> None:
    obj = _sa(
        meta={"labels": {"a": "1"}}, secrets=[{"name": "s1"}], automountServiceAccountToken=False
    )
    paths = field_set("ServiceAccount", obj)
    assert {path_string(p) for p in paths} == {
        ".metadata.labels.a",
        '.secrets[name="s1"]',
        '.secrets[name="s1"].name',
        ".automountServiceAccountToken",
    }
    tree = fields_v1(paths)
    assert tree["f:secrets"]['k:{"name":"s1"}'] == {".": {}, "f:name": {}}
    assert from_fields_v1(tree) == paths


def test_apply_creates_then_owns_exactly_its_fields() -> None:
    first = _apply(None, _sa(meta={"labels": {"a": "1"}}), "alice")
    assert first["metadata"]["labels"] == {"a": "1"}
    assert _owned(first) == {"alice/Apply": {".metadata.labels.a"}}


def test_apply_conflict_with_another_manager_names_field_and_manager() -> None:
    live = _apply(None, _sa(meta={"labels": {"team": "a"}}), "alice")
    with pytest.raises(StatusError) as e:
        _apply(live, _sa(meta={"labels": {"team": "b"}}), "bob")
    err = e.value
    assert err.code == 409 and err.reason == "Conflict"
    assert (
        err.message == 'Apply failed with 1 conflict: conflict with "alice": .metadata.labels.team'
    )
    assert err.details["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice"',
            "field": ".metadata.labels.team",
        }
    ]


def test_apply_conflicts_grouped_by_manager() -> None:
    live = _apply(None, _sa(meta={"labels": {"x": "1", "y": "1"}}), "alice")
    with pytest.raises(StatusError) as e:
        _apply(live, _sa(meta={"labels": {"x": "2", "y": "2"}}), "bob")
    assert e.value.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n'
        "- .metadata.labels.x\n- .metadata.labels.y"
    )


def test_apply_conflict_with_an_update_manager_shows_version_and_time() -> None:
    live = _sa(meta={"labels": {"team": "a"}})
    record(
        "ServiceAccount",
        None,
        live,
        manager="kubectl-label",
        api_version="v1",
        now="2026-01-01T00:00:00Z",
    )
    with pytest.raises(StatusError) as e:
        _apply(live, _sa(meta={"labels": {"team": "b"}}), "bob")
    assert e.value.message.endswith(
        'conflict with "kubectl-label" using v1 at 2026-01-01T00:00:00Z: .metadata.labels.team'
    )


def test_apply_force_takes_the_field_over() -> None:
    live = _apply(None, _sa(meta={"labels": {"team": "a", "keep": "1"}}), "alice")
    out = _apply(live, _sa(meta={"labels": {"team": "b"}}), "bob", force=True)
    assert out["metadata"]["labels"] == {"team": "b", "keep": "1"}
    assert _owned(out) == {
        "alice/Apply": {".metadata.labels.keep"},
        "bob/Apply": {".metadata.labels.team"},
    }


def test_apply_same_value_is_shared_not_a_conflict() -> None:
    live = _apply(None, _sa(meta={"labels": {"team": "a"}}), "alice")
    out = _apply(live, _sa(meta={"labels": {"team": "a"}}), "bob")
    owned = _owned(out)
    assert owned["alice/Apply"] == owned["bob/Apply"] == {".metadata.labels.team"}


def test_apply_removes_fields_it_no_longer_sets_unless_someone_else_owns_them() -> None:
    live = _apply(None, _sa(meta={"labels": {"a": "1", "b": "1"}}), "alice")
    live = _apply(live, _sa(meta={"labels": {"b": "1"}}), "bob")  # bob co-owns b
    out = _apply(live, _sa(automountServiceAccountToken=False), "alice")
    assert out["metadata"].get("labels") == {"b": "1"}  # a removed; b still bob's
    assert out["automountServiceAccountToken"] is False


def test_apply_merges_keyed_lists_item_by_item() -> None:
    live = _apply(None, _sa(secrets=[{"name": "s1"}]), "alice")
    out = _apply(live, _sa(secrets=[{"name": "s2"}]), "bob")
    assert out["secrets"] == [{"name": "s1"}, {"name": "s2"}]


def test_update_takes_changed_fields_from_other_managers() -> None:
    old = _apply(None, _sa(meta={"labels": {"team": "a", "x": "1"}}), "alice")
    new = {**old, "metadata": {**old["metadata"], "labels": {"team": "b", "x": "1"}}}
    record(
        "ServiceAccount",
        old,
        new,
        manager="kubectl-edit",
        api_version="v1",
        now="2026-01-01T00:00:00Z",
    )
    assert _owned(new) == {
        "alice/Apply": {".metadata.labels.x"},
        "kubectl-edit/Update": {".metadata.labels.team"},
    }


def test_kubectl_server_side_apply_takes_over_from_client_side_apply() -> None:
    """kube lastappliedmanager.go: manager "kubectl" upgrading an object applied client-side gets
    no conflict on fields still at their last-applied value; other conflicts remain."""
    live = _sa(meta={"labels": {"team": "a"}}, automountServiceAccountToken=True)
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": (
            '{"apiVersion":"v1","kind":"ServiceAccount","automountServiceAccountToken":true,'
            '"metadata":{"name":"app","namespace":"dev"}}'
        )
    }
    record(
        "ServiceAccount",
        None,
        live,
        manager="kubectl-client-side-apply",
        api_version="v1",
        now="2026-01-01T00:00:00Z",
    )
    changed = _sa(automountServiceAccountToken=False)
    out = _apply(live, changed, "kubectl")
    assert out["automountServiceAccountToken"] is False
    with pytest.raises(StatusError):  # another manager name gets the conflict
        _apply(live, changed, "other")
    with pytest.raises(StatusError) as e:  # the label is not in last-applied: still a conflict
        _apply(
            live, _sa(meta={"labels": {"team": "b"}}, automountServiceAccountToken=False), "kubectl"
        )
    assert e.value.message.endswith(".metadata.labels.team")
