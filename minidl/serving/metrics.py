"""Prometheus metrics in the text exposition format 0.0.4, thread-safe, without a client library.

A scrape renders every family as::

    # HELP minidl_requests_total Requests answered, by model, version and HTTP status code.
    # TYPE minidl_requests_total counter
    minidl_requests_total{model="digits",version="2",code="200"} 17

Histograms follow Prometheus' convention: cumulative ``_bucket{le="..."}`` lines ending with
``le="+Inf"``, then ``_sum`` and ``_count``. Each process keeps its own numbers (with --workers
every worker answers for itself, like ``prometheus_client`` without its multiprocess mode).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def escape_label_value(value: str) -> str:
    """Escape a label value as the text format requires: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a dot, ``+Inf``/``-Inf``/``NaN``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{escape_label_value(value)}"'
                     for name, value in zip(names, values, strict=True))
    return "{" + pairs + "}"


class Counter:
    """A monotonically increasing count per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labelvalues: str, amount: float = 1) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labelvalues}")
        with self._lock:
            self._values[labelvalues] = self._values.get(labelvalues, 0) + amount

    def value(self, *labelvalues: str) -> float:
        with self._lock:
            return self._values.get(labelvalues, 0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_label_text(self.labelnames, labels)} {format_value(count)}"
                for labels, count in items]


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count, per label set."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        # per label set: [count in each bucket (not cumulative) + overflow, sum]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labelvalues: str) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labelvalues}")
        # the first bucket whose bound is >= value, found by bisection (in C); NaN is above
        # every bound, as Prometheus' clients count it
        index = bisect.bisect_left(self.buckets, value) if value == value else len(self.buckets)
        with self._lock:
            series = self._series.get(labelvalues)
            if series is None:
                series = self._series[labelvalues] = ([0] * (len(self.buckets) + 1), [0.0])
            counts, total = series
            counts[index] += 1
            total[0] += value

    def snapshot(self, *labelvalues: str) -> tuple[list[int], float]:
        """Per-bucket counts (not cumulative, the last one above every bound) and the sum."""
        with self._lock:
            counts, total = self._series.get(
                labelvalues, ([0] * (len(self.buckets) + 1), [0.0]))
            return list(counts), total[0]

    def samples(self) -> list[str]:
        with self._lock:
            series = sorted((labels, list(counts), total[0])
                            for labels, (counts, total) in self._series.items())
        lines = []
        for labels, counts, total in series:
            cumulative = 0
            bounds = [format_value(b) for b in self.buckets] + ["+Inf"]
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                label_text = _label_text((*self.labelnames, "le"), (*labels, bound))
                lines.append(f"{self.name}_bucket{label_text} {cumulative}")
            label_text = _label_text(self.labelnames, labels)
            lines.append(f"{self.name}_sum{label_text} {format_value(total)}")
            lines.append(f"{self.name}_count{label_text} {cumulative}")
        return lines


class Gauge:
    """A value read at scrape time from a callback returning ``{label values: value}``."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._read = read

    def samples(self) -> list[str]:
        return [f"{self.name}{_label_text(self.labelnames, labels)} {format_value(value)}"
                for labels, value in sorted(self._read().items())]


class Registry:
    """The metric families of one server, rendered together for a scrape."""

    def __init__(self) -> None:
        self._families: list[Counter | Histogram | Gauge] = []

    def register(self, family: Counter | Histogram | Gauge) -> None:
        self._families.append(family)

    def render(self) -> str:
        lines = []
        for family in self._families:
            lines.append(f"# HELP {family.name} {family.documentation}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            lines.extend(family.samples())
        return "\n".join(lines) + "\n"


class ServingMetrics:
    """The serving metrics: requests, predict latency, batch sizes, loaded versions and
    requests refused by the rate limit.

    ``versions_loaded`` is a callback returning ``{model name: number of AVAILABLE versions}``.
    """

    def __init__(self, versions_loaded: Callable[[], dict[str, int]]) -> None:
        self.requests = Counter(
            "minidl_requests_total",
            "Requests answered, by model, version and HTTP status code "
            "(model and version are empty when the request named no known model).",
            ("model", "version", "code"))
        self.latency = Histogram(
            "minidl_request_latency_seconds",
            "Time to answer a request to predict (POST) that names a configured model, "
            "from its arrival to its answer being ready.",
            ("model",), LATENCY_BUCKETS)
        self.batch_size = Histogram(
            "minidl_batch_size",
            "Rows in each call of model.predict (a batch gathers several requests "
            "when batching is on).",
            ("model",), BATCH_SIZE_BUCKETS)
        self.versions_loaded = Gauge(
            "minidl_model_versions_loaded",
            "Versions of each model that are loaded and serving (state AVAILABLE).",
            ("model",),
            lambda: {(name, ): count for name, count in versions_loaded().items()})
        self.rate_limited = Counter(
            "minidl_rate_limited_total",
            "Requests refused with 429 because their API key (or client address) was over "
            "--rate_limit.", ())
        self.rate_limited.inc(amount=0)  # shown from the first scrape, not the first refusal
        self.registry = Registry()
        for family in (self.requests, self.latency, self.batch_size, self.versions_loaded,
                       self.rate_limited):
            self.registry.register(family)

    def render(self) -> str:
        return self.registry.render()
