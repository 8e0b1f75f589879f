"""Ingest nodes sharing one store (DESIGN §11), as real processes on loopback: three
`gravix ingest-server --store s3://… --node-id …` with their own data roots and moto's S3
server as the store; clients that retry a batch on another node when one fails.

The store's content is read back with boto3, independently of Gravix's store code.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from gravix.tools.serverproc import ServerProcess, start_server
from s3util import MotoServer, moto_server
from serverutil import fact, stamp

KEY = "test-key"
OBJECT = re.compile(
    r"^prefix/raw/request_facts/event_day=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/"
    r"(node-\d)-(\d{20}-\d+-[0-9a-f]{8})\.jsonl$"
)


def _node(
    root: Path, moto: MotoServer, url: str, node: str, env: dict[str, str] | None = None
) -> ServerProcess:
    return start_server(
        root,
        "--store", url, "--node-id", node, "--rotate-seconds", "0.3",
        api_key=KEY,
        env={**moto.env(), **(env or {})},
        log_path=root.parent / f"{node}-{time.monotonic_ns()}.log",
    )  # fmt: skip


def _batch(rng: random.Random, size: int) -> list[dict[str, object]]:
    """Facts over three event hours, so that a sealed file becomes several objects."""
    return [
        fact(event_time=stamp(rng.choice((0, 3600, 7200)) + rng.random() * 60),
             status_code=rng.choice((200, 200, 404, 503)), latency_ms=rng.randint(1, 900) / 4)
        for _ in range(size)
    ]  # fmt: skip


class Clients:
    """Threads that send batches, each to the next node, retrying on another node until
    one answers 200; what each node acknowledged is kept."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.nodes = nodes
        self.acked: dict[int, dict[str, dict[str, object]]] = {i: {} for i in range(len(nodes))}
        self.sent: dict[str, dict[str, object]] = {}
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def send(self, batch: list[dict[str, object]], first: int) -> None:
        body = b"".join(json.dumps(d).encode() + b"\n" for d in batch)
        with self.lock:
            self.sent.update((str(d["event_id"]), d) for d in batch)
        for attempt in range(60):
            i = (first + attempt) % len(self.nodes)
            try:
                r = httpx.post(
                    f"{self.nodes[i].url}/api/v1/facts/batch",
                    content=body,
                    headers={"X-API-Key": KEY, "Content-Type": "application/x-ndjson"},
                    timeout=10,
                )
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses.append(r.status_code)
            if r.status_code == 200:
                assert r.json()["accepted"] == len(batch)
                with self.lock:
                    self.acked[i].update((str(d["event_id"]), d) for d in batch)
                return
            time.sleep(0.05)
        raise AssertionError("no node acknowledged a batch")

    def run(self, clients: int, batches: int, size: int, pause: float = 0.0) -> None:
        def client(c: int) -> None:
            rng = random.Random(c)
            for b in range(batches):
                self.send(_batch(rng, size), c + b)
                time.sleep(pause)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def all_acked(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for per_node in self.acked.values():
            out.update(per_node)
        return out


def _store_lines(moto: MotoServer, bucket: str) -> dict[str, list[dict[str, object]]]:
    """Every raw object of the store and its parsed lines, checked against its name."""
    out: dict[str, list[dict[str, object]]] = {}
    for key, data in moto.objects(bucket, "prefix/raw/").items():
        m = OBJECT.match(key)
        assert m, f"unexpected object name {key}"
        lines = [json.loads(line) for line in data.splitlines()]
        for line in lines:  # each line is in its event hour's partition
            assert str(line["event_time"])[:13] == f"{m.group(1)}T{m.group(2)}"
        out[key] = lines
    return out


def _by_node(objects: dict[str, list[dict[str, object]]]) -> dict[str, dict[str, object]]:
    ids: dict[str, dict[str, object]] = {}
    for key, lines in objects.items():
        node = OBJECT.match(key).group(3)  # type: ignore[union-attr]
        for line in lines:
            ids.setdefault(node, {})[str(line["event_id"])] = line  # type: ignore[index]
    return ids  # type: ignore[return-value]


def _files(objects: dict[str, list[dict[str, object]]], node: str) -> dict[str, set[str]]:
    """A node's buffer file ids and the objects (names) each has in the store."""
    out: dict[str, set[str]] = {}
    for key in objects:
        m = OBJECT.match(key)
        assert m
        if m.group(3) == node:
            out.setdefault(m.group(4), set()).add(key)
    return out


def _sealed(root: Path) -> list[Path]:
    return sorted((root / "buffer").rglob("*.jsonl"))


@pytest.fixture()
def bucket(moto: MotoServer) -> Iterator[str]:
    yield moto.create_bucket(f"nodes-{time.monotonic_ns()}")


def test_three_nodes_share_a_store_and_a_node_killed_mid_upload_loses_nothing(
    moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/prefix"
    roots = [tmp_path / f"node-{i}" for i in range(3)]
    # node-1 dies (SIGKILL, by the fault hook) before writing its 6th object: in the middle
    # of the upload of its second sealed file, of which some objects are already written.
    kill_plan = json.dumps([{"op": "upload", "action": "kill", "skip": 5}])
    nodes = [
        _node(roots[0], moto, url, "node-0"),
        _node(roots[1], moto, url, "node-1", env={"GRAVIX_FAULT_PLAN": kill_plan}),
        _node(roots[2], moto, url, "node-2"),
    ]
    clients = Clients(nodes)
    try:
        clients.run(clients=4, batches=30, size=20, pause=0.02)
        assert nodes[1].proc.wait(30) == -9  # killed by the fault plan mid-upload
        left = _sealed(roots[1])
        assert left, "the killed node left nothing to upload: the kill came too late"
        before = _store_lines(moto, bucket)
        killed_objects = _by_node(before).get("node-1", {})
        assert not set(clients.acked[1]) <= set(killed_objects)  # some acked events wait
        nodes[1] = _node(roots[1], moto, url, "node-1")  # restart: uploads the leftovers
        clients.run(clients=2, batches=5, size=20)
    finally:
        for node in nodes:
            with suppress(Exception):
                node.stop()
    for root in roots:
        assert _sealed(root) == []  # every sealed file confirmed by the store, then deleted
    objects = _store_lines(moto, bucket)
    # The kill came in the middle of one file's upload: a file of node-1 had some of its
    # objects in the store before the restart and the rest only after it.
    files_before = _files(before, "node-1")
    files_after = _files(objects, "node-1")
    assert any(files_before[f] < files_after[f] for f in files_before), "no file was cut"
    stored = _by_node(objects)
    for i, acked in clients.acked.items():
        mine = stored.get(f"node-{i}", {})
        missing = set(acked) - set(mine)
        assert not missing, f"node-{i}: {len(missing)} acknowledged events not in its objects"
        for event_id, doc in acked.items():
            assert mine[event_id] == doc  # exactly as acknowledged
    every = [line for lines in objects.values() for line in lines]
    assert {str(d["event_id"]) for d in every} <= set(clients.sent)
    assert set(clients.all_acked()) <= {str(d["event_id"]) for d in every}
    assert set(clients.statuses) <= {200}
    # The store's own rollup counts each event once, however many nodes stored it.
    distinct = {str(d["event_id"]) for d in every}
    rolled = _gravix(moto, ["rollup", "--data-dir", str(tmp_path / "runner"), "--store", url])
    assert (rolled["facts"], rolled["duplicates"]) == (len(distinct), len(every) - len(distinct))
    sql = "SELECT sum(request_count) AS n FROM request_metrics_minute"
    answer = _gravix(moto, ["query", sql, "--data-dir", str(tmp_path / "runner"), "--store", url])
    assert answer["rows"] == [{"n": len(distinct)}]


def _gravix(moto: MotoServer, args: list[str]) -> dict[str, object]:
    """A gravix command against the store, as its own process; its JSON document."""
    result = subprocess.run(
        [sys.executable, "-m", "gravix", *args, "--json"],
        capture_output=True, env={**moto.env(), "GRAVIX_DATA_DIR": ""}, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    document: dict[str, object] = json.loads(result.stdout)
    return document


def _metric(node: ServerProcess, name: str) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def _doctor_uploads(
    root: Path, url: str, node: ServerProcess, env: dict[str, str]
) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "gravix", "doctor", "--data-dir", str(root), "--store", url,
         "--url", node.url, "--api-key", KEY, "--json"],
        capture_output=True, env={**env, "GRAVIX_DATA_DIR": ""}, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    (check,) = [c for c in report["checks"] if c["name"] == "uploads"]
    return dict(check)


def test_a_store_outage_grows_the_backlog_without_failing_ingestion_and_drains_after(
    tmp_path: Path,
) -> None:
    """The outage is moto paused with SIGSTOP for 10 s and continued with SIGCONT: the
    store stops answering (connections hang, as with a partition or an overloaded store)
    and comes back with everything it had, as a real S3 endpoint does. Restarting moto
    instead would model a store that loses its data, which S3 does not."""
    import os

    with moto_server(tmp_path) as moto:
        bucket = moto.create_bucket("outage")
        url = f"s3://{bucket}/prefix"
        root = tmp_path / "node-0"
        node = _node(root, moto, url, "node-0")
        clients = Clients([node])
        try:
            clients.run(clients=2, batches=5, size=20)
            moto.pause()
            try:
                outage_end = time.monotonic() + 10
                rng = random.Random(9)
                while time.monotonic() < outage_end:
                    clients.send(_batch(rng, 20), 0)
                    time.sleep(0.1)
                backlog_files = _metric(node, "gravix_upload_backlog_files")
                backlog_bytes = _metric(node, "gravix_upload_backlog_bytes")
                env = {**os.environ, **moto.env()}
                doctor = _doctor_uploads(root, url, node, env)
            finally:
                moto.resume()
            assert backlog_files >= 5 and backlog_bytes > 0
            m = re.match(r"upload backlog: (\d+) sealed file", doctor["detail"])
            assert m and int(m.group(1)) > 0, doctor
            deadline = time.monotonic() + 90
            while _metric(node, "gravix_upload_backlog_files") > 0:
                assert time.monotonic() < deadline, "the backlog did not drain"
                time.sleep(0.5)
        finally:
            node.stop()
        assert set(clients.statuses) == {200}  # ingestion never failed during the outage
        stored = _by_node(_store_lines(moto, bucket))["node-0"]
        assert set(clients.acked[0]) <= set(stored)
        assert all(stored[k] == v for k, v in clients.acked[0].items())


def test_a_node_stopped_while_the_store_hangs_uploads_its_leftovers_at_the_next_start(
    tmp_path: Path,
) -> None:
    with moto_server(tmp_path) as moto:
        bucket = moto.create_bucket("leftovers")
        url = f"s3://{bucket}/prefix"
        root = tmp_path / "node-0"
        node = _node(root, moto, url, "node-0")
        clients = Clients([node])
        moto.pause()
        try:
            clients.run(clients=2, batches=10, size=10, pause=0.05)
            assert node.stop() == 0  # a clean stop, though uploads could not finish
        finally:
            moto.resume()
        left = _sealed(root)
        assert left and all(p.name.startswith("sealed") for p in left)
        node = _node(root, moto, url, "node-0")
        try:
            deadline = time.monotonic() + 60
            while _metric(node, "gravix_upload_backlog_files") > 0:
                assert time.monotonic() < deadline, "the leftovers were not uploaded"
                time.sleep(0.2)
            uploaded = _metric(node, "gravix_uploaded_files_total")
            assert uploaded == len(left)
            assert _metric(node, "gravix_upload_seconds_count") == uploaded  # the latency
            assert _metric(node, "gravix_upload_seconds_sum") > 0
            assert _metric(node, "gravix_upload_backlog_bytes") == 0
        finally:
            node.stop()
        assert _sealed(root) == []
        stored = _by_node(_store_lines(moto, bucket))["node-0"]
        assert clients.acked[0] == {k: stored[k] for k in clients.acked[0]}


def test_a_node_with_two_workers_stores_every_acknowledged_event_once(
    moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    """Each worker process has its own uploader; they share the node's buffer/ and take
    each sealed file under its lock, so every file becomes its objects once."""
    url = f"s3://{bucket}/prefix"
    root = tmp_path / "node-0"
    node = start_server(
        root, "--store", url, "--node-id", "node-0", "--rotate-seconds", "0.3", "--workers", "2",
        api_key=KEY, env=moto.env(), log_path=tmp_path / "node-0.log",
    )  # fmt: skip
    clients = Clients([node])
    try:
        clients.run(clients=4, batches=10, size=20)
    finally:
        assert node.stop() == 0
    assert _sealed(root) == []
    objects = _store_lines(moto, bucket)
    every = [str(line["event_id"]) for lines in objects.values() for line in lines]
    assert sorted(every) == sorted(clients.acked[0])  # each acknowledged event in one object
    stored = _by_node(objects)["node-0"]
    assert all(stored[k] == v for k, v in clients.acked[0].items())
