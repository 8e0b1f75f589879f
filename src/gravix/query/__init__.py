"""SQL over the Gravix tables, incident presets with merged percentiles, and Trino DDL.

``run_sql`` answers SQL through polars' engine over lazy scans of the warehouse
(``request_metrics_minute``, ``service_events_daily``) and raw (``request_facts``,
``service_events``) layouts; table names may be bare, ``raw.<t>`` or ``gravix.raw.<t>``.
"""

from __future__ import annotations

from gravix.query.answer import SqlAnswer, answer_sql, prepare_sql, run_sql, show_tables
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
from gravix.query.tables import TABLES, scan_table, table_names
from gravix.query.times import resolve_window
from gravix.query.trino import store_location, trino_ddl, trino_ddl_for, trino_store_ddl

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
    "prepare_sql",
    "resolve_window",
    "run_preset",
    "run_sql",
    "scan_table",
    "service_health",
    "show_tables",
    "store_location",
    "table_names",
    "top_endpoints",
    "trino_ddl",
    "trino_ddl_for",
    "trino_store_ddl",
    "write_result",
]
