"""Bearer credentials: a static string, or a token file re-read like client-go's cached file token
source (once a period, at once after a 401), keeping the last good value on a bad read."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.credentials import (
    MAX_CREDENTIAL_BYTES,
    BearerToken,
    BearerTokenFile,
    StaticBearerToken,
    as_bearer_token,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_static_token_and_wrapping() -> None:
    tok = as_bearer_token("  abc \n")
    assert isinstance(tok, StaticBearerToken) and isinstance(tok, BearerToken)
    assert tok.value() == "abc"
    tok.invalidate()
    assert tok.value() == "abc"
    assert "abc" not in repr(tok)
    with pytest.raises(ValueError):
        as_bearer_token("   ")
    f = StaticBearerToken("x")
    assert as_bearer_token(f) is f
    with pytest.raises(TypeError):
        as_bearer_token(42)  # type: ignore[arg-type]


def test_file_is_reread_once_a_period(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    clock = Clock()
    tok = BearerTokenFile(path, refresh=60, clock=clock)
    path.write_text("second\n")
    assert tok.value() == "first"  # within the period: no read
    clock.t += 59.9
    assert tok.value() == "first" and tok.reads == 1
    clock.t += 0.1
    assert tok.value() == "second" and tok.reads == 2


def test_invalidate_rereads_at_once(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    tok = BearerTokenFile(path, refresh=3600, clock=Clock())
    path.write_text("rotated")
    assert tok.value() == "old"
    tok.invalidate()
    assert tok.value() == "rotated"


@pytest.mark.parametrize("bad", [b"", b"  \n", b"\xff\xfe", b"x" * (MAX_CREDENTIAL_BYTES + 1)])
def test_a_bad_read_keeps_the_last_good_value(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "token"
    path.write_text("good")
    tok = BearerTokenFile(path, refresh=0, clock=Clock())
    path.write_bytes(bad)
    assert tok.value() == "good"
    path.unlink()
    assert tok.value() == "good"
    path.write_text("new")
    assert tok.value() == "new"


def test_unusable_file_at_construction_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty or unreadable"):
        BearerTokenFile(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty or unreadable"):
        BearerTokenFile(tmp_path / "empty")


def test_repr_never_shows_the_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret-token")
    assert "s3cret" not in repr(BearerTokenFile(path))
