"""A corpus of damaged buffer files: each is handled with counts, nothing is lost, no crash."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gravix.storage import orphans, publish
from publish_facts import fact_lines, raw_content, write_buffer

LINES = fact_lines(40)
BODY = b"".join(LINES)


@dataclass
class Case:
    data: bytes
    kept: list[bytes]  # the lines that must reach raw
    torn: int
    damaged: int


def flip(line: bytes, at: int) -> bytes:
    return line[:at] + bytes([line[at] ^ 0x20]) + line[at + 1 :]


CORPUS = {
    "truncated last line": Case(BODY[:-30], LINES[:-1], torn=1, damaged=0),
    "appended garbage": Case(BODY + b"\x8f\x00garbage{]", LINES, torn=1, damaged=0),
    "appended garbage lines": Case(BODY + b"oops\n{\n", LINES, torn=2, damaged=0),
    "zero-filled tail": Case(BODY + bytes(4096), LINES, torn=1, damaged=0),
    "zero-filled tail with newline": Case(BODY + bytes(100) + b"\n", LINES, torn=1, damaged=0),
    # byte 1 is the quote opening the first key: `{"event_id"` becomes `{\x02event_id"`
    "flipped byte mid-file": Case(
        b"".join([*LINES[:17], flip(LINES[17], 1), *LINES[18:]]),
        LINES[:17] + LINES[18:],
        torn=0,
        damaged=1,
    ),
    "flipped byte in a key": Case(
        b"".join([*LINES[:5], LINES[5].replace(b'"method"', b'"mfthod"'), *LINES[6:]]),
        LINES[:5] + LINES[6:],
        torn=0,
        damaged=1,
    ),
    "empty file": Case(b"", [], torn=0, damaged=0),
    "only a newline": Case(b"\n", [], torn=1, damaged=0),
    "invalid UTF-8": Case(
        b"".join([*LINES[:3], LINES[3].replace(b"frontend", b"front\xc3\x28nd"), *LINES[4:]]),
        LINES[:3] + LINES[4:],
        torn=0,
        damaged=1,
    ),
    "bad event time": Case(
        b"".join([*LINES[:8], LINES[8].replace(b"2026-02-16T", b"2026-13-16T"), *LINES[9:]]),
        LINES[:8] + LINES[9:],
        torn=0,
        damaged=1,
    ),
    "damage in the middle and a torn tail": Case(
        b"".join([*LINES[:10], b"\x00" * 50 + b"\n", *LINES[10:]]) + b'{"event_id":"01',
        LINES,
        torn=1,
        damaged=1,
    ),
}


def kept_lines(root: Path) -> list[bytes]:
    return [line for lines in raw_content(root).values() for line in lines]


def quarantined_bytes(root: Path) -> bytes:
    files = [p for p in (root / "quarantine").rglob("*") if p.is_file()]
    assert len(files) <= 1
    return files[0].read_bytes() if files else b""


@pytest.mark.parametrize("name", list(CORPUS))
def test_damaged_buffer_file_is_handled_with_counts(data_root: Path, name: str) -> None:
    case = CORPUS[name]
    sealed = write_buffer(data_root, "sealed-case.jsonl", case.data)

    report = publish.publish_sealed(data_root, "request_facts", sealed)

    assert report is not None and not sealed.exists()
    assert Counter(kept_lines(data_root)) == Counter(case.kept)
    assert (report.lines, report.torn_tail_lines, report.damaged_lines) == (
        len(case.kept),
        case.torn,
        case.damaged,
    )
    # nothing is silently dropped: raw plus quarantine hold every byte of the file
    assert sum(map(len, kept_lines(data_root))) + len(quarantined_bytes(data_root)) == len(
        case.data
    )
    assert (report.quarantined is not None) == bool(case.torn or case.damaged)


def test_the_whole_corpus_recovered_at_once_sums_the_counts(data_root: Path) -> None:
    for i, case in enumerate(CORPUS.values()):
        write_buffer(data_root, f"sealed-c{i}.jsonl", case.data)

    report = orphans.recover_buffers(data_root)

    assert report.lines == sum(len(c.kept) for c in CORPUS.values())
    assert report.torn_tail_lines == sum(c.torn for c in CORPUS.values())
    assert report.damaged_lines == sum(c.damaged for c in CORPUS.values())
    assert not list((data_root / "buffer" / "request_facts").iterdir())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(BODY) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.integers(0, 400),
)
def test_any_corruption_keeps_every_byte_in_raw_or_quarantine(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(BODY)
    for at, value in edits:
        data[at] = value
    damaged = bytes(data[: len(data) - cut])
    root = tmp_path_factory.mktemp("fuzz")
    sealed = write_buffer(root, "sealed-fuzz.jsonl", damaged)

    report = publish.publish_sealed(root, "request_facts", sealed)

    assert report is not None and not sealed.exists()
    kept = kept_lines(root)
    assert sum(map(len, kept)) + len(quarantined_bytes(root)) == len(damaged)
    assert report.lines == len(kept)
    assert report.lines + report.torn_tail_lines + report.damaged_lines == len(
        damaged.split(b"\n")
    ) - (1 if damaged.endswith(b"\n") or not damaged else 0)
    # a line that is still whole, between two newlines, always reaches raw
    whole = {line for line in LINES if b"\n" + line in b"\n" + damaged}
    assert whole <= set(kept)
