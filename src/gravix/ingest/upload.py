"""An ingest node's uploads to its store (DESIGN §11): one thread per server process takes
every sealed buffer file to the store's raw (:func:`gravix.storage.upload.upload_sealed`),
off the request path.

A failed upload (the store unreachable, slow, refusing) is retried with exponential
back-off; the sealed files wait on the local disk meanwhile (the backlog, exported on
/metrics), and ingestion goes on: the only limit is the local disk, which /ready and the
503 of a full disk already watch. Leftovers of an earlier run (or of another worker that
died) are found by a rescan of buffer/, so they go up at the next start.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gravix import schema
from gravix.errors import GravixError
from gravix.ingest.files import Sealed
from gravix.ingest.metrics_plain import PlainHistogram
from gravix.storage import layout
from gravix.storage.store import Store
from gravix.storage.upload import Backlog, UploadReport, backlog, sealed_files, upload_sealed

log = logging.getLogger("gravix.ingest.upload")

RETRY_MIN_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Without a rotation to wake it, the uploader looks for leftovers this often.
RESCAN_SECONDS = 5.0
UPLOAD_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class UploadStats:
    """What the uploader did; read by /metrics."""

    files: int = 0
    objects: int = 0
    bytes: int = 0
    failures: int = 0
    last_error: str | None = None
    seconds: PlainHistogram = field(default_factory=lambda: PlainHistogram(UPLOAD_BOUNDS))

    def record(self, report: UploadReport) -> None:
        self.files += 1
        self.objects += len(report.objects) + (report.quarantined is not None)
        self.bytes += report.bytes
        self.seconds.observe(report.seconds)
        self.last_error = None


class Uploader:
    """The upload thread of one server process."""

    def __init__(self, root: Path, store: Store, node_id: str) -> None:
        self.root = root
        self.store = store
        self.node_id = node_id
        self.stats = UploadStats()
        self._hints: dict[Path, layout.Hour] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._run, name="gravix-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hand_off(self, topic: str, sealed: Sealed) -> None:
        """A rotation sealed a file: upload it soon (whole, if it holds one event hour)."""
        if sealed.hours is not None and len(sealed.hours) == 1:
            (hour,) = sealed.hours
            self._hints[sealed.path] = layout.Hour.of_epoch_hour(hour)
        self._wake.set()

    def backlog(self) -> Backlog:
        """Sealed files of this node (every process) not yet confirmed by the store."""
        return backlog(self.root, schema.TOPICS)

    def stop(self, drain_seconds: float) -> None:
        """Upload what is sealed for at most ``drain_seconds``, then stop; what is left is
        uploaded at the next start."""
        self._draining = True
        self._wake.set()
        self._thread.join(drain_seconds)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            log.warning("uploads still under way at shutdown; the next start completes them")

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            # Read before the pass: a pass that began before the stop may have listed the
            # files before the buffers sealed their last ones.
            draining = self._draining
            failed, found = self._upload_all()
            if draining and (failed or not found):
                return
            if failed:
                delay = min(max(delay * 2, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS)
                self._stop.wait(delay)  # a new rotation does not cut the back-off short
                continue
            delay = 0.0
            if not found:
                self._wake.wait(RESCAN_SECONDS)

    def _upload_all(self) -> tuple[bool, bool]:
        """Upload every sealed file, oldest first; (failed, found any)."""
        self._wake.clear()
        files = sealed_files(self.root, schema.TOPICS)
        for topic, path, _size in files:
            if self._stop.is_set():
                return False, True
            try:
                report = upload_sealed(
                    self.store, self.node_id, self.root, topic, path, whole=self._hints.get(path)
                )
            except (GravixError, OSError) as exc:
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                log.warning("upload of %s to %s failed: %s", path.name, self.store.url, exc)
                return True, True
            self._hints.pop(path, None)
            if report is not None:
                self.stats.record(report)
        # Files another worker took: their hints would stay forever (a file without one is
        # split, into the same objects with the same bytes, so a dropped hint costs only CPU).
        listed = {path for _topic, path, _size in files}
        # list() copies the keys in one step: hand_off adds to the dict from the event loop.
        for path in [p for p in list(self._hints) if p not in listed and not p.exists()]:
            self._hints.pop(path, None)
        return False, bool(files)
