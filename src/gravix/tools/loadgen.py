"""`gravix loadgen`: send synthetic traffic (:mod:`gravix.tools.traffic`) to any Gravix
server at a steady rate, through :mod:`gravix.tools.client`. Event times can be
back-dated and compressed, so hours of traffic arrive in seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import msgspec

from gravix.errors import ConfigError, GravixError
from gravix.tools.client import EVENTS_PATH, FACTS_BATCH_PATH, check_live, open_client, post
from gravix.tools.traffic import Incident, PlannedEvent, Traffic, service_names
from gravix.units import parse_time

ProgressCallback = Callable[[str, int, int], None]

DEFAULT_DURATION = 10.0

# --- the run --------------------------------------------------------------------------------------


@dataclass
class LoadgenSummary:
    """What a run sent and what the server said. ``acknowledged + rejected + failed ==
    sent``: acknowledged facts are on the server's disk; rejected ones broke the
    contract; failed ones got an error status (not stored) or no answer at all (a request
    that timed out may still have been stored, which is why ids are unique)."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = ("achieved_rate", "acknowledged_rate")

    url: str
    requested_rate: float
    wall_seconds: float = 0.0
    sent: int = 0
    acknowledged: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    events_sent: int = 0
    events_acknowledged: int = 0
    events_failed: int = 0
    first_event_time: str | None = None
    last_event_time: str | None = None
    services: list[str] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        return float(self.sent) / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def acknowledged_rate(self) -> float:
        return self.acknowledged / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def note_error(self, text: str) -> None:
        if len(self.errors) < 10 and text not in self.errors:
            self.errors.append(text)


@dataclass(frozen=True)
class _Plan:
    total: int | None
    duration: float | None
    rate: float
    batch_size: int
    base_ms: int | None  # first event time when back-dated; None = live event times
    span: float | None  # seconds of event time the run covers


def _plan(
    rate: float,
    duration: float | None,
    total: int | None,
    batch_size: int,
    start_time: datetime | str | None,
    time_span: float | None,
) -> _Plan:
    if rate < 0:
        raise ConfigError("--rate must be ≥ 0 (0 = as fast as the server takes them)")
    if not 1 <= batch_size <= 100_000:
        raise ConfigError(f"--batch-size must be 1–100000, got {batch_size}")
    if duration is not None and duration <= 0:
        raise ConfigError("--duration must be > 0")
    if total is not None and total < 0:
        raise ConfigError("--total must be ≥ 0")
    if total is None and duration is None:
        duration = DEFAULT_DURATION
    if total is None and rate > 0 and duration is not None:
        total = round(rate * duration)
    if isinstance(start_time, str):
        start_time = parse_time(start_time, "--start-time")
    if time_span is not None and time_span <= 0:
        raise ConfigError("--time-span must be > 0")
    if start_time is None and time_span is None:
        return _Plan(total, duration, rate, batch_size, None, duration)
    span = time_span if time_span is not None else duration
    if span is None:
        raise ConfigError("back-dated traffic needs --time-span or --duration")
    if start_time is None:
        start_time = datetime.fromtimestamp(time.time() - span, UTC)
    if start_time.timestamp() + span > time.time() + 240:
        raise ConfigError(
            "back-dated traffic would end in the future",
            hint="the server rejects event times more than 5 minutes ahead",
        )
    return _Plan(total, duration, rate, batch_size, int(start_time.timestamp() * 1000), span)


def run_loadgen(
    *,
    url: str,
    api_key: str | None,
    rate: float = 1000.0,
    duration: float | None = None,
    total: int | None = None,
    batch_size: int = 200,
    services: int = 3,
    incidents: Sequence[Incident] = (),
    start_time: datetime | str | None = None,
    time_span: float | None = None,
    concurrency: int = 4,
    seed: int | None = None,
    deploys: bool = True,
    timeout: float = 30.0,
    progress: ProgressCallback | None = None,
) -> LoadgenSummary:
    """Send synthetic facts (``rate`` per second, 0 = as fast as accepted) for ``duration``
    seconds or until ``total`` facts; back-date them to ``start_time`` and spread them over
    ``time_span`` seconds of event time when given."""
    plan = _plan(rate, duration, total, batch_size, start_time, time_span)
    if not 1 <= concurrency <= 256:
        raise ConfigError(f"--concurrency must be 1–256, got {concurrency}")
    names = service_names(services)
    traffic = Traffic(names, incidents, seed=seed, deploys=deploys, span=plan.span)
    summary = LoadgenSummary(
        url=url.rstrip("/"),
        requested_rate=rate,
        services=names,
        incidents=[asdict(i) for i in incidents],
    )
    runner = _Runner(plan, traffic, summary, api_key, concurrency, timeout, progress)
    return asyncio.run(runner.run())


_Job = tuple[str, bytes, int]  # (path, body, number of facts or events)


