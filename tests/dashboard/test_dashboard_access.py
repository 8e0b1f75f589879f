"""Who may see the dashboard (DESIGN §10), against a real server on a loopback port: open on
loopback without keys; refused on another address without a key; with keys every route
but /live needs X-API-Key or the session cookie of the login form. And hostile query
parameters: a 400 that says what is wrong, never a 500."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gravix.dashboard import running
from gravix.dashboard.auth import Gate, is_loopback
from gravix.errors import ConfigError
from gravix.settings import load_settings

KEY = "k3y-for-the-dashboard-tests"
STATIC = Path(__file__).resolve().parents[2] / "src" / "gravix" / "dashboard" / "static"


@pytest.fixture(scope="module")
def open_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("open") / "data"
    with running(settings=load_settings(data_dir=root, dashboard_port=0, environ={})) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("keyed") / "data"
    settings = load_settings(data_dir=root, dashboard_port=0, environ={"API_KEY": KEY})
    with running(settings=settings) as url:
        yield url


def test_loopback_without_keys_is_open(open_board: str) -> None:
    with httpx.Client(base_url=open_board) as http:
        assert http.get("/api/v1/services").status_code == 200
        page = http.get("/")
        assert page.status_code == 200 and 'id="chart-errors"' in page.text
        assert http.get("/static/app.js").status_code == 200
        assert http.get("/live").json() == {"status": "ok"}


def test_an_open_dashboard_refuses_a_foreign_host_name(open_board: str) -> None:
    """A web page that rebinds its own name to 127.0.0.1 cannot read an open dashboard."""
    with httpx.Client(base_url=open_board) as http:
        assert http.get("/api/v1/services", headers={"Host": "evil.example"}).status_code == 403
        assert http.get("/", headers={"Host": "evil.example:8091"}).status_code == 403
        assert http.get("/api/v1/services", headers={"Host": "localhost:8091"}).status_code == 200


def test_another_address_without_a_key_is_refused(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, dashboard_host="0.0.0.0", dashboard_port=0, environ={}
    )
    with (
        pytest.raises(ConfigError, match=r"refusing to serve the dashboard on 0\.0\.0\.0"),
        running(settings=settings),
    ):
        pass
    with running(settings=settings, insecure_no_auth=True) as url:
        assert httpx.get(f"{url}api/v1/services").status_code == 200


def test_the_command_refuses_another_address_without_a_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravix",
            "dashboard",
            "--data-dir",
            str(tmp_path),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
        },
    )
    assert done.returncode == 2
    assert "refusing to serve the dashboard" in done.stderr and "--insecure-no-auth" in done.stderr


def test_with_keys_every_route_but_live_needs_one(keyed_board: str) -> None:
    with httpx.Client(base_url=keyed_board) as http:
        assert http.get("/live").status_code == 200
        for route in ("services", "series", "endpoints", "events", "heatmap"):
            missing = http.get(f"/api/v1/{route}")
            assert missing.status_code == 401 and missing.json()["code"] == 401
            wrong = http.get(f"/api/v1/{route}", headers={"X-API-Key": KEY + "x"})
            assert wrong.status_code == 401
            right = http.get(f"/api/v1/{route}", headers={"X-API-Key": KEY})
            assert right.status_code == 200, right.text
        page = http.get("/")
        assert page.status_code == 401 and 'action="/login"' in page.text
        assert 'id="chart-errors"' not in page.text
        assert http.get("/static/app.js").status_code == 401
        assert http.get("/static/plotly-cartesian.min.js").status_code == 401
        assert http.get("/", headers={"X-API-Key": KEY}).status_code == 200


def test_the_login_form_hands_out_a_strict_http_only_session_cookie(keyed_board: str) -> None:
    with httpx.Client(base_url=keyed_board) as http:
        wrong = http.post("/login", data={"key": "nope", "next": "/?service=a"})
        assert wrong.status_code == 401 and "That key is not valid." in wrong.text
        assert "gravix_session" not in http.cookies
        good = http.post("/login", data={"key": KEY, "next": "/?service=a&range=24h"})
        assert good.status_code == 303 and good.headers["location"] == "/?service=a&range=24h"
        cookie = good.headers["set-cookie"]
        assert re.search(r"(?i)httponly", cookie) and re.search(r"(?i)samesite=strict", cookie)
        assert http.get("/api/v1/services").status_code == 200  # the cookie alone
        assert http.get("/").status_code == 200
        token = http.cookies["gravix_session"]
        http.cookies.clear()
        forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        assert (
            http.get("/api/v1/services", headers={"Cookie": f"gravix_session={forged}"}).status_code
            == 401
        )
        assert (
            http.get(
                "/api/v1/services", headers={"Cookie": "gravix_session=999999999999.x"}
            ).status_code
            == 401
        )


def test_login_only_returns_to_a_local_path(keyed_board: str) -> None:
    with httpx.Client(base_url=keyed_board) as http:
        for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            answer = http.post("/login", data={"key": KEY, "next": target})
            assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_logout_ends_the_session(keyed_board: str) -> None:
    with httpx.Client(base_url=keyed_board) as http:
        http.post("/login", data={"key": KEY})
        assert http.get("/api/v1/services").status_code == 200
        http.post("/logout")
        assert http.get("/api/v1/services").status_code == 401


def test_a_forged_cookie_of_any_spelling_is_a_401(keyed_board: str) -> None:
    for token in ["²³.abc", "١٢٣.x", "9" * 127 + ".", ".", "abc"]:
        cookie = f"gravix_session={token}".encode()  # raw UTF-8 bytes, as a hostile client sends
        answer = httpx.get(f"{keyed_board}api/v1/services", headers={"cookie": cookie})
        assert answer.status_code == 401, (token, answer.text)
        assert not Gate([KEY]).session_ok(token)  # and the gate itself says no, never raises


def test_sessions_expire_and_die_with_the_process() -> None:
    gate = Gate([KEY])
    token = gate.new_session(now=1_000_000)
    assert gate.session_ok(token, now=1_000_100)
    assert not gate.session_ok(token, now=1_000_000 + 13 * 3600)
    assert not Gate([KEY]).session_ok(token, now=1_000_100)  # another process, another secret


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_every_byte_the_page_loads_comes_from_the_dashboard(open_board: str) -> None:
    with httpx.Client(base_url=open_board) as http:
        page = http.get("/")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        plotly = http.get("/static/plotly-cartesian.min.js", headers={"Accept-Encoding": "gzip"})
        assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
        assert plotly.headers["content-encoding"] == "gzip"
        # the page loads the bundle it is served: the partial one, from package-lock.json
        assert 'src="/static/plotly-cartesian.min.js"' in page.text
        assert b"plotly.js (cartesian" in plotly.content[:200]  # httpx has undone the gzip
    for path in STATIC.iterdir():
        text = path.read_text()
        # our own files name no other host: no CDN, no web font
        assert not re.search(r"(?i)(src|href)=[\"']?(https?:)?//", text), path.name
        assert "@import" not in text and "fonts.g" not in text, path.name


HOSTILE = [
    {"from": "yesterday"},
    {"from": "2026-02-30T00:00:00Z"},
    {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    {"from": "0001-01-01T00:00:00Z"},
    {"to": "99999-01-01T00:00:00Z"},
    {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    {"from": "2026-03-01T00:00:00"},
    {"from": "1' OR '1'='1"},
    {"from": "x" * 10_000},
    {"step": "0"},
    {"step": "59"},
    {"step": "90"},
    {"step": "-60"},
    {"step": "1e9"},
    {"step": "99999999999999999999"},
    {"compare": "2d"},
    {"compare": "1d; DROP TABLE x"},
    {"apdex_t_ms": "nan"},
    {"apdex_t_ms": "inf"},
    {"apdex_t_ms": "-5"},
    {"apdex_t_ms": "0"},
    {"apdex_t_ms": "ten"},
    {"sort": "latency_ms; --"},
    {"order": "sideways"},
    {"limit": "0"},
    {"limit": "100000"},
    {"limit": "ten"},
    {"limit": "²"},
    {"step": "٣٠٠"},
    {"from": "100000000000"},
    {"to": "99999999999999w"},
    {"service": "../../etc/passwd"},
    {"service": "a" * 200},
    {"service": "front end"},
    {"path": "no-slash"},
    {"path": "/" + "a" * 300},
    {"method": "BREW"},
    {"what": "ever"},
]


@pytest.mark.parametrize("route", ["series", "endpoints", "events", "heatmap"])
@pytest.mark.parametrize(
    "params", HOSTILE, ids=lambda p: ",".join(f"{k}={v[:20]}" for k, v in p.items())
)
def test_hostile_parameters_get_a_400_that_says_why(
    open_board: str, route: str, params: dict[str, str]
) -> None:
    answer = httpx.get(f"{open_board}api/v1/{route}", params=params, timeout=30)
    assert answer.status_code == 400, (params, answer.text)
    body = answer.json()
    assert body["code"] == 400 and body["error"] and "Traceback" not in answer.text


@pytest.mark.parametrize("route", ["series", "heatmap"])
def test_a_step_that_gives_too_many_points_is_a_400(open_board: str, route: str) -> None:
    params = {"step": "60", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    answer = httpx.get(f"{open_board}api/v1/{route}", params=params, timeout=30)
    assert answer.status_code == 400 and "points" in answer.json()["error"]


def test_a_parameter_given_twice_is_a_400(open_board: str) -> None:
    answer = httpx.get(f"{open_board}api/v1/series?service=a&service=b")
    assert answer.status_code == 400 and "twice" in answer.json()["error"]


def test_unknown_routes_are_json_404s(open_board: str) -> None:
    answer = httpx.get(f"{open_board}api/v1/../../etc/passwd")
    assert answer.status_code == 404
    answer = httpx.get(f"{open_board}api/v1/nope")
    assert answer.status_code == 404 and answer.json()["code"] == 404
    assert httpx.post(f"{open_board}api/v1/series").status_code == 405


_PARAM = st.sampled_from(
    [
        "from",
        "to",
        "step",
        "service",
        "method",
        "path",
        "compare",
        "apdex_t_ms",
        "sort",
        "order",
        "limit",
    ]
)
_VALUE = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?[0-9]{1,12}(\.[0-9]+)?(e[0-9]+)?", fullmatch=True),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["1d", "7d", "errors", "p95_ms", "GET", "/checkout", "now", "3h", "NaN"]),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(["series", "endpoints", "events", "heatmap"]),
    params=st.dictionaries(_PARAM, _VALUE, max_size=4),
)
def test_no_parameters_make_a_500(open_board: str, route: str, params: dict[str, str]) -> None:
    answer = httpx.get(f"{open_board}api/v1/{route}", params=params, timeout=60)
    assert answer.status_code in (200, 400), (params, answer.text)
    assert answer.headers["content-type"] == "application/json"


def test_the_dashboard_loads_no_sql_parser() -> None:
    """The dashboard reads the tables through gravix.query but never parses SQL: starting
    it does not pay for importing sqlglot."""
    code = "import sys, gravix.dashboard; print('sqlglot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = "import sys, gravix.query; gravix.query.run_sql; print('sqlglot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", "the check above would see sqlglot if it were loaded"
