"""Power-loss model: hypothesis drives appends, rotations, graceful restarts and rollups,
and cuts the power at random durable operations. After each cut the model's disk (only
what was fsynced, in directories that were fsynced) boots: recovery runs as the server
runs it at start, then a rollup; nothing acknowledged may be missing or doubled, recovery
may not fail, and the warehouse must agree with raw."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from powerloss import DiskModel
from scenario import (
    TOPIC,
    check_after_recovery,
    hours_of,
    make_lines,
    raw_counts_by_hour,
    warehouse_counts_by_hour,
)

from gravix.errors import GravixError
from gravix.ingest.buffer import TopicBuffer
from gravix.rollup import run_rollup
from gravix.storage import durable
from gravix.storage.orphans import recover_buffers

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))
FIGURES = {"cuts": 0, "boots": 0, "acked": 0, "torn_files": 0, "lost_entries": 0}


class PowerLossMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="gravix-powerloss-"))
        self.epoch = 0
        self.root = self.tmp / "r0"
        self.root.mkdir()
        self.acked: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.torn_next = False
        self.seed = 0
        self._boot()

    # -- process lifecycle ------------------------------------------------------------------

    def _boot(self) -> None:
        self.model = DiskModel(self.root)
        durable.set_hook(self.model.hook)
        recover_buffers(self.root)  # what the server does at start; must never fail
        check_after_recovery(self.root, self.acked)
        run_rollup(root=self.root)
        assert warehouse_counts_by_hour(self.root) == raw_counts_by_hour(self.root)
        self.buf = TopicBuffer(self.root, TOPIC, rotate_seconds=3600, rotate_bytes=1 << 40)
        self.loop.run_until_complete(self.buf.start())
        FIGURES["boots"] += 1

    def _stop(self) -> None:
        try:
            self.loop.run_until_complete(self.buf.close(rotate=not self.model.crashed))
        except (GravixError, OSError):
            assert self.model.crashed

    def _after_cut(self) -> None:
        self._stop()
        durable.set_hook(None)
        self.epoch += 1
        new_root = self.tmp / f"r{self.epoch}"
        figures = self.model.materialize(new_root, random.Random(self.seed), torn=self.torn_next)
        FIGURES["cuts"] += 1
        FIGURES[f"cut at {self.model.cut_at}"] = FIGURES.get(f"cut at {self.model.cut_at}", 0) + 1
        FIGURES["torn_files"] += figures["torn_files"]
        FIGURES["lost_entries"] += figures["lost_entries"]
        shutil.rmtree(self.root)
        self.root = new_root
        self._boot()

    def teardown(self) -> None:
        try:
            # Every run ends with a cut of its own, so each example checks its final state too.
            if not self.model.crashed:
                self.torn_next, self.seed = True, self.epoch
                self.model.cut()
            self._after_cut()
            self._stop()
        finally:
            durable.set_hook(None)
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules --------------------------------------------------------------------------------

    # Appends of one past hour only leave a buffer file that rotation renames into raw
    # whole; appends over three hours, one that it splits.
    @rule(count=st.integers(1, 6), seed=st.integers(0, 10_000), one_hour=st.booleans())
    def append(self, count: int, seed: int, one_hour: bool) -> None:
        lines = make_lines(count, hours_back=(1,) if one_hour else (0, 1, 2), seed=seed)
        try:
            self.loop.run_until_complete(self.buf.append(b"".join(lines), count, hours_of(lines)))
        except GravixError:
            assert self.model.crashed or self.buf.failed is not None
            return
        ids = {json.loads(line)["event_id"] for line in lines}
        self.acked |= ids
        FIGURES["acked"] += len(ids)

    @rule()
    def rotate(self) -> None:
        self.loop.run_until_complete(self.buf.rotate("test"))
        pending = list(getattr(self.buf, "_publishing", ()))
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    @rule()
    def graceful_restart(self) -> None:
        self._stop()
        if not self.model.crashed:
            self.buf = TopicBuffer(self.root, TOPIC, rotate_seconds=3600, rotate_bytes=1 << 40)
            try:
                self.loop.run_until_complete(self.buf.start())
            except GravixError:
                assert self.model.crashed  # the power went during the start

    @rule()
    def rollup(self) -> None:
        try:
            run_rollup(root=self.root)
        except Exception:
            if not self.model.crashed:
                raise

    @rule(
        countdown=st.integers(0, 15),
        actions=st.lists(st.sampled_from(["append", "rotate", "rollup", "restart"]), min_size=1),
        torn=st.booleans(),
        seed=st.integers(0, 2**32),
    )
    def power_cut_during(self, countdown: int, actions: list[str], torn: bool, seed: int) -> None:
        """Cut the power at the ``countdown``-th durable operation of a run of actions."""
        self.torn_next, self.seed = torn, seed
        self.model.arm(countdown)
        for n, action in enumerate(actions):
            if self.model.crashed:
                return
            if action == "append":
                self.append(1 + (seed + n) % 5, seed + n, (seed + n) % 2 == 0)
            elif action == "rotate":
                self.rotate()
            elif action == "rollup":
                self.rollup()
            else:
                self.graceful_restart()
        if not self.model.crashed:
            self.model.cut()

    @invariant()
    def boots_again_after_a_cut(self) -> None:
        if getattr(self, "model", None) is not None and self.model.crashed:
            self._after_cut()


def _run(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        PowerLossMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_power_cuts_in_random_states_lose_nothing_acknowledged() -> None:
    before = dict(FIGURES)
    # The examples are random: a run whose examples happen to cut the power less often is
    # topped up with more examples, so the property is always checked over enough cuts.
    for _round in range(4):
        _run(examples=int(12 * SCALE), steps=15)
        if FIGURES["cuts"] - before["cuts"] >= 25 * SCALE:
            break
    cuts = FIGURES["cuts"] - before["cuts"]
    print(f"power-loss model: {FIGURES}")
    assert cuts >= 25 * SCALE  # the machine really crashed, more than once per example


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_power_cuts_in_at_least_a_thousand_random_states() -> None:
    before = dict(FIGURES)
    _run(examples=int(200 * SCALE), steps=25)
    cuts = FIGURES["cuts"] - before["cuts"]
    print(f"power-loss model (long): {FIGURES}")
    assert cuts >= 1000 * SCALE
