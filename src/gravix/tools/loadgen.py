"""Synthetic traffic for any Gravix server: several services and endpoints, lognormal
latencies, a few 4xx and 5xx, deploy events, and incidents (an error spike with a
latency rise on one endpoint). Event times can be back-dated and compressed, so hours
of traffic arrive in seconds.

The traffic shape is deterministic for a given ``seed``; event ids are not (they are
UUIDv7 with fresh random bits), so two runs never collide on ``event_id``.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import msgspec

from gravix.errors import ConfigError, GravixError
from gravix.schema import parse_time

ProgressCallback = Callable[[str, int, int], None]

FACTS_BATCH_PATH = "/api/v1/facts/batch"
EVENTS_PATH = "/api/v1/events"
_RETRY_STATUSES = (429, 503)
_MAX_RETRIES = 5
_MAX_RETRY_WAIT = 5.0
DEFAULT_DURATION = 10.0


# --- the traffic model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    weight: float
    median_ms: float
    client_error_rate: float = 0.0
    client_status: int = 404


def _ep(
    method: str, path: str, weight: float, median_ms: float, cer: float = 0.0, status: int = 404
) -> Endpoint:
    return Endpoint(method, path, weight, median_ms, cer, status)


CATALOG: dict[str, tuple[Endpoint, ...]] = {
    "frontend": (
        _ep("GET", "/", 20, 35),
        _ep("GET", "/products", 14, 60),
        _ep("GET", "/products/{id}", 18, 45, 0.03),
        _ep("GET", "/cart", 8, 30),
        _ep("POST", "/cart/items", 6, 55, 0.02, 422),
        _ep("POST", "/checkout", 8, 180, 0.01, 422),
        _ep("GET", "/static/{asset}", 30, 6, 0.005),
    ),
    "checkout": (
        _ep("POST", "/api/orders", 10, 120, 0.02, 422),
        _ep("GET", "/api/orders/{id}", 12, 25, 0.03),
        _ep("POST", "/api/payments", 6, 240, 0.02, 402),
        _ep("GET", "/api/shipping/quote", 5, 70),
    ),
    "catalog": (
        _ep("GET", "/api/products", 20, 40),
        _ep("GET", "/api/products/{id}", 25, 15, 0.04),
        _ep("GET", "/api/categories", 6, 10),
        _ep("PUT", "/api/products/{id}", 1, 90, 0.05, 409),
    ),
    "accounts": (
        _ep("POST", "/login", 6, 150, 0.08, 401),
        _ep("GET", "/me", 15, 12, 0.02, 401),
        _ep("POST", "/logout", 2, 20),
        _ep("POST", "/password/reset", 1, 300, 0.05, 429),
    ),
    "search": (
        _ep("GET", "/search", 15, 85),
        _ep("GET", "/suggest", 25, 18),
    ),
    "payments": (
        _ep("POST", "/v1/charges", 5, 350, 0.03, 402),
        _ep("GET", "/v1/charges/{id}", 4, 30, 0.02),
        _ep("POST", "/v1/refunds", 1, 400, 0.05, 409),
    ),
    "inventory": (
        _ep("GET", "/stock/{sku}", 20, 8, 0.01),
        _ep("POST", "/reservations", 6, 45, 0.03, 409),
        _ep("DELETE", "/reservations/{id}", 2, 30, 0.02),
    ),
    "shipping": (
        _ep("GET", "/rates", 8, 110),
        _ep("POST", "/labels", 3, 260, 0.02, 422),
        _ep("GET", "/tracking/{id}", 10, 40, 0.05),
    ),
}
_GENERIC = (
    _ep("GET", "/api/items", 10, 30),
    _ep("GET", "/api/items/{id}", 12, 15, 0.03),
    _ep("POST", "/api/items", 3, 80, 0.02, 422),
)
_AGENTS = ("Chrome", "Safari", "Firefox", "Edge", "okhttp", "curl")
_AGENT_WEIGHTS = (50, 25, 10, 8, 5, 2)
_AGENT_CUMULATIVE = tuple(accumulate(_AGENT_WEIGHTS))
SERVER_ERROR_RATE = 0.002
LATENCY_SIGMA = 0.55
_SERVER_STATUSES = (500, 502, 503, 504)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float, what: str = "a duration") -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h``, ``1d``."""
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(
            f"{what} is not a duration: {text!r}",
            hint="use seconds or a unit, e.g. 90, 90s, 15m, 2h",
        )
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or ""]


def service_names(count: int) -> list[str]:
    """The first ``count`` services of the catalogue, then ``svc-NN`` with generic endpoints."""
    if not 1 <= count <= 100:
        raise ConfigError(f"--services must be 1–100, got {count}")
    names = list(CATALOG)[:count]
    names += [f"svc-{i:02d}" for i in range(len(names) + 1, count + 1)]
    return names


