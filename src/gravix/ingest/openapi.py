"""The OpenAPI 3.1 document of the ingestion API, generated: paths from the route table
(:data:`gravix.ingest.routes.ROUTES`), schemas from the msgspec Structs of the data contract
and of the responses (:mod:`gravix.schema.contract`). Nothing here restates a rule."""

from __future__ import annotations

from typing import Any

import msgspec

from gravix.ingest.body import BODY_TIMEOUT_SECONDS
from gravix.ingest.routes import MAX_HEADER_BYTES, ROUTES, Route
from gravix.schema.contract import Error

_REF = "#/components/schemas/{name}"
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
# What any /api/ route may answer besides its success and 400, and why.
_REFUSALS: dict[str, tuple[str, bool]] = {
    "401": ("missing or wrong X-API-Key", False),
    "408": (f"the body did not arrive within {BODY_TIMEOUT_SECONDS:g} s", False),
    "411": ("Content-Length missing", False),
    "413": ("body (or its gzip-decoded form) over the limit", False),
    "415": ("Content-Type is not JSON / NDJSON, or unknown Content-Encoding", False),
    "429": ("over the per-key rate limit", True),
    "503": ("storage not writable or shutting down", True),
}


def _json(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": schema}}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": _json({"$ref": _REF.format(name=Error.__name__)}),
    }
    if retry_after:
        response["headers"] = _RETRY_AFTER
    return response


def _success(route: Route) -> dict[str, Any]:
    if route.response is not None:
        schema: dict[str, Any] = {"$ref": _REF.format(name=route.response.__name__)}
    elif route.content_type == "application/json":
        schema = {"type": "object"}
    else:
        schema = {"type": "string"}
    doc = (route.response.__doc__ or "").strip() if route.response else route.summary
    return {"description": doc or route.summary, "content": _json(schema, route.content_type)}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "responses": {str(route.status): _success(route)},
    }
    if route.body is not None:
        item = {"$ref": _REF.format(name=route.body.__name__)}
        # A batch is answered 200 when at least one of its items is a valid event (the
        # others are listed as rejected), and 400 when none is: exactly `contains`.
        body = {"type": "array", "contains": item, "minContains": 1} if route.batch else item
        op["security"] = [{"ApiKey": []}]
        # NDJSON and gzip have no JSON Schema: they are described rather than declared (a
        # Content-Encoding header parameter would let a generator send it with a plain body).
        shape = (
            f"a JSON array, or NDJSON (Content-Type: application/x-ndjson): one "
            f"{route.body.__name__} object per line"
            if route.batch
            else f"one {route.body.__name__}"
        )
        op["requestBody"] = {
            "required": True,
            "description": f"{shape}; may be sent with Content-Encoding: gzip",
            "content": _json(body),
        }
        invalid = "no event accepted (with per-index errors)" if route.batch else "invalid event"
        op["responses"]["400"] = _error(invalid)
        op["responses"].update({s: _error(d, r) for s, (d, r) in _REFUSALS.items()})
    if route.may_be_unavailable:
        op["responses"]["503"] = _error("not ready; `reasons` says why", retry_after=True)
    op["responses"]["431"] = _error(f"request line and headers over {MAX_HEADER_BYTES} bytes")
    return op


def components() -> dict[str, Any]:
    """JSON Schemas of every Struct the routes take or answer, as msgspec generates them."""
    structs: set[type[msgspec.Struct]] = {Error}
    for route in ROUTES.values():
        structs.update(s for s in (route.body, route.response) if s is not None)
    ordered = sorted(structs, key=lambda s: s.__name__)
    _, schemas = msgspec.json.schema_components(ordered, ref_template=_REF)
    return schemas


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route, as the server behaves."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gravix ingestion API",
            "version": "1.0.0",
            "description": "A 2xx means every accepted event is on disk and fsynced. Refusals "
            "sent before the body was read (401, 411, 413, 415, 429) close the connection; "
            "so do 408 (the body did not arrive in time) and 431 (headers too large).",
        },
        "paths": {
            path: {route.method.lower(): _operation(route)} for path, route in ROUTES.items()
        },
        "components": {
            "schemas": components(),
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
