"""Shared fixtures: real files in tmp_path, real servers on loopback ports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Stable rich output in tests: fixed width, no colour.
os.environ.setdefault("GRAVIX_CONSOLE_WIDTH", "120")
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root