@dataclass(frozen=True)
class Incident:
    """An error spike and latency rise on one endpoint, ``start`` seconds after the first
    event time of the run, lasting ``duration`` seconds of event time."""

    service: str
    path: str
    start: float
    duration: float
    error_rate: float = 0.4
    latency_factor: float = 5.0

    @classmethod
    def parse(cls, text: str) -> Incident:
        """``SERVICE:PATH:START:DURATION``, e.g. ``frontend:/checkout:75m:20m``."""
        head, sep, tail = text.rpartition(":")
        head2, sep2, start = head.rpartition(":")
        service, sep3, path = head2.partition(":")
        if not (sep and sep2 and sep3) or not service or not path.startswith("/"):
            raise ConfigError(
                f"not an incident: {text!r}",
                hint="use SERVICE:PATH:START:DURATION, e.g. frontend:/checkout:75m:20m",
            )
        incident = cls(
            service,
            path,
            parse_duration(start, "incident START"),
            parse_duration(tail, "incident DURATION"),
        )
        if incident.duration <= 0:
            raise ConfigError(f"incident DURATION must be > 0: {text!r}")
        return incident

    def active(self, offset: float) -> bool:
        return self.start <= offset < self.start + self.duration


@dataclass(frozen=True)
class PlannedEvent:
    """A service event (a deploy) sent when the traffic reaches ``offset`` seconds."""

    offset: float
    service: str
    event_type: str
    version: str
    message: str


def uuid7(unix_ms: int, rand: random.Random) -> str:
    """A UUID version 7 for ``unix_ms`` (48-bit time, 74 random bits), lower-case."""
    t = f"{unix_ms & 0xFFFF_FFFF_FFFF:012x}"
    r = rand.randbytes(10).hex()
    # 12 random bits after the version, 2 in the variant nibble (10xx), 12 + 48 after it.
    return f"{t[:8]}-{t[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"


