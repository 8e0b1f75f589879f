"""Browser set-up for the dashboard tests: pytest-playwright drives the distribution's
Chromium (playwright's own browser download does not work on these machines).

Without Chromium the browser tests skip with the command that installs it, unless
GRAVIX_REQUIRE_BROWSER=1 (CI sets it), where a missing browser fails the run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def chromium_or_skip() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None and shutil.which("chromium"):
        found = Path(str(shutil.which("chromium")))
    if found is not None:
        return found
    message = "headless Chromium not found at /usr/bin/chromium: apt-get install -y chromium"
    if os.environ.get("GRAVIX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (GRAVIX_REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": str(chromium_or_skip()),
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1440, "height": 1000}}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of each state the browser tests reach (git ignores the directory)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def base_url() -> None:
    """Tests give full URLs (each server has its own port); this also replaces the
    plugin's own fixture, which pytest deprecates (and warnings fail the run)."""
    return None


# pytest-playwright keeps its sync API's event loop running for the whole session; every
# later test that calls asyncio.run() would then fail. Module scope stops it after the
# browser tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    chromium_or_skip()
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str | None) -> BrowserType:
    browser_type: BrowserType = getattr(playwright, browser_name or "chromium")
    return browser_type


@pytest.fixture(scope="module")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()
