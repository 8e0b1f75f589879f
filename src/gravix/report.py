"""Reports as JSON: one renderer for every report dataclass (the ``--json`` documents).

A report is a dataclass. Its fields become keys in their declared order; a field with
``metadata={"json": "name"}`` is renamed, one with ``metadata={"json": False}`` is left
out. Names in the class's ``JSON_EXTRA`` (properties, or methods without arguments) are
added after the fields. Paths become strings, times RFC 3339 in UTC, sets and tuples
lists, and a dataclass that sets ``JSON_AS_STR = True`` (an hour, say) its ``str()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

__all__ = ["to_json"]


def to_json(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if getattr(value, "JSON_AS_STR", False):
            return str(value)
        return _dataclass(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def _dataclass(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        name = field.metadata.get("json", field.name)
        if name is False:
            continue
        out[name] = to_json(getattr(value, field.name))
    for name in getattr(type(value), "JSON_EXTRA", ()):
        extra = getattr(value, name)
        out[name] = to_json(extra() if callable(extra) else extra)
    return out
