"""Validation of RequestFact and ServiceEvent against the contract, and their canonical
JSON lines.

Validation decodes with msgspec straight into typed structs (the checks that can be
declared run in C); what cannot be declared — time window, canonical forms — runs
after. lowerCamelCase aliases take a slower path that renames keys first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import msgspec

from gravix.errors import ValidationError
from gravix.schema.contract import (
    ALIASES,
    CONTROL_CHARACTERS,
    EVENT_TYPE_PATTERN,
    HTTP_METHODS,
    NO_CONTROL_PATTERN,
    PATH_TEMPLATE_PATTERN,
    SERVICE_PATTERN,
    STRUCTS,
    UUID7_PATTERN,
    RequestFact,
    ServiceEvent,
    check_properties,
)

_UUID7 = re.compile(UUID7_PATTERN)
# Shapes for the batch fast path: byte tables map every allowed character of a class to
# one letter, so a whole batch of ids or times is compared with one expected string.
_HEX_TO_H = bytes.maketrans(b"0123456789abcdef", b"h" * 16)
_VARIANT_TO_V = bytes.maketrans(b"89ab", b"vvvv")
_DIGIT_TO_D = bytes.maketrans(b"0123456789", b"d" * 10)
_UUID_SHAPE = b"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh"
_STAMP_SHAPE = b"dddd-dd-ddTdd:dd:dd.dddZ|"
_SERVICE = re.compile(SERVICE_PATTERN)
_PATH = re.compile(PATH_TEMPLATE_PATTERN)
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_METHODS = {m: m for m in HTTP_METHODS} | {m.lower(): m for m in HTTP_METHODS}
_UPPER_METHODS = frozenset(HTTP_METHODS)
_CACHE_LIMIT = 50_000

_GET_ID = attrgetter("event_id")
_GET_TIME = attrgetter("event_time")
_GET_STRINGS = attrgetter("service", "path_template", "user_agent_family", "method")
_FIRST_19 = itemgetter(slice(0, 19))
_FIRST_13 = itemgetter(slice(0, 13))


class Accepted(NamedTuple):
    """One valid event: its canonical line (no newline) and its event hour."""

    line: bytes
    hour: int  # whole hours since the Unix epoch, UTC
    event_id: str


class Lines(NamedTuple):
    """What validating many events gives: the accepted canonical lines, joined, each ending
    in a newline; how many; the event hours they fall in; the accepted events' ids, in
    order; the rejected ones as (index, error); and how many more were rejected than
    ``errors`` lists (when it was capped)."""

    data: bytes
    events: int
    hours: frozenset[int]  # whole hours since the Unix epoch, UTC
    ids: list[str]
    errors: list[tuple[int, str]]
    unlisted: int = 0

    @property
    def rejected(self) -> int:
        return len(self.errors) + self.unlisted

    @classmethod
    def of(
        cls, accepted: list[Accepted], errors: list[tuple[int, str]], unlisted: int = 0
    ) -> Lines:
        if not accepted:
            return cls(b"", 0, frozenset(), [], errors, unlisted)
        lines = [a.line for a in accepted]
        lines.append(b"")
        return cls(
            b"\n".join(lines),
            len(accepted),
            frozenset(a.hour for a in accepted),
            [a.event_id for a in accepted],
            errors,
            unlisted,
        )


def format_time(moment: datetime) -> str:
    """UTC, millisecond precision, ``Z``: the stored form of every event time."""
    moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


_HOUR_CACHE: dict[str, int] = {}
_SECOND_CACHE: dict[str, int] = {}
# ASCII digits only: ``\d`` and ``str.isdigit`` also accept other scripts' digits, which int()
# reads but which would then be stored verbatim in a line that is no longer RFC 3339.
_FAST_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:([0-5]\d):([0-5]\d)(?:\.(\d{1,9}))?Z\Z", re.ASCII
)


def parse_time(text: str) -> tuple[float, str]:
    """Parse an RFC 3339 time with a zone; returns (epoch seconds, canonical string).

    Raises ValueError. The common UTC form ``…Z`` takes a fast path that parses each
    distinct hour prefix once; anything else goes through ``datetime.fromisoformat``.
    """
    if (
        len(text) == 24
        and text[19] == "."
        and text[23] == "Z"
        and text[20:23].isascii()
        and text[20:23].isdigit()
    ):
        second = _SECOND_CACHE.get(text[:19])
        if second is not None:  # already canonical, and its second was seen before
            return second + int(text[20:23]) / 1000.0, text
    m = _FAST_TIME.match(text)
    if m is not None:
        prefix = text[:13]
        base = _HOUR_CACHE.get(prefix)
        if base is None:
            base = int(datetime.fromisoformat(prefix + ":00:00+00:00").timestamp())
            if len(_HOUR_CACHE) > _CACHE_LIMIT:
                _HOUR_CACHE.clear()
            _HOUR_CACHE[prefix] = base
        frac = m.group(3) or ""
        millis = (frac + "000")[:3]
        seconds = base + int(m.group(1)) * 60 + int(m.group(2))
        if len(_SECOND_CACHE) > _CACHE_LIMIT:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[text[:19]] = seconds
        return seconds + int(millis) / 1000.0, f"{text[:19]}.{millis}Z"
    if len(text) < 20 or text[10] not in "Tt " or not (text[-1] in "Zz" or text[-6] in "+-"):
        raise ValueError("not an RFC 3339 time with a zone (e.g. 2026-02-16T10:00:00.123Z)")
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    if moment.tzinfo is None:
        raise ValueError("event_time needs a zone (Z or an offset)")
    moment = moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.timestamp(), format_time(moment)


def _seconds(stamp: str) -> float:
    """Epoch seconds of a canonical time (``…T10:00:00.123Z``) whose shape is checked."""
    second = _SECOND_CACHE.get(stamp[:19])
    if second is None:
        return parse_time(stamp)[0]
    return second + int(stamp[20:23]) / 1000.0


def _error_text(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "body is not valid UTF-8"
    return str(exc)[:300]


class _Checked:
    """A bounded set of strings that already passed a regex check."""

    def __init__(self, pattern: re.Pattern[str], rule: str) -> None:
        self.pattern = pattern
        self.rule = rule
        self.ok: set[str] = set()

    def check(self, value: str, field: str) -> None:
        if value in self.ok:
            return
        if not self.pattern.fullmatch(value):  # `$` alone would let a trailing newline in
            raise ValidationError(f"`{field}` {self.rule}: {value[:80]!r}")
        if len(self.ok) > _CACHE_LIMIT:
            self.ok.clear()
        self.ok.add(value)


class Validator:
    """Validates events of one topic against the contract and renders canonical lines."""

    def __init__(
        self,
        topic: str,
        *,
        max_future_seconds: float = 300.0,
        max_age_days: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if topic not in STRUCTS:
            raise ValueError(f"unknown topic {topic!r}")
        self.topic = topic
        self.struct = STRUCTS[topic]
        self.aliases = ALIASES[topic]
        self.max_future = max_future_seconds
        self.max_age = max_age_days * 86400.0
        self.clock = clock
        self._decoder = msgspec.json.Decoder(self.struct)
        self._list_decoder = msgspec.json.Decoder(list[self.struct])  # type: ignore[name-defined]
        self._encoder = msgspec.json.Encoder()
        self._service = _Checked(_SERVICE, "must be 1–128 characters of [A-Za-z0-9._-]")
        self._path = _Checked(
            _PATH,
            "must start with /, have no ? # or control characters, no raw UUID and "
            "no numeric segment of 4+ digits (use {id})",
        )
        self._plain = _Checked(
            re.compile(NO_CONTROL_PATTERN), "must not contain control characters"
        )
        self._event_type = _Checked(_EVENT_TYPE, "must be snake_case [a-z][a-z0-9_]{0,63}")
        # (service, path_template, user_agent_family, method) of facts found valid, the
        # method upper-case: the batch fast path checks each combination once
        self._valid_strings: set[tuple[str, str, str | None, str]] = set()

    # -- decoding --------------------------------------------------------------------------

    def _from_mapping(self, obj: Any) -> RequestFact | ServiceEvent:
        if not isinstance(obj, dict):
            raise ValidationError("an event must be a JSON object")
        renamed: dict[str, Any] = {}
        for key, value in obj.items():
            name: str = self.aliases.get(key) or key
            if name in renamed:
                raise ValidationError(f"field `{name}` given twice (as `{key}` and its alias)")
            renamed[name] = value
        code = renamed.get("status_code")
        if type(code) is float and code.is_integer():
            # JSON Schema calls 247.0 an integer, so the contract does too; stored as 247.
            renamed["status_code"] = int(code)
        try:
            return msgspec.convert(renamed, self.struct)
        except msgspec.ValidationError as exc:
            raise ValidationError(str(exc)) from None

    def decode(self, data: bytes) -> RequestFact | ServiceEvent:
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError:
            pass
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValidationError(f"invalid JSON: {_error_text(exc)}") from None
        # The typed decoder stops at the first contract error, so the rest of the document
        # may still be malformed or nested too deeply.
        try:
            obj = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValidationError(f"invalid JSON: {_error_text(exc)}") from None
        return self._from_mapping(obj)

    # -- checks and canonical form ------------------------------------------------------------

    def accept(self, event: RequestFact | ServiceEvent, now: float | None = None) -> Accepted:
        """Apply the checks msgspec cannot declare, canonicalise in place, render the line."""
        event_id = event.event_id
        if not _UUID7.fullmatch(event_id):
            raise ValidationError(f"`event_id` must be a UUID version 7: {event_id[:40]!r}")
        try:
            ts, stamp = parse_time(event.event_time)
        except (ValueError, OverflowError) as exc:  # year 1 with a +01:00 offset overflows
            raise ValidationError(f"`event_time` {event.event_time[:40]!r}: {exc}") from None
        now = self.clock() if now is None else now
        if ts > now + self.max_future:
            raise ValidationError(
                f"`event_time` {stamp} is more than {self.max_future:g}s in the future"
            )
        if ts < now - self.max_age:
            raise ValidationError(
                f"`event_time` {stamp} is older than the raw retention "
                f"({self.max_age / 86400:g} days)"
            )
        self._service.check(event.service, "service")
        if isinstance(event, RequestFact):
            method = _METHODS.get(event.method) or _METHODS.get(event.method.upper())
            if method is None:
                raise ValidationError(
                    f"`method` must be one of {', '.join(HTTP_METHODS)}: {event.method!r}"
                )
            self._path.check(event.path_template, "path_template")
            if event.user_agent_family is not None:
                self._plain.check(event.user_agent_family, "user_agent_family")
            event.method = method
        else:
            self._event_type.check(event.event_type, "event_type")
            if event.entity_id is not None:
                self._plain.check(event.entity_id, "entity_id")
            if event.message is not None and _CONTROL.search(event.message):
                raise ValidationError(
                    f"`message` must not contain control characters: {event.message[:80]!r}"
                )
            if event.properties:
                check_properties(event.properties)
        event.event_id = event_id.lower()
        event.event_time = stamp
        return Accepted(self._encoder.encode(event), int(ts // 3600), event.event_id)

    def one(self, data: bytes, now: float | None = None) -> Accepted:
        """Validate one JSON document; raises :class:`ValidationError`."""
        return self.accept(self.decode(data), now)

    def batch(
        self, data: bytes, now: float | None = None
    ) -> tuple[list[Accepted], list[tuple[int, str]]]:
        """Validate an NDJSON body or a JSON array; returns (accepted, [(index, error)])."""
        accepted, errors, _unlisted = self._batch(data, now, None)
        return accepted, errors

    def _batch(
        self, data: bytes, now: float | None, max_errors: int | None
    ) -> tuple[list[Accepted], list[tuple[int, str]], int]:
        """:meth:`batch`, keeping at most ``max_errors`` errors; the third item counts the
        errors left out."""
        now = self.clock() if now is None else now
        accepted: list[Accepted] = []
        errors: list[tuple[int, str]] = []
        unlisted = 0
        keep = len(data) if max_errors is None else max_errors
        stripped = data.lstrip()
        items: list[bytes]
        if stripped.startswith(b"["):
            try:
                raws = msgspec.json.decode(stripped, type=list[msgspec.Raw])
            except (
                msgspec.DecodeError,
                msgspec.ValidationError,
                UnicodeDecodeError,
                RecursionError,
            ) as exc:
                raise ValidationError(f"invalid JSON array: {_error_text(exc)}") from None
            items = [bytes(r) for r in raws]
        else:
            items = [line for line in data.splitlines() if line.strip()]
        for index, item in enumerate(items):
            if len(errors) == keep and not item.lstrip().startswith(b"{"):
                unlisted += 1  # not an object, so rejected; its message would not be listed
                continue
            try:
                accepted.append(self.accept(self.decode(item), now))
            except ValidationError as exc:
                if len(errors) < keep:
                    errors.append((index, exc.message))
                else:
                    unlisted += 1
        return accepted, errors, unlisted

    def batch_lines(
        self, data: bytes, now: float | None = None, *, max_errors: int | None = None
    ) -> Lines:
        """Like :meth:`batch`, but returns the accepted canonical lines already joined: what
        the ingest server appends. ``max_errors`` caps the errors listed (the first ones);
        ``Lines.unlisted`` counts the others.

        A batch in which every event is valid and already in canonical form — the normal
        case — is checked without per-event function calls; any other batch takes the
        per-event path of :meth:`batch`, which names each error."""
        now = self.clock() if now is None else now
        if self.struct is RequestFact:
            fast = self._fast_batch(data, now)
            if fast is not None:
                return fast
        return Lines.of(*self._batch(data, now, max_errors))

    def many(self, bodies: list[bytes], now: float | None = None) -> Lines:
        """Validate many single-event bodies at once (one event each, as :meth:`one`);
        errors are indexed by body. The ingest server validates the single-event requests
        that arrive together this way: one pass over many events instead of one per request.
        """
        now = self.clock() if now is None else now
        if self.struct is RequestFact and bodies:
            try:
                # One decode per body, never a decode of the bodies joined: joined, a body
                # could end inside a string or an object that the next body completes.
                events = list(map(self._decoder.decode, bodies))
            except Exception:  # any error is reported, per body, by the slow path
                events = []
            if events:
                fast = self._fast_lines(events, now)
                if fast is not None:
                    return fast
        accepted: list[Accepted] = []
        errors: list[tuple[int, str]] = []
        for index, body in enumerate(bodies):
            try:
                accepted.append(self.one(body, now))
            except ValidationError as exc:
                errors.append((index, exc.message))
        return Lines.of(accepted, errors)

    def _fast_batch(self, data: bytes, now: float) -> Lines | None:
        """All-or-nothing fast path for RequestFact batches; None means "use the slow path"."""
        stripped = data.lstrip()
        try:
            if stripped.startswith(b"["):
                events: list[Any] = self._list_decoder.decode(stripped)
            else:
                lines = data.splitlines()
                if b"" in lines:  # blank lines are skipped, as the per-event path does
                    lines = [line for line in lines if line]
                # Line by line, never joined into one array: joined, a line could end inside
                # a string or an object that the next line completes. A whitespace-only line
                # is invalid JSON here, so the slow path handles it.
                events = list(map(self._decoder.decode, lines))
        except Exception:  # any error is reported, per index, by the slow path
            return None
        if not events:
            return None
        return self._fast_lines(events, now)

    def _fast_lines(self, events: list[Any], now: float) -> Lines | None:
        """Check decoded RequestFacts that are all valid and canonical, and render them."""
        # Whole-batch checks in C (join, translate, set operations); a value that is not
        # already cached as valid is checked once by the per-event rule and then cached.
        n = len(events)
        id_list = list(map(_GET_ID, events))
        ids = "".join(id_list).encode()
        if (
            len(ids) != 36 * n
            or ids.translate(_HEX_TO_H) != _UUID_SHAPE * n
            or ids[14::36] != b"7" * n
            or ids[19::36].translate(_VARIANT_TO_V) != b"v" * n
        ):
            return None
        stamps = list(map(_GET_TIME, events))
        joined = "|".join(stamps).encode()
        if joined.translate(_DIGIT_TO_D) != _STAMP_SHAPE * (n - 1) + _STAMP_SHAPE[:-1]:
            return None
        try:
            for second in set(map(_FIRST_19, stamps)).difference(_SECOND_CACHE):
                if parse_time(second + ".000Z")[1] != second + ".000Z":
                    return None
            last, first = _seconds(max(stamps)), _seconds(min(stamps))
            if last > now + self.max_future or first < now - self.max_age:
                return None
            # Most events repeat a few (service, path, agent, method) combinations: one set
            # operation finds those not seen valid before, and only they are checked.
            strings = set(map(_GET_STRINGS, events)).difference(self._valid_strings)
            if strings:
                for service in {c[0] for c in strings}.difference(self._service.ok):
                    self._service.check(service, "service")
                for path in {c[1] for c in strings}.difference(self._path.ok):
                    self._path.check(path, "path_template")
                for agent in {c[2] for c in strings}.difference(self._plain.ok):
                    if agent is not None:
                        self._plain.check(agent, "user_agent_family")
        except (ValidationError, ValueError, OverflowError):
            return None
        if strings:
            methods = {c[3] for c in strings}
            if not methods.issubset(_UPPER_METHODS):
                if not methods.issubset(_METHODS):
                    return None
                for event in events:
                    event.method = _METHODS[event.method]
            # Only combinations with a canonical method are cached, so an event whose
            # combination is cached never needs its method rewritten.
            if len(self._valid_strings) > _CACHE_LIMIT:
                self._valid_strings.clear()
            self._valid_strings.update(c for c in strings if c[3] in _UPPER_METHODS)
        first_hour, last_hour = int(first // 3600), int(last // 3600)
        if first_hour == last_hour:
            hours = frozenset((first_hour,))
        else:
            hours = frozenset(
                int(parse_time(prefix + ":00:00.000Z")[0] // 3600)
                for prefix in set(map(_FIRST_13, stamps))
            )
        return Lines(self._encoder.encode_lines(events), n, hours, id_list, [])
