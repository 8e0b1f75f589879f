"""Durable file operations: atomic replacement, locks, and the fault-injection hook."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gravix.errors import ConfigError, LockHeld
from gravix.storage import durable


@pytest.fixture(autouse=True)
def _no_hook() -> Iterator[None]:
    previous = durable.set_hook(None)
    yield
    durable.set_hook(previous)


def _record() -> list[tuple[str, str]]:
    ops: list[tuple[str, str]] = []
    durable.set_hook(lambda op, path: ops.append((op, path)))
    return ops


def test_atomic_write_creates_parents_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.json"
    durable.atomic_write(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path,
) -> None:
    ops = _record()
    target = tmp_path / "f"
    durable.atomic_write(target, b"x")
    names = [op for op, _ in ops]
    assert names.index("fsync") < names.index("replace") < names.index("fsync_dir")
    assert ("fsync_dir", str(tmp_path)) in ops


def test_readers_never_see_a_mix_of_old_and_new_content(tmp_path: Path) -> None:
    target = tmp_path / "f"
    versions = [bytes([65 + i]) * (256 * 1024 + i) for i in range(4)]
    durable.atomic_write(target, versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()
    bad: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in versions:
                bad.append(data[:20])
            seen.add(data[:1])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            durable.atomic_write(target, versions[i % len(versions)])
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert len(seen) >= 2  # the reader really overlapped with the writes


@pytest.mark.parametrize("failing_op", ["open", "write", "fsync", "replace"])
def test_a_failed_atomic_write_keeps_the_old_content_and_removes_the_temporary(
    tmp_path: Path, failing_op: str
) -> None:
    target = tmp_path / "f"
    durable.atomic_write(target, b"old")

    def hook(op: str, path: str) -> None:
        if op == failing_op:
            raise OSError(errno.EIO, "injected")

    durable.set_hook(hook)
    with pytest.raises(OSError):
        durable.atomic_write(target, b"new content")
    durable.set_hook(None)
    assert target.read_bytes() == b"old"
    if failing_op != "replace":
        assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_output_replaces_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "d" / "part.parquet"
    with durable.atomic_output(target) as tmp:
        assert tmp != target
        tmp.write_bytes(b"v1")
        assert not target.exists()
    assert target.read_bytes() == b"v1"
    with pytest.raises(RuntimeError), durable.atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"v1"
    assert [p.name for p in target.parent.iterdir()] == ["part.parquet"]


def test_makedirs_fsyncs_each_parent_that_gained_an_entry(tmp_path: Path) -> None:
    ops = _record()
    durable.makedirs(tmp_path / "a" / "b")
    assert ("mkdir", str(tmp_path / "a")) in ops
    assert ("fsync_dir", str(tmp_path)) in ops
    assert ("fsync_dir", str(tmp_path / "a")) in ops
    assert (tmp_path / "a" / "b").is_dir()
    ops.clear()
    durable.makedirs(tmp_path / "a" / "b")  # already there: nothing to do
    assert ops == []


def test_replace_and_unlink_make_the_directory_change_durable(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    src = tmp_path / "src" / "f"
    src.write_text("x")
    ops = _record()
    durable.replace(src, tmp_path / "dst" / "f")
    assert ("fsync_dir", str(tmp_path / "dst")) in ops
    assert ("fsync_dir", str(tmp_path / "src")) in ops
    ops.clear()
    durable.unlink(tmp_path / "dst" / "f")
    assert ops == [("unlink", str(tmp_path / "dst" / "f")), ("fsync_dir", str(tmp_path / "dst"))]
    durable.unlink(tmp_path / "dst" / "f")  # missing is fine by default
    with pytest.raises(FileNotFoundError):
        durable.unlink(tmp_path / "dst" / "f", missing_ok=False)


def test_append_write_and_fsync_reach_the_hook_with_their_path(tmp_path: Path) -> None:
    ops = _record()
    path = tmp_path / "active.jsonl"
    fd = durable.open_append(path)
    try:
        durable.write_all(fd, b"line\n", path)
        durable.fsync_fd(fd, path)
    finally:
        os.close(fd)
    assert ops == [("open", str(path)), ("write", str(path)), ("fsync", str(path))]
    assert path.read_bytes() == b"line\n"


# --- locks ---------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from gravix.storage.durable import FileLock
lock = FileLock(Path(sys.argv[1]), "test holder").acquire()
print("held", flush=True)
time.sleep(60)
"""


