"""The store's lease (one rollup at a time per store, DESIGN §11) against moto's S3 server:
the conditional create lets exactly one of two runners take over an expired lease, a
holder that stalled past its expiry finds it lost, a released lease is free at once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gravix.errors import LockHeld
from gravix.settings import load_settings
from gravix.storage import layout, lease
from gravix.storage.lease import LeaseLost, LeaseState
from gravix.storage.store import Store, open_store
from s3util import MotoServer


def _store(url: str, tmp_path: Path) -> Store:
    return open_store(load_settings(data_dir=tmp_path, store=url))


def _leases(moto: MotoServer, url: str) -> dict[str, dict[str, Any]]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    found = moto.objects(bucket, f"{prefix}/state/leases/rollup/")
    # (pyarrow leaves an empty "directory" object where it deleted the last object)
    return {k.rsplit("/", 1)[-1]: json.loads(v) for k, v in found.items() if not k.endswith("/")}


def _dead_holder(store: Store) -> None:
    """Generation 1 as a runner that was killed leaves it: not released, expired."""
    then = time.time() - 120
    state = LeaseState(1, "elsewhere", 99999, "node-9", "gravix rollup", then, then + 60)
    assert store.create(layout.lease_key(lease.ROLLUP_LEASE, 1), state.encode())


class _Together:
    """A store whose conditional create waits until both runners are about to create."""

    def __init__(self, inner: Store, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, key: str, data: bytes) -> bool:
        self.barrier.wait(timeout=30)
        return self.inner.create(key, data)


def test_two_runners_that_both_see_an_expired_lease_cannot_both_take_it(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    store = _store(s3_store_url, tmp_path)
    _dead_holder(store)
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def runner(name: str) -> None:
        mine = _Together(_store(s3_store_url, tmp_path), barrier)
        try:
            outcome[name] = lease.acquire(mine, purpose=name, node=name, seconds=30)  # type: ignore[arg-type]
        except LockHeld as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=runner, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [n for n, v in outcome.items() if isinstance(v, lease.Lease)]
    lost = [v for v in outcome.values() if isinstance(v, LockHeld)]
    assert len(won) == 1 and len(lost) == 1
    assert f"node {won[0]}" in lost[0].message and "until" in lost[0].message
    held = outcome[won[0]]
    assert isinstance(held, lease.Lease)
    assert held.took_over is not None and held.took_over.host == "elsewhere"
    leases = _leases(moto, s3_store_url)
    # generation 2 is the winner's; the dead runner's generation 1 is gone
    assert list(leases) == ["lease-000000000002.json"]
    assert leases["lease-000000000002.json"]["purpose"] == won[0]
    held.release()
    assert _leases(moto, s3_store_url)["lease-000000000002.json"]["released"] is True


def test_a_live_lease_is_refused_with_its_holder_and_a_released_one_is_free_at_once(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    store = _store(s3_store_url, tmp_path)
    held = lease.acquire(store, purpose="gravix rollup", node="a", seconds=1.5)
    time.sleep(2.5)  # longer than the lease: the renewals keep it
    with pytest.raises(LockHeld, match=r"node a, gravix rollup.*until"):
        lease.acquire(store, purpose="gravix cleanup", node="b", seconds=30)
    held.release()
    again = lease.acquire(store, purpose="gravix cleanup", node="b", seconds=30)
    assert again.took_over is None  # released, not taken over
    again.release()
    assert list(_leases(moto, s3_store_url)) == ["lease-000000000002.json"]


def test_a_holder_that_stalled_past_its_expiry_finds_the_lease_lost(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    store = _store(s3_store_url, tmp_path)
    frozen = time.time()
    # Its clock stands still: every renewal writes the same expiry, as a stalled process
    # whose renewals stop would leave it.
    stalled = lease.acquire(store, purpose="stalled", node="a", seconds=1.0, clock=lambda: frozen)
    deadline = time.monotonic() + 10
    while True:
        try:
            taker = lease.acquire(store, purpose="taker", node="b", seconds=30)
            break
        except LockHeld:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with pytest.raises(LeaseLost):
        stalled.renew()
    with pytest.raises(LeaseLost, match="took the lease over"):
        stalled.check()
    stalled.release()  # writes nothing: the lease is not its own any more
    leases = _leases(moto, s3_store_url)
    assert leases["lease-000000000002.json"]["purpose"] == "taker"
    assert leases["lease-000000000002.json"]["released"] is False
    taker.release()


def test_a_lease_with_fields_this_version_does_not_know_still_holds(
    s3_store_url: str, tmp_path: Path
) -> None:
    store = _store(s3_store_url, tmp_path)
    now = time.time()
    doc = {
        "generation": 1,
        "host": "h",
        "pid": 7,
        "node": "n",
        "purpose": "gravix rollup",
        "acquired_at": now,
        "expires_at": now + 60,
        "released": False,
        "added_later": [1],
    }
    assert store.create(layout.lease_key(lease.ROLLUP_LEASE, 1), json.dumps(doc).encode())
    with pytest.raises(LockHeld, match="pid 7 on h"):
        lease.acquire(store, purpose="gravix rollup", node="b", seconds=30)
