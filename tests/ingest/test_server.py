"""Every route and status of the ingestion API against a real server on a loopback port."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from serverutil import (
    RunningServer,
    fact,
    ndjson,
    raw_lines,
    running_server,
    service_event,
    stamp,
    uuid7,
)

SINGLE_LIMIT = 4096
BATCH_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("server") / "data"
    with running_server(
        root,
        "--max-single-bytes",
        str(SINGLE_LIMIT),
        "--max-batch-bytes",
        str(BATCH_LIMIT),
        "--api-key",
        "second-key",
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def post(client: httpx.Client, path: str, doc: object, **headers: str) -> httpx.Response:
    return client.post(
        path, content=json.dumps(doc), headers={"Content-Type": "application/json", **headers}
    )


def assert_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    assert isinstance(body["error"], str) and body["error"]
    return body  # type: ignore[no-any-return]


# --- success paths ----------------------------------------------------------------------------


def test_single_fact_is_acknowledged_with_201(client: httpx.Client) -> None:
    doc = fact()
    response = post(client, "/api/v1/facts", doc)
    assert response.status_code == 201
    assert response.json()["event_id"] == doc["event_id"]


def test_single_service_event_is_acknowledged_with_201(client: httpx.Client) -> None:
    response = post(client, "/api/v1/events", service_event(properties={"version": "1.2"}))
    assert response.status_code == 201


def test_any_configured_key_is_accepted(client: httpx.Client) -> None:
    response = post(client, "/api/v1/facts", fact(), **{"X-API-Key": "second-key"})
    assert response.status_code == 201


def test_ndjson_batch_reports_partial_success_by_index(client: httpx.Client) -> None:
    docs = [fact(), fact(status_code=42), fact(), fact(method="FETCH"), fact()]
    response = client.post(
        "/api/v1/facts/batch",
        content=ndjson(docs),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert [e["index"] for e in body["errors"]] == [1, 3]
    assert "status_code" in body["errors"][0]["error"]
    assert "method" in body["errors"][1]["error"]


def test_json_array_batch_of_events_is_accepted(client: httpx.Client) -> None:
    docs = [service_event(), service_event(event_type="Bad-Type"), service_event()]
    response = post(client, "/api/v1/events/batch", docs)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"][0]["index"] == 1


def test_batch_with_no_valid_event_is_400_with_errors(client: httpx.Client) -> None:
    response = post(client, "/api/v1/facts/batch", [fact(service=""), {"nope": 1}])
    body = assert_error(response, 400)
    assert body["accepted"] == 0
    assert [e["index"] for e in body["errors"]] == [0, 1]  # type: ignore[union-attr]


def test_empty_batch_is_400(client: httpx.Client) -> None:
    assert_error(post(client, "/api/v1/facts/batch", []), 400)


def test_batch_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/facts/batch", content=b"[{", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400)


def test_gzip_body_is_accepted(client: httpx.Client) -> None:
    body = gzip.compress(ndjson([fact() for _ in range(20)]))
    response = client.post(
        "/api/v1/facts/batch",
        content=body,
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == 20


def test_invalid_gzip_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/facts",
        content=b"\x1f\x8bnot gzip at all",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_error(response, 400)


# --- auth, method, media type, length -----------------------------------------------------------


def test_missing_key_is_401(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/api/v1/facts", json=fact())
    assert_error(response, 401)


def test_wrong_key_is_401(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/facts", json=fact(), headers={"X-API-Key": "test-key-wrong"}
    )
    assert_error(response, 401)


def test_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    response = client.get("/api/v1/facts")
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
    response = client.post("/live", content=b"{}")
    assert_error(response, 405)
    assert response.headers["allow"] == "GET"


def test_unknown_path_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v2/facts"), 404)


def test_non_json_content_type_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/facts", content=json.dumps(fact()), headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415)
    response = client.post("/api/v1/facts", content=json.dumps(fact()))
    assert_error(response, 415)


def test_unknown_content_encoding_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/facts",
        content=json.dumps(fact()),
        headers={"Content-Type": "application/json", "Content-Encoding": "br"},
    )
    assert_error(response, 415)


def test_body_without_length_is_411(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(fact()).encode()

    response = client.post(
        "/api/v1/facts", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 411)


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = fact(user_agent_family="x" * 60, path_template="/" + "a" * 250)
    docs = [big] * (BATCH_LIMIT // len(json.dumps(big)) + 10)
    response = post(client, "/api/v1/facts/batch", docs)
    assert_error(response, 413)
    response = post(client, "/api/v1/facts", {**fact(), "pad": "x" * SINGLE_LIMIT})
    assert_error(response, 413)


def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: RunningServer,
) -> None:
    head = (
        f"POST /api/v1/facts/batch HTTP/1.1\r\nHost: x\r\nX-API-Key: {server.api_key}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {50 * 2**20}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())  # and not one byte of the 50 MiB body
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]


def test_gzip_body_that_inflates_over_the_limit_is_413(client: httpx.Client) -> None:
    bomb = gzip.compress(b" " * (BATCH_LIMIT * 4))
    assert len(bomb) < BATCH_LIMIT
    response = client.post(
        "/api/v1/facts/batch",
        content=bomb,
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert_error(response, 413)


# --- probes, metrics, documents ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/live", "/health", "/ready"])
def test_probes_answer_200(server: RunningServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 200
    assert response.json()["status"] in ("ok", "ready")


def test_metrics_count_requests_and_events_without_keys(
    server: RunningServer, client: httpx.Client
) -> None:
    assert post(client, "/api/v1/facts", fact()).status_code == 201
    text = httpx.get(f"{server.url}/metrics").text
    assert 'gravix_events_accepted_total{topic="request_facts"}' in text
    assert 'gravix_http_requests_total{route="facts",status="201"}' in text
    assert "gravix_fsync_seconds_bucket" in text
    assert "gravix_group_commit_requests_bucket" in text
    assert "gravix_buffer_active_bytes" in text
    assert server.api_key is not None
    assert server.api_key not in text and "second-key" not in text


def test_openapi_document_lists_every_route(server: RunningServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/facts",
        "/api/v1/facts/batch",
        "/api/v1/events",
        "/api/v1/events/batch",
        "/live",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    }
    responses = doc["paths"]["/api/v1/facts/batch"]["post"]["responses"]
    assert {"200", "400", "401", "411", "413", "415", "429", "503"} <= set(responses)


def test_logs_never_contain_a_key_or_a_body(server: RunningServer, client: httpx.Client) -> None:
    marker = "unique-service-marker-123"
    post(client, "/api/v1/facts", fact(service=marker))
    post(client, "/api/v1/facts", fact(), **{"X-API-Key": "leaked-wrong-key"})
    deadline = time.monotonic() + 10  # access lines are written every 0.2 s
    while '"POST /api/v1/facts" 401' not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_text()
    assert '"POST /api/v1/facts" 201' in log  # the access log is there
    for secret in (server.api_key or "", "second-key", "leaked-wrong-key", marker):
        assert secret not in log


# --- the data contract, rule by rule, through the HTTP API ---------------------------------------

FACT_RULES = [
    ("missing event_id", {"event_id": None}),
    ("event_id not a UUID", {"event_id": "not-a-uuid"}),
    ("event_id a UUID v4", {"event_id": "3b241101-e2bb-4255-8caf-4136c566a962"}),
    ("event_time without zone", {"event_time": "2026-02-16T10:00:00.000"}),
    ("event_time not a time", {"event_time": "yesterday at noon, roughly"}),
    ("event_time too far ahead", {"event_time": stamp(-3600)}),
    ("event_time older than retention", {"event_time": stamp(40 * 86400)}),
    ("service empty", {"service": ""}),
    ("service with a space", {"service": "front end"}),
    ("service too long", {"service": "s" * 129}),
    ("method unknown", {"method": "FETCH"}),
    ("path without slash", {"path_template": "checkout"}),
    ("path with query", {"path_template": "/search?q=1"}),
    ("path with fragment", {"path_template": "/a#b"}),
    ("path too long", {"path_template": "/" + "a" * 256}),
    ("path with raw uuid", {"path_template": "/users/3b241101-e2bb-4255-8caf-4136c566a962"}),
    ("path with numeric id", {"path_template": "/orders/12345/items"}),
    ("status below 100", {"status_code": 99}),
    ("status above 599", {"status_code": 600}),
    ("status as text", {"status_code": "200"}),
    ("latency negative", {"latency_ms": -1}),
    ("latency over an hour", {"latency_ms": 3_600_001}),
    ("user agent too long", {"user_agent_family": "u" * 65}),
    ("unknown field", {"user_id": "u-1"}),
]

EVENT_RULES = [
    ("missing event_type", {"event_type": None}),
    ("event_type not snake_case", {"event_type": "DeployStarted"}),
    ("event_type starts with digit", {"event_type": "1deploy"}),
    ("event_type too long", {"event_type": "e" * 65}),
    ("event_id a UUID v4", {"event_id": "3b241101-e2bb-4255-8caf-4136c566a962"}),
    ("event_time without zone", {"event_time": "2026-02-16T10:00:00"}),
    ("service with a slash", {"service": "a/b"}),
    ("entity_id too long", {"entity_id": "e" * 129}),
    ("message too long", {"message": "m" * 1025}),
    ("properties nested", {"properties": {"a": {"b": "c"}}}),
    ("properties too many", {"properties": {f"k{i}": "v" for i in range(33)}}),
    ("property key too long", {"properties": {"k" * 65: "v"}}),
    ("property value too long", {"properties": {"k": "v" * 257}}),
    ("property value a number", {"properties": {"k": 1}}),
    ("unknown field", {"body": "secret"}),
]


def _apply(doc: dict[str, object], overrides: dict[str, object]) -> dict[str, object]:
    out = {**doc, **overrides}
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(("rule", "overrides"), FACT_RULES, ids=[r for r, _ in FACT_RULES])
def test_fact_breaking_a_rule_is_400(
    client: httpx.Client, rule: str, overrides: dict[str, object]
) -> None:
    assert_error(post(client, "/api/v1/facts", _apply(fact(), overrides)), 400)


@pytest.mark.parametrize(("rule", "overrides"), EVENT_RULES, ids=[r for r, _ in EVENT_RULES])
def test_service_event_breaking_a_rule_is_400(
    client: httpx.Client, rule: str, overrides: dict[str, object]
) -> None:
    assert_error(post(client, "/api/v1/events", _apply(service_event(), overrides)), 400)


@pytest.mark.parametrize(("rule", "overrides"), FACT_RULES, ids=[r for r, _ in FACT_RULES])
def test_fact_breaking_a_rule_is_rejected_by_index_in_a_batch(
    client: httpx.Client, rule: str, overrides: dict[str, object]
) -> None:
    response = post(client, "/api/v1/facts/batch", [fact(), _apply(fact(), overrides)])
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["index"] == 1


@pytest.mark.parametrize(("rule", "overrides"), EVENT_RULES, ids=[r for r, _ in EVENT_RULES])
def test_event_breaking_a_rule_is_rejected_by_index_in_a_batch(
    client: httpx.Client, rule: str, overrides: dict[str, object]
) -> None:
    docs = [_apply(service_event(), overrides), service_event()]
    body = client.post(
        "/api/v1/events/batch",
        content=ndjson(docs),
        headers={"Content-Type": "application/x-ndjson"},
    ).json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["index"] == 0


# --- what is stored --------------------------------------------------------------------------


def test_stored_lines_are_canonical_snake_case(tmp_path: Path) -> None:
    root = tmp_path / "data"
    upper_id = uuid7().upper()
    camel = {
        "eventId": upper_id,
        "eventTime": "",
        "service": "checkout",
        "method": "post",
        "pathTemplate": "/cart/{id}",
        "statusCode": 503,
        "latencyMs": 7,
        "userAgentFamily": "Firefox",
    }
    moment = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=123456)
    moment -= timedelta(seconds=120)
    camel["eventTime"] = moment.isoformat()  # e.g. 2026-11-28T12:58:00.123456+02:00
    expected_time = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.123Z")
    with running_server(root) as srv, srv.client() as c:
        assert post(c, "/api/v1/facts", camel).status_code == 201
        ev = {
            "eventId": uuid7(),
            "eventTime": stamp(5),
            "service": "checkout",
            "eventType": "deploy_completed",
            "entityId": "build-7",
            "metadata": {"version": "2.0"},
        }
        assert post(c, "/api/v1/events", ev).status_code == 201
        assert srv.stop() == 0
    facts = raw_lines(root, "request_facts")
    assert len(facts) == 1
    stored = facts[0]
    assert stored["event_id"] == upper_id.lower()
    assert stored["method"] == "POST"
    assert stored["path_template"] == "/cart/{id}"
    assert stored["event_time"] == expected_time
    assert set(stored) == {
        "event_id",
        "event_time",
        "service",
        "method",
        "path_template",
        "status_code",
        "latency_ms",
        "user_agent_family",
    }
    events = raw_lines(root, "service_events")
    assert events[0]["properties"] == {"version": "2.0"}
    assert events[0]["entity_id"] == "build-7"
    assert "metadata" not in events[0] and "eventType" not in events[0]


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    args = ("--rate-limit", "1", "--api-key", "other-key")
    with running_server(tmp_path / "data", *args) as srv, srv.client() as c:
        statuses = [post(c, "/api/v1/facts", fact()).status_code for _ in range(6)]
        assert statuses[:2] == [201, 201]  # a burst of 2 × rate
        assert 429 in statuses
        limited = post(c, "/api/v1/facts", fact())
        assert_error(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # the limit is per key, and probes are not limited
        assert post(c, "/api/v1/facts", fact(), **{"X-API-Key": "other-key"}).status_code == 201
        assert httpx.get(f"{srv.url}/ready").status_code == 200
