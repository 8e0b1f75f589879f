"""`gravix ingest-server` flags reach :func:`gravix.ingest.process.serve` (mocked here; the server
itself is exercised for real in the other test_server_* modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.ingest import process as server

ENV = {"API_KEY": "", "GRAVIX_API_KEYS": "", "GRAVIX_DATA_DIR": "", "GRAVIX_PORT": "",
       "GRAVIX_ROTATE_SECONDS": "", "GRAVIX_ROTATE_BYTES": "", "GRAVIX_RATE_LIMIT": ""}  # fmt: skip


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_serve(**kwargs: Any) -> int:
        seen.append(kwargs)
        return 0

    monkeypatch.setattr(server, "serve", fake_serve)
    return seen


def test_flags_reach_serve(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["ingest-server", "--data-dir", str(tmp_path), "--api-key", "a", "--api-key", "b",
         "--port", "9999", "--host", "127.0.0.2", "--workers", "3", "--log-format", "json",
         "--rotate-seconds", "5", "--rotate-bytes", "1MiB", "--rate-limit", "50"],
        env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = calls
    settings = call["settings"]
    assert settings.api_keys == ("a", "b")
    assert (settings.host, settings.port) == ("127.0.0.2", 9999)
    assert settings.data_dir == tmp_path
    assert (settings.rotate_seconds, settings.rotate_bytes) == (5.0, 2**20)
    assert settings.rate_limit == 50.0
    assert (call["workers"], call["log_format"], call["insecure_no_auth"]) == (3, "json", False)


def test_environment_supplies_keys_and_port(calls: list[dict[str, Any]]) -> None:
    env = {**ENV, "GRAVIX_API_KEYS": "k1, k2", "GRAVIX_PORT": "9100"}
    result = CliRunner().invoke(app, ["ingest-server", "--insecure-no-auth"], env=env)
    assert result.exit_code == 0, result.output
    settings = calls[0]["settings"]
    assert settings.api_keys == ("k1", "k2") and settings.port == 9100
    assert calls[0]["insecure_no_auth"] is True


def test_zero_workers_is_a_usage_error(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["ingest-server", "--workers", "0"], env=ENV)
    assert result.exit_code == 2
    assert calls == []


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["ingest-server", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "--insecure-no-auth" in result.output