def _start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_is_exclusive_within_one_process(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "rollup.lock"
    with durable.FileLock(path, "first"):
        with pytest.raises(LockHeld) as info:
            durable.FileLock(path, "second").acquire()
        assert f"pid {os.getpid()}" in info.value.holder
        assert "first" in info.value.holder
        assert durable.is_locked(path)
    assert not durable.is_locked(path)
    with durable.FileLock(path, "third"):
        pass


def test_lock_held_by_another_process_names_it_and_is_taken_over_when_it_dies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rollup.lock"
    proc = _start_holder(path)
    try:
        assert durable.is_locked(path)
        with pytest.raises(LockHeld) as info:
            durable.FileLock(path, "mine").acquire()
        assert f"pid {proc.pid}" in str(info.value)
        assert "test holder" in durable.describe_holder(path)
        assert info.value.hint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert not durable.is_locked(path)
    lock = durable.FileLock(path, "mine").acquire()
    try:
        assert f"pid {os.getpid()}" in durable.describe_holder(path)
    finally:
        lock.release()


def test_waiting_for_a_lock_times_out_then_succeeds_once_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first = durable.FileLock(path, "first").acquire()
    start = time.monotonic()
    with pytest.raises(LockHeld):
        durable.FileLock(path, "second").acquire(wait=True, timeout=0.2)
    assert time.monotonic() - start >= 0.2
    threading.Timer(0.2, first.release).start()
    second = durable.FileLock(path, "second").acquire(wait=True, timeout=10)
    second.release()


def test_describe_holder_of_a_missing_or_garbled_lock_file_does_not_raise(tmp_path: Path) -> None:
    assert durable.describe_holder(tmp_path / "absent.lock") == "an unknown process"
    garbled = tmp_path / "g.lock"
    garbled.write_text("{not json")
    assert durable.describe_holder(garbled) == "an unknown process"
    assert not durable.is_locked(tmp_path / "absent.lock")


# --- fault plans ----------------------------------------------------------------------------------


def _plan(rules: list[dict[str, object]]) -> None:
    durable.install_fault_plan(json.dumps(rules))


def _fsync(path: Path) -> None:
    fd = durable.open_append(path)
    try:
        durable.fsync_fd(fd, path)
    finally:
        os.close(fd)


def test_fault_plan_skips_then_fails_the_given_number_of_times(tmp_path: Path) -> None:
    _plan([{"op": "fsync", "action": "eio", "skip": 2, "times": 2}])
    outcomes = []
    for _ in range(6):
        try:
            _fsync(tmp_path / "f")
            outcomes.append("ok")
        except OSError as exc:
            assert exc.errno == errno.EIO
            outcomes.append("eio")
    assert outcomes == ["ok", "ok", "eio", "eio", "ok", "ok"]


def test_fault_plan_matches_operation_and_path_substring(tmp_path: Path) -> None:
    _plan([{"op": "*", "path": "target", "action": "enospc", "times": -1}])
    _fsync(tmp_path / "other")
    durable.atomic_write(tmp_path / "other.json", b"x")
    for _ in range(3):
        with pytest.raises(OSError) as info:
            durable.atomic_write(tmp_path / "target.json", b"x")
        assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "target.json").exists()


def test_fault_plan_with_while_exists_applies_only_while_the_flag_file_exists(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "disk-full"
    _plan([{"op": "write", "action": "enospc", "times": -1, "while_exists": str(flag)}])
    durable.atomic_write(tmp_path / "a", b"1")
    flag.touch()
    with pytest.raises(OSError):
        durable.atomic_write(tmp_path / "a", b"2")
    flag.unlink()
    durable.atomic_write(tmp_path / "a", b"3")
    assert (tmp_path / "a").read_bytes() == b"3"


def test_fault_plan_keeps_an_earlier_hook_running(tmp_path: Path) -> None:
    ops = _record()
    _plan([{"op": "fsync", "action": "eio"}])
    with pytest.raises(OSError):
        _fsync(tmp_path / "f")
    assert ("fsync", str(tmp_path / "f")) in ops


@pytest.mark.parametrize(
    "plan",
    [
        "not json",
        '{"op": "fsync"}',
        '[{"op": "fsync"}]',
        '[{"op": "fsync", "action": "eio", "bogus": 1}]',
        '[{"op": "fsync", "action": "explode"}]',
        "[5]",
    ],
)
def test_invalid_fault_plans_are_a_config_error(plan: str) -> None:
    with pytest.raises(ConfigError):
        durable.install_fault_plan(plan)


def test_empty_fault_plan_installs_nothing(tmp_path: Path) -> None:
    durable.install_fault_plan(None)
    durable.install_fault_plan("")
    _fsync(tmp_path / "f")


KILLED = """
import json, os, sys
from pathlib import Path
from gravix.storage import durable
durable.install_fault_plan(json.dumps([{"op": "replace", "action": "kill", "skip": 1}]))
root = Path(sys.argv[1])
durable.atomic_write(root / "first", b"1")
print("first written", flush=True)
durable.atomic_write(root / "second", b"2")
print("second written", flush=True)
"""


def test_kill_action_ends_the_process_at_the_chosen_operation(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "first written\n"
    assert (tmp_path / "first").read_bytes() == b"1"
    assert not (tmp_path / "second").exists()


NO_SPACE_FOR_NOTES = """
import resource, signal, sys
from pathlib import Path
from gravix.storage.durable import FileLock
from gravix.errors import LockHeld
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write that grows a file fails
path = Path(sys.argv[1])
with FileLock(path, "first"):
    try:
        FileLock(path, "second").acquire()
        print("not exclusive")
    except LockHeld:
        pass
with FileLock(path, "again"):
    print("taken again")
"""


def test_a_lock_whose_holder_note_cannot_be_written_is_still_exclusive_and_released(
    tmp_path: Path,
) -> None:
    (tmp_path / "locks").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", NO_SPACE_FOR_NOTES, str(tmp_path / "locks" / "rollup.lock")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "taken again\n"
