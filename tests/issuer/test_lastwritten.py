"""issuer.lastwritten: the bounded map updates start from (pure)."""

from __future__ import annotations

from issuer.lastwritten import LastWritten


def test_bounded_least_recently_used_first_out() -> None:
    lw = LastWritten(capacity=2)
    lw.put(("Pod", "ns", "a"), {"n": "a"})
    lw.put(("Pod", "ns", "b"), {"n": "b"})
    assert lw.get(("Pod", "ns", "a")) == {"n": "a"}  # a is now the most recent
    lw.put(("Pod", "ns", "c"), {"n": "c"})
    assert lw.get(("Pod", "ns", "b")) is None
    assert lw.get(("Pod", "ns", "a")) == {"n": "a"}
    assert len(lw) == 2
    lw.forget(("Pod", "ns", "a"))
    assert lw.get(("Pod", "ns", "a")) is None


def test_every_reader_gets_its_own_copy() -> None:
    lw = LastWritten()
    obj = {"metadata": {"labels": {"a": "1"}}}
    lw.put(("Pod", "ns", "p"), obj)
    obj["metadata"]["labels"]["a"] = "changed after put"
    first = lw.get(("Pod", "ns", "p"))
    assert first == {"metadata": {"labels": {"a": "1"}}}
    first["metadata"]["labels"]["a"] = "changed by a reader"
    assert lw.get(("Pod", "ns", "p")) == {"metadata": {"labels": {"a": "1"}}}
