"""The OpenAPI document describes the live server: a bounded schemathesis run finds no 5xx
and no response that breaks the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serverutil import running_server


def test_openapi_document_is_valid_openapi_3(tmp_path: Path) -> None:
    from schemathesis import openapi

    with running_server(tmp_path / "data") as srv:
        document = httpx.get(f"{srv.url}/openapi.json").json()
    schema = openapi.from_dict(document)  # raises on an invalid document
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ("POST", "/api/v1/facts/batch") in operations
    assert ("GET", "/ready") in operations
    assert len(operations) == 9


def run_schemathesis(tmp_path: Path, max_examples: int, phases: str) -> None:
    st = Path(sys.executable).parent / "schemathesis"
    # The document cannot express every rule (time window, UUID version, path rules), so a
    # schema-valid example may still be rejected with 400: positive_data_acceptance is off.
    checks = ",".join([
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_headers_conformance", "response_schema_conformance",
        "negative_data_rejection", "unsupported_method", "missing_required_header",
    ])  # fmt: skip
    with running_server(tmp_path / "data") as srv:
        result = subprocess.run(
            [str(st), "run", f"{srv.url}/openapi.json", "--header", f"X-API-Key: {srv.api_key}",
             "--checks", checks, "--max-examples", str(max_examples), "--seed", "20260216",
             "--phases", phases, "--no-color", "--generation-database", "none",
             "--request-timeout", "20"],
            cwd=tmp_path, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert srv.proc.poll() is None
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 9" in result.stdout or "Tested: 8" in result.stdout, result.stdout[-3000:]


def test_bounded_schemathesis_run_finds_no_server_error_and_no_contract_break(
    tmp_path: Path,
) -> None:
    run_schemathesis(tmp_path, max_examples=8, phases="examples,fuzzing")


@pytest.mark.slow
def test_long_schemathesis_run_with_coverage_phase(tmp_path: Path) -> None:
    run_schemathesis(tmp_path, max_examples=100, phases="examples,coverage,fuzzing")
