"""Files under the data root are written without following symlinks: a link planted where
Gravix writes never makes it write, create or truncate a file outside the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravix.errors import UnsafePath
from gravix.storage import durable, layout


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    return victim


def test_lock_file_symlink_is_refused_and_its_target_kept(data_root: Path, outside: Path) -> None:
    lock = layout.lock_path(data_root, "rollup")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(outside)
    with pytest.raises(UnsafePath) as caught:
        durable.FileLock(lock, "test").acquire()
    assert str(lock) in caught.value.message and str(outside) in caught.value.message
    assert outside.read_text() == "keep me\n"


def test_shared_lock_symlink_is_refused(data_root: Path, outside: Path) -> None:
    lock = layout.lock_path(data_root, "buffer-recovery")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(outside)
    with pytest.raises(UnsafePath):
        durable.FileLock(lock, "test", shared=True).acquire()
    assert outside.read_text() == "keep me\n"


def test_atomic_write_through_a_planted_temporary_link_leaves_the_target(
    data_root: Path, outside: Path
) -> None:
    final = data_root / "state" / "x.json"
    final.parent.mkdir(parents=True)
    layout.tmp_path(final).symlink_to(outside)
    with pytest.raises(UnsafePath):
        durable.atomic_write(final, b"{}")
    assert outside.read_text() == "keep me\n"


def test_atomic_output_replaces_a_planted_temporary_link(data_root: Path, outside: Path) -> None:
    final = data_root / "warehouse" / "f.parquet"
    final.parent.mkdir(parents=True)
    layout.tmp_path(final).symlink_to(outside)
    with durable.atomic_output(final) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and not final.is_symlink()
    assert outside.read_text() == "keep me\n"


def test_append_to_a_linked_buffer_file_is_refused(data_root: Path, outside: Path) -> None:
    link = data_root / "active.jsonl"
    link.symlink_to(outside)
    with pytest.raises(UnsafePath):
        durable.open_append(link)
    assert outside.read_text() == "keep me\n"
