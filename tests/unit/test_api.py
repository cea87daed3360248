"""The HTTP API over the fake sandbox: shapes, validation, errors, backpressure."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from bgcompiler.sandbox.fake import FakeSandbox

SEED_FIELDS = ["stdout", "stderr", "duration_ms", "timed_out"]
OUR_FIELDS = [
    "exit_code",
    "oom_killed",
    "output_truncated",
    "status",
    "wall_ms",
    "cpu_ms",
    "memory_kb",
    "signal",
]


def body(**overrides: Any) -> dict[str, Any]:
    return {"script": "print(1)", "image": "fake/image", "cmd": "echo hi;", **overrides}


async def test_liveness_answers_200_while_the_engine_answers(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """GET / is 200 with the engine up and 503 (JSON, Retry-After) with it down."""
    client = await api()
    assert (await client.get("/")).status_code == 200
    fake.engine_up = False
    down = await client.get("/")
    assert down.status_code == 503
    assert down.json()["error"] == "engine_unavailable"
    assert "retry-after" in down.headers


async def test_compile_returns_the_seed_fields_first_then_ours(api: Callable[..., Any]) -> None:
    """Each result has the seed's four fields, in the seed's order, then ours."""
    client = await api()
    response = await client.post("/compile", json=body(count=3))
    assert response.status_code == 200
    results = response.json()
    assert len(results) == 3
    for result in results:
        assert list(result) == SEED_FIELDS + OUR_FIELDS
        assert result["stdout"] == "hi\n"
        assert result["status"] == "ok"
        assert result["exit_code"] == 0


async def test_compile_builds_the_seed_command_and_files(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """main.<extension> holds the script, input.txt the input, cmd runs on main.<extension>."""
    client = await api()
    response = await client.post("/compile", json=body(extension="py", input="data"))
    assert response.status_code == 200
    started = fake.started[0]
    assert started.command == "echo hi; main.py"
    assert {f.name: f.content for f in started.files} == {
        "main.py": b"print(1)",
        "input.txt": b"data",
    }


async def test_default_extension_is_ext(api: Callable[..., Any], fake: FakeSandbox) -> None:
    """Without an extension the script is main.ext, as in the seed."""
    client = await api()
    await client.post("/compile", json=body())
    assert fake.started[0].files[0].name == "main.ext"


@pytest.mark.parametrize(
    ("stdin", "delivered"),
    [("abc", b"abc\n"), ("abc\n", b"abc\n"), ("", b""), (None, b"")],
)
async def test_stdin_gets_the_seeds_trailing_newline(
    api: Callable[..., Any], fake: FakeSandbox, stdin: str | None, delivered: bytes
) -> None:
    """stdIn gains a newline when it lacks one; absent or empty stdin delivers nothing."""
    client = await api()
    await client.post("/compile", json=body(stdIn=stdin))
    assert fake.started[0].stdin == delivered


async def test_invalid_utf8_output_comes_back_readable_and_exact(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """Bytes that are not UTF-8 are replaced in `stdout` and given exactly in `stdout_base64`."""
    from bgcompiler.api.schemas import compile_result
    from bgcompiler.models import RunResult, Status

    raw = b"ok \xff\xfe \xe2\x82"
    rendered = compile_result(RunResult(status=Status.OK, stdout=raw, exit_code=0))
    assert rendered["stdout"] == raw.decode("utf-8", errors="replace")
    assert base64.b64decode(rendered["stdout_base64"]) == raw
    assert "stderr_base64" not in rendered
    clean = compile_result(RunResult(status=Status.OK, stdout="é".encode(), exit_code=0))
    assert clean["stdout"] == "é"
    assert "stdout_base64" not in clean


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"null", 422, "invalid_request"),
        (b"[]", 422, "invalid_request"),
        (b'"text"', 422, "invalid_request"),
        (b"", 422, "invalid_request"),
    ],
)
async def test_unparseable_bodies_get_a_json_4xx(
    api: Callable[..., Any], fake: FakeSandbox, content: bytes, status: int, code: str
) -> None:
    """Malformed JSON, null, and non-objects: 4xx with a JSON error body; nothing runs."""
    client = await api()
    response = await client.post(
        "/compile", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert fake.started == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": -1}, "count"),
        ({"count": 10**9}, "count"),
        ({"count": 11}, "count"),  # above --max-count
        ({"count": "3"}, "count"),
        ({"count": 2.5}, "count"),
        ({"script": 5}, "script"),
        ({"image": ["x"]}, "image"),
        ({"cmd": ""}, "cmd"),
        ({"extension": "py; rm -rf /"}, "extension"),
        ({"stdIn": 7}, "stdIn"),
        ({"input": False}, "input"),
    ],
)
async def test_bad_fields_are_named_in_a_422(
    api: Callable[..., Any], fake: FakeSandbox, overrides: dict[str, Any], field: str
) -> None:
    """Every wrong value is a 422 whose body names the field; nothing runs."""
    client = await api(max_count=10)
    response = await client.post("/compile", json=body(**overrides))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fake.started == []


@pytest.mark.parametrize("missing", ["script", "image", "cmd"])
async def test_missing_required_fields_are_named(api: Callable[..., Any], missing: str) -> None:
    """script, image and cmd are required; the 422 names the one that is missing."""
    client = await api()
    payload = body()
    del payload[missing]
    response = await client.post("/compile", json=payload)
    assert response.status_code == 422
    assert response.json()["field"] == missing


async def test_a_body_over_the_cap_is_413(api: Callable[..., Any], fake: FakeSandbox) -> None:
    """Bodies over --max-body get 413 with a JSON body, with or without a Content-Length."""
    client = await api(max_body=1)
    big = body(script="x" * 2000)
    response = await client.post("/compile", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"

    async def trickle() -> Any:
        yield b'{"script": "'
        yield b"x" * 2000
        yield b'", "image": "fake/image", "cmd": "sh"}'

    chunked = await client.post("/compile", content=trickle())
    assert chunked.status_code == 413
    assert chunked.json()["error"] == "body_too_large"
    assert fake.started == []


async def test_json_is_read_whatever_the_content_type(api: Callable[..., Any]) -> None:
    """Like the seed, a JSON body sent as a form (curl -d) is still understood."""
    client = await api()
    import json

    response = await client.post(
        "/compile",
        content=json.dumps(body()).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


async def test_an_absent_image_is_a_422_naming_it(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """An image not on the engine is refused up front, by name; nothing is pulled or run."""
    client = await api()
    response = await client.post("/compile", json=body(image="not/here:1"))
    assert response.status_code == 422
    assert response.json()["error"] == "image_not_found"
    assert "not/here:1" in response.json()["message"]
    assert fake.started == []


async def test_engine_down_is_a_503(api: Callable[..., Any], fake: FakeSandbox) -> None:
    """With the engine unreachable, /compile answers 503 with a clear message."""
    client = await api()
    fake.engine_up = False
    response = await client.post("/compile", json=body())
    assert response.status_code == 503
    assert response.json()["error"] == "engine_unavailable"


async def test_full_backlog_rejects_at_once_with_retry_after(
    api: Callable[..., Any], fake: FakeSandbox
) -> None:
    """A request whose runs do not fit gets 503 + Retry-After immediately; none of it runs."""
    client = await api(workers=1, backlog=2)
    running = asyncio.create_task(client.post("/compile", json=body(cmd="sleep 0.3;", count=3)))
    await asyncio.sleep(0.1)  # one run executing, two waiting: the backlog is full
    loop = asyncio.get_running_loop()
    started = loop.time()
    rejected = await client.post("/compile", json=body(cmd="echo rejected;"))
    assert loop.time() - started < 0.2
    assert rejected.status_code == 503
    assert rejected.json()["error"] == "busy"
    assert int(rejected.headers["retry-after"]) >= 1
    assert (await running).status_code == 200
    assert all("rejected" not in s.command for s in fake.started)


async def test_unknown_routes_and_methods_answer_json(api: Callable[..., Any]) -> None:
    """404 and 405 bodies are JSON like every other error."""
    client = await api()
    assert (await client.get("/nope")).json()["error"] == "not_found"
    assert (await client.get("/compile")).json()["error"] == "method_not_allowed"


async def test_openapi_describes_compile(api: Callable[..., Any]) -> None:
    """The schema documents /compile's body, its result and its error answers."""
    client = await api()
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/compile"]["post"]
    assert {"200", "400", "413", "422", "503"} <= set(operation["responses"])
    assert "CompileRequest" in schema["components"]["schemas"]


