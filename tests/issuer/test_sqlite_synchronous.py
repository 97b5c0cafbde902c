"""The SQLite store's durability choice, ``?synchronous=full|normal`` (issuer.store.sqlite).

``full`` (default): every commit waits for the device flush. ``normal``: object creates and
updates are acknowledged once in the WAL (they survive the process being killed, not a power
loss); key-set changes, deletions, events, leases and updates marked ``durable`` (RBAC) are
still flushed before they return.
The flushes are counted with strace on a real process writing a real file; the kill test
kills a real writer with SIGKILL.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from issuer.store import NotFound, Store, open_store, sqlite_url

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from issuer.store import StoredKey, open_store

    def key(kid):
        jwk = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ", "kid": kid}
        return StoredKey(kid=kid, alg="ES256", state="active", public_jwk=jwk,
                         private_enc=b"x", created_at=1.0, activate_at=1.0,
                         max_token_lifetime=3600)

    url, data, op, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    store = open_store(url, data)
    for i in range(40):  # set-up, flushed or not alike in every run: counted in the baseline
        store.create_object("Pod", "ns", f"p{i}", {"metadata": {"uid": f"u{i}"}})
    for i in range(n):
        if op == "update":
            body = {"metadata": {"uid": "u0", "labels": {"i": str(i)}}}
            store.update_object("Pod", "ns", "p0", body)
        elif op == "durable-update":  # an RBAC update: it may take access away
            body = {"metadata": {"uid": "u0", "labels": {"i": str(i)}}}
            store.update_object("Pod", "ns", "p0", body, durable=True)
        elif op == "create":
            store.create_object("Pod", "ns", f"c{i}", {"metadata": {"uid": f"c{i}"}})
        elif op == "delete":
            store.delete_object("Pod", "ns", f"p{i}")
        elif op == "keys":
            store.cas_keys(store.load_keys().version, [key(f"k{i}")])
        elif op == "event":
            store.append_event({"type": "revoked", "i": i})
    store.close()
    """
)


def _flushes(tmp_path: Path, url: str, op: str, n: int) -> int:
    """fsync/fdatasync calls of a fresh process doing ``n`` ``op`` writes on a fresh store."""
    data = tmp_path / f"{op}-{n}-{abs(hash(url))}"
    data.mkdir()
    trace = data / "strace.out"
    store_url = url.replace("DATA", str(data))
    subprocess.run(
        [
            *("strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace)),
            *(sys.executable, "-c", _WRITER, store_url, str(data), op, str(n)),
        ],
        check=True,
        timeout=120,
    )
    return len(re.findall(r"\b(?:fsync|fdatasync)\(", trace.read_text()))


@pytest.fixture(scope="module")
def strace() -> str:
    path = shutil.which("strace")
    if path is None:  # .ci/run installs it; never a silent skip
        pytest.fail("strace is not installed (apt-get install strace)")
    return path


@pytest.mark.parametrize(
    ("url", "op", "flushed"),
    [
        ("sqlite", "update", True),
        ("sqlite", "create", True),
        ("sqlite?synchronous=normal", "update", False),
        ("sqlite?synchronous=normal", "create", False),
        ("sqlite?synchronous=normal", "durable-update", True),
        ("sqlite?synchronous=normal", "delete", True),
        ("sqlite?synchronous=normal", "keys", True),
        ("sqlite?synchronous=normal", "event", True),
        ("sqlite:///DATA/other.db?synchronous=normal", "update", False),
        ("sqlite:///DATA/other.db?synchronous=full", "update", True),
    ],
)
def test_which_writes_wait_for_the_device(
    strace: str, tmp_path: Path, url: str, op: str, flushed: bool
) -> None:
    n = 30
    extra = _flushes(tmp_path, url, op, n) - _flushes(tmp_path, url, op, 0)
    if flushed:
        assert extra >= n, f"{n} {op} writes made only {extra} flushes"
    else:
        # 30 small writes stay far below a checkpoint (1,000 WAL pages), which would flush.
        assert extra <= 2, f"{n} relaxed {op} writes made {extra} flushes"


def test_normal_loses_no_acknowledged_write_when_the_process_is_killed(tmp_path: Path) -> None:
    # The writer prints each name once its create_object returned; SIGKILL mid-stream; every
    # printed name must be in the file (the OS holds what SQLite wrote to the WAL).
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from issuer.store import open_store
        store = open_store("sqlite?synchronous=normal", Path(sys.argv[1]))
        i = 0
        while True:
            store.create_object("Pod", "ns", f"p{i}", {"metadata": {"uid": f"u{i}"}})
            print(f"p{i}", flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        acknowledged.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    acknowledged += [line.strip() for line in proc.stdout if line.strip()]
    assert len(acknowledged) >= 300
    store = open_store("sqlite", tmp_path)
    try:
        stored = {n for n in acknowledged if _exists(store, n)}
    finally:
        store.close()
    assert stored == set(acknowledged)


def _exists(store: Store, name: str) -> bool:
    try:
        store.get_object("Pod", "ns", name)
    except NotFound:
        return False
    return True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite", (None, "full")),
        ("sqlite?synchronous=normal", (None, "normal")),
        ("sqlite?synchronous=full", (None, "full")),
        ("sqlite:////srv/sa/issuer.db", ("/srv/sa/issuer.db", "full")),
        ("sqlite:////srv/sa/issuer.db?synchronous=normal", ("/srv/sa/issuer.db", "normal")),
        ("redis://127.0.0.1:6379/0", None),
    ],
)
def test_sqlite_urls(url: str, expected: tuple[str | None, str] | None) -> None:
    # expected: (the file the URL names, or None for the data dir's issuer.db; synchronous)
    read = sqlite_url(url, Path("/data"))
    if expected is None:
        assert read is None
        return
    file, synchronous = expected
    path = Path("/data/issuer.db") if file is None else Path(file)
    assert read == (path, synchronous, file is None)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sqlite?synchronous=off", "synchronous=full|normal"),
        ("sqlite?synchronous=normal&synchronous=full", "synchronous=full|normal"),
        ("sqlite?journal_mode=delete", "the only one is synchronous"),
        ("sqlite://relative/path", "sqlite:///ABSOLUTE/PATH"),
        ("sqlite:relative", "sqlite:///ABSOLUTE/PATH"),
    ],
)
def test_bad_sqlite_urls_are_refused_before_anything_is_opened(
    tmp_path: Path, url: str, error: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        open_store(url, tmp_path)
    assert list(tmp_path.iterdir()) == []


def _flushes_during(pid: int, work: Callable[[], None], trace: Path) -> int:
    """fsync/fdatasync calls of process ``pid`` (all threads) while ``work`` runs."""
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace), "-p", str(pid)]
    )
    try:
        time.sleep(1.0)  # attached to every thread
        work()
        time.sleep(0.3)
    finally:
        tracer.send_signal(signal.SIGINT)  # detach; the server runs on
        tracer.wait(10)
    return len(re.findall(r"\b(?:fsync|fdatasync)\(", trace.read_text()))


