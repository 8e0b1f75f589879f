"""The OpenAPI document of the ingestion API."""

from __future__ import annotations

from typing import Any


def _error_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}
        }
    return response


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 description of every route, as the server behaves."""
    from gravix.schema import HTTP_METHODS, UUID7_PATTERN

    time_schema = {
        "type": "string",
        "format": "date-time",
        "minLength": 20,
        "maxLength": 40,
        "description": "RFC 3339 with a zone; at most 5 minutes in the future and "
        "not older than the raw retention",
    }
    uuid7 = {"type": "string", "pattern": UUID7_PATTERN, "description": "UUID version 7"}
    service = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}
    fact_props = {
        "event_id": uuid7,
        "event_time": time_schema,
        "service": service,
        "method": {"type": "string", "enum": [*HTTP_METHODS, *(m.lower() for m in HTTP_METHODS)]},
        "path_template": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": "^/",
            "description": "no ? or #, no raw UUID, no numeric segment of 4+ digits",
        },
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
        "latency_ms": {"type": "number", "minimum": 0, "maximum": 3600000},
        "user_agent_family": {"type": "string", "maxLength": 64},
    }
    event_props = {
        "event_id": uuid7,
        "event_time": time_schema,
        "service": service,
        "event_type": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "entity_id": {"type": "string", "maxLength": 128},
        "message": {"type": "string", "maxLength": 1024},
        "properties": {
            "type": "object",
            "maxProperties": 32,
            "additionalProperties": {"type": "string", "maxLength": 256},
            "description": "flat string map; keys ≤ 64 chars (alias `metadata`)",
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "integer"}},
        },
        "RequestFact": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "event_id",
                "event_time",
                "service",
                "method",
                "path_template",
                "status_code",
                "latency_ms",
            ],
            "properties": fact_props,
            "description": "lowerCamelCase aliases (eventId, eventTime, pathTemplate, "
            "statusCode, latencyMs, userAgentFamily) are accepted too",
        },
        "ServiceEvent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["event_id", "event_time", "service", "event_type"],
            "properties": event_props,
            "description": "aliases eventId, eventTime, eventType, entityId, metadata",
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted", "event_id"],
            "properties": {"accepted": {"type": "integer"}, "event_id": {"type": "string"}},
        },
        "BatchResult": {
            "type": "object",
            "required": ["accepted", "rejected", "errors"],
            "properties": {
                "accepted": {"type": "integer"},
                "rejected": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "error"],
                        "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
                    },
                },
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
    }
    common = {
        "401": _error_response("missing or wrong X-API-Key"),
        "411": _error_response("Content-Length missing"),
        "413": _error_response("body (or its gzip-decoded form) over the limit"),
        "415": _error_response("Content-Type is not JSON / NDJSON, or unknown Content-Encoding"),
        "429": _error_response("over the per-key rate limit", retry_after=True),
        "503": _error_response("storage not writable or shutting down", retry_after=True),
    }
    encoding_header = {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["gzip", "identity"]},
    }

    def single(kind: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": [{"ApiKey": []}],
                "parameters": [encoding_header],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{kind}"}}
                    },
                },
                "responses": {
                    "201": {
                        "description": "stored and fsynced",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    },
                    "400": _error_response("invalid event"),
                    **common,
                },
            }
        }

    def batch(kind: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": [{"ApiKey": []}],
                "parameters": [encoding_header],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": f"#/components/schemas/{kind}"},
                            }
                        },
                        "application/x-ndjson": {
                            "schema": {
                                "type": "string",
                                "description": f"one {kind} JSON object per line",
                            }
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "every accepted event is stored and fsynced; the others "
                        "are listed by index",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchResult"}
                            }
                        },
                    },
                    "400": _error_response(
                        "no event accepted (with per-index errors), or the "
                        "body is not a JSON array / NDJSON"
                    ),
                    **common,
                },
            }
        }

    def probe(summary: str, fail: bool = False) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {
                "description": "ok",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                },
            }
        }
        if fail:
            responses["503"] = _error_response(
                "not ready (buffer not writable, disk below "
                "the free-space floor, or shutting down)",
                retry_after=True,
            )
        return {"get": {"summary": summary, "responses": responses}}

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Gravix ingestion API",
            "version": "1.0.0",
            "description": "A 2xx means every accepted event is on disk and fsynced.",
        },
        "paths": {
            "/api/v1/facts": single("RequestFact", "Store one request fact"),
            "/api/v1/facts/batch": batch("RequestFact", "Store request facts (NDJSON or array)"),
            "/api/v1/events": single("ServiceEvent", "Store one service event"),
            "/api/v1/events/batch": batch("ServiceEvent", "Store service events (NDJSON or array)"),
            "/live": probe("The process runs"),
            "/health": probe("The process runs"),
            "/ready": probe("Ready to store events", fail=True),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