async def test_internal_errors_are_reported_per_run(api: Callable[..., Any]) -> None:
    """A run the service could not carry out is `internal_error` with a reason, never ok."""
    client = await api()
    result = (await client.post("/compile", json=body(cmd="echo partial; fail;"))).json()[0]
    assert result["status"] == "internal_error"
    assert result["error"]
    assert result["exit_code"] is None


async def test_client_disconnect_cancels_the_job(fake: FakeSandbox) -> None:
    """When the client goes away, its running run is cancelled and its queued runs dropped."""
    from bgcompiler.api.running import outcome_of
    from bgcompiler.core.plan import Plan
    from bgcompiler.scheduler import Job, Scheduler
    from tests.unit.conftest import spec

    scheduler = Scheduler(fake, workers=1, backlog=10)
    scheduler.start()
    gone = asyncio.Event()

    class Request:
        async def receive(self) -> dict[str, str]:
            await gone.wait()
            return {"type": "http.disconnect"}

    job = Job("j", Plan(run=spec("sleep 5"), count=3))
    waiting = asyncio.create_task(outcome_of(Request(), scheduler, job))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    gone.set()
    with pytest.raises(Exception, match="disconnected"):
        await waiting
    await asyncio.sleep(0.01)
    assert fake.cancelled == 1
    assert len(fake.started) == 1
    assert scheduler.waiting_runs == 0
    await scheduler.shutdown(1)


