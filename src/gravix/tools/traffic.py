"""The synthetic traffic model: services and their endpoints, lognormal latencies, a few
4xx and 5xx, deploy events, and incidents (an error spike with a latency rise on one
endpoint). Pure apart from its random generators.

The traffic shape is deterministic for a given ``seed``; event ids are not (they are
UUIDv7 with fresh random bits), so two runs never collide on ``event_id``.
"""

from __future__ import annotations

import math
import os
import random
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from gravix.errors import ConfigError
from gravix.units import parse_duration


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