def test_a_served_rbac_update_is_flushed_a_service_account_update_is_not(
    strace: str, issuer_factory: Any, tmp_path: Path
) -> None:
    # The API marks RBAC updates durable (they may take access away): with synchronous=normal a
    # PATCH of a Role still waits for the device, a PATCH of a ServiceAccount does not.
    proc = issuer_factory.start(store="sqlite?synchronous=normal")
    assert proc.proc is not None
    c = proc.client(headers={"Authorization": f"Bearer {proc.admin_token}"})
    ns = "/api/v1/namespaces"
    role = {
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    for path, body in (
        (ns, {"metadata": {"name": "dev"}}),
        (f"{ns}/dev/serviceaccounts", {"metadata": {"name": "app"}}),
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles", role),
    ):
        assert c.post(path, json=body).status_code == 201
    merge = {"Content-Type": "application/merge-patch+json"}
    n = 20

    def patch(path: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(n):
                body = b'{"metadata":{"labels":{"i":"%d"}}}' % i
                assert c.patch(path, content=body, headers=merge).status_code == 200

        return run

    sa = _flushes_during(proc.proc.pid, patch(f"{ns}/dev/serviceaccounts/app"), tmp_path / "sa")
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles/r"
    roles = _flushes_during(proc.proc.pid, patch(rbac), tmp_path / "role")
    assert sa <= 2, f"{n} ServiceAccount PATCHes made {sa} flushes"
    assert roles >= n, f"{n} Role PATCHes made only {roles} flushes"


@pytest.mark.parametrize("url", ["sqlite", "sqlite?synchronous=normal"])
def test_keys_list_refuses_a_data_dir_without_a_store(tmp_path: Path, url: str) -> None:
    # `sa-issuer keys list` on the data dir's own file must not create an empty store, whatever
    # the URL's durability parameter says.
    data = tmp_path / "empty"
    r = subprocess.run(
        [sys.executable, "-m", "issuer", "keys", "list", "--data-dir", str(data), "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert f"no store at {data / 'issuer.db'}" in r.stderr
    assert not (data / "issuer.db").exists()
