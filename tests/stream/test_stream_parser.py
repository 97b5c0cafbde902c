"""Pure parts of the follower: the NDJSON line parser and the invalidation state."""

from __future__ import annotations

import json

import pytest

from verifier._stream import (
    Heartbeat,
    InvalidationState,
    LineParser,
    StreamEvent,
    StreamExpired,
    StreamProtocolError,
)
from verifier.identity import ServiceAccountIdentity


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_parser_splits_lines_across_chunks() -> None:
    p = LineParser()
    data = _line({"type": "EVENT", "seq": 1, "event": {"type": "KeyRevoked", "kid": "k"}})
    data += _line({"type": "HEARTBEAT", "seq": 1, "time": 5.0, "oldestSeq": 1})
    out = []
    for i in range(len(data)):  # one byte at a time
        out += p.feed(data[i : i + 1])
    assert out == [
        StreamEvent(1, {"type": "KeyRevoked", "kid": "k"}),
        Heartbeat(1, 5.0, 1),
    ]
    assert p.pending == 0


def test_parser_in_stream_410() -> None:
    p = LineParser()
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    assert p.feed(_line({"type": "ERROR", "object": status})) == [StreamExpired("too old")]


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1,2]\n",
        b'{"type":"WHAT"}\n',
        b'{"type":"EVENT","seq":-1,"event":{}}\n',
        b'{"type":"EVENT","seq":true,"event":{}}\n',
        b'{"type":"EVENT","seq":1}\n',
        b'{"type":"ERROR","object":{"code":500}}\n',
    ],
)
def test_parser_rejects_garbage(line: bytes) -> None:
    with pytest.raises(StreamProtocolError):
        LineParser().feed(line)


def test_parser_caps_line_length() -> None:
    p = LineParser(max_line=100)
    with pytest.raises(StreamProtocolError):
        p.feed(b"x" * 101)


def _ident(**kw: object) -> ServiceAccountIdentity:
    base: dict[str, object] = {
        "namespace": "ns",
        "service_account_name": "sa",
        "service_account_uid": "sa-uid",
        "key_id": "kid-1",
        "token_id": "jti-1",
    }
    base.update(kw)
    return ServiceAccountIdentity(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "ident", "why"),
    [
        ({"type": "ObjectDeleted", "kind": "Pod", "uid": "p1"}, {"pod_uid": "p1"}, "pod"),
        ({"type": "ObjectDeleted", "kind": "Secret", "uid": "s1"}, {"secret_uid": "s1"}, "secret"),
        ({"type": "ObjectDeleted", "kind": "Node", "uid": "n1"}, {"node_uid": "n1"}, "node"),
        ({"type": "ObjectDeleted", "kind": "ServiceAccount", "uid": "sa-uid"}, {}, "service"),
        ({"type": "KeyRevoked", "kid": "kid-1"}, {}, "key"),
        ({"type": "TokenRevoked", "jti": "jti-1", "exp": 2e9}, {}, "token"),
    ],
)
def test_state_invalidates(event: dict[str, object], ident: dict[str, object], why: str) -> None:
    st = InvalidationState()
    assert st.why_invalid(_ident(**ident)) is None
    st.apply(7, event)
    reason = st.why_invalid(_ident(**ident))
    assert reason is not None and why in reason
    assert st.last_seq == 7


def test_state_pod_bound_token_ignores_node_deletion() -> None:
    # kube: pod-bound tokens only carry node info; node validation is for node-bound tokens.
    st = InvalidationState()
    st.apply(1, {"type": "ObjectDeleted", "kind": "Node", "uid": "n1"})
    assert st.why_invalid(_ident(pod_uid="p1", node_uid="n1")) is None
    assert st.why_invalid(_ident(node_uid="n1")) is not None


def test_state_other_uids_and_unknown_events_do_not_invalidate() -> None:
    st = InvalidationState()
    st.apply(1, {"type": "ObjectDeleted", "kind": "Pod", "uid": "other"})
    st.apply(2, {"type": "SomethingNew", "uid": "p1"})
    st.apply(3, {"type": "ObjectDeleted", "kind": "ConfigMap", "uid": "p1"})
    assert st.why_invalid(_ident(pod_uid="p1")) is None
    assert st.last_seq == 3


def test_state_prune_follows_server_retention_and_expiry() -> None:
    st = InvalidationState()
    st.apply(1, {"type": "ObjectDeleted", "kind": "Pod", "uid": "old"})
    st.apply(5, {"type": "ObjectDeleted", "kind": "Pod", "uid": "new"})
    st.apply(6, {"type": "TokenRevoked", "jti": "gone", "exp": 1000})
    st.apply(7, {"type": "TokenRevoked", "jti": "live", "exp": 10_000})
    st.apply(8, {"type": "KeyRevoked", "kid": "k"})
    dropped = st.prune(oldest_seq=3, now=2000, leeway=60)
    assert dropped == 2
    assert "old" not in st.uids["Pod"] and "new" in st.uids["Pod"]
    assert set(st.jtis) == {"live"}
    assert "k" in st.kids
