"""Logging: the access log (batched, never a header or a body) and the text or JSON
format of every other log line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from gravix.errors import ConfigError
from gravix.ingest.routes import encode


class AccessLog:
    """One line per request on stderr, in the same text or JSON form as the other logs.

    A request only records its fields; they are formatted and written every 0.2 s (and at
    shutdown), many lines at a time: formatting and writing a line per request would cost
    more than the request itself. Only the client address, method, path, status, duration
    and body size are logged: never a header (keys) or a body."""

    def __init__(self, log_format: str = "text", stream: Any = None) -> None:
        self.json = log_format == "json"
        self.stream = stream
        self.pid = os.getpid()
        # (client, method, path, status, started, ended, body bytes); the times are
        # time.perf_counter() readings, turned into wall-clock time when formatted.
        self.records: list[tuple[Any, str, str, int, float, float, int]] = []

    def log(
        self, client: Any, method: str, path: str, status: int, started: float, size: int
    ) -> None:
        """``client`` is the ASGI (host, port) pair, or None; ``started`` is the
        time.perf_counter() reading when the request arrived."""
        self.records.append((client, method, path, status, started, time.perf_counter(), size))
        if len(self.records) >= 512:
            self.flush()

    def _lines(self) -> Iterator[str]:
        wall = time.time() - time.perf_counter()  # perf_counter reading → Unix time
        if self.json:
            for record in self.records:
                yield self._json_line(record, wall)
            return
        # Keep-alive clients repeat their address and route, and many requests end in the
        # same millisecond or take the same tenth of a millisecond: each piece is formatted
        # once per flush.
        head = f" INFO [{self.pid}] gravix.access: "
        middles: dict[tuple[Any, str, str, int], str] = {}
        stamps: dict[int, str] = {}
        durations: dict[int, str] = {}
        for peer, method, path, status, started, ended, _size in self.records:
            if peer is not None and type(peer) is not tuple:  # ASGI allows any 2-item iterable
                peer = tuple(peer)
            ms = int((wall + ended) * 1000)
            stamp = stamps.get(ms)
            if stamp is None:
                stamp = stamps[ms] = _stamp(ms)
            key = (peer, method, path, status)
            middle = middles.get(key)
            if middle is None:
                client = f"{peer[0]}:{peer[1]}" if peer else "-"
                middle = f'{head}{client} "{method} {_printable(path)}" {status} '
                middles[key] = middle
            tenths = int((ended - started) * 10_000 + 0.5)
            duration = durations.get(tenths)
            if duration is None:
                duration = durations[tenths] = f"{tenths // 10}.{tenths % 10}ms"
            yield stamp + middle + duration

    def _json_line(self, record: tuple[Any, str, str, int, float, float, int], wall: float) -> str:
        peer, method, path, status, started, ended, size = record
        client = f"{peer[0]}:{peer[1]}" if peer else "-"
        path = _printable(path)
        duration_ms = (ended - started) * 1000
        return encode(
            {
                "time": _stamp(int((wall + ended) * 1000)),
                "level": "info",
                "logger": "gravix.access",
                "message": f'{client} "{method} {path}" {status} {duration_ms:.1f}ms',
                "pid": self.pid,
                "client": client,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "body_bytes": size,
            }
        ).decode()

    def flush(self) -> None:
        if self.records:
            stream = self.stream or sys.stderr
            stream.write("\n".join(self._lines()) + "\n")
            stream.flush()
            self.records.clear()

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()


def _stamp(ms: int) -> str:
    """Unix time in milliseconds as UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms // 1000))}.{ms % 1000:03d}Z"


def _printable(path: str) -> str:
    if len(path) > 200 or not path.isprintable():
        return path[:200].encode("unicode_escape").decode("ascii")
    return path


_ACCESS_FIELDS = ("client", "method", "path", "status", "duration_ms", "body_bytes")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in _ACCESS_FIELDS:
            if name in record.__dict__:
                doc[name] = record.__dict__[name]
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    if log_format not in ("text", "json"):
        raise ConfigError(f"--log-format must be text or json, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(name)s: %(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
