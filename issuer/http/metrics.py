"""A tiny Prometheus registry (text exposition format 0.0.4) and the ``/metrics`` endpoint.

No client library: counters are dicts under a lock, gauges are callbacks evaluated at scrape
time. Each worker process has its own registry (scrape each worker, or run one worker per pod).

Metrics every component may touch through ``ctx.metrics`` (an :class:`IssuerMetrics`):

- ``requests``        ``sa_issuer_http_requests_total{route,code}``
- ``tokens_issued``   ``sa_issuer_tokens_issued_total{kind}``  (TokenRequest; kind = pod/secret/...)
- ``token_reviews``   ``sa_issuer_token_reviews_total{result}``
- ``store_errors``    ``sa_issuer_store_errors_total{operation}``
- ``counter(name, help, labels)`` / ``gauge(name, help, fn)`` for anything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "IssuerMetrics", "Registry"]

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

    def render(self) -> Iterable[str]:
        """Exposition lines."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
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
        """The whole registry in the text exposition format."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines.extend(m.render())
        return ("\n".join(lines) + "\n").encode()


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
