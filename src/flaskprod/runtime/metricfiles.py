"""The multi-process metrics directory: which worker wrote each file, and one archive of what dead workers counted.

Every worker process (and, for flaskprod's request metrics, every thread of one) writes files of its own,
and what a worker counted must stay in the totals after it exits. Kept as they were, a recycled worker's
files would stay for the server's lifetime, and every scrape reads every file: with max_requests, scrapes
slowed down until they passed Prometheus's timeout. So the server's arbiter, on a worker's exit, folds the
worker's files into one archive and removes them (retire); a scrape reads the archive beside the files of
the workers alive (FilesCollector).

Consistency: the archive is replaced whole, by rename, and names the workers it has absorbed whose files may
remain. retire writes the archive with the dead worker's values and its pid, renames it into place, removes
the worker's files, then writes it again without the pid. A scrape opens the archive first, skips the files of
the pids it names, reads the others, and starts over (reading only the archive and files it has not read yet) if
another archive has been renamed into place meanwhile.
So a scrape adds a dead worker's values exactly once: from the archive it holds open if that archive names the
worker or came after its files were removed, else from its files, which stay in place until after the next
rename, which the scrape would notice. Only the arbiter retires workers; any number of processes may scrape.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from typing import IO

from prometheus_client import multiprocess
from prometheus_client.core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.registry import Collector

# Our own file names, one set per slot (counter_<pid>-http<n>.db), beside prometheus_client's
# (counter_<pid>.db): two writers on one file would overwrite each other's entries.
# MultiProcessCollector takes the type (and a gauge's mode) from the name's first parts and reads
# every *.db.
FILE_TAG = "-http"
# Not *.db: prometheus_client's own MultiProcessCollector, if an app runs one on this directory, must not read it.
ARCHIVE = "dead-workers.json"
ARCHIVE_TEMPORARY = ARCHIVE + ".new"
ARCHIVE_FILES = (ARCHIVE, ARCHIVE_TEMPORARY)
# How a dead worker's values join the archive's, by file kind: as MultiProcessCollector adds up files.
# A gauge in mode "all" is one series per pid, kept as such; "live" gauges count only while their process lives.
_FOLDS = {
    "counter": "sum", "histogram": "sum", "summary": "sum", "gauge_sum": "sum",
    "gauge_max": "max", "gauge_min": "min", "gauge_mostrecent": "mostrecent", "gauge_all": "all",
}
# Each read that finds the archive replaced meanwhile starts over; it is replaced twice per dead worker.
READ_ATTEMPTS = 20

_FILE_PID = re.compile(r"_(\d+)(?:" + re.escape(FILE_TAG) + r"\d+)?\.db$")

log = logging.getLogger(__name__)


def pid_of_file(name: str) -> int | None:
    """The worker pid in a metric file's name (prometheus_client's or flaskprod's), None for other files."""
    match = _FILE_PID.search(name)
    return int(match[1]) if match else None


def _kind_and_label(name: str) -> tuple[str, str]:
    """A file's kind ("counter", "gauge_max") and the pid label MultiProcessCollector gives a gauge of it."""
    parts = os.path.basename(name).split("_")
    if parts[0] == "gauge" and len(parts) > 2:
        return f"gauge_{parts[1]}", parts[2][:-3]
    return parts[0], ""


def _absorbable(kind: str) -> bool:
    return kind in _FOLDS or kind.startswith("gauge_live")


# Archived values: (kind, pid label, key) -> (value, timestamp); the pid label is kept for "all" gauges only.
Values = dict[tuple[str, str, str], tuple[float, float]]


