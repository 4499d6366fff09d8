"""Prometheus metrics for HTTP requests, with a private registry and multi-process support."""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
# Methods outside this set are counted as OTHER: the method comes from the client, and every
# distinct label value is a new time series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "OTHER"


def prepare_multiproc_dir(path: str) -> None:
    """Start a server run with an empty metrics directory (stale files would be summed in)."""
    if os.path.isdir(path):
        for name in glob.glob(os.path.join(path, "*.db")):
            os.remove(name)
    else:
        if os.path.exists(path):
            shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def mark_worker_dead(pid: int, path: str | None = None) -> None:
    """Drop a dead worker's live gauges (requests in progress); call from the server's child-exit hook."""
    path = path or os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def _ensure_value_class() -> None:
    """Use mmap-backed values when the multi-process directory is set.

    prometheus_client picks its value class once, at import; when the directory was set after
    that (the server sets it at start-up, after flaskprod was imported), pick again, or each
    worker would count only in its own memory and /metrics would show one random worker.
    """
    if multiprocess_enabled() and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class HttpMetrics:
    """The request metrics of one Production instance, and the label children cached per route."""

    def __init__(self, *, name: str, version: str) -> None:
        _ensure_value_class()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to produce the response, in seconds.",
            ["method", "endpoint"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled.",
            ["method", "endpoint"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.info = Gauge(
            "app_info", "Application name and version.", ["name", "version"], registry=self.registry,
            multiprocess_mode="max",
        )
        self.info.labels(name=name, version=version).set(1)
        if not multiprocess_enabled():
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        # labels() validates and locks on every call; routes are few, so keep the children.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}
        self._gauges: dict[tuple[str, str], Any] = {}

    # The methods below take a method already passed through method_label, so the caches stay bounded.

    def in_progress_child(self, method: str, endpoint: str) -> Any:
        key = (method, endpoint)
        child = self._gauges.get(key)
        if child is None:
            child = self._gauges[key] = self.in_progress.labels(method, endpoint)
        return child

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        counter = self._counters.get((method, endpoint, status))
        if counter is None:
            counter = self._counters[(method, endpoint, status)] = self.requests.labels(method, endpoint, str(status))
        counter.inc()
        timer = self._timers.get((method, endpoint))
        if timer is None:
            timer = self._timers[(method, endpoint)] = self.duration.labels(method, endpoint)
        timer.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this process's registry, or every worker's files in multi-process mode."""
        if multiprocess_enabled():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
