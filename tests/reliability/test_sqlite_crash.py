"""kill -9 of a SQLite-backed issuer in the middle of a burst of creates (issue 9, reliability
suite): the database passes ``PRAGMA integrity_check`` and, after a restart, holds every create
that was acknowledged (201) before the kill."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import pytest
from _kube import account_names, admin, create_account, setup_account
from _load import Load

if TYPE_CHECKING:  # the fixtures' types (tests/issuer/conftest.py, re-exported here)
    from conftest import IssuerFactory

pytestmark = pytest.mark.reliability


def test_kill9_mid_burst_loses_no_acknowledged_create(issuer_factory: IssuerFactory) -> None:
    proc = issuer_factory.start()
    headers = admin(proc.admin_token)
    with proc.client(headers=headers) as c:
        setup_account(c)
    with Load(proc.url, create_account, threads=4, headers=headers, timeout=3) as load:
        time.sleep(1.5)
        proc.kill()  # kill -9 with writes in flight
        time.sleep(0.3)
    acked = {o.value for o in load.outcomes if o.status == 201}
    assert len(acked) > 20, "too few creates before the kill to test anything"
    db = sqlite3.connect(proc.data_dir / "issuer.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    proc.restart()
    with proc.client(headers=headers) as c:
        lost = acked - account_names(c)
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged creates lost: {sorted(lost)[:5]}"
