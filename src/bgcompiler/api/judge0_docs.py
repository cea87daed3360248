"""What the OpenAPI schema says about the Judge0 routes: their bodies and every answer they
give, so that the schema-driven fuzzer exercises them as it does ours."""

from __future__ import annotations

from typing import Any

from fastapi import Path

from bgcompiler.api.judge0_wire import FIELDS

_JSON_OBJECT: dict[str, Any] = {"type": "object"}
_EMPTY_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string", "maxLength": 0}}}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "token": {"type": "string"}},
    "required": ["error"],
}
_MESSAGES = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
_SUBMISSION = {
    "type": "object",
    "properties": {name: {} for name in FIELDS},
    "additionalProperties": False,
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _empty(description: str) -> dict[str, Any]:
    """An empty answer, typed text/html as Judge0's (Rails') are."""
    return {"description": description, "content": dict(_EMPTY_HTML)}


BAD_FIELDS = _json("`fields` names a field a submission does not have", _ERROR)
NOT_ASCII = _json("output that is not ASCII needs base64_encoded=true", _ERROR)
NOT_FOUND = {
    "description": "no such submission or language: empty, as Judge0 (JSON to a client that "
    "accepts only JSON)",
    "content": {
        **_EMPTY_HTML,
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"status": {"type": "integer"}, "error": {"type": "string"}},
            }
        },
    },
}
UNAVAILABLE = _json("queue is full, or the engine or store does not answer", _ERROR)
INVALID = _json("Judge0's validation messages, by field", _MESSAGES)

_TEXT_FIELDS = (
    "source_code",
    "stdin",
    "expected_output",
    "compiler_options",
    "command_line_arguments",
    "callback_url",
    "additional_files",
)
_NUMBER_FIELDS = (
    "language_id",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "max_file_size",
)
_BOOLEAN_FIELDS = (
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "redirect_stderr_to_stdout",
    "enable_network",
)
SUBMISSION_IN = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in _TEXT_FIELDS},
        **{name: {"type": "number"} for name in _NUMBER_FIELDS},
        **{name: {"type": "boolean"} for name in _BOOLEAN_FIELDS},
    },
}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


def query(*names: str) -> dict[str, Any]:
    """Judge0's query parameters, as strings (flags are true only when exactly `true`)."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in names
        ]
    }


CREATE = {
    **body(SUBMISSION_IN),
    **query("base64_encoded", "wait", "fields"),
}
CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _json(
        "the token; with wait=true, the submission (or Judge0's error for output that "
        "needs base64, with the token)",
        _JSON_OBJECT,
    ),
    400: BAD_FIELDS,
    422: INVALID,
    503: UNAVAILABLE,
}
BATCH_CREATE = {
    **body(
        {
            "type": "object",
            "properties": {"submissions": {"type": "array", "items": SUBMISSION_IN}},
        }
    ),
    **query("base64_encoded"),
}
_BATCH_ANSWER = {"type": "array", "items": _JSON_OBJECT}
BATCH_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: _json("a token or that submission's messages, in order", _BATCH_ANSWER),
    400: _json("no submission, or more than the batch allows", _ERROR),
    422: _json("no submission was valid: each one's messages", _BATCH_ANSWER),
    503: UNAVAILABLE,
}
# Path parameters as documented: what the service issues and knows. Any other value is
# answered as Judge0 does (404), not refused by validation; the patterns also keep the
# static paths beside them (`/submissions/batch`, `/languages/all`) out of these operations.
LANGUAGE_ID_DIGITS = "[0-9]{1,9}"  # what a language id can be (Judge0's are integers)
TOKEN = Path(
    description="a token this service issued", json_schema_extra={"pattern": "^[0-9a-f]{32}$"}
)
LANGUAGE_ID = Path(
    description="a Judge0 language id", json_schema_extra={"pattern": f"^{LANGUAGE_ID_DIGITS}$"}
)
SHOW = query("base64_encoded", "fields")
SHOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("the submission's fields asked for", _SUBMISSION),
    400: BAD_FIELDS,
    404: NOT_FOUND,
    503: UNAVAILABLE,
}
BATCH_SHOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json(
        "the submissions, in the tokens' order (null: unknown)",
        {"type": "object", "properties": {"submissions": {"type": "array"}}},
    ),
    400: _json("bad fields, no token, too many tokens, or output needing base64", _ERROR),
    503: UNAVAILABLE,
}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: _empty("needs Judge0's authorization token, which is not configured"),
}
LANGUAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("the language", _JSON_OBJECT),
    404: NOT_FOUND,
    503: UNAVAILABLE,
}
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("the list", {"type": "array", "items": _JSON_OBJECT}),
    503: UNAVAILABLE,
}
OBJECT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("the document", _JSON_OBJECT),
    503: UNAVAILABLE,
}
TEXT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the version", "content": {"text/plain": {"schema": {"type": "string"}}}}
}
EMPTY_OK: dict[int | str, dict[str, Any]] = {200: _empty("nothing to say")}
