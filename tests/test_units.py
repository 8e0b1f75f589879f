"""One parser for sizes, durations and times, and every command's flags use it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

import pytest
from typer.models import OptionInfo
from typer.testing import CliRunner

from gravix import units
from gravix.cli import app
from gravix.cli.app import UNIT_PARSERS
from gravix.errors import ConfigError
from gravix.settings import load_settings

NOW = datetime(2026, 2, 16, 12, 0, tzinfo=UTC)
DURATIONS = {"500ms": 0.5, "90s": 90, "15m": 900, "15min": 900, "24h": 86400, "7d": 604800,
             "2w": 1209600, "45": 45, "1.5h": 5400}  # fmt: skip
SIZES = {"4096": 4096, "64KiB": 65536, "10MB": 10_000_000, "1GiB": 2**30, "2k": 2000}
TIMES = {
    "2026-02-16T10:00:00Z": datetime(2026, 2, 16, 10, tzinfo=UTC),
    "2026-02-16T12:30:00+02:00": datetime(2026, 2, 16, 10, 30, tzinfo=UTC),
    "now": NOW,
    "90s": NOW - timedelta(seconds=90),
    "24h": NOW - timedelta(hours=24),
    "2w": NOW - timedelta(weeks=2),
}


@pytest.mark.parametrize(("text", "seconds"), DURATIONS.items())
def test_durations_share_one_spelling(text: str, seconds: float) -> None:
    assert units.parse_duration(text, "--x") == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), SIZES.items())
def test_sizes_share_one_spelling(text: str, size: int) -> None:
    assert units.parse_size(text, "--x") == size


@pytest.mark.parametrize(("text", "moment"), TIMES.items())
def test_times_share_one_spelling(text: str, moment: datetime) -> None:
    assert units.parse_time(text, "--x", now=NOW) == moment


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: units.parse_duration("3x", "--duration"), "--duration '3x' is not a duration"),
        (lambda: units.parse_duration("-5s", "--d"), "not a duration"),
        (lambda: units.parse_size("12 parsecs", "--rotate-bytes"), "--rotate-bytes"),
        (lambda: units.parse_time("2026-02-16T10:00:00", "--since"), "has no time zone"),
        (lambda: units.parse_time("yesterday", "--until"), "--until 'yesterday' is not a time"),
        (lambda: units.parse_time("2026-13-01T00:00:00Z", "--since"), "not an RFC 3339 time"),
        (lambda: units.parse_time("100000000000", "--since"), "reaches before the year 1"),
        (lambda: units.parse_time("99999999999999w", "--since"), "reaches before the year 1"),
    ],
)
def test_bad_values_name_the_flag_and_the_problem(call: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()  # type: ignore[operator]
    assert words in caught.value.message
    assert caught.value.exit_code == 2


# Flags that take a time, a duration or a size, by name; a new one must use a units parser.
_UNIT_FLAG = re.compile(r"(^|_)(time|since|until|duration|span|seconds|bytes)$")


def _unit_params() -> list[tuple[str, str, Any]]:
    """(command, flag, typer OptionInfo) for every option named like a time, size or
    duration, read from the commands' signatures."""
    found = []
    for info in app.registered_commands:
        hints = get_type_hints(info.callback, include_extras=True)
        for name, hint in hints.items():
            options = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, OptionInfo)]
            if options and _UNIT_FLAG.search(name):
                option = options[0]
                flag = option.default if isinstance(option.default, str) else ""
                flag = flag or "--" + name.replace("_", "-")
                found.append((str(info.name), flag, option))
    return sorted(found, key=lambda f: (f[0], f[1]))


def test_the_walk_finds_the_known_flags() -> None:
    names = {f"{command} {flag}" for command, flag, _ in _unit_params()}
    for flag in ("rollup --start-time", "query --since", "ingest-server --rotate-bytes"):
        assert flag in names


@pytest.mark.parametrize(
    ("command", "flag", "option"), _unit_params(), ids=[f"{c} {f}" for c, f, _ in _unit_params()]
)
def test_every_time_and_size_flag_takes_the_shared_spellings(
    command: str, flag: str, option: Any
) -> None:
    kind = next((k for k, p in UNIT_PARSERS.items() if p is option.parser), None)
    assert kind is not None, f"{command} {flag} does not parse with gravix.units"
    samples = {"time": TIMES, "duration": DURATIONS, "size": SIZES}[kind]
    for text in samples:
        assert option.parser(text) is not None
    result = CliRunner().invoke(app, [command, flag, "not-a-value"])
    assert result.exit_code == 2
    assert flag in result.output and "not a" in result.output


def test_environment_durations_and_sizes_take_the_same_spellings() -> None:
    env = {"GRAVIX_ROTATE_SECONDS": "90s", "GRAVIX_MAX_FUTURE_SECONDS": "5m",
           "GRAVIX_ROTATE_BYTES": "8MiB", "GRAVIX_MIN_FREE_BYTES": "1GB"}  # fmt: skip
    settings = load_settings(environ=env)
    assert (settings.rotate_seconds, settings.max_future_seconds) == (90, 300)
    assert (settings.rotate_bytes, settings.min_free_bytes) == (8 * 2**20, 10**9)


def test_a_bad_environment_value_is_reported_as_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"GRAVIX_MAX_FUTURE_SECONDS": "soon"})
    assert "GRAVIX_MAX_FUTURE_SECONDS" in caught.value.message
    assert "--max-future-seconds" not in caught.value.message
