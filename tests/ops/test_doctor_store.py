"""`gravix doctor --store` reads the rollup state from the store (DESIGN §11): hours whose
raw objects were never rolled up fail the rollup check, by the store's manifests, until
`gravix rollup --store` builds them; a lease left by a killed runner is reported."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

from gravix import schema
from gravix.ops.doctor import FAIL, OK, WARN, run_doctor
from gravix.settings import load_settings
from gravix.storage import layout, lease
from gravix.storage.lease import LeaseState
from gravix.storage.store import open_store
from rollup_facts import DAY1, generate
from s3util import MotoServer
from store_facts import put_facts, store_rollup

HOURS = [layout.Hour(DAY1, 9), layout.Hour(DAY1, 10)]


def _checks(url: str, root: Path) -> dict[str, tuple[str, str]]:
    settings = load_settings(data_dir=root, store=url, url="http://127.0.0.1:9")
    report = run_doctor(settings=settings, now=datetime.now(UTC), only=("rollup", "lease"))
    return {c.name: (c.status, c.detail) for c in report.checks}


def test_rollup_behind_and_a_dead_runners_lease_are_read_from_the_store(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    url, root = s3_store_url, tmp_path / "node"
    root.mkdir()
    put_facts(moto, url, tmp_path / "local", generate(random.Random(2), HOURS, 50),
              schema.REQUEST_FACTS)  # fmt: skip
    checks = _checks(url, root)
    status, detail = checks["rollup"]
    assert status == FAIL and "2 hour(s)" in detail and str(HOURS[0]) in detail
    assert checks["lease"][0] == OK
    then = time.time() - 300
    dead = LeaseState(1, "gone-host", 4242, "runner-9", "gravix rollup", then, then + 60)
    store = open_store(load_settings(data_dir=root, store=url))
    assert store.create(layout.lease_key(lease.ROLLUP_LEASE, 1), dead.encode())
    status, detail = _checks(url, root)["lease"]
    assert status == WARN and "pid 4242 on gone-host" in detail
    store_rollup(url, tmp_path / "runner")
    checks = _checks(url, root)
    assert checks["rollup"] == (OK, f"every raw hour in {url} is rolled up")
    assert checks["lease"][0] == OK