class _Stamper:
    """RFC 3339 stamps with milliseconds, formatting each second once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, unix_ms: int) -> str:
        second, millis = divmod(unix_ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{millis:03d}Z"


class Traffic:
    """Makes facts and deploy events for a set of services; pure apart from its RNGs."""

    def __init__(
        self,
        services: Sequence[str],
        incidents: Sequence[Incident] = (),
        *,
        seed: int | None = None,
        deploys: bool = True,
        span: float | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.ids = random.Random(int.from_bytes(os.urandom(16), "big"))
        self.stamp = _Stamper()
        self.incidents = tuple(incidents)
        endpoints: list[tuple[str, Endpoint]] = []
        service_weight = {s: 1.0 / (1 + i * 0.35) for i, s in enumerate(services)}
        for service in services:
            table = CATALOG.get(service, _GENERIC)
            total = sum(e.weight for e in table)
            endpoints += [(service, e) for e in table]
            service_weight[service] /= total
        for incident in self.incidents:
            if incident.service not in service_weight:
                raise ConfigError(
                    f"incident service {incident.service!r} is not among the generated services",
                    hint=f"pick one of {', '.join(services)} or raise --services",
                )
            if not any(s == incident.service and e.path == incident.path for s, e in endpoints):
                # A path the catalogue lacks gets a modest share of that service's traffic.
                endpoints.append((incident.service, Endpoint("GET", incident.path, 2.0, 60.0)))
        self.endpoints = endpoints
        self.weights = list(accumulate(e.weight * service_weight[s] for s, e in endpoints))
        self.total_weight = self.weights[-1]
        # Per endpoint, everything fact() needs, so the hot path does no lookups.
        self._fast = [
            (
                s,
                e.method,
                e.path,
                math.log(e.median_ms),
                e.client_error_rate,
                e.client_status,
                201 if e.method == "POST" else (204 if e.method == "DELETE" else 200),
                tuple(i for i in self.incidents if i.service == s and i.path == e.path),
            )
            for s, e in endpoints
        ]
        self.events = self._plan_events(services, span, deploys)

    def _plan_events(
        self, services: Sequence[str], span: float | None, deploys: bool
    ) -> list[PlannedEvent]:
        if not deploys:
            return []
        events: list[PlannedEvent] = []
        struck: set[str] = set()
        for number, incident in enumerate(self.incidents):
            # The deploy that "causes" the incident lands a few minutes before it.
            lead = min(300.0, incident.start / 2)
            done = incident.start - lead
            version = f"v2.{number + 4}.0"
            events.append(
                PlannedEvent(
                    max(0.0, done - 60.0),
                    incident.service,
                    "deploy_started",
                    version,
                    f"deploying {incident.service} {version}",
                )
            )
            events.append(
                PlannedEvent(
                    done,
                    incident.service,
                    "deploy_completed",
                    version,
                    f"{incident.service} {version} is live",
                )
            )
            struck.add(incident.service)
        if span:
            for service in services:
                if service in struck:
                    continue
                at = span * self.rng.uniform(0.1, 0.9)
                version = f"v1.{self.rng.randint(10, 60)}.{self.rng.randint(0, 9)}"
                events.append(
                    PlannedEvent(
                        max(0.0, at - 45.0),
                        service,
                        "deploy_started",
                        version,
                        f"deploying {service} {version}",
                    )
                )
                events.append(
                    PlannedEvent(
                        at, service, "deploy_completed", version, f"{service} {version} is live"
                    )
                )
        return sorted(events, key=lambda e: e.offset)

    def fact(self, unix_ms: int, offset: float) -> dict[str, Any]:
        rng = self.rng
        random_ = rng.random
        service, method, path, log_median, client_rate, client_status, ok_status, struck = (
            self._fast[bisect_right(self.weights, random_() * self.total_weight)]
        )
        server_error = SERVER_ERROR_RATE
        for incident in struck:
            if incident.active(offset):
                log_median += math.log(incident.latency_factor)
                server_error = incident.error_rate
        draw = random_()
        if draw < server_error:
            status = _SERVER_STATUSES[int(random_() * 4)]
        elif draw < server_error + client_rate:
            status = client_status
        else:
            status = ok_status
        latency = round(math.exp(rng.gauss(log_median, LATENCY_SIGMA)), 3)
        fact: dict[str, Any] = {
            "event_id": uuid7(unix_ms, self.ids),
            "event_time": self.stamp(unix_ms),
            "service": service,
            "method": method,
            "path_template": path,
            "status_code": status,
            "latency_ms": min(latency, 3_600_000.0),
        }
        if service == "frontend":
            fact["user_agent_family"] = _AGENTS[
                bisect_right(_AGENT_CUMULATIVE, random_() * _AGENT_CUMULATIVE[-1])
            ]
        return fact

    def event(self, planned: PlannedEvent, unix_ms: int) -> dict[str, Any]:
        return {
            "event_id": uuid7(unix_ms, self.ids),
            "event_time": self.stamp(unix_ms),
            "service": planned.service,
            "event_type": planned.event_type,
            "entity_id": planned.version,
            "message": planned.message,
            "properties": {"version": planned.version, "source": "gravix-loadgen"},
        }


# --- the run --------------------------------------------------------------------------------------


@dataclass
class LoadgenSummary:
    """What a run sent and what the server said. ``acknowledged + rejected + failed ==
    sent``: acknowledged facts are on the server's disk; rejected ones broke the
    contract; failed ones got an error status (not stored) or no answer at all (a request
    that timed out may still have been stored, which is why ids are unique)."""

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["achieved_rate"] = round(self.achieved_rate, 1)
        out["acknowledged_rate"] = round(self.acknowledged_rate, 1)
        out["wall_seconds"] = round(self.wall_seconds, 3)
        return out

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
        try:
            start_time = datetime.fromtimestamp(parse_time(start_time)[0], UTC)
        except ValueError as exc:
            raise ConfigError(f"--start-time {start_time!r}: {exc}") from None
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
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["X-API-Key"] = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.progress = progress
        self.fatal: GravixError | None = None
        self.done_facts = 0
        self._last_report = 0.0
        self._started = time.monotonic()
        self._encoder = msgspec.json.Encoder()

    async def run(self) -> LoadgenSummary:
        import httpx

        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(
            base_url=self.summary.url, headers=self.headers, limits=limits, timeout=self.timeout
        ) as client:
            try:
                await client.get("/live")
            except httpx.HTTPError as exc:
                raise GravixError(
                    f"cannot reach the Gravix server at {self.summary.url}: {exc}",
                    hint="start one with `gravix ingest-server --api-key KEY`, or pass --url",
                ) from None
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

    async def _worker(self, client: Any, queue: asyncio.Queue[_Job | None]) -> None:
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

    async def _post(self, client: Any, path: str, body: bytes, count: int) -> None:
        import httpx

        summary = self.summary
        for attempt in range(_MAX_RETRIES + 1):
            summary.requests += 1
            try:
                response = await client.post(path, content=body)
            except httpx.HTTPError as exc:
                summary.failed_requests += 1
                summary.note_error(f"{type(exc).__name__}: {exc}"[:200])
                self._count_failed(path, count)
                return
            status = response.status_code
            if status in _RETRY_STATUSES and attempt < _MAX_RETRIES:
                summary.retries += 1
                await asyncio.sleep(_retry_after(response.headers.get("Retry-After"), attempt))
                continue
            break
        if status == 401:
            summary.failed_requests += 1
            self._count_failed(path, count)
            self.fatal = GravixError(
                "the server refused the API key (401 Unauthorized)",
                hint="pass the key the server was started with: --api-key or API_KEY",
            )
            return
        data = _json(response)
        if path == EVENTS_PATH:
            if status == 201:
                summary.events_acknowledged += 1
            else:
                summary.failed_requests += 1
                summary.events_failed += 1
                summary.note_error(f"event: HTTP {status} {_error(data)}")
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
            summary.note_error(f"HTTP 400 {_error(data)}")
        else:
            summary.failed_requests += 1
            summary.failed += count
            summary.note_error(f"HTTP {status} {_error(data)}")

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


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        wait = float(header) if header else 0.0
    except ValueError:
        wait = 0.0
    return min(_MAX_RETRY_WAIT, max(wait, 0.05 * 2.0**attempt))


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(data: dict[str, Any]) -> str:
    return str(data.get("error", ""))[:160]