class _Archive:
    """The archive's content: the values of every worker folded in, and which of them may still have files."""

    def __init__(self, values: Values | None = None, absorbed: Iterable[int] = ()) -> None:
        self.values: Values = values if values is not None else {}
        self.absorbed = frozenset(absorbed)

    @classmethod
    def read(cls, file: IO[bytes]) -> _Archive:
        document = json.load(file)
        values = {(kind, label, key): (value, ts) for kind, label, key, value, ts in document["values"]}
        return cls(values, document["absorbed"])

    @classmethod
    def load(cls, directory: str) -> _Archive:
        try:
            with open(os.path.join(directory, ARCHIVE), "rb") as file:
                return cls.read(file)
        except FileNotFoundError:
            return cls()

    def replace(self, directory: str) -> None:
        """Write this archive under a temporary name, then rename it over the one in place (atomically)."""
        temporary = os.path.join(directory, ARCHIVE_TEMPORARY)
        document = {
            "absorbed": sorted(self.absorbed),
            "values": [[kind, label, key, value, ts] for (kind, label, key), (value, ts) in self.values.items()],
        }
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(json.dumps(document, separators=(",", ":")))  # json.dump would encode in Python, 5 times slower
        os.replace(temporary, os.path.join(directory, ARCHIVE))

    def fold(self, kind: str, label: str, entries: Iterable[tuple[str, float, float]]) -> None:
        """Add a dead worker's values of one file."""
        fold = _FOLDS[kind]
        label = label if fold == "all" else ""
        values = self.values
        for key, value, ts in entries:
            at = (kind, label, key)
            old = values.get(at)
            if old is None:
                values[at] = (value, ts)
            elif fold == "sum":
                values[at] = (old[0] + value, max(old[1], ts))
            elif (
                (fold == "max" and value > old[0])
                or (fold == "min" and value < old[0])
                or (fold == "mostrecent" and ts > old[1])
                or fold == "all"  # one series per pid: the worker's own value, whatever an earlier one left
            ):
                values[at] = (value, ts)


def _entries(name: str) -> Iterator[tuple[str, float, float]]:
    if not _has_header(name):
        return  # created by a worker that died before it sized the file: no values
    for key, value, ts, _ in MmapedDict.read_all_values_from_file(name):  # type: ignore[no-untyped-call]
        yield key, value, ts


def _files_of(directory: str, pids: Iterable[int]) -> list[str]:
    wanted = set(pids)
    return [
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if pid_of_file(name) in wanted and _absorbable(_kind_and_label(name)[0])
    ]


