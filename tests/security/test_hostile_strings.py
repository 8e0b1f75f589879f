"""Stored strings from a hostile client (issue 16, items 7 and 26), against a real server:
no stored string holds a control character (a terminal escape in a message would reach the
operator's terminal), and a property value that is itself serialized JSON is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serverutil import RunningServer, ndjson, raw_lines, running_server, service_event

ESCAPES = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("strings") / "data"
    with running_server(root) as srv:
        yield srv


@pytest.mark.parametrize(
    ("field", "event"),
    [
        ("message", service_event(message=f"deployed {ESCAPES}")),
        ("entity_id", service_event(entity_id=f"pod-1{ESCAPES}")),
        ("properties", service_event(properties={"version": f"1.2{ESCAPES}"})),
        ("properties", service_event(properties={f"v{ESCAPES}": "1.2"})),
        ("properties", service_event(metadata={"note": "C1 CSI \u009b2J"})),
    ],
)
def test_a_service_event_with_a_control_character_is_refused_naming_the_field(
    server: RunningServer, field: str, event: dict[str, object]
) -> None:
    with server.client() as client:
        single = client.post("/api/v1/events", json=event)
        batch = client.post(
            "/api/v1/events/batch",
            content=ndjson([service_event(), event]),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert single.status_code == 400, single.text
    assert field in single.json()["error"] and "control character" in single.json()["error"]
    assert batch.status_code == 200
    assert [e["index"] for e in batch.json()["errors"]] == [1]


def test_a_property_holding_serialized_json_is_refused(server: RunningServer) -> None:
    event = service_event(properties={"meta": '{"foo":"bar"}'})
    with server.client() as client:
        response = client.post("/api/v1/events", json=event)
        array = client.post("/api/v1/events", json=service_event(properties={"ids": "[1,2]"}))
    assert response.status_code == 400
    assert "looks like nested JSON; properties must be flat strings" in response.json()["error"]
    assert array.status_code == 400


def test_no_refused_string_reaches_the_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("store") / "data"
    good = service_event(message="plain ✓", properties={"v": "{}"})
    with running_server(root) as srv, srv.client() as client:
        client.post("/api/v1/events", json=service_event(message=ESCAPES))
        client.post("/api/v1/events", json=service_event(properties={"m": "[x]"}))
        assert client.post("/api/v1/events", json=good).status_code == 201
    stored = raw_lines(root, "service_events")
    assert [line["event_id"] for line in stored] == [good["event_id"]]
