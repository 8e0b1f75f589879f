"""SQL over the Gravix tables, incident presets with merged percentiles, and Trino DDL.

``run_sql`` answers SQL through polars' engine over lazy scans of the warehouse
(``request_metrics_minute``, ``request_metrics_hour``, ``service_events_daily``) and raw
(``request_facts``, ``service_events``) layouts; table names may be bare, ``raw.<t>`` or
``gravix.raw.<t>``.

The SQL entry points (:mod:`gravix.query.answer`) need the SQL parser, which costs about
as much to import as polars itself; they are loaded when first asked for, so that a preset
or the DDL starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gravix.query.apdex import apdex
from gravix.query.deploy import DeployComparison, DeployEvent, deploy_compare, find_deploy
from gravix.query.output import FORMATS, format_result, write_result
from gravix.query.presets import (
    PRESETS,
    PresetResult,
    endpoint_drilldown,
    run_preset,
    service_health,
    top_endpoints,
)
from gravix.query.source import open_root
from gravix.query.tables import TABLES, scan_table, table_names
from gravix.query.times import resolve_window
from gravix.query.trino import trino_ddl, trino_ddl_for, trino_store_ddl

if TYPE_CHECKING:
    from gravix.query.answer import SqlAnswer, answer_sql, prepare_sql, run_sql, show_tables

_SQL_ENTRY_POINTS = frozenset({"SqlAnswer", "answer_sql", "prepare_sql", "run_sql", "show_tables"})


def __getattr__(name: str) -> Any:
    if name in _SQL_ENTRY_POINTS:
        from gravix.query import answer

        return getattr(answer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMATS",
    "PRESETS",
    "TABLES",
    "DeployComparison",
    "DeployEvent",
    "PresetResult",
    "SqlAnswer",
    "answer_sql",
    "apdex",
    "deploy_compare",
    "endpoint_drilldown",
    "find_deploy",
    "format_result",
    "open_root",
    "prepare_sql",
    "resolve_window",
    "run_preset",
    "run_sql",
    "scan_table",
    "service_health",
    "show_tables",
    "table_names",
    "top_endpoints",
    "trino_ddl",
    "trino_ddl_for",
    "trino_store_ddl",
    "write_result",
]
