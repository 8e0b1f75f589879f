"""Prometheus metrics of one server process: hot counters kept as plain numbers, rendered
when /metrics is scraped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.ingest.buffer import BufferObserver, CommitStats, TopicBuffer
from gravix.ingest.metrics_plain import PlainHistogram
from gravix.ingest.upload import Uploader
from gravix.storage import layout


class HotCounters:
    """Counters bumped on every request, kept as plain integers and turned into Prometheus
    families only when /metrics is scraped: a prometheus_client ``inc`` (lock, label
    lookup) costs more than the rest of a small request's bookkeeping."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.accepted = dict.fromkeys(schema.TOPICS, 0)
        self.rejected = dict.fromkeys(schema.TOPICS, 0)
        self.body_bytes = dict.fromkeys(schema.TOPICS, 0)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily(
            "gravix_http_requests", "HTTP requests by route and status", labels=["route", "status"]
        )
        for (route, status), count in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        for name, doc, values in (
            ("gravix_events_accepted", "Events durably accepted", self.accepted),
            ("gravix_events_rejected", "Events rejected by validation", self.rejected),
            ("gravix_request_body_bytes", "Request body bytes received (after gzip decoding)",
             self.body_bytes),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=["topic"])
            for topic, count in values.items():
                family.add_metric([topic], count)
            yield family


class CommitMetrics:
    """Per-topic group-commit figures, bumped on every commit, rendered at scrape time."""

    FSYNC_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
    REQUEST_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    EVENT_BOUNDS = (1, 10, 100, 1000, 5000, 10000, 50000)

    def __init__(self) -> None:
        self.fsyncs = dict.fromkeys(schema.TOPICS, 0)
        self.stored_bytes = dict.fromkeys(schema.TOPICS, 0)
        self.fsync_seconds = {t: PlainHistogram(self.FSYNC_BOUNDS) for t in schema.TOPICS}
        self.requests = {t: PlainHistogram(self.REQUEST_BOUNDS) for t in schema.TOPICS}
        self.events = {t: PlainHistogram(self.EVENT_BOUNDS) for t in schema.TOPICS}

    def record(self, topic: str, stats: CommitStats) -> None:
        self.fsyncs[topic] += 1
        self.stored_bytes[topic] += stats.bytes
        self.fsync_seconds[topic].observe(stats.fsync_seconds)
        self.requests[topic].observe(stats.requests)
        self.events[topic].observe(stats.events)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        for name, doc, counts in (
            ("gravix_stored_bytes", "Canonical line bytes appended", self.stored_bytes),
            ("gravix_fsyncs", "fdatasync calls on buffer files", self.fsyncs),
        ):
            counter = CounterMetricFamily(name, doc, labels=["topic"])
            for topic, count in counts.items():
                counter.add_metric([topic], count)
            yield counter
        for name, doc, histograms in (
            ("gravix_fsync_seconds", "fdatasync latency", self.fsync_seconds),
            ("gravix_group_commit_requests", "Requests answered by one group commit",
             self.requests),
            ("gravix_group_commit_events", "Events made durable by one group commit",
             self.events),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=["topic"])
            for topic, histogram in histograms.items():
                family.add_metric([topic], histogram.buckets(), histogram.sum)
            yield family


