"""Uploading a node's sealed buffer files into the store's raw, on both backends: one
object per event hour named after the node, deleted locally only once the store confirmed
every object, and redone under the same names after a failure."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from gravix.errors import StoreError
from gravix.settings import load_settings
from gravix.storage import durable, layout
from gravix.storage.store import Store, open_store
from gravix.storage.upload import backlog, upload_sealed
from publish_facts import fact_lines, hour_key, write_buffer

TOPICS = ("request_facts", "service_events")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    root = tmp_path / "store-root"
    root.mkdir()
    if request.param == "local":
        return open_store(load_settings(data_dir=root, environ={}))
    url = request.getfixturevalue("s3_store_url")
    return open_store(load_settings(data_dir=root, store=url, environ=dict(os.environ)))


def _raw(store: Store) -> dict[str, list[bytes]]:
    return {
        info.key.removeprefix("raw/request_facts/"): store.read(info.key).splitlines(True)
        for info in store.list("raw/request_facts/")
    }


def test_each_event_hour_becomes_one_object_named_after_the_node(
    store: Store, data_root: Path
) -> None:
    lines = fact_lines(300)  # five event hours
    sealed = write_buffer(data_root, "sealed-abc123.jsonl", b"".join(lines))

    report = upload_sealed(store, "node-7", data_root, "request_facts", sealed)

    assert report is not None and report.lines == 300
    expected: dict[str, list[bytes]] = {}
    for line in lines:
        expected.setdefault(f"{hour_key(line)}/node-7-abc123.jsonl", []).append(line)
    assert len(expected) == 5
    assert _raw(store) == expected
    assert not sealed.exists()


def test_damaged_lines_go_to_the_stores_quarantine(store: Store, data_root: Path) -> None:
    lines = fact_lines(4)
    sealed = write_buffer(data_root, "sealed-bad1.jsonl", lines[0] + b"garbage\n" + lines[1])

    report = upload_sealed(store, "n1", data_root, "request_facts", sealed)

    assert report is not None and report.lines == 2 and report.damaged_lines == 1
    (quarantined,) = store.list("quarantine/")
    assert quarantined.key.startswith("quarantine/buffer/n1-")
    assert store.read(quarantined.key) == b"garbage\n"
    assert sum(len(v) for v in _raw(store).values()) == 2


def test_a_failed_upload_keeps_the_sealed_file_and_the_retry_writes_the_same_objects(
    store: Store, data_root: Path
) -> None:
    lines = fact_lines(300)
    data = b"".join(lines)
    sealed = write_buffer(data_root, "sealed-retry1.jsonl", data)
    calls: list[str] = []

    def fail_third_upload(op: str, path: str) -> None:
        if op == "upload":
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.EIO, "injected", path)

    previous = durable.set_hook(fail_third_upload)
    try:
        with pytest.raises(OSError):
            upload_sealed(store, "n1", data_root, "request_facts", sealed)
    finally:
        durable.set_hook(previous)
    assert sealed.read_bytes() == data  # kept whole until every object is confirmed
    assert len(_raw(store)) == 2
    assert backlog(data_root, TOPICS).files == 1

    report = upload_sealed(store, "n1", data_root, "request_facts", sealed)

    assert report is not None and len(report.objects) == 5
    assert sorted(b for v in _raw(store).values() for b in v) == sorted(lines)
    assert set(calls[:2]) <= set(report.objects)  # the same names, rewritten
    assert not sealed.exists()
    assert backlog(data_root, TOPICS).files == 0


def test_an_unreachable_store_keeps_the_sealed_file(data_root: Path, tmp_path: Path) -> None:
    from gravix.tools.serverproc import free_port

    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    store = open_store(load_settings(data_dir=tmp_path, store="s3://nobody/x", environ=env))
    sealed = write_buffer(data_root, "sealed-down1.jsonl", b"".join(fact_lines(3)))
    with pytest.raises(StoreError):
        upload_sealed(store, "n1", data_root, "request_facts", sealed)
    assert sealed.exists()
    found = backlog(data_root, TOPICS)
    assert (found.files, found.bytes) == (1, sealed.stat().st_size)


def test_node_names_keep_nodes_apart_for_the_same_buffer_file_id(
    store: Store, tmp_path: Path
) -> None:
    """Two nodes whose buffer files happen to share an id still write two objects."""
    lines = fact_lines(2)
    for node in ("a", "b"):
        root = tmp_path / node
        sealed = write_buffer(root, "sealed-same.jsonl", lines[0] if node == "a" else lines[1])
        upload_sealed(store, f"node-{node}", root, "request_facts", sealed)
    hour = hour_key(lines[0])
    assert _raw(store) == {
        f"{hour}/node-a-same.jsonl": [lines[0]],
        f"{hour}/node-b-same.jsonl": [lines[1]],
    }


def test_raw_object_names_come_from_the_layout() -> None:
    hour = layout.Hour.of_epoch_hour(0)
    key = layout.raw_object_key("request_facts", hour, "n-1", "0001-2-ab")
    assert key == "raw/request_facts/event_day=1970-01-01/hour=00/n-1-0001-2-ab.jsonl"
    with pytest.raises(Exception, match="file id"):
        layout.raw_object_key("request_facts", hour, "n/1", "x")


def test_a_node_root_is_not_published_into_local_raw_by_mistake(data_root: Path) -> None:
    """Once a node with a store has used a data root, publishing its sealed files into the
    local raw (a start without --store, `gravix recover`) is refused: they would never
    reach the store."""
    from gravix.errors import ConfigError
    from gravix.storage.orphans import recover_buffers

    sealed = write_buffer(data_root, "sealed-mode1.jsonl", b"".join(fact_lines(3)))
    report = recover_buffers(data_root, store_url="s3://bucket/p")
    assert report.published == [] and sealed.exists()  # left for the uploader
    with pytest.raises(ConfigError) as info:
        recover_buffers(data_root)
    assert "s3://bucket/p" in info.value.message and info.value.hint
    assert "--store s3://bucket/p" in info.value.hint
    with pytest.raises(ConfigError):
        recover_buffers(data_root, dry_run=True)
    assert sealed.exists() and not (data_root / "raw").exists()
    layout.store_marker_path(data_root).unlink()  # the operator's way back to a local root
    assert recover_buffers(data_root).files == 1
