"""``sa-issuer demo``: OIDC versus TokenReview versus hybrid, measured on a live issuer.

One command, no setup::

    sa-issuer demo [--duration S] [--rate HZ] [--json] [--html FILE] [--store URL]
    sa-issuer demo --issuer URL --admin-token-file F      # against a running issuer

What it does (embedded by default: an in-process issuer on a free loopback port, with a temporary
data directory and SQLite — or ``--store redis://...``):

1. creates a namespace, a service account and two pods, and mints two pod-bound tokens:
   the **pod token** (its pod will be deleted) and the **key token** (its signing key will be
   revoked — it is bound to the second pod, which stays);
2. checks both tokens continuously, ``--rate`` times a second, in three modes side by side:
   ``oidc`` (offline: discovery + JWKS, cached), ``tokenreview`` (ask the issuer every time) and
   ``hybrid`` (offline + the invalidation stream);
3. deletes the pod of the pod token (at 25 % of the run), rotates the signing key (55 %) and
   revokes the old key (70 %) — the key token was signed by it;
4. reports per mode: seconds from the deletion to the first rejection of the pod token
   (``revoked_after_s``; null if still accepted at the end — plain OIDC cannot know), the same for
   the key revocation (``key_revoked_after_s``), per-check latency p50/p99 in ms and issuer HTTP
   calls per check. As a plain-text table (progress on stderr while it runs), as ``--json``
   (``{"modes": {"oidc": {...}, "tokenreview": {...}, "hybrid": {...}}, ...}``) and as a
   self-contained HTML report with an SVG timeline (``--html FILE``, :mod:`issuer.demo_report`).

"Deletion time" is when the DELETE request was sent, so ``revoked_after_s`` is an upper bound.
Against ``--issuer URL`` the key steps are skipped (keys are managed on the issuer's host).
No token is ever printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

import httpx

from issuer.demo_report import render_html
from issuer.demo_result import MODES, DemoResult, Outcome, Sample
from verifier.errors import InvalidToken, VerificationError, VerifierUnavailable
from verifier.identity import ServiceAccountIdentity

__all__ = ["DemoResult", "main", "run_demo"]

PROG: Final = "sa-issuer demo"
NAMESPACE: Final = "demo"
SERVICE_ACCOUNT: Final = "demo-app"
AUDIENCE: Final = "sa-oidc-demo"


# --- talking to the issuer ----------------------------------------------------------------------
class _Counter:
    """Counts HTTP requests made through the clients it hooks (issuer calls per mode)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def hook(self, request: httpx.Request) -> None:
        with self._lock:
            self.n += 1

    def client(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(timeout=timeout, event_hooks={"request": [self.hook]})


class _Api:
    """The few Kubernetes-style calls the demo makes, with the admin bearer token."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base.rstrip("/")
        self._c = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
        )

    def close(self) -> None:
        self._c.close()

    def _ok(self, r: httpx.Response, what: str, allow: tuple[int, ...] = ()) -> dict[str, Any]:
        if r.status_code >= 300 and r.status_code not in allow:
            msg = ""
            with contextlib.suppress(ValueError):
                msg = str(r.json().get("message", ""))
            raise DemoError(f"{what}: HTTP {r.status_code} {msg}".strip())
        body = r.json()
        return body if isinstance(body, dict) else {}

    def ensure(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        r = self._c.post(path, json=body)
        if r.status_code == 409:  # already there (a re-run against the same issuer)
            name = body["metadata"]["name"]
            return self._ok(self._c.get(f"{path}/{name}"), what)
        return self._ok(r, what)

    def delete(self, path: str, what: str) -> None:
        self._ok(self._c.delete(path), what, allow=(404,))

    def token(self, pod: dict[str, Any], seconds: int) -> str:
        meta = pod["metadata"]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [AUDIENCE],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token"
        out = self._ok(self._c.post(path, json=body), "TokenRequest")
        token = out.get("status", {}).get("token")
        if not isinstance(token, str):
            raise DemoError("TokenRequest answered without a token")
        return token


class DemoError(Exception):
    """The demo could not run (issuer unreachable, refused a call...)."""


def _pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "example.invalid/demo:1"}],
        },
    }


# --- the embedded issuer ------------------------------------------------------------------------
class _Embedded:
    """An in-process issuer (the real app) served by uvicorn in a thread on a pre-bound socket."""

    def __init__(self, store: str | None, data_dir: Path) -> None:
        import uvicorn

        from issuer.app import create_app
        from issuer.config import load_config
        from issuer.context import build_context

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        flags: dict[str, Any] = {
            "data_dir": data_dir,
            "listen": f"127.0.0.1:{port}",
            "issuer": self.url,
            "store": store,
            "audit_log": str(data_dir / "audit.log"),
            "log_level": "error",
        }
        self.config = load_config(flags, {}, None)
        self.ctx = build_context(self.config)
        self.app = create_app(self.ctx)
        cfg = uvicorn.Config(
            self.app,
            log_level="error",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.admin_token = self.ctx.admin_tokens[0]

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                        return
            if not self.thread.is_alive():
                break
            time.sleep(0.02)
        raise DemoError("the embedded issuer did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def active_kid(self) -> str:
        from issuer.keys import rotation

        act = rotation.active(self.ctx.store.load_keys().keys)
        if act is None:
            raise DemoError("the issuer has no active key")
        return act.kid

    def rotate(self) -> None:
        self.ctx.keys.rotate()

    def revoke(self, kid: str) -> None:
        self.ctx.keys.revoke(kid)  # also appends the KeyRevoked invalidation event


# --- the checking loops -------------------------------------------------------------------------
class _Runner(threading.Thread):
    """Checks every token at ``rate`` Hz with one verifier; records a Sample per check."""

    def __init__(
        self,
        mode: str,
        verify: Callable[[str], ServiceAccountIdentity],
        tokens: dict[str, str],
        rate: float,
        t0: float,
        on_sample: Callable[[str, Sample], None],
    ) -> None:
        super().__init__(name=f"demo-{mode}", daemon=True)
        self.mode = mode
        self._verify = verify
        self._tokens = tokens
        self._period = 1.0 / rate
        self._t0 = t0
        self._on_sample = on_sample
        self.samples: list[Sample] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self.stop_event.is_set():
            for name, token in self._tokens.items():
                start = time.perf_counter()
                reason: str | None = None
                outcome: Outcome
                try:
                    self._verify(token)
                    outcome = "accepted"
                except InvalidToken as e:
                    outcome, reason = "rejected", e.reason
                except VerifierUnavailable:
                    outcome, reason = "unavailable", "unavailable"
                except VerificationError as e:  # pragma: no cover - other verifier errors
                    outcome, reason = "unavailable", type(e).__name__
                lat = (time.perf_counter() - start) * 1000.0
                s = Sample(time.monotonic() - self._t0, name, outcome, lat, reason)
                self.samples.append(s)
                self._on_sample(self.mode, s)
            next_tick += self._period
            delay = next_tick - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_tick = time.monotonic()


class _Progress:
    """Plain-text progress on a stream: markers, first rejections, a status line per second."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], Outcome] = {}

    def say(self, t: float, text: str) -> None:
        if self.out is not None:
            with self._lock:
                print(f"  {t:6.2f}s  {text}", file=self.out, flush=True)

    def sample(self, mode: str, s: Sample) -> None:
        key = (mode, s.token)
        prev = self._last.get(key)
        self._last[key] = s.outcome
        if prev is not None and prev != s.outcome:
            why = f" ({s.reason})" if s.reason else ""
            self.say(s.t, f"{mode:<12} {s.token} token now {s.outcome.upper()}{why}")


def run_demo(
    *,
    issuer: str | None = None,
    admin_token: str | None = None,
    store: str | None = None,
    duration: float = 12.0,
    rate: float = 20.0,
    progress: TextIO | None = None,
) -> DemoResult:
    """Run the demo (embedded issuer unless ``issuer`` is given) and return what it measured."""
    if duration < 4:
        raise DemoError("--duration must be at least 4 seconds")
    if not 1 <= rate <= 200:
        raise DemoError("--rate must be between 1 and 200 checks per second")
    with contextlib.ExitStack() as stack:
        embedded: _Embedded | None = None
        if issuer is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sa-issuer-demo-")))
            embedded = _Embedded(store, tmp / "data")
            embedded.start()
            stack.callback(embedded.stop)
            issuer = embedded.url
            admin_token = embedded.admin_token
        if not admin_token:
            raise DemoError("--admin-token-file is required with --issuer")
        say = _Progress(progress)
        result = DemoResult(
            issuer=issuer,
            store=(store or "sqlite (temporary data dir)") if embedded else "remote",
            duration_s=duration,
            rate_hz=rate,
            embedded=embedded is not None,
        )
        if progress is not None:
            where = "embedded issuer" if embedded else "issuer"
            print(f"{PROG}: {where} at {issuer} ({result.store})", file=progress, flush=True)
        api = _Api(issuer, admin_token)
        stack.callback(api.close)
        # 1. objects and tokens
        api.ensure("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}, "create namespace")
        api.ensure(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            {"metadata": {"name": SERVICE_ACCOUNT}},
            "create service account",
        )
        suffix = str(int(time.time() * 1000) % 1_000_000)
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        pod_a = api.ensure(pods, _pod_body(f"web-{suffix}"), "create pod")
        pod_b = api.ensure(pods, _pod_body(f"worker-{suffix}"), "create pod")
        stack.callback(api.delete, f"{pods}/{pod_b['metadata']['name']}", "delete pod")
        tokens = {"pod": api.token(pod_a, 600), "key": api.token(pod_b, 600)}
        old_kid = embedded.active_kid() if embedded else None
        # 2. the three verifiers, each with a request-counting client
        counters = {m: _Counter() for m in MODES}
        verifiers = _build_verifiers(stack, issuer, admin_token, counters)
        hybrid = verifiers["hybrid"]
        if not hybrid.wait_synced(10):
            raise DemoError("the hybrid verifier could not sync with the invalidation stream")
        for m in MODES:  # warm up (discovery + JWKS) and check that everything works
            try:
                verifiers[m].verify(tokens["pod"])
            except VerificationError as e:
                raise DemoError(f"{m} verifier refused a fresh token: {e}") from None
        base_calls = {m: counters[m].n for m in MODES}
        # 3. run
        t0 = time.monotonic()
        runners = {m: _Runner(m, verifiers[m].verify, tokens, rate, t0, say.sample) for m in MODES}
        for r in runners.values():
            r.start()
        say.say(0.0, f"checking 2 tokens x 3 modes at {rate:g}/s each")
        plan: list[tuple[float, str]] = [(0.25, "pod deleted")]
        if embedded is not None:
            plan += [(0.55, "key rotated"), (0.70, "key revoked")]
        else:
            result.notes.append("key rotation/revocation skipped: remote issuer")
        try:
            for frac, label in plan:
                _sleep_until(t0 + frac * duration)
                result.markers[label] = time.monotonic() - t0
                if label == "pod deleted":
                    api.delete(f"{pods}/{pod_a['metadata']['name']}", "delete pod")
                    say.say(
                        result.markers[label],
                        f"pod {NAMESPACE}/{pod_a['metadata']['name']} deleted",
                    )
                elif label == "key rotated" and embedded is not None:
                    embedded.rotate()
                    say.say(result.markers[label], "signing key rotated (old key still published)")
                elif label == "key revoked" and embedded is not None and old_kid:
                    embedded.revoke(old_kid)
                    say.say(result.markers[label], "old signing key revoked (gone from the JWKS)")
            _sleep_until(t0 + duration)
        finally:
            for r in runners.values():
                r.stop_event.set()
            for r in runners.values():
                r.join(10)
        for m in MODES:
            result.samples[m] = runners[m].samples
            result.calls[m] = counters[m].n - base_calls[m]
        return result


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _build_verifiers(
    stack: contextlib.ExitStack, issuer: str, admin_token: str, counters: dict[str, _Counter]
) -> dict[str, Any]:
    from verifier.hybrid import HybridVerifier
    from verifier.remote import OIDCVerifier
    from verifier.tokenreview import TokenReviewVerifier

    insecure = issuer.startswith("http://")
    clients = {m: stack.enter_context(counters[m].client()) for m in MODES}
    oidc = OIDCVerifier(issuer, [AUDIENCE], client=clients["oidc"], insecure_allow_http=insecure)
    review = TokenReviewVerifier(
        issuer, admin_token, [AUDIENCE], client=clients["tokenreview"], insecure_allow_http=insecure
    )
    offline = OIDCVerifier(
        issuer, [AUDIENCE], client=clients["hybrid"], insecure_allow_http=insecure
    )
    fallback = TokenReviewVerifier(
        issuer, admin_token, [AUDIENCE], client=clients["hybrid"], insecure_allow_http=insecure
    )
    # The stream has its own (uncounted) client: one long-lived connection, not per check.
    hybrid = HybridVerifier(
        issuer,
        [AUDIENCE],
        bearer_token=admin_token,
        offline=offline,
        review=fallback,
        staleness=3.0,
        insecure_allow_http=insecure,
    )
    stack.callback(hybrid.close)
    return {"oidc": oidc, "tokenreview": review, "hybrid": hybrid}


# --- output -------------------------------------------------------------------------------------
def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "never"
    if isinstance(v, float):
        return f"{v:.3f}{unit}" if v < 10 else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def render_table(result: DemoResult) -> str:
    """The terminal summary table."""
    head = ("mode", "pod deleted ->", "key revoked ->", "p50 ms", "p99 ms", "calls/check", "checks")
    rows = [head]
    for m in MODES:
        s = result.mode_summary(m)
        key = (
            _fmt(s["key_revoked_after_s"], " s") if "key revoked" in result.markers else "(skipped)"
        )
        rows.append(
            (
                m,
                _fmt(s["revoked_after_s"], " s"),
                key,
                _fmt(s["check_p50_ms"]),
                _fmt(s["check_p99_ms"]),
                f"{s['issuer_calls_per_check']:.3f}"
                if s["issuer_calls_per_check"] is not None
                else "-",
                str(s["checks"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        '"pod deleted ->": seconds until the first rejection of the token bound to the deleted pod;'
    )
    lines.append(
        '"key revoked ->": the same for a token of the revoked key; "never" = still accepted.'
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``sa-issuer demo`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure OIDC vs TokenReview vs hybrid verification on a live issuer.",
    )
    p.add_argument("--issuer", help="a running issuer's URL (default: start an embedded one)")
    p.add_argument("--admin-token-file", type=Path, help="admin bearer token file (with --issuer)")
    p.add_argument(
        "--store", help="store URL for the embedded issuer (default: SQLite in a temp dir)"
    )
    p.add_argument("--duration", type=float, default=12.0, help="seconds of checking (default 12)")
    p.add_argument("--rate", type=float, default=20.0, help="checks per second per mode and token")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep the issuer's own warnings (expected here: a key revocation) off the demo's output."""
    saved = {}
    for name in (
        "sa_issuer",
        "issuer",
        "verifier",
        "uvicorn",
        "uvicorn.error",
        "httpx",
        "httpcore",
    ):
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sa-issuer demo``; returns the exit code."""
    if argv and argv[0] == "--":  # `sa-issuer demo -- --json` (the CLI passes "--" through)
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    admin_token: str | None = None
    if args.issuer and not args.admin_token_file:
        print(f"{PROG}: error: --admin-token-file is required with --issuer", file=sys.stderr)
        return 2
    if args.admin_token_file:
        try:
            admin_token = args.admin_token_file.read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            print(f"{PROG}: error: cannot read {args.admin_token_file}", file=sys.stderr)
            return 2
    progress = None if args.quiet else sys.stderr
    try:
        with _quiet_logs():
            result = run_demo(
                issuer=args.issuer,
                admin_token=admin_token,
                store=args.store,
                duration=args.duration,
                rate=args.rate,
                progress=progress,
            )
    except DemoError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, OSError) as e:
        print(f"{PROG}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.html:
        args.html.write_text(render_html(result), encoding="utf-8")
        if progress is not None:
            print(f"{PROG}: HTML report written to {args.html}", file=progress)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print()
        print(render_table(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
