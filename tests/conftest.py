"""Shared fixtures: real files in tmp_path, real servers on loopback ports."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3util import MotoServer, moto_server

# Stable rich output in tests: fixed width, no colour.
os.environ.setdefault("GRAVIX_CONSOLE_WIDTH", "120")
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server, one for the session, on a free loopback port."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture()
def s3_store_url(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; the AWS variables point at it. Yields the
    ``--store`` URL."""
    bucket = moto.create_bucket(f"gravix-{secrets.token_hex(6)}")
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{bucket}/prefix"
