"""Crash-point sweep: the durable-file hook kills the process at I/O operation k, for every
k across one append + rotate + rollup commit; after recovery nothing acknowledged is lost,
nothing is stored twice, and no half-written partition is ever visible."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario import (
    check_after_recovery,
    child_main,
    make_lines,
    raw_counts_by_hour,
    raw_ids,
    read_acks,
    warehouse_counts_by_hour,
)

from gravix.rollup import run_rollup
from gravix.storage.orphans import recover_buffers

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))


@pytest.fixture(scope="module")
def ctx() -> Iterator[multiprocessing.context.ForkServerContext]:
    # A fork server that has Gravix, polars and pyarrow imported makes each crashed child
    # cheap, without forking the test process (whose threads a fork would not carry).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["gravix.ingest.buffer", "gravix.ops.recovery", "gravix.rollup", "scenario"]
    )
    yield context


def _run_child(ctx, root: Path, batches, acks: Path, kill_at: int | None) -> int:
    proc = ctx.Process(target=child_main, args=(str(root), batches, str(acks), kill_at))
    proc.start()
    proc.join(120)
    assert proc.exitcode is not None, "crash-sweep child hung"
    return proc.exitcode


def _sweep(
    ctx, tmp_path: Path, batches: list[list[bytes]], stride: int, offset: int = 0
) -> dict[str, int]:
    base = tmp_path / "base"
    base.mkdir()
    # An earlier append + rotate + rollup, so the swept rollup replaces existing partitions.
    earlier = make_lines(6, seed=1)
    assert _run_child(ctx, base, [earlier], tmp_path / "base.acks", None) == 0
    base_acked = read_acks(tmp_path / "base.acks")
    assert len(base_acked) == 6
    before_counts = warehouse_counts_by_hour(base)
    assert sum(before_counts.values()) == 6

    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    assert _run_child(ctx, probe, batches, tmp_path / "probe.acks", None) == 0
    total_ops = int((tmp_path / "probe.acks.ops").read_text())
    oplog = (tmp_path / "probe.acks.oplog").read_text().splitlines()
    # How the clean run moved the buffer into raw: by writing raw files (each renamed into
    # place), or by renaming the buffer file itself.
    raw = str(probe / "raw")
    raw_writes = sum(
        1 for e in oplog if e.startswith("write ") and e.split(" ", 1)[1].startswith(raw)
    )
    raw_renames = sum(1 for e in oplog if e.startswith("replace ") and ".tmp" not in e and raw in e)
    after_counts = warehouse_counts_by_hour(probe)
    shutil.rmtree(probe)
    assert total_ops > 20

    figures = {
        "ops": total_ops,
        "crashes": 0,
        "acked_max": 0,
        "needed_recovery": 0,
        "raw_writes": raw_writes,
        "raw_renames": raw_renames,
    }
    for k in range(offset, total_ops, stride):
        root = tmp_path / f"k{k}"
        shutil.copytree(base, root)
        acks = tmp_path / f"k{k}.acks"
        code = _run_child(ctx, root, batches, acks, k)
        assert code == -signal.SIGKILL, f"k={k}: child ended with {code}, not killed"
        figures["crashes"] += 1
        acked = read_acks(acks)
        figures["acked_max"] = max(figures["acked_max"], len(acked))
        # Right after the crash, before any recovery: every partition is old or new, whole.
        visible = warehouse_counts_by_hour(root)
        for hour, count in visible.items():
            assert count in (before_counts.get(hour), after_counts.get(hour)), (k, hour, count)
        ids_before, _ = raw_ids(root)
        if acked - set(ids_before):
            figures["needed_recovery"] += 1  # acknowledged, but only in a buffer file
        recover_buffers(root)
        run_rollup(root=root)
        try:
            check_after_recovery(root, acked | base_acked)
            assert warehouse_counts_by_hour(root) == raw_counts_by_hour(root), k
        except AssertionError as exc:
            raise AssertionError(f"crash at durable operation {k}: {exc}") from exc
        shutil.rmtree(root)
    return figures


# Facts over two hours: rotation splits the buffer file into raw. Facts of one hour: the
# server renames the whole file into raw; a crash may leave it to recovery's split.
@pytest.mark.parametrize("hours_back", [(0, 1), (1,)], ids=["split", "renamed-whole"])
def test_every_crash_point_of_append_rotate_rollup_recovers_without_loss_or_duplicates(
    ctx, tmp_path: Path, hours_back: tuple[int, ...]
) -> None:
    batches = [make_lines(n, hours_back=hours_back, seed=n - 2) for n in (4, 3)]
    # CI sweeps every other k (GRAVIX_SWEEP_OFFSET=1 for the other half); the slow run, every k.
    offset = int(os.environ.get("GRAVIX_SWEEP_OFFSET", "0"))
    figures = _sweep(ctx, tmp_path, batches, stride=2, offset=offset)
    print(f"crash sweep ({'+'.join(map(str, hours_back))} hours back): {figures}")
    assert figures["crashes"] == len(range(offset, figures["ops"], 2))
    assert figures["needed_recovery"] > 0  # the sweep did hit states only recovery repairs
    if len(hours_back) == 1:  # the whole buffer file went into raw by a rename
        assert (figures["raw_writes"], figures["raw_renames"]) == (0, 1)
    else:  # split: one raw file written (and renamed into place) per hour
        assert figures["raw_writes"] == figures["raw_renames"] == len(hours_back)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("hours_back", [(0, 1, 2), (1,)], ids=["split", "renamed-whole"])
def test_crash_sweep_with_more_batches_and_hours(
    ctx, tmp_path: Path, hours_back: tuple[int, ...]
) -> None:
    batches = [make_lines(5, hours_back=hours_back, seed=s) for s in range(int(4 * SCALE))]
    figures = _sweep(ctx, tmp_path, batches, stride=1)
    print(f"crash sweep (long, {'+'.join(map(str, hours_back))} hours back): {figures}")
    assert figures["crashes"] == figures["ops"]
    assert figures["raw_writes"] == (0 if len(hours_back) == 1 else len(hours_back))
