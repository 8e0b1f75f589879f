"""Merged aggregates of a window, assembled from pieces that are each cached by the identity
of the files they were read from.

A window ``[start, end)`` is cut into whole UTC days, whole hours and the minutes at its
edges. Each piece is read once (``query.merge``: sums, extremes and the merged histogram
per group) and kept, keyed by its bounds, the grouping and the (path, inode, size, mtime)
of its files (of a store's objects: URL, size and the time the store wrote them): a rollup
that replaces an hour's file changes its identity, so that piece is read again and the
others are not. The pieces are then merged once more — summing histograms is exact, so the
answer is the one a single read of the window gives. The dashboard's 60-second refresh and
a 7-day view so read a few hundred rows, not millions.

Percentiles and Apdex are read from the merged histograms for every row at once, by the
rank rule of :mod:`gravix.schema.sketch`, in polars rather than row by row.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from gravix import schema
from gravix.query.merge import MS, QUANTILES, Steps, merged, merged_top, metrics, remerged, totals
from gravix.query.source import Root, StoreRoot
from gravix.query.tables import collect_stable, table_files
from gravix.schema import estimates
from gravix.storage import layout

log = logging.getLogger("gravix.dashboard")
METRICS = schema.REQUEST_METRICS_MINUTE
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SUMS = ("requests", "errors", "client_errors", "zero_count")
Identity = tuple[tuple[str, int, int, int], ...]


def identity(root: Root, files: list[str]) -> Identity:
    """What changes when a file is replaced: its inode, size and modification time (of an
    object in a store: its size and the time the store wrote it)."""
    if isinstance(root, StoreRoot):
        return root.identity(files)
    out = []
    for path in files:
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        out.append((path, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(out)


def cut(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` as edge minutes, whole hours and whole UTC days, in order."""
    pieces: list[tuple[datetime, datetime]] = []
    at = start
    while at < end:
        day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        hour = at.replace(minute=0, second=0, microsecond=0)
        if at == day and at + DAY <= end:
            nxt = at + DAY
        elif at == hour and at + HOUR <= end:
            nxt = at + HOUR
        else:
            nxt = min(hour + HOUR, end)
        pieces.append((at, nxt))
        at = nxt
    return pieces


