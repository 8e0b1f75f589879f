"""`gravix demo --serve`: the demo ends by naming the dashboard on its data, then serves it
until Ctrl-C, and that page's data shows the demo's incident."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from gravix.tools.serverproc import free_port


def test_demo_serve_keeps_the_dashboard_on_the_demo_data_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_") and k != "API_KEY"}
    env["GRAVIX_DASHBOARD_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gravix", "demo", "--data-dir", str(tmp_path / "demo"), "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
        reader.start()
        url = ""
        deadline = time.monotonic() + 200
        while not url and time.monotonic() < deadline:
            assert proc.poll() is None, f"the demo ended before serving: {lines}"
            found = re.search(r"Dashboard on (http://\S+)", "".join(lines))
            url = found.group(1) if found else ""
            time.sleep(0.2)
        assert url.startswith(f"http://127.0.0.1:{port}/?service=frontend&from=")
        query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
        rows = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/endpoints",
            params={"from": query["from"], "to": query["to"]},
            timeout=60,
        ).json()["rows"]
        top = rows[0]
        assert (top["service"], top["method"], top["path_template"]) == (
            "frontend",
            "POST",
            "/checkout",
        )
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "chart-errors" in page.text
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert f"gravix dashboard --data-dir {tmp_path / 'demo'}" in stdout.replace("\n", "")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
