"""A load client for the crash loop: sends NDJSON batches, retries a batch (same event ids)
until it is acknowledged, and appends acknowledged ids to a file as soon as it knows.

    python loadclient.py URL KEY ACK_FILE STOP_FILE BATCH_SIZE [late]

With ``late``, the batches made in every third second carry facts from two hours ago as
well, as a service catching up does: the buffer files they land in span two event hours and
are split at rotation, while the others are renamed into raw whole.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from relutil import now_stamp, valid_fact


def make(n: int, batch_size: int, late: bool) -> list[dict[str, object]]:
    facts = [valid_fact(n + i) for i in range(batch_size)]
    if late and int(time.time()) % 3 == 0:
        for fact in facts[::2]:
            fact["event_time"] = now_stamp(-2 * 3600 - 60)
    return facts


def main() -> None:
    url, key, ack_path, stop_path, size = sys.argv[1:6]
    late = sys.argv[6:7] == ["late"]
    batch_size = int(size)
    acks = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stats = {"sent": 0, "acked_batches": 0, "errors": 0, "statuses": {}}
    n = 0
    with httpx.Client(
        base_url=url, headers={"X-API-Key": key, "Content-Type": "application/x-ndjson"}
    ) as client:
        facts = make(n, batch_size, late)
        body = b"\n".join(json.dumps(f).encode() for f in facts)
        while not os.path.exists(stop_path):
            stats["sent"] += 1
            try:
                response = client.post("/api/v1/facts/batch", content=body, timeout=10)
            except httpx.TransportError:
                stats["errors"] += 1
                time.sleep(0.02)
                continue
            code = str(response.status_code)
            stats["statuses"][code] = stats["statuses"].get(code, 0) + 1
            if response.status_code == 200:
                assert response.json()["accepted"] == batch_size, response.text
                os.write(acks, "".join(f["event_id"] + "\n" for f in facts).encode())
                stats["acked_batches"] += 1
                n += batch_size
                facts = make(n, batch_size, late)
                body = b"\n".join(json.dumps(f).encode() for f in facts)
            else:
                time.sleep(0.02)
    os.close(acks)
    Path(ack_path + ".stats").write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