class UploadMetrics:
    """The uploads of a node with a store (DESIGN §11): the backlog on the local disk (read
    at scrape time, for every process of the node) and what this process uploaded."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        backlog = self.uploader.backlog()
        stats = self.uploader.stats
        for name, doc, value in (
            ("gravix_upload_backlog_files", "Sealed buffer files waiting for the store",
             backlog.files),
            ("gravix_upload_backlog_bytes", "Bytes of sealed buffer files waiting for the store",
             backlog.bytes),
            ("gravix_upload_backlog_oldest_seconds", "Age of the oldest file waiting for the store",
             backlog.oldest_seconds),
        ):  # fmt: skip
            yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, count in (
            ("gravix_uploaded_files", "Sealed buffer files confirmed by the store", stats.files),
            ("gravix_uploaded_objects", "Objects written and confirmed", stats.objects),
            ("gravix_uploaded_bytes", "Line bytes uploaded", stats.bytes),
            ("gravix_upload_failures", "Upload attempts that failed (retried)", stats.failures),
        ):
            yield CounterMetricFamily(name, doc, value=count)
        latency = HistogramMetricFamily(
            "gravix_upload_seconds", "Time to upload and confirm one sealed buffer file"
        )
        latency.add_metric([], stats.seconds.buckets(), stats.seconds.sum)
        yield latency


class DataRootGauges:
    """What the alert rules watch beyond this process, read when /metrics is scraped: free
    space of the data root's file system beside the floor under which /ready fails, and
    the newest hour each table's rollup has built (from the manifests under ``state/``;
    no sample before the first rollup, or where rollup keeps its state elsewhere)."""

    def __init__(self, root: Path, min_free_bytes: int) -> None:
        self.root = root
        self.min_free_bytes = min_free_bytes

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        free = GaugeMetricFamily(
            "gravix_data_free_bytes", "Free bytes of the data root's file system (unprivileged)"
        )
        size = GaugeMetricFamily("gravix_data_size_bytes", "Size of the data root's file system")
        try:
            st = os.statvfs(self.root)
        except OSError:
            pass
        else:
            free.add_metric([], st.f_bavail * st.f_frsize)
            size.add_metric([], st.f_blocks * st.f_frsize)
        yield free
        yield size
        yield GaugeMetricFamily(
            "gravix_data_min_free_bytes",
            "Free-space floor of the data root: under it /ready answers 503",
            value=self.min_free_bytes,
        )
        newest = GaugeMetricFamily(
            "gravix_rollup_newest_hour_timestamp_seconds",
            "Start (Unix time) of the newest hour the rollup has built, by table",
            labels=["table"],
        )
        for table in schema.TABLES:
            hour = layout.newest_manifest_hour(self.root, table)
            if hour is not None:
                newest.add_metric([table], hour.start.timestamp())
        yield newest


class Metrics:
    """Prometheus metrics of one process, in their own registry (never a key in a label)."""

    def __init__(self, root: Path | None = None, min_free_bytes: int = 0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hot = HotCounters()
        r.register(self.hot)
        if root is not None:
            r.register(DataRootGauges(root, min_free_bytes))
        self.commits = CommitMetrics()
        r.register(self.commits)
        self.rotations = Counter(
            "gravix_rotations", "Buffer rotations by reason", ["topic", "reason"], registry=r
        )
        self.published = Counter(
            "gravix_published_lines", "Lines moved from buffer into raw", ["topic"], registry=r
        )
        self.storage_errors = Counter(
            "gravix_storage_errors", "Failed buffer writes", ["topic"], registry=r
        )
        self.active_bytes = Gauge(
            "gravix_buffer_active_bytes", "Size of the active buffer file", ["topic"], registry=r
        )
        self.active_age = Gauge(
            "gravix_buffer_active_age_seconds",
            "Age of the oldest line in the active buffer file",
            ["topic"],
            registry=r,
        )
        self.sealed_pending = Gauge(
            "gravix_buffer_sealed_pending",
            "Sealed files not yet moved into raw",
            ["topic"],
            registry=r,
        )
        self.ready = Gauge("gravix_ready", "1 when /ready answers 200", registry=r)
        self.rate_limited = Counter(
            "gravix_rate_limited", "Requests refused by the rate limit", registry=r
        )

    def watch_uploads(self, uploader: Uploader) -> None:
        self.registry.register(UploadMetrics(uploader))

    def count_request(self, route: str, status: int) -> None:
        requests = self.hot.requests
        key = (route, status)
        requests[key] = requests.get(key, 0) + 1

    def observer(self, on_fatal: Callable[[str, BaseException], None]) -> BufferObserver:
        return BufferObserver(
            on_commit=self.commits.record,
            on_rotate=lambda topic, reason: self.rotations.labels(topic, reason).inc(),
            on_storage_error=lambda topic, _exc: self.storage_errors.labels(topic).inc(),
            on_fatal=on_fatal,
            on_publish=lambda topic, lines: self.published.labels(topic).inc(lines),
        )

    def render(self, buffers: dict[str, TopicBuffer], ready: bool) -> bytes:
        from prometheus_client import generate_latest

        for topic, buf in buffers.items():
            state = buf.state()
            self.active_bytes.labels(topic).set(state.active_bytes)
            self.active_age.labels(topic).set(state.active_age_seconds)
            self.sealed_pending.labels(topic).set(state.sealed_pending)
        self.ready.set(1 if ready else 0)
        return bytes(generate_latest(self.registry))
