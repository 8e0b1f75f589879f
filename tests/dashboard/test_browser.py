"""The page in a real headless Chromium, on the demo's traffic (a deploy of ``frontend``,
then an error spike and a latency rise on ``POST /checkout``): every panel draws with no
JavaScript error, and filters, drill-down, compare, zoom, the URL, the login form and the
empty states work. Each state is saved as a screenshot under ``artifacts/``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Page, Route

from dashboard_support import DEMO_METHOD, DEMO_PATH, DEMO_SERVICE, demo_like
from gravix.dashboard import running
from gravix.settings import load_settings

KEY = "browser-test-key-0123456789"
CHARTS = ("errors", "counts", "latency", "requests", "heatmap", "apdex")
LINE_CHARTS = ("errors", "latency", "requests", "apdex")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("browser") / "data"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return {"root": root, **demo_like(root, end=now)}


@pytest.fixture(scope="module")
def board(demo: dict[str, Any]) -> Iterator[str]:
    settings = load_settings(data_dir=demo["root"], dashboard_port=0, environ={})
    with running(settings=settings) as url:
        yield url


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))


def loads(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.loads || 0)"))


def settle(page: Page, after: int = 0, state: str = "ready") -> None:
    """Wait until the page has finished load number ``after + 1`` (or a later one)."""
    page.wait_for_selector(f"body[data-state={state}]", state="attached", timeout=60_000)
    for _ in range(600):
        if loads(page) > after:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the page did not finish loading")


def open_page(page: Page, url: str, state: str = "ready") -> Console:
    console = Console(page)
    page.goto(url)
    settle(page, 0, state)
    return console


def chart(page: Page, name: str, expression: str) -> Any:
    return page.evaluate(
        f"(id) => {{ const gd = document.getElementById(id); return {expression}; }}",
        f"chart-{name}",
    )


def query_of(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays at the top of the image
    page.mouse.move(0, 0)  # no chart's hover tools or tooltip in the picture
    page.wait_for_timeout(500)  # (the tools fade out)
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_every_panel_draws_without_javascript_errors(
    page: Page, board: str, demo: dict[str, Any], artifacts: Path
) -> None:
    console = open_page(page, f"{board}?range=3h")
    for name in CHARTS:
        assert chart(page, name, "gd.data.length") >= 1, name
        assert page.locator(f"#chart-{name} .main-svg").count() >= 1, name
    assert chart(page, "heatmap", "gd.data[0].type") == "heatmap"
    assert page.locator("#kpis .kpi").count() == 6
    assert "±1.08%" in page.locator("#latency-note").inner_text()
    # deploys and other events are markers on every chart, with their version on hover
    versions = {e["entity_id"] for e in demo["events"]}
    for name in CHARTS:
        shapes = chart(page, name, "gd.layout.shapes.length")
        assert shapes == len(demo["events"]), name
        hover = chart(page, name, "gd.data.find(t => t.name === 'events').text")
        assert versions <= {word for text in hover for word in text.split()}, name
    # the top failing endpoint is the one the data was built with, red-badged
    first = page.locator("#endpoints tbody tr").first
    assert f"{DEMO_METHOD}{DEMO_PATH}" in first.locator("td").first.inner_text().replace(" ", "")
    assert first.locator("td").nth(1).inner_text() == DEMO_SERVICE
    assert first.locator(".badge.red").count() == 1
    assert page.locator("#events tbody tr").count() == len(demo["events"])
    assert page.locator("#events .badge.deploy").count() >= 2
    assert page.locator("#stale").is_hidden() and page.locator("#unreachable").is_hidden()
    assert page.locator("#updated").inner_text().endswith("UTC")
    assert not console.errors, console.errors
    assert all(url.startswith(board) for url in console.requests), "a request left the machine"
    shot(page, artifacts, "overview")


def test_drill_down_into_a_path_and_back(page: Page, board: str, artifacts: Path) -> None:
    console = open_page(page, f"{board}?range=3h")
    before = loads(page)
    page.locator("#endpoints tbody tr").first.locator("a").click()
    settle(page, before)
    assert query_of(page) | {"range": "3h"} == {
        "service": DEMO_SERVICE,
        "method": DEMO_METHOD,
        "path": DEMO_PATH,
        "range": "3h",
    }
    crumbs = page.locator("#crumbs").inner_text()
    assert f"{DEMO_SERVICE}\n›\n{DEMO_METHOD}{DEMO_PATH}".replace("\n", " ") in " ".join(
        crumbs.split("\n")
    ) or (DEMO_SERVICE in crumbs and DEMO_PATH in crumbs and "Back" in crumbs)
    rows = page.locator("#endpoints tbody tr")
    assert rows.count() == 1 and DEMO_PATH in rows.first.inner_text()
    # the panels show that endpoint alone: its requests equal the table's
    requests = int(page.locator("#kpis .kpi .value").first.inner_text().replace(",", ""))
    assert requests == int(rows.first.locator("td").nth(2).inner_text().replace(",", ""))
    shot(page, artifacts, "drilldown")
    before = loads(page)
    page.locator("#back").click()
    settle(page, before)
    assert "path" not in query_of(page) and query_of(page)["service"] == DEMO_SERVICE
    before = loads(page)
    page.go_back()
    settle(page, before)
    assert query_of(page)["path"] == DEMO_PATH
    assert not console.errors, console.errors


def test_compare_with_the_previous_day_draws_dashed_grey_aligned(
    page: Page, board: str, artifacts: Path
) -> None:
    console = open_page(page, f"{board}?range=3h")
    before = loads(page)
    page.select_option("#compare", "1d")
    settle(page, before)
    assert query_of(page)["compare"] == "1d"
    for name in LINE_CHARTS:
        traces = chart(page, name, "gd.data.map(t => ({name: t.name, x: t.x, line: t.line}))")
        previous = [t for t in traces if "previous day" in (t["name"] or "")]
        assert len(previous) == 1, name
        assert previous[0]["line"]["dash"] == "dash" and previous[0]["line"]["color"] == "#98a2ad"
        assert previous[0]["x"] == traces[0]["x"], "the previous day is drawn on this day's times"
    values = chart(page, "requests", "gd.data.find(t => (t.name || '').includes('previous')).y")
    assert sum(v or 0 for v in values) > 0, "the calm day before has traffic"
    shot(page, artifacts, "compare")
    assert not console.errors, console.errors


def test_drag_to_zoom_narrows_every_panel_and_the_url(
    page: Page, board: str, artifacts: Path
) -> None:
    console = open_page(page, f"{board}?range=3h")
    box = page.locator("#chart-requests .nsewdrag").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    before = loads(page)
    page.mouse.move(box["x"] + box["width"] * 0.55, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.85, y, steps=8)
    page.mouse.up()
    settle(page, before)
    query = query_of(page)
    assert "range" not in query and query["from"] < query["to"]
    since = datetime.fromisoformat(query["from"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(query["to"].replace("Z", "+00:00"))
    assert timedelta(minutes=45) < until - since < timedelta(minutes=65)  # 30% of 3 hours
    ranges = {name: tuple(chart(page, name, "gd.layout.xaxis.range")) for name in CHARTS}
    assert len(set(ranges.values())) == 1, ranges
    (shown,) = set(ranges.values())
    assert shown[1] == query["to"].replace("T", " ").replace("Z", "")
    assert shown[0] <= query["from"].replace("T", " ").replace("Z", "")  # aligned to the step
    window = page.locator("#crumbs .window").inner_text()
    assert "1-min steps" in window
    shot(page, artifacts, "zoom")
    assert not console.errors, console.errors


def test_the_url_reproduces_the_view(page: Page, board: str, demo: dict[str, Any]) -> None:
    since = (demo["end"] - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (demo["end"] - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    link = (
        f"{board}?service={DEMO_SERVICE}&path=%2Fcheckout&method=POST&compare=7d&apdex=300"
        f"&sort=requests&order=asc&from={since}&to={until}"
    )
    console = open_page(page, link)
    assert page.locator("#service").input_value() == DEMO_SERVICE
    assert page.locator("#compare").input_value() == "7d"
    assert page.locator("#apdex").input_value() == "300"
    assert "T = 300 ms" in page.locator("#apdex-note").inner_text()
    assert "▲" in page.locator("#endpoints th[data-sort=requests]").inner_text()
    assert chart(page, "errors", "gd.layout.xaxis.range")[1] == until.replace("T", " ").replace(
        "Z", ""
    )
    assert query_of(page) == query_of_url(link)
    kpis = page.locator("#kpis").inner_text()
    # the same link in a fresh page shows the same numbers
    other = page.context.new_page()
    open_page(other, page.url)
    assert other.locator("#kpis").inner_text() == kpis
    assert not console.errors, console.errors


def query_of_url(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def test_endpoints_table_sorts_by_each_column(page: Page, board: str) -> None:
    console = open_page(page, f"{board}?range=3h")
    for key, column in (("requests", 2), ("client_errors", 5), ("error_rate", 4)):
        before = loads(page)
        page.locator(f"#endpoints th[data-sort={key}]").click()
        settle(page, before)
        assert query_of(page)["sort"] == key
        cells = page.locator("#endpoints tbody tr").all()
        values = [
            float(c.locator("td").nth(column).inner_text().strip("%").replace(",", ""))
            for c in cells
        ]
        assert values == sorted(values, reverse=True), key
    before = loads(page)
    page.locator("#endpoints th[data-sort=path_template]").click()
    settle(page, before)
    paths = [
        r.locator("a").get_attribute("data-path") or ""
        for r in page.locator("#endpoints tbody tr").all()
    ]
    assert paths == sorted(paths)
    assert not console.errors, console.errors


def test_apdex_threshold_and_refresh_every_minute(page: Page, board: str) -> None:
    page.clock.install()
    console = open_page(page, f"{board}?range=3h")
    before = loads(page)
    page.fill("#apdex", "100")
    page.locator("#apdex").dispatch_event("change")
    settle(page, before)
    assert (
        query_of(page)["apdex"] == "100"
        and "T = 100 ms" in page.locator("#apdex-note").inner_text()
    )
    before = loads(page)
    page.clock.fast_forward(61_000)
    settle(page, before)
    assert loads(page) == before + 1, "refreshed after 60 s"
    assert not console.errors, console.errors


def test_a_wrong_key_gets_the_login_form_and_the_right_one_the_data(
    page: Page, demo: dict[str, Any], artifacts: Path
) -> None:
    settings = load_settings(data_dir=demo["root"], dashboard_port=0, environ={"API_KEY": KEY})
    with running(settings=settings) as url:
        console = Console(page)
        page.goto(f"{url}?range=3h&service={DEMO_SERVICE}")
        assert page.locator("form#login").is_visible()
        page.fill("#key", "not-the-key")
        page.click("button[type=submit]")
        page.wait_for_selector("#message:has-text('That key is not valid.')")
        assert page.locator("#chart-errors").count() == 0
        shot(page, artifacts, "login-refused")
        page.fill("#key", KEY)
        page.click("button[type=submit]")
        settle(page)
        assert query_of(page)["service"] == DEMO_SERVICE  # back where the link pointed
        assert chart(page, "errors", "gd.data.length") >= 2
        assert page.locator("#logout").is_visible()
        assert httpx.get(f"{url}api/v1/services").status_code == 401
        shot(page, artifacts, "login-accepted")
        # the wrong key's 401 is the only console complaint
        assert all("401" in e for e in console.errors), console.errors


def test_an_empty_root_shows_the_first_run_screen(
    page: Page, tmp_path: Path, artifacts: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "empty", dashboard_port=0, environ={})
    with running(settings=settings) as url:
        console = open_page(page, url, state="firstrun")
        assert page.locator("#firstrun").is_visible() and page.locator("#content").is_hidden()
        assert (
            "curl -X POST http://127.0.0.1:8090/api/v1/facts" in page.locator("#curl").inner_text()
        )
        shot(page, artifacts, "first-run")
        assert not console.errors, console.errors


def test_no_data_for_these_filters_offers_a_reset(page: Page, board: str, artifacts: Path) -> None:
    console = open_page(page, f"{board}?service=ghost&range=15m", state="nodata")
    assert page.locator("#nodata").is_visible() and page.locator("#content").is_hidden()
    shot(page, artifacts, "no-data")
    before = loads(page)
    page.click("#reset")
    settle(page, before)
    assert query_of(page) == {} and page.locator("#content").is_visible()
    assert not console.errors, console.errors


def test_cannot_reach_the_data_service_and_stale_data_banners(
    page: Page, board: str, artifacts: Path
) -> None:
    open_page(page, f"{board}?range=3h")
    old = (datetime.now(UTC) - timedelta(minutes=42)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def stale(route: Route) -> None:
        answer = route.fetch()
        body = answer.json()
        body["data_through"] = old
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/series?*", stale)
    before = loads(page)
    page.click("#refresh")
    settle(page, before)
    assert page.locator("#stale").is_visible() and page.locator("#stale-tag").is_visible()
    assert "42 minutes ago" in page.locator("#stale").inner_text()
    shot(page, artifacts, "stale")
    page.unroute("**/api/v1/series?*")
    page.route("**/api/v1/**", lambda route: route.abort())
    before = loads(page)
    page.click("#refresh")
    settle(page, before, state="error")
    assert page.locator("#unreachable").is_visible()
    assert "Cannot reach the data service" in page.locator("#unreachable").inner_text()
    shot(page, artifacts, "unreachable")
    page.unroute("**/api/v1/**")
    before = loads(page)
    page.click("#retry")
    settle(page, before)
    assert page.locator("#unreachable").is_hidden()
