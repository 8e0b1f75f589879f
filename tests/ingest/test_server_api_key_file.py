"""Keys stay off the command line (issue 16, item 9; DESIGN §2): `--api-key-file` and
`GRAVIX_API_KEY_FILE` give the keys, one a line with blank lines and `#` comments ignored;
a missing, unreadable or empty file is a configuration error naming the path; the help
shows the safe ways first."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.errors import ConfigError
from gravix.settings import load_settings
from serverutil import fact, running_server

KEYS = "# production keys\n\n  alpha-key-1  \n#beta\nbeta-key-2\n"


def test_keys_come_from_the_file_without_blank_lines_or_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEYS)
    expected = ("alpha-key-1", "beta-key-2")
    assert load_settings(api_key_file=path, environ={}).api_keys == expected
    by_env = load_settings(environ={"GRAVIX_API_KEY_FILE": str(path)})
    assert by_env.api_keys == expected
    both = load_settings(environ={"GRAVIX_API_KEY_FILE": str(path), "API_KEY": "env-key"})
    assert both.api_keys == ("env-key", *expected)
    # flags replace the environment's keys, as --api-key does
    flagged = load_settings(
        api_keys=["flag-key"], api_key_file=path, environ={"API_KEY": "env-key"}
    )
    assert flagged.api_keys == ("flag-key", *expected)


@pytest.mark.parametrize("case", ["missing", "empty", "comments only", "directory", "unreadable"])
def test_a_key_file_that_gives_no_key_is_a_config_error_naming_it(
    tmp_path: Path, case: str
) -> None:
    path = tmp_path / "keys"
    if case == "empty":
        path.write_text("")
    elif case == "comments only":
        path.write_text("# none yet\n\n")
    elif case == "directory":
        path.mkdir()
    elif case == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text("k\n")
        path.chmod(0)
    for kwargs in (
        {"api_key_file": path, "environ": {}},
        {"environ": {"GRAVIX_API_KEY_FILE": str(path)}},
    ):
        with pytest.raises(ConfigError) as info:
            load_settings(**kwargs)  # type: ignore[arg-type]
        assert str(path) in info.value.message


def test_a_server_started_with_a_key_file_accepts_its_keys_and_keeps_them_out_of_ps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys"
    path.write_text(KEYS)
    with running_server(tmp_path / "data", "--api-key-file", str(path), api_key=None) as srv:
        cmdline = " ".join(psutil.Process(srv.proc.pid).cmdline())
        url = f"{srv.url}/api/v1/facts"
        ok = httpx.post(url, json=fact(), headers={"X-API-Key": "beta-key-2"})
        denied = httpx.post(url, json=fact(), headers={"X-API-Key": "# production keys"})
    assert (ok.status_code, denied.status_code) == (201, 401)
    assert "alpha-key-1" not in cmdline and "beta-key-2" not in cmdline


def test_ingest_server_help_shows_the_safe_ways_to_pass_keys_first() -> None:
    result = CliRunner().invoke(
        app, ["ingest-server", "--help"], env={"GRAVIX_CONSOLE_WIDTH": "200"}
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "--api-key-file" in text
    example = text.index("Example:")
    assert "--api-key-file" in text[example : example + 120]
    assert '--api-key "$API_KEY"' not in text
