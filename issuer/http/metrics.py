"""A tiny Prometheus registry (text exposition format 0.0.4) and the ``/metrics`` endpoint.

No client library: counters are dicts under a lock, gauges are callbacks evaluated at scrape
time. Each worker process has its own registry.

**Several workers** (``sa-issuer serve --workers N``): one scrape must report the whole process
group, whichever worker the kernel hands the connection to. As the Prometheus client's
multiprocess mode does, every worker shares its counters through a directory
(:meth:`Registry.share`, created by the supervisor, ``SA_ISSUER_WORKER_METRICS_DIR``): each
worker rewrites its own ``<pid>.json`` snapshot at most every :data:`FLUSH_INTERVAL` seconds when
a counter moved (and at once when it is scraped), and a scrape sums every file, so counters of
a worker that died keep counting. Another worker's increments show within
:data:`FLUSH_INTERVAL`. Gauges describe what every worker shares (the key set, read from the one
store) and come from the worker that answers.

Metrics every component may touch through ``ctx.metrics`` (an :class:`IssuerMetrics`):

- ``requests``        ``sa_issuer_http_requests_total{route,code}``
- ``tokens_issued``   ``sa_issuer_tokens_issued_total{kind}``  (TokenRequest; kind = pod/secret/...)
- ``token_reviews``   ``sa_issuer_token_reviews_total{result}``
- ``store_errors``    ``sa_issuer_store_errors_total{operation}``
- ``counter(name, help, labels)`` / ``gauge(name, help, fn)`` for anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import orjson

__all__ = ["CONTENT_TYPE", "WORKER_METRICS_ENV", "Counter", "Gauge", "IssuerMetrics", "Registry"]

#: Set by ``sa-issuer serve --workers N`` for its workers: the directory they share counters in.
WORKER_METRICS_ENV: Final = "SA_ISSUER_WORKER_METRICS_DIR"

#: Longest a worker's counters wait before its snapshot file is rewritten (seconds).
FLUSH_INTERVAL: Final = 1.0

#: Prometheus text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing counter with a fixed set of label names."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels`` (all label names required)."""
        if amount < 0:
            raise ValueError("counters only go up")
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def inc_key(self, key: tuple[str, ...]) -> None:
        """Add one to the series with label values ``key`` (hot-path variant of :meth:`inc`)."""
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1.0

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if never incremented)."""
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            return self._values.get(key, 0.0)

    def snapshot(self) -> dict[tuple[str, ...], float]:
        """Every series' current value."""
        with self._lock:
            return dict(self._values)

    def render(self, values: Mapping[tuple[str, ...], float] | None = None) -> Iterable[str]:
        """Exposition lines (of ``values`` instead of this process's own, when given)."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        items = sorted((values if values is not None else self.snapshot()).items())
        for key, value in items:
            if key:
                labels = ",".join(
                    f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)
                )
                yield f"{self.name}{{{labels}}} {_fmt(value)}"
            else:
                yield f"{self.name} {_fmt(value)}"


class Gauge:
    """A gauge whose value is computed at scrape time; ``fn`` returning None omits the sample."""

    def __init__(self, name: str, help: str, fn: Callable[[], float | None]) -> None:
        self.name = name
        self.help = help
        self.fn = fn

    def render(self) -> Iterable[str]:
        """Exposition lines."""
        try:
            value = self.fn()
        except Exception:  # a broken gauge must not break the scrape
            value = None
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        if value is not None:
            yield f"{self.name} {_fmt(value)}"


class Registry:
    """An ordered collection of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge] = {}
        self._lock = threading.Lock()
        self._shared: Path | None = None
        self._name = ""
        self._flushed: bytes = b""
        self._stop = threading.Event()

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        """Create (or return the existing) counter ``name``."""
        with self._lock:
            existing = self._metrics.get(name)
            if isinstance(existing, Counter):
                return existing
            if existing is not None:
                raise ValueError(f"metric {name} already registered as a gauge")
            c = Counter(name, help, labelnames)
            self._metrics[name] = c
            return c

    def gauge(self, name: str, help: str, fn: Callable[[], float | None]) -> Gauge:
        """Register (or replace) the gauge ``name``."""
        g = Gauge(name, help, fn)
        with self._lock:
            self._metrics[name] = g
        return g

    def render(self) -> bytes:
        """The whole registry in the text exposition format (the process group's counters when
        :meth:`share` was called)."""
        with self._lock:
            metrics = list(self._metrics.values())
        merged = self._merged() if self._shared is not None else None
        lines: list[str] = []
        for m in metrics:
            if isinstance(m, Counter) and merged is not None:
                lines.extend(m.render(merged.get(m.name, {})))
            else:
                lines.extend(m.render())
        return ("\n".join(lines) + "\n").encode()

    # --- several worker processes ---------------------------------------------------------------
    def share(self, directory: Path, name: str | None = None) -> None:
        """Share counters with the other processes writing into ``directory`` (see the module
        docstring) as ``<name>.json`` (default: the process id): start the flusher thread,
        flush at exit."""
        self._shared = directory
        self._name = name or str(os.getpid())
        self.flush()
        threading.Thread(target=self._flush_loop, name="metrics-flush", daemon=True).start()
        atexit.register(self.flush)

    def close(self) -> None:
        """Flush a last time and stop the flusher (idempotent)."""
        if self._shared is not None:
            self.flush()
        self._stop.set()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            with contextlib.suppress(OSError):
                self.flush()

    def _snapshot_doc(self) -> bytes:
        with self._lock:
            counters = [m for m in self._metrics.values() if isinstance(m, Counter)]
        doc = {c.name: [[list(k), v] for k, v in sorted(c.snapshot().items())] for c in counters}
        return orjson.dumps(doc)

    def flush(self) -> None:
        """Rewrite this process's snapshot file if a counter moved since the last one (atomic:
        a temporary file renamed over it)."""
        directory = self._shared
        if directory is None:
            return
        doc = self._snapshot_doc()
        if doc == self._flushed:
            return
        path = directory / f"{self._name}.json"
        tmp = directory / f".{self._name}.json.tmp"
        tmp.write_bytes(doc)
        os.replace(tmp, path)
        self._flushed = doc

    def _merged(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every process's counters, summed per series (this one's as of now)."""
        assert self._shared is not None
        with contextlib.suppress(OSError):
            self.flush()
        merged: dict[str, dict[tuple[str, ...], float]] = {}
        own = f"{self._name}.json"
        for path in sorted(self._shared.glob("*.json")):
            try:
                raw = self._flushed if path.name == own else path.read_bytes()
                doc = orjson.loads(raw)
            except (OSError, orjson.JSONDecodeError):
                continue  # a file being replaced or a broken one: skip this scrape
            if not isinstance(doc, dict):
                continue
            for name, series in doc.items():
                target = merged.setdefault(str(name), {})
                for labels, value in series if isinstance(series, list) else ():
                    key = tuple(str(x) for x in labels)
                    target[key] = target.get(key, 0.0) + float(value)
        return merged


class IssuerMetrics(Registry):
    """The issuer's registry with its well-known counters pre-registered (see module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = self.counter(
            "sa_issuer_http_requests_total",
            "HTTP requests by route and status code.",
            ("route", "code"),
        )
        self.tokens_issued = self.counter(
            "sa_issuer_tokens_issued_total",
            "Tokens minted by TokenRequest, by bound kind.",
            ("kind",),
        )
        self.token_reviews = self.counter(
            "sa_issuer_token_reviews_total", "TokenReviews answered, by result.", ("result",)
        )
        self.store_errors = self.counter(
            "sa_issuer_store_errors_total",
            "Store operations that failed, by operation.",
            ("operation",),
        )
