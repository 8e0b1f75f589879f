"""The typer application, the options every command shares, and the error boundary."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from gravix import __version__, units
from gravix.errors import ConfigError, GravixError

try:
    from gravix.cli.coerce import Group
except ImportError:  # a typer without the helpers it reuses: typer's conversion throughout
    from typer.core import TyperGroup as Group  # type: ignore[assignment]

app = typer.Typer(
    name="gravix",
    cls=Group,
    help="Gravix: a self-hosted health monitor for HTTP services.\n\n"
    "Services POST one JSON fact per request; Gravix keeps them durably, rolls them up into "
    "per-minute Parquet metrics and answers SQL and incident questions over them.\n\n"
    "Example: gravix demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: typer's rich help imports rich.markdown and markdown_it (~0.2 s), which
    # would put `gravix --help` over its 0.2 s budget.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gravix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Gravix: a self-hosted health monitor for HTTP services."""


def _unit(parse: Callable[[str, str], Any]) -> Callable[[Any], Any]:
    """A typer ``parser`` from a :mod:`gravix.units` parser, so every time, duration and
    size flag takes the same spellings; a bad value is a usage error naming the flag."""

    def parser(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse(value, "")
        except ConfigError as exc:
            raise typer.BadParameter(f"{exc.message.strip()}; {exc.hint}") from None

    return parser


TIME = _unit(lambda value, flag: units.parse_time(value, flag))
DURATION = _unit(units.parse_duration)
SIZE = _unit(units.parse_size)
UNIT_PARSERS = {"time": TIME, "duration": DURATION, "size": SIZE}


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data root (env GRAVIX_DATA_DIR; default ./data).", show_default=False
    ),
]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Object store for raw/, warehouse/ and quarantine/: s3://BUCKET/PREFIX, with "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (env "
        "GRAVIX_STORE; default the data root).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def fail(error: GravixError, *, json: bool = False) -> NoReturn:
    """Print ``Error: …`` and the hint to stderr (with ``json``, also the error object on
    stdout, DESIGN §2) and exit with the error's code."""
    from gravix.cli.render import err_console, print_json

    if json:
        print_json({"error": error.message, "hint": error.hint, "code": error.exit_code})
    err_console().print(f"[bold red]Error:[/] {error.message}", highlight=False, markup=True)
    if error.hint:
        err_console().print(f"[dim]Hint:[/] {error.hint}", highlight=False)
    raise typer.Exit(error.exit_code)


def _os_error(exc: OSError) -> GravixError:
    """The last net for a file-system error no library call named: one line, no traceback."""
    from gravix.errors import StorageError
    from gravix.storage.guard import permission_error

    where = exc.filename if exc.filename is not None else ""
    if isinstance(exc, PermissionError) and where:
        return permission_error(Path(where).parent, where)
    return StorageError(
        f"{exc.strerror or exc}: {where}" if where else f"{exc.strerror or exc}",
        hint="check the path, its permissions and free space, then run the command again",
        errno=exc.errno,
    )


@contextmanager
def boundary(*, json: bool = False) -> Iterator[None]:
    """The one place where library errors become messages and exit codes."""
    try:
        yield
    except GravixError as error:
        fail(error, json=json)
    except OSError as exc:
        fail(_os_error(exc), json=json)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise typer.Exit(130) from None