class Pieces:
    """Per-piece merged aggregates of one data root, most recently used kept."""

    def __init__(self, root: Root, *, size: int = 4096) -> None:
        self.root = root
        self.size = size
        self._cache: OrderedDict[tuple[Any, ...], pl.DataFrame] = OrderedDict()
        self._lock = threading.Lock()
        self._reading: dict[tuple[Any, ...], threading.Lock] = {}
        # One background fill at a time: many questions at once cannot start many reads.
        self._filling = threading.Semaphore(1)
        self._fill_thread: threading.Thread | None = None

    def listing(self) -> list[tuple[str, datetime, datetime]]:
        """Every warehouse file with the span of event time its name says it holds."""
        out = []
        for path in table_files(self.root, METRICS):
            hours = layout.parse_warehouse_file(METRICS, path)
            out.append((path, min(hours).start, max(hours).start + HOUR))
        return out

    def aggregate(
        self,
        start: datetime,
        end: datetime,
        keys: list[str],
        plan: Callable[[list[tuple[datetime, datetime]]], pl.LazyFrame],
        tag: tuple[Any, ...],
        listing: list[tuple[str, datetime, datetime]] | None = None,
        *,
        fill_later: bool = False,
        top: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    ) -> pl.DataFrame | None:
        """The window's rows merged by ``keys`` (None when no file covers it); ``plan``
        gives the rows of some windows with the key columns, ``tag`` says what makes a
        question's rows differ (its filters, its step). With ``top``, only the groups it
        picks from the groups' sums are returned, and only their histograms are added.

        Missing pieces are read in one read grouped by piece as well, which costs nothing
        more when each group lies in one piece (a time step). For a grouping that the cut
        would multiply (endpoints: each in every piece), ``fill_later`` answers from one
        read of the window instead and reads the pieces in the background, for the next
        question. Without a cache (size 0) every question is one read of the window."""
        every_file = self.listing() if listing is None else listing
        wanted: dict[tuple[Any, ...], tuple[datetime, datetime]] = {}
        for lo, hi in cut(start, end):
            files = [path for path, a, b in every_file if a < hi and b > lo]
            if files:
                wanted[(lo, hi, tuple(keys), tag, identity(self.root, files))] = (lo, hi)
        if not wanted:
            return None
        found = self._cached(list(wanted))
        missing = {key: span for key, span in wanted.items() if key not in found}
        if self.size <= 0 or (fill_later and len(missing) > 1):
            if top is None:
                answer = collect_stable(lambda: merged(plan([(start, end)]), keys))
            else:
                answer = merged_top(lambda: plan([(start, end)]), keys, top)
            # nothing is kept without a cache; while a fill runs, the next question fills
            if self.size > 0 and self._filling.acquire(blocking=False):
                fill = threading.Thread(target=self._fill, args=(missing, keys, plan), daemon=True)
                self._fill_thread = fill
                fill.start()
            return answer
        if missing:
            found.update(self._read(missing, keys, plan))
        frames = [found[key] for key in wanted if found[key].height]
        if not frames:
            return _empty(keys)
        if len(frames) == 1:
            return frames[0]
        every = pl.concat(frames, how="vertical_relaxed")
        if top is not None:
            kept = top(totals(every.lazy(), keys).collect()).select(keys)
            every = every.join(kept, on=keys, how="semi", nulls_equal=True)
        if every.select(keys).is_unique().all():
            return every
        return remerged(every.lazy(), keys).collect()

    def wait_for_fill(self, timeout: float = 60.0) -> None:
        """Wait until the background fill started by the last answer (if any) is done."""
        fill = self._fill_thread
        if fill is not None:
            fill.join(timeout)

    def _cached(self, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], pl.DataFrame]:
        with self._lock:
            found = {key: self._cache[key] for key in keys if key in self._cache}
            for key in found:
                self._cache.move_to_end(key)
        return found

    def _fill(
        self,
        missing: dict[tuple[Any, ...], tuple[datetime, datetime]],
        keys: list[str],
        plan: Callable[[list[tuple[datetime, datetime]]], pl.LazyFrame],
    ) -> None:
        try:
            self._read(missing, keys, plan)
        except Exception as exc:  # the next question reads the pieces itself
            log.warning("reading the dashboard's pieces in the background failed: %r", exc)
        finally:
            self._filling.release()

    def _read(
        self,
        missing: dict[tuple[Any, ...], tuple[datetime, datetime]],
        keys: list[str],
        plan: Callable[[list[tuple[datetime, datetime]]], pl.LazyFrame],
    ) -> dict[tuple[Any, ...], pl.DataFrame]:
        """Every missing piece in one read: rows grouped by piece and keys, then split.
        Panels that need the same pieces at the same moment (series and heatmap do) wait
        for the first reader instead of reading too."""
        lock_key = tuple(missing)
        with self._lock:
            reading = self._reading.setdefault(lock_key, threading.Lock())
        with reading:
            found = self._cached(list(missing))
            if len(found) == len(missing):
                return found
            spans = sorted(missing.values())
            starts = pl.Series([int(lo.timestamp() * 1000) for lo, _ in spans], dtype=pl.Int64)

            def read() -> pl.LazyFrame:
                rows = plan(spans).with_columns(
                    _piece=pl.lit(starts).search_sorted(
                        pl.col("bucket_start").dt.epoch("ms"), side="right"
                    )
                    - 1
                )
                return _by_piece(rows, keys, len(spans))

            try:
                frame = collect_stable(read)
            finally:
                with self._lock:
                    self._reading.pop(lock_key, None)
            parts = frame.partition_by("_piece", as_dict=True, include_key=False)
            index = {span: n for n, span in enumerate(spans)}
            empty = frame.clear().drop("_piece")
            out = {key: parts.get((index[span],), empty) for key, span in missing.items()}
            with self._lock:
                if self.size > 0:
                    self._cache.update(out)
                    while len(self._cache) > self.size:
                        self._cache.popitem(last=False)
        return out


def _by_piece(rows: pl.LazyFrame, keys: list[str], pieces: int) -> pl.LazyFrame:
    """``rows`` merged by ``_piece`` and ``keys``. Under the time key alone the two are one
    number (a step's start in ms times the number of pieces, plus the piece), so the
    histograms' buckets are added under one integer key instead of two keys."""
    if keys != ["t"]:
        return merged(rows, ["_piece", *keys])
    key = pl.col("t").dt.epoch("ms") * pieces + pl.col("_piece").cast(pl.Int64)
    out = merged(rows.with_columns(_key=key), ["_key"])
    return out.select(
        (pl.col("_key") % pieces).alias("_piece"),
        (pl.col("_key") // pieces).cast(MS).alias("t"),
        pl.exclude("_key"),
    )


def metric_rows(
    root: Root,
    windows: list[tuple[datetime, datetime]],
    service: str | None,
    method: str | None,
    path: str | None,
    steps: Steps,
) -> pl.LazyFrame:
    """Rows of ``windows``: whole hours that fall in one of ``steps`` from the hour table,
    the rest from the minutes (:func:`gravix.query.merge.metrics`)."""
    return metrics(root, windows, service=service, method=method, path_template=path, steps=steps)


def _empty(keys: list[str]) -> pl.DataFrame:
    types: dict[str, Any] = {"t": MS}
    return pl.DataFrame(
        schema={
            **{k: types.get(k, pl.String) for k in keys},
            **{k: pl.Int64 for k in SUMS},
            "latency_min_ms": pl.Float64,
            "latency_max_ms": pl.Float64,
            "idx": pl.List(pl.Int32),
            "cnt": pl.List(pl.Int64),
        }
    )


def with_estimates(frame: pl.DataFrame, apdex_t_ms: float | None = None) -> pl.DataFrame:
    """Add p50_ms, p95_ms, p99_ms (and ``apdex`` for a threshold) read from each row's
    merged histogram (:mod:`gravix.schema.estimates`)."""
    return estimates.with_estimates(frame, QUANTILES, apdex_t_ms=apdex_t_ms)
