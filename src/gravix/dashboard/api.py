"""The dashboard's data API (DESIGN §10): services, series, endpoints, events and heatmap,
answered from the warehouse's rows (and the raw service events, for exact times): whole
hours that fall in one step from ``request_metrics_hour``, the rest from the minutes.

Every percentile is merged from the rows' histograms (:mod:`gravix.query.merge`),
never a max or mean of per-minute values. Answers are plain JSON types. Reads go through
:mod:`gravix.dashboard.pieces`, which keeps each day's and hour's merged aggregates keyed by
the identity (path, inode, size, mtime) of its files: the page's panels, its 60-second
refresh and a second viewer share them, and an hour that a rollup replaced is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from gravix import schema
from gravix.dashboard.params import Filters, Query, aligned_start, series_step
from gravix.dashboard.pieces import Pieces, identity, metric_rows, with_estimates
from gravix.query.merge import MS, Steps, remerged
from gravix.query.source import Root
from gravix.query.tables import collect_stable, scan_files, scan_table, table_files
from gravix.schema import sketch
from gravix.storage import layout

ERROR_BOUND = round(sketch.RELATIVE_ERROR, 4)
METRICS = schema.REQUEST_METRICS_MINUTE
HEATMAP_SCALE = 1  # display buckets of √2: ~20 rows from 1 ms to 1 s
_PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
_SUMS = ("requests", "errors", "client_errors")


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_ms(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _number(value: Any) -> Any:
    return None if value is None or value != value else value  # NaN → null


class Data:
    """The answers of the data API for one data root."""

    def __init__(self, root: Root, *, cache_size: int = 64) -> None:
        self.root = root
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.pieces = Pieces(self.root, size=16 * cache_size)

    # --- the routes ---------------------------------------------------------------------------

    def services(self) -> dict[str, Any]:
        files = table_files(self.root, METRICS)
        by_day: dict[str, list[str]] = {}
        for path in files:
            by_day.setdefault(str(Path(path).parent), []).append(path)
        names: set[str] = set()
        for day_files in by_day.values():
            found = self._cached(("services",), day_files, partial(_names, self.root, day_files))
            names.update(found)
        return {"services": sorted(names), "data_through": self._through(files)}

    def series(self, query: Query) -> dict[str, Any]:
        step = series_step(query)
        origin = aligned_start(query, step)
        count = _count(origin, query.end, step)
        listing = self.pieces.listing()
        files = [path for path, lo, hi in listing if lo < query.end and hi > origin]
        groups = with_estimates(
            self._steps(origin, query.end, step, query.filters, listing), query.apdex_t_ms
        )
        points = _points(groups, origin, step, count)
        answer: dict[str, Any] = {
            "from": stamp(origin),
            "to": stamp(query.end),
            "step_seconds": step,
            "error_bound": ERROR_BOUND,
            "data_through": self._through([p for p, _, _ in listing]) if files else None,
            "points": [],
        }
        if query.compare is not None:
            delta = query.compare
            before = with_estimates(
                self._steps(origin - delta, query.end - delta, step, query.filters, listing),
                query.apdex_t_ms,
            )
            previous = _points(before, origin - delta, step, count)
            answer["previous"] = [_shift(p, delta, query.apdex_t_ms) for p in previous]
            answer["compare"] = "7d" if delta.days == 7 else "1d"
        answer["points"] = [_point(p, query.apdex_t_ms) for p in points]
        total = with_estimates(_total(groups), query.apdex_t_ms)
        summary = total.row(0, named=True) if groups.height else {}
        answer["summary"] = {
            k: v for k, v in _point({**summary, "t": origin}, query.apdex_t_ms).items() if k != "t"
        }
        if query.apdex_t_ms is not None:
            answer["apdex_t_ms"] = query.apdex_t_ms
        return answer

    def endpoints(self, query: Query) -> dict[str, Any]:
        keys = ["service", "method", "path_template"]
        filters = query.filters

        def plan(windows: list[tuple[datetime, datetime]]) -> pl.LazyFrame:
            f = filters
            return metric_rows(self.root, windows, f.service, f.method, f.path, Steps())

        order = [query.sort, *(k for k in ("errors", "requests", *keys) if k != query.sort)]
        descending = [query.descending] + [k not in keys for k in order[1:]]

        def ranked(frame: pl.DataFrame) -> pl.DataFrame:
            frame = frame.with_columns(
                error_rate=pl.col("errors") / pl.col("requests"),
                client_error_rate=pl.col("client_errors") / pl.col("requests"),
            )
            return frame.sort(order, descending=descending, nulls_last=True).head(query.limit)

        # Ranked by counts, the rows shown are known before any histogram is added.
        by_percentile = query.sort in _PERCENTILES
        top = None if by_percentile else ranked
        tag = ("endpoints", filters)
        found = self.pieces.aggregate(
            query.start, query.end, keys, plan, tag, fill_later=True, top=top
        )
        frame = _EMPTY.drop("t") if found is None else found
        frame = ranked(with_estimates(frame) if by_percentile else frame)
        if not by_percentile:
            frame = with_estimates(frame)
        columns = [*keys, *_SUMS, "error_rate", "client_error_rate", *_PERCENTILES]
        rows = [{k: _number(v) for k, v in row.items()} for row in frame.select(columns).to_dicts()]
        return {
            "from": stamp(query.start),
            "to": stamp(query.end),
            "sort": query.sort,
            "order": "desc" if query.descending else "asc",
            "error_bound": ERROR_BOUND,
            "rows": rows,
        }

    def events(self, query: Query) -> dict[str, Any]:
        start, end, service = query.start, query.end, query.filters.service

        def plan() -> pl.LazyFrame:
            lf = scan_table(self.root, schema.SERVICE_EVENTS, start=start, end=end).filter(
                (pl.col("event_time") >= pl.lit(start).cast(MS))
                & (pl.col("event_time") < pl.lit(end).cast(MS))
            )
            if service is not None:
                lf = lf.filter(pl.col("service") == service)
            return lf.unique("event_id").select(
                "event_time", "service", "event_type", "entity_id", "message"
            )

        files = table_files(self.root, schema.SERVICE_EVENTS, start=start, end=end)
        if not files:
            return {"from": stamp(start), "to": stamp(end), "rows": []}
        frame = self._cached(("events", start, end, service), files, lambda: collect_stable(plan))
        rows = [
            {**row, "event_time": stamp_ms(row["event_time"])}
            for row in frame.sort("event_time", "service", "event_type").to_dicts()
        ]
        return {"from": stamp(start), "to": stamp(end), "rows": rows}

    def heatmap(self, query: Query) -> dict[str, Any]:
        step = series_step(query)
        origin = aligned_start(query, step)
        count = _count(origin, query.end, step)
        groups = self._steps(origin, query.end, step, query.filters)
        bounds, grid = _heat_cells(groups)
        width = len(bounds) - 1 if bounds else 0
        step_delta = timedelta(seconds=step)
        points = [
            {"t": stamp(t), "counts": grid.get(t, [0] * width)}
            for t in (origin + k * step_delta for k in range(count))
        ]
        return {
            "from": stamp(origin),
            "to": stamp(query.end),
            "step_seconds": step,
            "bucket_bounds_ms": bounds,
            "points": points,
        }

    # --- reading --------------------------------------------------------------------------------

    def _steps(
        self,
        origin: datetime,
        end: datetime,
        step: int,
        filters: Filters,
        listing: list[tuple[str, datetime, datetime]] | None = None,
    ) -> pl.DataFrame:
        """Per step from ``origin``: sums, exact extremes and the merged histogram."""
        step_ms = step * 1000
        origin_ms = int(origin.timestamp() * 1000)

        def plan(windows: list[tuple[datetime, datetime]]) -> pl.LazyFrame:
            offset = (pl.col("bucket_start").dt.epoch("ms") - origin_ms) // step_ms * step_ms
            t = (pl.lit(origin_ms, dtype=pl.Int64) + offset).cast(MS).alias("t")
            f = filters
            steps = Steps(origin_ms, step_ms)
            rows = metric_rows(self.root, windows, f.service, f.method, f.path, steps)
            return rows.with_columns(t)

        tag = ("steps", step, origin_ms % step_ms, filters)
        frame = self.pieces.aggregate(origin, end, ["t"], plan, tag, listing)
        return _EMPTY.select("t", *_MERGED) if frame is None else frame

    def _files(self, start: datetime, end: datetime) -> list[str]:
        return table_files(self.root, METRICS, start=start, end=end)

    def _through(self, files: list[str]) -> str | None:
        """The end of the newest minute in the warehouse (None when it is empty)."""
        hours = [(max(layout.parse_warehouse_file(METRICS, f)), f) for f in files]
        if not hours:
            return None
        newest, path = max(hours, key=lambda pair: pair[0].start)

        def plan() -> pl.LazyFrame:
            start = newest.start
            lf = scan_table(self.root, METRICS, start=start, end=start + timedelta(hours=1))
            return lf.select(pl.col("bucket_start").max())

        frame = self._cached(("through", path), [path], lambda: collect_stable(plan))
        last = frame.item()
        return None if last is None else stamp(last + timedelta(minutes=1))

    def _cached(self, key: tuple[Any, ...], files: list[str], compute: Callable[[], Any]) -> Any:
        if self.cache_size <= 0:
            return compute()
        full = (*key, identity(self.root, files))
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        value = compute()
        with self._lock:
            self._cache[full] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value


_MERGED = (
    "requests",
    "errors",
    "client_errors",
    "latency_min_ms",
    "latency_max_ms",
    "zero_count",
    "idx",
    "cnt",
)
_EMPTY = pl.DataFrame(
    schema={
        "t": MS,
        "service": pl.String,
        "method": pl.String,
        "path_template": pl.String,
        "requests": pl.Int64,
        "errors": pl.Int64,
        "client_errors": pl.Int64,
        "latency_min_ms": pl.Float64,
        "latency_max_ms": pl.Float64,
        "zero_count": pl.Int64,
        "idx": pl.List(pl.Int32),
        "cnt": pl.List(pl.Int64),
    }
)


def _count(origin: datetime, end: datetime, step: int) -> int:
    return -(-int((end - origin).total_seconds()) // step)


def _points(groups: pl.DataFrame, origin: datetime, step: int, count: int) -> list[dict[str, Any]]:
    """One row per step from ``origin`` (empty steps included)."""
    rows = groups.drop("idx", "cnt", strict=False).iter_rows(named=True)
    by_t = {row["t"]: row for row in rows} if groups.height else {}
    delta = timedelta(seconds=step)
    return [by_t.get(origin + k * delta) or {"t": origin + k * delta} for k in range(count)]


def _point(row: dict[str, Any], apdex_t_ms: float | None) -> dict[str, Any]:
    requests = row.get("requests") or 0
    point: dict[str, Any] = {
        "t": stamp(row["t"]),
        "requests": requests,
        "errors": row.get("errors") or 0,
        "client_errors": row.get("client_errors") or 0,
        "error_rate": (row["errors"] / requests) if requests else None,
        "client_error_rate": (row["client_errors"] / requests) if requests else None,
    }
    for name in _PERCENTILES:
        point[name] = _number(row.get(name)) if requests else None
    if apdex_t_ms is not None:
        point["apdex"] = _number(row.get("apdex")) if requests else None
    return point


def _total(groups: pl.DataFrame) -> pl.DataFrame:
    """All steps merged into one row."""
    return (
        remerged(groups.lazy().select(*_MERGED).with_columns(k=pl.lit(0)), ["k"])
        .collect()
        .drop("k")
    )


def _names(root: Root, files: list[str]) -> list[str]:
    frame = collect_stable(lambda: scan_files(root, files).select("service").unique())
    return [str(name) for name in frame["service"].to_list()]


def _heat_cells(groups: pl.DataFrame) -> tuple[list[float], dict[datetime, list[int]]]:
    """Display buckets (√2 wide; the first holds latencies of 0) and counts per step."""
    shift = sketch.SCALE - HEATMAP_SCALE
    cells = (
        groups.select("t", "idx", "cnt")
        .explode(["idx", "cnt"])
        .drop_nulls("idx")
        .group_by("t", pl.col("idx") // (1 << shift))
        .agg(pl.col("cnt").sum())
    )
    zeros = {t: int(z) for t, z in groups.select("t", "zero_count").iter_rows() if z}
    reduced = [int(j) for j in cells["idx"].to_list()]
    if not reduced and not zeros:
        return [], {}
    low, high = (min(reduced), max(reduced)) if reduced else (0, -1)
    bounds = [0.0] + [sketch.lower_bound(j, HEATMAP_SCALE) for j in range(low, high + 2)]
    width = len(bounds) - 1
    grid: dict[datetime, list[int]] = {}
    for t, j, c in zip(cells["t"].to_list(), reduced, cells["cnt"].to_list(), strict=True):
        grid.setdefault(t, [0] * width)[j - low + 1] += int(c)
    for t, z in zeros.items():
        grid.setdefault(t, [0] * width)[0] += z
    return bounds, grid


def _shift(row: dict[str, Any], delta: timedelta, apdex_t_ms: float | None) -> dict[str, Any]:
    return _point({**row, "t": row["t"] + delta}, apdex_t_ms)
