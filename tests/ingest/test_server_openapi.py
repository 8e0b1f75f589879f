"""The OpenAPI document is generated from the contract and describes the live server: it is
valid OpenAPI 3.1, its schemas are msgspec's schemas of the Structs the validator decodes
and the server encodes, its rules agree with the validator, and a bounded schemathesis run
against a live server finds no 5xx, no non-conforming response and no schema-valid data
that the server mostly rejects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from gravix.errors import ValidationError
from gravix.ingest.openapi import openapi_document
from gravix.ingest.routes import ROUTES, accepted_body
from gravix.schema import REQUEST_FACTS, SERVICE_EVENTS, Validator
from gravix.schema.contract import Accepted, BatchResult, Error, RequestFact, ServiceEvent
from serverutil import fact, running_server, service_event, uuid7

REF = "#/components/schemas/{name}"


def test_served_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    # openapi_spec_validator is not installed; schemathesis ships the OpenAPI 3.1 meta-schema.
    with running_server(tmp_path / "data") as srv:
        document = httpx.get(f"{srv.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    jsonschema_rs.validator_for(OPENAPI_31).validate(document)
    for name, component in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), f"{name} is not a valid JSON Schema"


def test_components_are_msgspec_schemas_of_the_contract_structs() -> None:
    structs = [Accepted, BatchResult, Error, RequestFact, ServiceEvent]
    _, expected = msgspec.json.schema_components(structs, ref_template=REF)
    schemas = openapi_document()["components"]["schemas"]
    for struct in structs:
        assert schemas[struct.__name__] == expected[struct.__name__]
    fact_schema = schemas["RequestFact"]
    assert fact_schema["additionalProperties"] is False
    assert {"type": "null"} in fact_schema["properties"]["user_agent_family"]["anyOf"]


def test_paths_are_the_route_table() -> None:
    paths = openapi_document()["paths"]
    assert {(m.upper(), p) for p, ops in paths.items() for m in ops} == {
        (r.method, p) for p, r in ROUTES.items()
    }
    for path, route in ROUTES.items():
        op = paths[path][route.method.lower()]
        assert str(route.status) in op["responses"]
        if route.body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            item = schema["contains"] if route.batch else schema
            assert item == {"$ref": REF.format(name=route.body.__name__)}


# (topic, field, value, accepted by the validator): each one is checked both ways, so the
# document's rule and the validator's rule cannot drift apart.
CASES: list[tuple[str, str, Any, bool]] = [
    (REQUEST_FACTS, "event_id", "0190a6e1-7c3a-4b2f-8c1d-2e3f4a5b6c7d", False),  # version 4
    (REQUEST_FACTS, "event_id", uuid7().upper(), True),
    (REQUEST_FACTS, "service", "front end", False),
    (REQUEST_FACTS, "service", "a" * 129, False),
    (REQUEST_FACTS, "service", "api.v2_x-1", True),
    (REQUEST_FACTS, "method", "get", True),
    (REQUEST_FACTS, "method", "pAtCh", True),
    (REQUEST_FACTS, "method", "FETCH", False),
    (REQUEST_FACTS, "path_template", "/users/{id}/orders", True),
    (REQUEST_FACTS, "path_template", "users", False),
    (REQUEST_FACTS, "path_template", "/users/12345", False),
    (REQUEST_FACTS, "path_template", "/users/123", True),
    (REQUEST_FACTS, "path_template", f"/orders/{uuid7()}", False),
    (REQUEST_FACTS, "path_template", "/search?q=1", False),
    (REQUEST_FACTS, "path_template", "/" + "a" * 256, False),
    (REQUEST_FACTS, "status_code", 99, False),
    (REQUEST_FACTS, "status_code", 599, True),
    (REQUEST_FACTS, "latency_ms", -0.5, False),
    (REQUEST_FACTS, "latency_ms", 3_600_000.5, False),
    (REQUEST_FACTS, "latency_ms", 0.25, True),
    (REQUEST_FACTS, "user_agent_family", None, True),
    (REQUEST_FACTS, "user_agent_family", "Chrome\n", False),
    (REQUEST_FACTS, "user_agent_family", "x" * 65, False),
    (REQUEST_FACTS, "unknown_field", 1, False),
    (SERVICE_EVENTS, "event_type", "deploy_started", True),
    (SERVICE_EVENTS, "event_type", "DeployStarted", False),
    (SERVICE_EVENTS, "event_type", "_deploy", False),
    (SERVICE_EVENTS, "entity_id", "e" * 129, False),
    (SERVICE_EVENTS, "message", "m" * 1025, False),
    (SERVICE_EVENTS, "message", None, True),
    (SERVICE_EVENTS, "properties", {f"k{i}": "v" for i in range(33)}, False),
    (SERVICE_EVENTS, "properties", {"k" * 65: "v"}, False),
    (SERVICE_EVENTS, "properties", {"k": "v" * 257}, False),
    (SERVICE_EVENTS, "properties", {"k": {"nested": "no"}}, False),
    (SERVICE_EVENTS, "properties", {"region": "eu-west-1"}, True),
    (REQUEST_FACTS, "status_code", 247.0, True),  # a JSON Schema integer, stored as 247
    (REQUEST_FACTS, "status_code", 247.5, False),
    (REQUEST_FACTS, "user_agent_family", "Chrome\u009b", False),  # C1 control (CSI)
    (REQUEST_FACTS, "path_template", "/a\x1b[2J", False),
    (SERVICE_EVENTS, "message", "deployed \x1b]0;PWNED\x07", False),
    (SERVICE_EVENTS, "message", "déployé ✓", True),
    (SERVICE_EVENTS, "entity_id", "pod\x7f", False),
    (SERVICE_EVENTS, "properties", {"k\x1b": "v"}, False),
    (SERVICE_EVENTS, "properties", {"k": "v\n"}, False),
    (SERVICE_EVENTS, "properties", {"meta": '{"foo":"bar"}'}, False),
    (SERVICE_EVENTS, "properties", {"ids": "[1]"}, False),
    (SERVICE_EVENTS, "properties", {"meta": "{\u2028}"}, False),
    (SERVICE_EVENTS, "properties", {"empty": "{}", "list": "[]", "one": "{x"}, True),
]


@pytest.mark.parametrize(("topic", "name", "value", "valid"), CASES)
def test_document_rules_agree_with_the_validator(
    topic: str, name: str, value: Any, valid: bool
) -> None:
    struct = RequestFact if topic == REQUEST_FACTS else ServiceEvent
    document = openapi_document()
    schema = {**document["components"]["schemas"][struct.__name__], "$defs": {}}
    event = (fact if topic == REQUEST_FACTS else service_event)(**{name: value})
    by_document = jsonschema_rs.validator_for(schema).is_valid(event)
    try:
        Validator(topic).one(msgspec.json.encode(event))
        by_validator = True
    except ValidationError:
        by_validator = False
    assert (by_document, by_validator) == (valid, valid)


def test_single_event_fast_path_answer_is_the_accepted_struct(tmp_path: Path) -> None:
    event_id = uuid7()
    assert accepted_body(event_id) == msgspec.json.encode(Accepted(1, event_id))
    with running_server(tmp_path / "data") as srv:
        doc = fact()
        ok = httpx.post(f"{srv.url}/api/v1/facts", json=doc, headers=srv.headers)
        bad = httpx.post(
            f"{srv.url}/api/v1/facts/batch", json=[fact(status_code=1)], headers=srv.headers
        )
        denied = httpx.post(f"{srv.url}/api/v1/facts", json=doc)
    assert ok.status_code == 201
    assert msgspec.json.decode(ok.content, type=Accepted) == Accepted(1, str(doc["event_id"]))
    assert bad.status_code == 400
    error = msgspec.json.decode(bad.content, type=Error)
    assert (error.code, error.accepted, error.rejected) == (400, 0, 1)
    assert msgspec.json.decode(denied.content, type=Error).code == 401


# The run fails when schema-valid data is mostly rejected (validation_mismatch), when less
# than half of the schema-valid cases of an operation are accepted (low_valid_rate), when
# schemathesis cannot use a pattern of the document, or when one schema-valid case is
# rejected (positive_data_acceptance; a whole-number float such as 247.0 is a JSON Schema
# integer, and the validator accepts it as one).
SCHEMATHESIS_CONFIG = """
[warnings]
fail-on = ["validation_mismatch", "low_valid_rate", "unsupported_regex", "missing_deserializer"]

