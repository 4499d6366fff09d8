"""Prometheus metrics for HTTP requests, with a private registry and multi-process support.

The request metrics (a counter, a duration histogram and an in-progress gauge) are written on
every request, so they bypass prometheus_client's per-value objects, which take a lock, a getpid
call and a file write for each of the five values a request touches (15 us a request with several
processes on the benchmark machine). Here each thread counts in its own slot, without a lock.
They keep its formats: in one process a collector on the private registry sums the slots; with
several processes each slot writes its own files, in the layout prometheus_client's
MultiProcessCollector reads and sums, so /metrics shows every worker and thread; an exited
worker's files are folded into one archive (metricfiles).
"""


from __future__ import annotations

import bisect
import contextlib
import glob
import itertools
import mmap
import os
import shutil
import struct
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .metricfiles import ARCHIVE_FILES, FILE_TAG, FilesCollector, retire
from .metricfiles import pid_of_file as pid_of_file  # the servers read a file's worker from here

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
# Methods outside this set are counted as OTHER: the method comes from the client, and every
# distinct label value is a new time series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "OTHER"

REQUESTS = ("http_requests", "HTTP requests answered.")
DURATION = ("http_request_duration_seconds", "Time to produce the response, in seconds.")
IN_PROGRESS = ("http_requests_in_progress", "HTTP requests being handled.")
QUEUED = (
    "http_request_queue_seconds",
    "Time from the proxy passing a request on (its X-Request-Start) to the app starting it, in seconds.",
)
ROUTE_LABELS = ["method", "endpoint"]
INF = float("inf")
BUCKETS = tuple(float(b) for b in Histogram.DEFAULT_BUCKETS if b != INF)
LE_LABELS = [floatToGoString(bound) for bound in (*BUCKETS, INF)]  # type: ignore[no-untyped-call]
FILE_PREFIXES = {"counter": "counter", "histogram": "histogram", "gauge": "gauge_livesum"}


