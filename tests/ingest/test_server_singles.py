"""Single-event requests that arrive in the same few turns of the event loop are validated
together and committed as one group, and each is answered with its own outcome."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gravix.errors import StorageError, ValidationError
from gravix.ingest.buffer import CommitStats
from gravix.ingest.singles import GATHER_TURNS, SingleEvents
from gravix.schema import Validator
from gravix.storage import durable
from serverutil import fact, open_buffer, raw_lines

TOPIC = "request_facts"


async def _submit_together(
    root: Path, bodies: list[bytes], *, fail_writes: bool = False
) -> tuple[list[object], list[CommitStats]]:
    commits: list[CommitStats] = []
    buf = await open_buffer(root, commits=commits)
    singles = SingleEvents(Validator(TOPIC), buf)

    def hook(op: str, path: str) -> None:
        if op == "write":
            raise OSError(errno.EIO, "injected")

    previous = durable.set_hook(hook if fail_writes else None)
    try:
        futures = [singles.submit(body) for body in bodies]  # all in one turn of the loop
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        durable.set_hook(previous)
        await buf.close()
    return results, commits


def test_bodies_of_one_turn_are_one_commit_and_each_gets_its_own_answer(
    data_root: Path,
) -> None:
    docs = [fact() for _ in range(8)]
    bodies = [json.dumps(d).encode() for d in docs]
    bodies[2] = json.dumps(fact(method="FETCH")).encode()
    bodies[5] = b"not json"
    results, commits = asyncio.run(_submit_together(data_root, bodies))
    for i, result in enumerate(results):
        if i in (2, 5):
            assert isinstance(result, ValidationError), (i, result)
        else:
            assert result == docs[i]["event_id"]
    assert "method" in str(results[2]) and "JSON" in str(results[5])
    assert [(c.requests, c.events) for c in commits] == [(6, 6)]
    stored = sorted(str(d["event_id"]) for d in raw_lines(data_root, TOPIC))
    assert stored == sorted(str(docs[i]["event_id"]) for i in range(8) if i not in (2, 5))


def test_a_failed_write_fails_every_valid_body_of_the_group_and_stores_none(
    data_root: Path,
) -> None:
    bodies = [json.dumps(fact()).encode() for _ in range(4)] + [b"{}"]
    results, commits = asyncio.run(_submit_together(data_root, bodies, fail_writes=True))
    assert all(isinstance(r, StorageError) for r in results[:4]), results
    assert isinstance(results[4], ValidationError)
    assert commits == []
    assert raw_lines(data_root, TOPIC) == []


@pytest.mark.parametrize("count", [1, 40])
def test_groups_of_any_size_store_exactly_the_valid_bodies(data_root: Path, count: int) -> None:
    docs = [fact() for _ in range(count)]
    results, _ = asyncio.run(_submit_together(data_root, [json.dumps(d).encode() for d in docs]))
    assert results == [d["event_id"] for d in docs]
    assert len(raw_lines(data_root, TOPIC)) == count


def test_an_unexpected_validator_failure_fails_the_group_instead_of_hanging_it(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Validator, bodies: list[bytes], now: float | None = None) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Validator, "many", broken)
    bodies = [json.dumps(fact()).encode() for _ in range(3)]
    results, commits = asyncio.run(
        asyncio.wait_for(_submit_together(data_root, bodies), timeout=10)
    )
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert commits == [] and "validating 3 single events failed" in caplog.text


async def _submit_over_turns(
    root: Path, per_turn: list[int], *, rotate_first: bool = False
) -> tuple[list[object], list[CommitStats], int, list[bool]]:
    """Submit ``per_turn[i]`` bodies in the i-th turn of the event loop; also returns
    what each write_now call answered (True: written directly)."""
    commits: list[CommitStats] = []
    buf = await open_buffer(root, commits=commits)
    await buf.append(json.dumps(fact()).encode() + b"\n", 1)
    commits.clear()
    singles = SingleEvents(Validator(TOPIC), buf)
    direct: list[bool] = []
    write_now = buf.write_now

    def spy(*args: Any, **kwargs: Any) -> bool:
        direct.append(write_now(*args, **kwargs))
        return direct[-1]

    buf.write_now = spy  # type: ignore[method-assign]
    rotation = None
    previous = None
    if rotate_first:
        # The rotation's new file takes a while to open (in its worker thread), so the
        # group is ready while the rotation is still under way.
        def slow_open(op: str, path: str) -> None:
            if op == "open" and "active-" in path:
                time.sleep(0.3)

        previous = durable.set_hook(slow_open)
        rotation = asyncio.create_task(buf.rotate())
        await asyncio.sleep(0.05)
    futures = []
    try:
        for count in per_turn:
            futures += [singles.submit(json.dumps(fact()).encode()) for _ in range(count)]
            await asyncio.sleep(0)  # one turn of the loop
        results = await asyncio.gather(*futures, return_exceptions=True)
        if rotation is not None:
            await rotation
    finally:
        if rotate_first:
            durable.set_hook(previous)
    rotations = buf.rotations
    await buf.close()
    return results, commits, rotations, direct


def test_requests_of_the_next_few_turns_join_the_group_while_it_grows(data_root: Path) -> None:
    results, commits, _, direct = asyncio.run(_submit_over_turns(data_root, [3, 2, 4]))
    assert all(isinstance(r, str) for r in results), results
    assert [c.requests for c in commits] == [9] and direct == [True]
    assert len(raw_lines(data_root, TOPIC)) == 10


def test_gathering_stops_after_a_bounded_number_of_turns(data_root: Path) -> None:
    turns = GATHER_TURNS + 3
    results, commits, _, _ = asyncio.run(_submit_over_turns(data_root, [1] * turns))
    assert all(isinstance(r, str) for r in results), results
    # the first request, and one more in each turn the group waited
    assert len(commits) >= 2 and commits[0].requests == GATHER_TURNS + 1
    assert sum(c.requests for c in commits) == turns


def test_a_group_that_meets_a_rotation_goes_through_the_writer_and_is_answered(
    data_root: Path,
) -> None:
    results, commits, rotations, direct = asyncio.run(
        _submit_over_turns(data_root, [5], rotate_first=True)
    )
    assert all(isinstance(r, str) for r in results), results
    assert direct == [False]  # declined during the rotation: the writer took the group
    assert rotations == 1 and [c.requests for c in commits] == [5]
    stored = {d["event_id"] for d in raw_lines(data_root, TOPIC)}
    assert set(results) <= stored and len(stored) == 6
