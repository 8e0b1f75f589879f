"""The store interface, the same tests on both backends: the data root (LocalStore) and an
S3 bucket on moto's server (S3Store through pyarrow). The S3 objects are also read with
boto3, independently of Gravix's code."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gravix.errors import ConfigError, StoreError, UnsafePath
from gravix.settings import load_settings
from gravix.storage import durable, layout
from gravix.storage.store import LocalStore, ObjectInfo, Store, open_store, write_confirmed
from s3util import MotoServer

KEY = "raw/request_facts/event_day=2026-01-02/hour=03/node-1-abc.jsonl"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    root = tmp_path / "data"
    root.mkdir()
    if request.param == "local":
        return open_store(load_settings(data_dir=root, environ={}))
    url = request.getfixturevalue("s3_store_url")
    return open_store(load_settings(data_dir=root, store=url, environ=dict(os.environ)))


def test_write_then_read_list_stat_and_delete(store: Store) -> None:
    other = "raw/service_events/event_day=2026-01-02/hour=03/node-1-abc.jsonl"
    store.write(KEY, b'{"a":1}\n')
    store.write(other, b"x\n")
    assert store.read(KEY) == b'{"a":1}\n'
    assert store.stat(KEY) == ObjectInfo(KEY, 8)
    assert store.list("raw/request_facts/") == [ObjectInfo(KEY, 8)]
    assert [i.key for i in store.list("raw/")] == sorted([KEY, other])
    store.delete(KEY)
    assert store.stat(KEY) is None
    assert store.list("raw/request_facts/") == []
    store.delete(KEY)  # already gone: not an error
    with pytest.raises(FileNotFoundError):
        store.read(KEY)


def test_write_replaces_an_object_whole(store: Store) -> None:
    store.write(KEY, b"old\n" * 1000)
    store.write(KEY, b"new\n")
    assert store.read(KEY) == b"new\n"
    assert store.list("raw/") == [ObjectInfo(KEY, 4)]


def test_listing_a_prefix_that_matches_nothing_is_empty(store: Store) -> None:
    assert store.list("warehouse/") == []
    assert store.list("raw/request_facts/event_day=2026-01-02/") == []


def test_conditional_create_only_creates_an_absent_object(store: Store) -> None:
    lease = "state/leases/rollup.json"
    assert store.create(lease, b"first") is True
    assert store.create(lease, b"second") is False
    assert store.read(lease) == b"first"
    store.delete(lease)
    assert store.create(lease, b"third") is True
    assert store.read(lease) == b"third"


def test_conditional_create_has_one_winner_among_racers(store: Store) -> None:
    lease = "state/leases/race.json"
    wins: list[int] = []

    def race(i: int) -> None:
        if store.create(lease, f"{i}".encode()):
            wins.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.read(lease) == str(wins[0]).encode()


class _LyingStore:
    """A store that keeps something other than what it was given."""

    def __init__(self, inner: Store, damage: Callable[[bytes], bytes]) -> None:
        self.inner = inner
        self.damage = damage
        self.url = inner.url

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes) -> None:
        self.inner.write(key, self.damage(data))


def test_write_confirmed_checks_size_and_content(store: Store) -> None:
    data = os.urandom(3 * 1024 * 1024)
    assert write_confirmed(store, KEY, data) == ObjectInfo(KEY, len(data))
    assert store.read(KEY) == data
    truncated = _LyingStore(store, lambda d: d[:-1])
    with pytest.raises(StoreError, match="reads back as"):
        write_confirmed(truncated, KEY, data)  # type: ignore[arg-type]
    flipped = _LyingStore(store, lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:])
    with pytest.raises(StoreError, match="other bytes"):
        write_confirmed(flipped, KEY, data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    ["../escape.jsonl", "raw/../x", "/raw/x", "raw/.hidden", "elsewhere/x", "raw//x", "raw"],
)
def test_unsafe_object_names_are_refused(store: Store, key: str) -> None:
    with pytest.raises(UnsafePath):
        store.write(key, b"x")
    with pytest.raises(UnsafePath):
        store.stat(key)


def test_s3_objects_are_where_the_layout_says(
    moto: MotoServer, s3_store_url: str, tmp_path: Path
) -> None:
    store = open_store(load_settings(data_dir=tmp_path, store=s3_store_url, environ=os.environ))
    store.write(KEY, b"line\n")
    bucket = s3_store_url.removeprefix("s3://").split("/")[0]
    assert moto.objects(bucket) == {f"prefix/{KEY}": b"line\n"}


def test_s3_store_that_cannot_be_reached_raises_store_error(tmp_path: Path) -> None:
    from gravix.tools.serverproc import free_port

    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    store = open_store(load_settings(data_dir=tmp_path, store="s3://nobody/x", environ=env))
    with pytest.raises(StoreError) as info:
        store.write(KEY, b"x")
    assert info.value.hint and "reachable" in info.value.hint
    with pytest.raises(StoreError):
        store.create("state/leases/x.json", b"x")


def test_local_store_keeps_files_under_the_data_root_durably(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = LocalStore(root)
    ops: list[tuple[str, str]] = []
    previous = durable.set_hook(lambda op, path: ops.append((op, path)))
    try:
        store.write(KEY, b"x\n")
    finally:
        durable.set_hook(previous)
    path = layout.object_path(root, KEY)
    assert path.read_bytes() == b"x\n"
    names = [op for op, _ in ops]
    # the file is fsynced before its rename, and its directory after
    assert names.index("fsync") < names.index("replace") < len(names) - 1
    assert names[-1] == "fsync_dir"


def test_local_store_refuses_a_symlink_planted_in_it(tmp_path: Path) -> None:
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "request_facts").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(UnsafePath):
        store.write("raw/request_facts/x.jsonl", b"x")
    with pytest.raises(UnsafePath):
        store.list("raw/")
    assert list(outside.iterdir()) == []


def test_commands_that_cannot_use_a_store_refuse_it() -> None:
    env = {"GRAVIX_STORE": "s3://bucket/prefix"}
    with pytest.raises(ConfigError) as info:
        load_settings(local_only="gravix rollup", environ=env)
    assert info.value.exit_code == 2
    assert "gravix rollup" in info.value.message and info.value.hint
    assert load_settings(local_only="gravix rollup", environ={}).store is None