[warnings.low_valid_rate]
threshold = 0.5
"""


def run_schemathesis(tmp_path: Path, max_examples: int, phases: str) -> str:
    st = Path(sys.executable).parent / "schemathesis"
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)
    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance",
        "negative_data_rejection", "positive_data_acceptance", "unsupported_method",
        "missing_required_header",
    ])  # fmt: skip
    # event_time: its window (5 minutes ahead, retention behind) is configuration, so the
    # document says `format: date-time` and no more. This server is started with a window
    # wide enough for any date-time schemathesis generates (years 0001–9999), so a
    # generated time is valid and a rejection would be a real mismatch.
    env = {"GRAVIX_MAX_FUTURE_SECONDS": "400000000000", "GRAVIX_RETENTION_DAYS": "1000000"}
    with running_server(tmp_path / "data", env=env) as srv:
        result = subprocess.run(
            [str(st), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
             f"{srv.url}/openapi.json", "--header", f"X-API-Key: {srv.api_key}",
             "--checks", checks, "--max-examples", str(max_examples), "--seed", "20260216",
             "--phases", phases, "--no-color", "--generation-database", "none",
             "--request-timeout", "20"],
            cwd=tmp_path, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert srv.proc.poll() is None
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-2000:]
    assert "Schema validation mismatch" not in out, out[-3000:]
    # The CLI may leave out the operation that serves the document it loaded.
    assert "Tested: 9" in out or "Tested: 8" in out, out[-3000:]
    return out


def test_bounded_schemathesis_run_finds_no_server_error_mismatch_or_contract_break(
    tmp_path: Path,
) -> None:
    run_schemathesis(tmp_path, max_examples=30, phases="examples,fuzzing")


@pytest.mark.slow
def test_long_schemathesis_run_with_coverage_phase(tmp_path: Path) -> None:
    run_schemathesis(tmp_path, max_examples=100, phases="examples,coverage,fuzzing")