def prepare_multiproc_dir(path: str) -> None:
    """Start a server run with an empty metrics directory (stale files would be summed in)."""
    if os.path.isdir(path):
        for name in [*glob.glob(os.path.join(path, "*.db")), *(os.path.join(path, n) for n in ARCHIVE_FILES)]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
    else:
        if os.path.exists(path):
            shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def mark_worker_dead(pid: int, path: str | None = None) -> None:
    """Drop a dead worker's live gauges (requests in progress) and fold the rest of its files into the archive of
    dead workers; call from the server's child-exit hook, in the one process that forks the workers."""
    path = path or os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        for name in glob.glob(os.path.join(path, f"{FILE_PREFIXES['gauge']}_{pid}{FILE_TAG}*.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        retire(pid, path)


def _ensure_value_class() -> None:
    """Use mmap-backed values when the multi-process directory is set.

    prometheus_client picks its value class once, at import; when the directory was set after
    that (the server sets it at start-up, after flaskprod was imported), pick again, or each
    worker would count only in its own memory and /metrics would show one random worker.
    """
    if os.environ.get(MULTIPROC_ENV) and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class ValueFile(Protocol):
    """The part of prometheus_client's MmapedDict used here (it is untyped)."""

    _m: mmap.mmap  # the file's current mapping: replaced when the file grows
    _positions: dict[str, int]  # where each key's value starts; fixed once the key is written

    def write_value(self, key: str, value: float, timestamp: float) -> None: ...


# MmapedDict's entry layout: the value, then a timestamp, as two native doubles.
_PACK_VALUE = struct.Struct("d").pack_into


class Cell:
    """One series' value in a metric file, written in place.

    MmapedDict.write_value costs two Python calls, a key lookup and a bytes copy on each of the five
    writes a request makes; a cell stores where its value lies once and packs the value there.
    """

    __slots__ = ("file", "position")

    def __init__(self, file: ValueFile, key: str) -> None:
        file.write_value(key, 0.0, 0.0)  # the entry exists from the start, at 0
        self.file = file
        self.position = file._positions[key]

    def set(self, value: float) -> None:
        # The mapping is looked up on every write: MmapedDict remaps the file when it grows.
        _PACK_VALUE(self.file._m, self.position, value)


class _SlotNumbers:
    """Numbers for this process's slots, unique across every HttpMetrics in it, so no two share a file.

    uWSGI forks its workers from C, so no fork hook runs; callers compare the pid instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._next = 0

    def take(self, pid: int) -> int:
        with self._lock:
            if pid != self._pid:
                self._pid, self._next = pid, 0
            self._next += 1
            return self._next


_NUMBERS = _SlotNumbers()


class Slot:
    """One thread's share of the request metrics: only that thread writes its routes and files.

    Summing the slots (MultiProcessCollector sums files; the collector below sums in memory) needs
    no lock on the request path: with one lock, threads queued on it while its holder waited for
    the interpreter lock. A slot outlives its thread and is handed to the next new thread.
    """

    __slots__ = ("files", "pid", "queue", "routes")

    def __init__(self, directory: str | None, pid: int) -> None:
        self.pid = pid
        self.routes: dict[tuple[str, str], Route] = {}
        self.files: dict[str, ValueFile] = {}
        if directory is not None:
            number = _NUMBERS.take(pid)
            self.files = {
                typ: MmapedDict(os.path.join(directory, f"{prefix}_{pid}{FILE_TAG}{number}.db"))  # type: ignore[no-untyped-call]
                for typ, prefix in FILE_PREFIXES.items()
            }
        self.queue: Queue | None = None  # made when the first request says when the proxy sent it


class Figures:
    """Requests in progress, durations and counts by status: one slot's for a route, or their sum."""

    __slots__ = ("buckets", "duration_sum", "in_progress", "statuses")

    def __init__(self) -> None:
        self.in_progress = 0.0
        self.duration_sum = 0.0
        self.buckets = [0.0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.statuses: dict[int, float] = {}

    def add(self, other: Figures) -> None:
        # other's thread may be counting meanwhile: list() copies without letting it in.
        self.in_progress += other.in_progress
        self.duration_sum += other.duration_sum
        self.buckets = [a + b for a, b in zip(self.buckets, list(other.buckets), strict=True)]
        for status, count in list(other.statuses.items()):
            self.statuses[status] = self.statuses.get(status, 0.0) + count


class Queue(Figures):
    """One slot's histogram of the time requests waited between the proxy and the app (its duration_sum and
    buckets; never in progress, no statuses), and where it is written."""

    __slots__ = ("bucket_cells", "sum_cell")

    def __init__(self, files: dict[str, ValueFile]) -> None:
        super().__init__()
        if files:
            name, doc = QUEUED
            self.sum_cell = Cell(files["histogram"], mmap_key(name, name + "_sum", [], [], doc))
            self.bucket_cells = [
                Cell(files["histogram"], mmap_key(name, name + "_bucket", ["le"], [bound], doc)) for bound in LE_LABELS
            ]


class Route(Figures):
    """One slot's figures for (method, endpoint), and where they are written."""

    __slots__ = (
        "bucket_cells", "endpoint", "files", "in_progress_cell", "keys", "method", "slot", "status_cells", "sum_cell",
    )

    def __init__(self, method: str, endpoint: str, slot: Slot) -> None:
        super().__init__()
        self.method = method
        self.endpoint = endpoint
        self.keys = RouteKeys(method, endpoint)
        self.slot = slot  # whose thread counts this route: the wait before the app is counted there too
        self.files = files = slot.files  # none in one-process mode
        self.status_cells: dict[int, Cell] = {}
        if files:
            # Every series in the files from the start: a histogram is exposed with all its buckets.
            keys = self.keys
            self.in_progress_cell = Cell(files["gauge"], keys.in_progress)
            self.sum_cell = Cell(files["histogram"], keys.duration_sum)
            self.bucket_cells = [Cell(files["histogram"], key) for key in keys.buckets]

    def status_cell(self, status: int) -> Cell:
        cell = self.status_cells.get(status)
        if cell is None:
            cell = self.status_cells[status] = Cell(self.files["counter"], self.keys.status(status))
        return cell


class RouteKeys:
    """A route's keys in the metric files, made once: each is a JSON text naming metric and labels."""

    __slots__ = ("_labels", "buckets", "duration_sum", "in_progress", "statuses")

    def __init__(self, method: str, endpoint: str) -> None:
        self._labels = [method, endpoint]
        (gauge, gauge_doc), (hist, hist_doc) = IN_PROGRESS, DURATION
        self.in_progress = mmap_key(gauge, gauge, ROUTE_LABELS, self._labels, gauge_doc)
        self.duration_sum = mmap_key(hist, hist + "_sum", ROUTE_LABELS, self._labels, hist_doc)
        self.buckets = [
            mmap_key(hist, hist + "_bucket", [*ROUTE_LABELS, "le"], [*self._labels, bound], hist_doc)
            for bound in LE_LABELS
        ]
        self.statuses: dict[int, str] = {}

    def status(self, status: int) -> str:
        key = self.statuses.get(status)
        if key is None:
            name, doc = REQUESTS
            labels = [*self._labels, str(status)]
            key = self.statuses[status] = mmap_key(name, name + "_total", [*ROUTE_LABELS, "status"], labels, doc)
        return key


class HttpMetrics:
    """The request metrics of one Production instance."""

    def __init__(self, *, name: str, version: str) -> None:
        _ensure_value_class()
        self.registry = CollectorRegistry()
        self.info = Gauge(
            "app_info", "Application name and version.", ["name", "version"], registry=self.registry,
            multiprocess_mode="max",
        )
        self.info.labels(name=name, version=version).set(1)
        self._directory = os.environ.get(MULTIPROC_ENV) or None
        self._local = threading.local()
        self._slots_lock = threading.Lock()  # taken when a thread first counts, not per request
        self._slots: list[Slot] = []
        self._free: list[Slot] = []
        if self._directory is None:
            self.registry.register(_RouteCollector(self._slots))
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    # The methods below take a method already mapped to KNOWN_METHODS or OTHER_METHOD, so routes stay bounded.

    def route(self, method: str, endpoint: str) -> Route:
        """The calling thread's figures for (method, endpoint)."""
        slot = getattr(self._local, "slot", None)
        if slot is None or (self._directory is not None and slot.pid != os.getpid()):
            slot = self._claim_slot()
        route = slot.routes.get((method, endpoint))
        if route is None:
            route = slot.routes[(method, endpoint)] = Route(method, endpoint, slot)
        return route

    def started(self, route: Route) -> None:
        """One more request in progress on route (call from the thread that got route)."""
        route.in_progress += 1
        if route.files:
            route.in_progress_cell.set(route.in_progress)

    def finished(
        self, route: Route, status: int, seconds: float | None, *, was_started: bool, queued: float | None = None
    ) -> None:
        """Count one answered request and its duration (None: a conversation, left out of the histogram);
        was_started: started() ran for it; queued: its wait between the proxy and the app, when the proxy said."""
        if queued is not None:
            self._queued(route.slot, queued)
        count = route.statuses[status] = route.statuses.get(status, 0.0) + 1
        if seconds is not None:
            bucket = bisect.bisect_left(BUCKETS, seconds)  # the first bound >= seconds, as Prometheus's le
            route.duration_sum += seconds
            route.buckets[bucket] += 1
        if was_started:
            route.in_progress -= 1
        if route.files:
            route.status_cell(status).set(count)
            if seconds is not None:
                route.sum_cell.set(route.duration_sum)
                route.bucket_cells[bucket].set(route.buckets[bucket])
            if was_started:
                route.in_progress_cell.set(route.in_progress)

    @staticmethod
    def _queued(slot: Slot, seconds: float) -> None:
        queue = slot.queue
        if queue is None:
            queue = slot.queue = Queue(slot.files)
        bucket = bisect.bisect_left(BUCKETS, seconds)
        queue.duration_sum += seconds
        queue.buckets[bucket] += 1
        if slot.files:
            queue.sum_cell.set(queue.duration_sum)
            queue.bucket_cells[bucket].set(queue.buckets[bucket])

    def _claim_slot(self) -> Slot:
        """A slot for the calling thread: one a finished thread left, else a new one.

        After a fork the child starts from zero: what the parent counted is in the parent's files.
        """
        pid = os.getpid()
        with self._slots_lock:
            if self._slots and self._slots[0].pid != pid:
                self._slots.clear()
                self._free.clear()
            if self._free:
                slot = self._free.pop()
            else:
                slot = Slot(self._directory, pid)
                self._slots.append(slot)
        self._local.slot = slot
        # Handed on when the thread's object goes (servers that start a thread per request);
        # the slot's counts stay in its files and in the sums.
        weakref.finalize(threading.current_thread(), _release_slot, weakref.ref(self), slot)
        return slot

    def release(self, slot: Slot) -> None:
        with self._slots_lock:
            if slot.pid == os.getpid() and slot in self._slots:
                self._free.append(slot)

    def render(self) -> tuple[bytes, str]:
        """The exposition text: this process's registry, or every worker's files in multi-process mode."""
        if self._directory is not None:
            return files_exposition(self._directory), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def files_exposition(directory: str) -> bytes:
    """Every worker's metrics, read from the multi-process directory alone: any process renders the same text (a
    worker's metrics path, the app server's responder beside it: servers/responder.py)."""
    registry = CollectorRegistry()
    registry.register(FilesCollector(directory))
    return generate_latest(registry)


def _release_slot(metrics: weakref.ref[HttpMetrics], slot: Slot) -> None:
    # A weak reference: a long-lived thread (the main one) must not keep every instance alive.
    owner = metrics()
    if owner is not None:
        owner.release(slot)


class _RouteCollector(Collector):
    """Exposes the routes' figures from memory (one process)."""

    def __init__(self, slots: list[Slot]) -> None:
        self._slots = slots

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        # Other threads keep counting meanwhile: list() copies a dict or list without letting them in.
        totals: dict[tuple[str, str], Figures] = {}
        queued: Figures | None = None
        for slot in list(self._slots):
            for r in list(slot.routes.values()):
                total = totals.setdefault((r.method, r.endpoint), Figures())
                total.add(r)
            if slot.queue is not None:
                queued = queued or Figures()
                queued.add(slot.queue)
        return self._families(totals, queued)

    @staticmethod
    def _families(totals: dict[tuple[str, str], Figures], queued: Figures | None = None) -> list[Metric]:
        requests = CounterMetricFamily(*REQUESTS, labels=[*ROUTE_LABELS, "status"])
        duration = HistogramMetricFamily(*DURATION, labels=ROUTE_LABELS)
        in_progress = GaugeMetricFamily(*IN_PROGRESS, labels=ROUTE_LABELS)
        for (method, endpoint), t in totals.items():
            for status, count in sorted(t.statuses.items()):
                requests.add_metric([method, endpoint, str(status)], count)
            cumulative = itertools.accumulate(t.buckets)
            duration.add_metric([method, endpoint], list(zip(LE_LABELS, cumulative, strict=True)), t.duration_sum)
            in_progress.add_metric([method, endpoint], t.in_progress)
        families: list[Metric] = [requests, duration, in_progress]
        if queued is not None:
            # Only behind a proxy that says when it sent the request: absent, rather than an empty histogram.
            queue = HistogramMetricFamily(*QUEUED)
            cumulative = itertools.accumulate(queued.buckets)
            queue.add_metric([], list(zip(LE_LABELS, cumulative, strict=True)), queued.duration_sum)
            families.append(queue)
        return families
