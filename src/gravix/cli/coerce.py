"""Option values converted without pydantic, so that a command starts in less time.

typer converts every option value through a pydantic ``TypeAdapter`` that it builds on the
option's first use; importing pydantic and building the adapters costs about 60 ms, a
quarter of a short ``gravix query``'s whole run. The values Gravix's options take (text,
whole and decimal numbers, a path, a choice, a value read by one of our own parsers) convert
with typer's own helpers or a line of Python, to exactly what the adapter returns. Anything
else (an odd spelling, a bad value, a type not listed here) goes on to typer's conversion
unchanged, so every result and every error message stay typer's.

``Group`` is the application's click group: it gives each option of each command its quick
converter when the group is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from typer._coercion import RuntimeParam, build_runtime_param
from typer._param_types import coerce_cli_choice, coerce_cli_path
from typer.core import TyperGroup
from typer.models import ParameterInfo

# The spellings Python's int() and float() read exactly as pydantic does; anything else
# (spaces, underscores, exponents, "inf") is left to typer.
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")


class _Miss(Exception):
    """The quick conversion does not apply: typer's own conversion decides."""


Convert = Callable[[Any, Any, Any], Any]  # (value, param, ctx) -> value, or raise _Miss


@dataclass(frozen=True)
class QuickRuntimeParam(RuntimeParam):
    """A runtime parameter that tries ``convert`` first and builds typer's own (pydantic)
    conversion only for a value ``convert`` does not take."""

    convert: Convert

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.convert(value, param, ctx)
        except Exception:  # _Miss, or a bad value: typer reports it in its own words
            pass
        return build_runtime_param(param.type_descriptor)._coerce_value(value, param, ctx)


def _text(value: Any, param: Any, ctx: Any) -> Any:
    if not isinstance(value, str):
        raise _Miss
    return value


def _flag(value: Any, param: Any, ctx: Any) -> Any:
    if not isinstance(value, bool):
        raise _Miss
    return value


def _whole(info: ParameterInfo) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and _INT.fullmatch(value):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise _Miss
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            raise _Miss
        return number

    return convert


def _decimal(value: Any, param: Any, ctx: Any) -> Any:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Miss


def _parsed(info: ParameterInfo) -> Convert:
    parser = info.parser
    assert parser is not None
    return lambda value, param, ctx: parser(value)


def _choice(annotation: type[Enum], info: ParameterInfo) -> Convert:
    choices = list(annotation)

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        return coerce_cli_choice(
            value, choices=choices, case_sensitive=info.case_sensitive, ctx=ctx
        )

    return convert


def _path(info: ParameterInfo) -> Convert:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and value:
            value = Path(value)
        if not isinstance(value, Path):
            raise _Miss
        return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)

    return convert


def quick_converter(annotation: Any, info: ParameterInfo) -> Convert | None:
    """The quick conversion for an option of this type, or None to leave it to typer."""
    if info.parser is not None:
        return _parsed(info)
    if info.clamp:
        return None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _choice(annotation, info)
    if annotation is bool:
        return _flag
    if annotation is str:
        return _text
    if annotation is int:
        return _whole(info)
    if annotation is float and info.min is None and info.max is None:
        return _decimal
    if annotation is Path and info.path_type is None:
        return _path(info)
    return None


def quicken(param: Any) -> None:
    """Give a single-valued option or argument its quick converter, if it has one."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or descriptor.file_annotation is not None or param.multiple:
        return
    if getattr(param, "_runtime_param", False) is not None or param.nargs != 1:
        return  # converted already, or not a typer parameter as this module knows them
    convert = quick_converter(descriptor.annotation, descriptor.parameter_info)
    if convert is not None:
        param._runtime_param = QuickRuntimeParam(
            parameter_info=descriptor.parameter_info,
            annotation=descriptor.annotation,
            convert=convert,
        )


class Group(TyperGroup):
    """The ``gravix`` group: its options and its commands' options convert quickly, the
    ``--help`` flags (made on first use) included."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in [self, *self.commands.values()]:
            for param in command.params:
                quicken(param)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        quicken(option)
        return option

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            quicken(command.get_help_option(ctx))
        return name, command, rest