@pytest.mark.parametrize("field", ["script", "cmd", "input", "stdIn"])
async def test_lone_surrogates_are_not_a_server_error(api: Callable[..., Any], field: str) -> None:
    """JSON may carry a lone UTF-16 surrogate (not encodable as UTF-8): a 4xx, never a 500."""
    client = await api()
    raw = json.dumps(body(**{field: "x"})).replace('"x"', '"a\\ud800b"', 1).encode()
    response = await client.post(
        "/compile", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "image",
    ["bgc/busybox:latest", "python:3.12-alpine", "localhost:5000/team/img:1", "1704c29d84ad"],
)
async def test_valid_image_references_pass_validation(api: Callable[..., Any], image: str) -> None:
    """Ordinary references reach the image check (here: absent from the fake engine)."""
    client = await api()
    response = await client.post("/compile", json=body(image=image))
    assert response.json()["error"] == "image_not_found"


@pytest.mark.parametrize("image", ["r/", "a//b", "Upper", "a@", "x:y:z", "../etc", "a b", ""])
async def test_malformed_image_references_are_refused_before_the_engine(
    api: Callable[..., Any], image: str
) -> None:
    """A reference the engine could not parse (or would misroute) is a 422 naming `image`."""
    client = await api()
    response = await client.post("/compile", json=body(image=image))
    assert response.status_code == 422
    assert response.json()["field"] == "image"


async def test_openapi_describes_the_v1_api_with_examples(api: Callable[..., Any]) -> None:
    """The schema documents /api/v1/runs and /api/v1/languages, with request examples."""
    client = await api()
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/runs" in schema["paths"]
    assert "/api/v1/languages" in schema["paths"]
    request = schema["components"]["schemas"]["RunRequest"]
    assert request["examples"]
    assert {"RunResponse", "Summary", "Environment", "RunOut"} <= set(
        schema["components"]["schemas"]
    )
    assert (await client.get("/docs")).status_code == 200


def _reaches(template: str, operation: dict[str, Any], path: str) -> bool:
    """Whether a request for `path` is one the operation documents: each of the template's
    parameters must take a segment its documented pattern (if any) allows."""
    patterns = {
        p["name"]: p["schema"].get("pattern")
        for p in operation.get("parameters", [])
        if p["in"] == "path"
    }
    wanted, given = template.split("/"), path.split("/")
    if len(wanted) != len(given):
        return False
    for part, segment in zip(wanted, given, strict=True):
        if part.startswith("{"):
            pattern = patterns.get(part.strip("{}"))
            if pattern is not None and re.search(pattern, segment) is None:
                return False
        elif part != segment:
            return False
    return True


async def test_no_documented_operation_takes_the_static_path_beside_it(
    api: Callable[..., Any],
) -> None:
    """A static path (Judge0's `/languages/all`, `/submissions/batch`) is its own operation:
    the path parameter beside it is documented with a pattern that leaves it out, so no
    client following the schema expects another operation's answer from it. A value outside
    the pattern is still answered as Judge0 does (404), not refused by validation (422)."""
    client = await api()
    paths = (await client.get("/openapi.json")).json()["paths"]
    static = [path for path in paths if "{" not in path]
    taken = [
        (method, template, path)
        for template, operations in paths.items()
        if "{" in template
        for method, operation in operations.items()
        for path in static
        if method in paths[path] and _reaches(template, operation, path)
    ]
    assert taken == []
    assert ("get", "/languages/all") in {(m, p) for p, ops in paths.items() for m in ops}
    for odd in ("/languages/python", "/submissions/not-a-token"):
        response = await client.get(odd)
        assert response.status_code == 404, (odd, response.text)
