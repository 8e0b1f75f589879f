"""`gravix cleanup` on the command line: flags and settings reach the library, the plan is
printed and a dry run says that nothing changed, --json counts per table, exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.ops import retention

ENV = {
    "GRAVIX_DATA_DIR": "",
    "GRAVIX_RETENTION_DAYS": "",
    "GRAVIX_WAREHOUSE_RETENTION_DAYS": "",
    "GRAVIX_CONSOLE_WIDTH": "200",
    "NO_COLOR": "1",
}


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["cleanup", *args], env={**ENV, **(env or {})})


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_days(root: Path, ages: list[int]) -> None:
    today = datetime.now(UTC).date()
    for age in ages:
        day = today - timedelta(days=age)
        hour = root / "raw" / "request_facts" / f"event_day={day}" / "hour=10"
        hour.mkdir(parents=True)
        (hour / "a.jsonl").write_bytes(b"x" * 10)
        (hour / "b.jsonl").write_bytes(b"y" * 5)
        part = root / "warehouse" / "request_metrics_minute" / f"event_day={day}"
        part.mkdir(parents=True)
        (part / "part-10.parquet").write_bytes(b"z" * 100)


def test_flags_and_environment_reach_the_library(
    monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    calls: list[dict[str, Any]] = []
    real = retention.run_cleanup

    def spy(**kwargs: Any) -> retention.CleanupReport:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(retention, "run_cleanup", spy)
    assert (
        invoke("--data-dir", str(data_root), "--days", "7", "--warehouse-days", "90").exit_code == 0
    )
    env = {"GRAVIX_DATA_DIR": str(data_root), "GRAVIX_RETENTION_DAYS": "12"}
    assert invoke("--dry-run", env=env).exit_code == 0
    # Without a warehouse retention of its own, the warehouse keeps what raw keeps.
    assert invoke("--days", "60", env=env).exit_code == 0
    assert [(c["root"], c["days"], c["warehouse_days"], c["dry_run"]) for c in calls] == [
        (data_root, 7, 90, False),
        (data_root, 12, 12, True),
        (data_root, 60, 60, False),
    ]


def test_dry_run_prints_the_plan_and_ends_with_no_files_changed(data_root: Path) -> None:
    make_days(data_root, [0, 5, 31, 40])
    before = tree(data_root)

    result = invoke("--data-dir", str(data_root), "--dry-run")

    assert result.exit_code == 0, result.output
    assert tree(data_root) == before
    assert result.stdout.rstrip().splitlines()[-1] == "No files were changed."
    assert (
        "raw.request_facts" in result.stdout and "warehouse.request_metrics_minute" in result.stdout
    )
    assert "Would delete 4 partitions, 6 files" in result.stdout


def test_json_reports_partitions_files_and_bytes_per_table(data_root: Path) -> None:
    make_days(data_root, [0, 29, 30, 31, 32, 45])

    result = invoke(
        "--data-dir", str(data_root), "--days", "30", "--warehouse-days", "40", "--json"
    )

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is False
    assert doc["tables"]["raw.request_facts"]["partitions"] == 3  # ages 31, 32, 45
    assert doc["tables"]["raw.request_facts"]["files"] == 6
    assert doc["tables"]["raw.request_facts"]["bytes"] == 45
    assert doc["tables"]["warehouse.request_metrics_minute"] == {
        "partitions": 1,
        "files": 1,
        "bytes": 100,
        "days": [str(datetime.now(UTC).date() - timedelta(days=45))],
    }
    assert doc["deleted_files"] == 7
    remaining = sorted(p.name for p in (data_root / "raw" / "request_facts").iterdir())
    assert len(remaining) == 3


@pytest.mark.parametrize(
    "args",
    [["--days", "0"], ["--days", "30", "--warehouse-days", "7"], ["--days", "soon"]],
)
def test_bad_retention_is_a_usage_error_and_changes_nothing(
    data_root: Path, args: list[str]
) -> None:
    make_days(data_root, [40])
    before = tree(data_root)
    result = invoke("--data-dir", str(data_root), *args)
    assert result.exit_code == 2
    assert tree(data_root) == before


def test_a_missing_data_root_is_reported_and_not_created(tmp_path: Path) -> None:
    result = invoke("--data-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_help_has_an_example() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Example: gravix cleanup" in result.stdout


def test_progress_is_shown_on_a_terminal(data_root: Path) -> None:
    from test_recover_cli import run_on_terminal

    make_days(data_root, list(range(31, 61)))

    code, shown = run_on_terminal("cleanup", "--data-dir", str(data_root))

    assert code == 0
    # the bar is drawn when the work starts (later frames depend on the clock)
    assert "\x1b[?25l" in shown and "deleting partitions" in shown
    assert "Deleted 60 partitions: 90 files" in shown