class _Runner:
    def __init__(
        self,
        plan: _Plan,
        traffic: Traffic,
        summary: LoadgenSummary,
        api_key: str | None,
        concurrency: int,
        timeout: float,
        progress: ProgressCallback | None,
    ) -> None:
        self.plan = plan
        self.traffic = traffic
        self.summary = summary
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.progress = progress
        self.fatal: GravixError | None = None
        self.done_facts = 0
        self._last_report = 0.0
        self._started = time.monotonic()
        self._encoder = msgspec.json.Encoder()

    async def run(self) -> LoadgenSummary:
        url = self.summary.url
        client = open_client(url, self.api_key, concurrency=self.concurrency, timeout=self.timeout)
        async with client:
            await check_live(client, url)
            queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.concurrency * 2)
            started = time.perf_counter()
            self._started = time.monotonic()
            workers = [
                asyncio.create_task(self._worker(client, queue)) for _ in range(self.concurrency)
            ]
            try:
                await self._produce(queue, started)
            finally:
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers)
            self.summary.wall_seconds = time.perf_counter() - started
        self._report(force=True)
        if self.fatal is not None:
            raise self.fatal
        return self.summary

    def _offset(self, produced: int, elapsed: float) -> float:
        """Seconds of event time from the first event to the fact about to be made."""
        plan = self.plan
        if plan.base_ms is None:
            return elapsed
        assert plan.span is not None
        if plan.total:
            return plan.span * produced / plan.total
        assert plan.duration is not None
        return plan.span * min(1.0, elapsed / plan.duration)

    async def _produce(self, queue: asyncio.Queue[_Job | None], started: float) -> None:
        plan, traffic, summary = self.plan, self.traffic, self.summary
        live_base = time.time()
        pending = list(traffic.events)
        produced = 0
        while self.fatal is None:
            elapsed = time.perf_counter() - started
            if plan.total is not None and produced >= plan.total:
                break
            if plan.duration is not None and elapsed >= plan.duration:
                break
            if plan.rate > 0:
                due = produced / plan.rate
                if due > elapsed:
                    await asyncio.sleep(due - elapsed)
                    elapsed = time.perf_counter() - started
            count = plan.batch_size
            if plan.total is not None:
                count = min(count, plan.total - produced)
            offset = self._offset(produced, elapsed)
            while pending and pending[0].offset <= offset:
                await self._send_event(queue, pending.pop(0), live_base)
            facts = []
            for i in range(count):
                at = self._offset(produced + i, elapsed) if plan.base_ms is not None else offset
                if plan.base_ms is None:
                    ms = int(time.time() * 1000)
                else:
                    ms = plan.base_ms + int(at * 1000)
                facts.append(traffic.fact(ms, at))
            if not facts:
                break
            if summary.first_event_time is None:
                summary.first_event_time = facts[0]["event_time"]
            summary.last_event_time = facts[-1]["event_time"]
            produced += count
            summary.sent += count
            await queue.put((FACTS_BATCH_PATH, self._encoder.encode(facts), count))
        if plan.rate > 0 and self.fatal is None:
            # The last batch opens its time slot; the run lasts until the slot ends, so the
            # achieved rate is measured over the whole schedule.
            rest = produced / plan.rate - (time.perf_counter() - started)
            if rest > 0:
                await asyncio.sleep(rest)
        final = self._offset(produced, time.perf_counter() - started)
        if plan.base_ms is not None and plan.total:
            final = plan.span or final
        while pending and pending[0].offset <= final and self.fatal is None:
            await self._send_event(queue, pending.pop(0), live_base)

    async def _send_event(
        self, queue: asyncio.Queue[_Job | None], planned: PlannedEvent, live_base: float
    ) -> None:
        base_ms = self.plan.base_ms if self.plan.base_ms is not None else int(live_base * 1000)
        ms = base_ms + int(planned.offset * 1000)
        ms = min(ms, int(time.time() * 1000))
        event = self.traffic.event(planned, ms)
        self.summary.events_sent += 1
        self.summary.deploys.append(
            {
                "service": planned.service,
                "event_type": planned.event_type,
                "version": planned.version,
                "event_time": event["event_time"],
            }
        )
        await queue.put((EVENTS_PATH, self._encoder.encode(event), 1))

    async def _worker(self, client: httpx.AsyncClient, queue: asyncio.Queue[_Job | None]) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            path, body, count = job
            if self.fatal is not None:
                self._count_failed(path, count)
                continue
            await self._post(client, path, body, count)
            if path == FACTS_BATCH_PATH:
                self.done_facts += count
                self._report()

    async def _post(self, client: httpx.AsyncClient, path: str, body: bytes, count: int) -> None:
        summary = self.summary
        reply = await post(client, path, body)
        summary.requests += reply.requests
        summary.retries += reply.retries
        status, data = reply.status, reply.data
        if status is None:
            summary.failed_requests += 1
            summary.note_error(reply.error or "no answer")
            self._count_failed(path, count)
            return
        if status == 401:
            summary.failed_requests += 1
            self._count_failed(path, count)
            self.fatal = GravixError(
                "the server refused the API key (401 Unauthorized)",
                hint="pass the key the server was started with: --api-key or API_KEY",
            )
            return
        if path == EVENTS_PATH:
            if status == 201:
                summary.events_acknowledged += 1
            else:
                summary.failed_requests += 1
                summary.events_failed += 1
                summary.note_error(f"event: HTTP {status} {reply.error_text}")
            return
        if status == 200 or (status == 400 and "accepted" in data):
            accepted = int(data.get("accepted", 0))
            rejected = int(data.get("rejected", count - accepted))
            summary.acknowledged += accepted
            summary.rejected += rejected
            for item in data.get("errors", [])[:3]:
                summary.note_error(f"rejected: {item.get('error', item)}"[:200])
        elif status == 400:
            summary.rejected += count
            summary.note_error(f"HTTP 400 {reply.error_text}")
        else:
            summary.failed_requests += 1
            summary.failed += count
            summary.note_error(f"HTTP {status} {reply.error_text}")

    def _count_failed(self, path: str, count: int) -> None:
        if path == EVENTS_PATH:
            self.summary.events_failed += count
        else:
            self.summary.failed += count

    def _report(self, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_report > 0.1:
            self._last_report = now
            if self.plan.total:
                self.progress("sending facts", self.done_facts, self.plan.total)
            elif self.plan.duration:
                # No count to reach: the bar follows the clock instead.
                elapsed = now - self._started
                self.progress(
                    f"sending facts ({self.done_facts:,} sent)",
                    int(min(elapsed, self.plan.duration) * 10),
                    int(self.plan.duration * 10),
                )