def _remove(names: Iterable[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _retire(pid: int, directory: str) -> None:
    archive = _Archive.load(directory)
    if archive.absorbed:  # left by a retire that stopped before its end: their values are in the archive already
        _remove(_files_of(directory, archive.absorbed))
    names = _files_of(directory, [pid])
    if not names:
        return
    folded = []
    for name in names:
        kind, label = _kind_and_label(name)
        if kind in _FOLDS:
            archive.fold(kind, label, _entries(name))
            folded.append(name)
        else:
            os.remove(name)  # a live gauge: goes before the totals change, as prometheus_client's mark_process_dead
    _Archive(archive.values, [pid]).replace(directory)
    _remove(folded)
    # Not named once its files are gone: a new worker given the pid again must not be skipped.
    _Archive(archive.values).replace(directory)


_pending: list[tuple[int, str]] = []
_retiring = threading.Lock()


def retire(pid: int, directory: str) -> None:
    """Fold a dead worker's files into the archive and remove them (live gauges are only removed).

    Gunicorn 22 and 23 call child_exit inside their SIGCHLD handler, which another worker's exit can
    interrupt: a retire that comes in during another is left for the first to do, never run inside it,
    or each would write an archive without the other's worker.
    """
    _pending.append((pid, directory))
    while _pending and _retiring.acquire(blocking=False):
        try:
            while _pending:
                pid, directory = _pending.pop(0)
                try:
                    _retire(pid, directory)
                except Exception:
                    # Raised into the arbiter it would stop the server. At any step a failure leaves the
                    # totals right: the worker's files stay in place, or the archive in place names it.
                    log.exception("Could not fold the metric files of dead worker %s into %s", pid, ARCHIVE)
        finally:
            _retiring.release()


class FilesCollector(Collector):
    """Every worker's metrics: the archive of dead workers and the files of live ones, each value once.

    Leaves out files a starting worker has created but not yet sized: a worker (a recycled one's
    replacement) creates its file empty, then sizes it and writes the header; a scrape between the two
    would fail to read the header and answer 500. Such a file holds no values yet, so leaving it out
    loses nothing.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        # A file read once is not read again on a retry: the retry is quick, so it is rarely overtaken itself.
        read: dict[str, list[tuple[str, float, float]]] = {}
        for _ in range(READ_ATTEMPTS):
            metrics = self._read(read)
            if metrics is not None:
                return multiprocess.MultiProcessCollector._accumulate_metrics(  # type: ignore[no-untyped-call,no-any-return]
                    metrics, True
                )
        raise RuntimeError(f"the metric files of dead workers were archived during each of {READ_ATTEMPTS} reads")

    def _read(self, read: dict[str, list[tuple[str, float, float]]]) -> dict[str, Metric] | None:
        """The samples of the archive and every file, or None if the archive was replaced meanwhile.

        read: the values of files read before, by name; a file still in place now holds values the archive
        opened now does not (a live worker's, or a dead one's not yet archived), read then or now.
        """
        path = os.path.join(self._directory, ARCHIVE)
        with contextlib.ExitStack() as stack:
            try:
                file: IO[bytes] | None = stack.enter_context(open(path, "rb"))
            except FileNotFoundError:
                file = None
            archive = _Archive.read(file) if file is not None else _Archive()
            files = []
            for name in glob.glob(os.path.join(self._directory, "*.db")):
                kind, label = _kind_and_label(name)
                if pid_of_file(name) in archive.absorbed and _absorbable(kind):
                    continue
                entries = read.get(name)
                if entries is None:
                    try:
                        entries = read[name] = list(_entries(name))
                    except FileNotFoundError:
                        # A live gauge of a worker marked dead since the glob, or a retired worker's file: then
                        # the archive holding its values is in place now, and the check below starts over.
                        continue
                files.append((kind, label, entries))
            # Held open until now, the archive read keeps its inode: no later archive can have the same one.
            if not _same_file(file, path):
                return None
        samples = _Samples()
        for (kind, label, key), (value, ts) in archive.values.items():
            samples.add(kind, label, key, value, ts)
        for kind, label, entries in files:
            for key, value, ts in entries:
                samples.add(kind, label, key, value, ts)
        return samples.metrics


def _same_file(opened: IO[bytes] | None, path: str) -> bool:
    """Whether path names the file opened (both None and absent count as the same)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return opened is None
    if opened is None:
        return False
    then = os.fstat(opened.fileno())
    return (then.st_dev, then.st_ino) == (now.st_dev, now.st_ino)


def _has_header(name: str) -> bool:
    try:
        return os.path.getsize(name) >= 8  # the 8-byte header holds how much of the file is used
    except OSError:
        return False  # removed since the glob: a dead worker's (see FilesCollector._read)


class _Samples:
    """Samples by metric, as MultiProcessCollector reads them from files before it adds them up."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self._keys: dict[str, tuple[str, str, tuple[tuple[str, str], ...], str]] = {}

    def add(self, kind: str, label: str, key: str, value: float, ts: float) -> None:
        parsed = self._keys.get(key)
        if parsed is None:
            metric_name, name, labels, help_text = json.loads(key)
            parsed = self._keys[key] = (metric_name, name, tuple(sorted(labels.items())), help_text)
        metric_name, name, labels_key, help_text = parsed
        typ = kind.partition("_")[0]
        metric = self.metrics.get(metric_name)
        if metric is None:
            metric = self.metrics[metric_name] = Metric(metric_name, help_text, typ)
        # Labels as a tuple, as MultiProcessCollector leaves them for its _accumulate_metrics.
        if typ == "gauge":
            metric._multiprocess_mode = kind.partition("_")[2]  # type: ignore[attr-defined]
            metric.add_sample(name, (*labels_key, ("pid", label)), value, ts)  # type: ignore[arg-type]
        else:
            metric.add_sample(name, labels_key, value)  # type: ignore[arg-type]
