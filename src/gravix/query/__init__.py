"""SQL over the Gravix tables, incident presets with merged percentiles, and Trino DDL.

``run_sql`` answers SQL through polars' engine over lazy scans of the warehouse
(``request_metrics_minute``, ``service_events_daily``) and raw (``request_facts``,
``service_events``) layouts; table names may be bare, ``raw.<t>`` or ``gravix.raw.<t>``.

The names below are loaded on first use: a reader of the tables alone (the dashboard reads
``gravix.query.merge`` and ``gravix.query.tables``) does not load the SQL parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# loaded now: the function shares its module's name, which a later import of the module
# would otherwise bind here (and it needs no SQL)
from gravix.query.apdex import apdex

if TYPE_CHECKING:
    from gravix.query.answer import SqlAnswer, answer_sql, prepare_sql, run_sql, show_tables
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
    from gravix.query.trino import store_location, trino_ddl, trino_store_ddl

_HOMES = {
    "answer": ("SqlAnswer", "answer_sql", "prepare_sql", "run_sql", "show_tables"),
    "deploy": ("DeployComparison", "DeployEvent", "deploy_compare", "find_deploy"),
    "output": ("FORMATS", "format_result", "write_result"),
    "presets": (
        "PRESETS",
        "PresetResult",
        "endpoint_drilldown",
        "run_preset",
        "service_health",
        "top_endpoints",
    ),
    "tables": ("TABLES", "scan_table", "table_names"),
    "times": ("resolve_window",),
    "trino": ("store_location", "trino_ddl", "trino_store_ddl"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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
    "trino_store_ddl",
    "write_result",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
