"""The Judge0 CE 1.13.1 API on the real engine, as Judge0's clients see it: submissions
waited for and polled by token, verdicts against expected output, a compile error and its
output, batches, the zip of additional files, averaged repeats, the PUT callback, a full
queue, and Judge0's refusals."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bgcompiler.api.judge0_wire import FIELDS
from tests.conftest import TEST_FLAGS, Server, launch, wait_until
from tests.integration.conftest import Receiver

pytestmark = pytest.mark.integration

DEFAULT_KEYS = [
    "stdout",
    "time",
    "memory",
    "stderr",
    "token",
    "compile_output",
    "message",
    "status",
]
REVERSE = "print(input()[::-1])"


def submitted(server: Server, body: dict[str, Any], **params: str) -> dict[str, Any]:
    response = server.client.post("/submissions", json=body, params=params)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def polled(server: Server, token: str, **params: str) -> dict[str, Any]:
    """The submission once it has left the queue and processing (status > 2)."""
    found: dict[str, Any] = {}

    def ended() -> bool:
        found.update(server.client.get(f"/submissions/{token}", params=params).json())
        return bool(found["status"]["id"] > 2)

    assert wait_until(ended, timeout=60)
    return found


def test_a_submission_waited_for_is_judged_against_its_expected_output(server: Server) -> None:
    """wait=true: 201 and the submission in Judge0's default fields and order; Accepted
    with trailing whitespace ignored, Wrong Answer otherwise; time a decimal string."""
    body = {"source_code": REVERSE, "language_id": 71, "stdin": "hello", "expected_output": "olleh"}
    accepted = submitted(server, body, wait="true")
    assert list(accepted) == DEFAULT_KEYS
    assert accepted["status"] == {"id": 3, "description": "Accepted"}
    assert accepted["stdout"] == "olleh\n"
    assert isinstance(accepted["time"], str)
    assert float(accepted["time"]) > 0
    assert isinstance(accepted["memory"], int)
    wrong = submitted(server, {**body, "expected_output": "hello"}, wait="true")
    assert wrong["status"] == {"id": 4, "description": "Wrong Answer"}


def test_a_token_is_polled_with_every_field_and_an_unknown_one_is_a_404(server: Server) -> None:
    """Without wait: 201 with the token only; polled until it ends; fields=* is every
    field in Judge0's order; an unknown token is an empty 404 (JSON when asked for)."""
    created = submitted(server, {"source_code": "exit 3", "language_id": 46})
    assert list(created) == ["token"]
    every = polled(server, created["token"], fields="*")
    assert list(every) == list(FIELDS)
    assert every["status"] == {"id": 11, "description": "Runtime Error (NZEC)"}
    assert (every["exit_code"], every["message"]) == (3, "Exited with error status 3")
    assert every["language"] == {"id": 46, "name": "Bash (5.2.15)"}
    assert every["cpu_time_limit"] == "3.0"  # Judge0's 5.0, at most this server's 3 s
    unknown = server.client.get("/submissions/00000000-0000-4000-8000-000000000000")
    assert (unknown.status_code, unknown.content) == (404, b"")
    as_json = server.client.get("/submissions/not-a-token", headers={"Accept": "application/json"})
    assert (as_json.status_code, as_json.json()) == (404, {"status": 404, "error": "Not Found"})
    bad_fields = server.client.get(f"/submissions/{created['token']}", params={"fields": "x,y"})
    assert (bad_fields.status_code, bad_fields.json()) == (
        400,
        {"error": "invalid fields: [x, y]"},
    )


def test_a_compile_error_has_its_output_which_needs_base64_when_not_ascii(server: Server) -> None:
    """C that does not compile: status 6, no figures, gcc's output (with its curly quotes:
    Judge0's 400 without base64_encoded, the bytes with it)."""
    created = submitted(server, {"source_code": "int main(void) { retur 0; }", "language_id": 50})
    failed = polled(server, created["token"], base64_encoded="true")
    assert failed["status"] == {"id": 6, "description": "Compilation Error"}
    assert (failed["time"], failed["memory"], failed["stdout"]) == (None, None, None)
    output = base64.b64decode(failed["compile_output"])
    assert b"retur" in output
    if not output.isascii():
        refused = server.client.get(f"/submissions/{created['token']}")
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("some attributes for this submission")


def test_batches_answer_each_submission_in_order(server: Server) -> None:
    """A batch with a bad element: 201, a token or that element's errors at its place;
    GET by tokens answers in the same order, null for an unknown token."""
    answer = server.client.post(
        "/submissions/batch",
        json={
            "submissions": [
                {"source_code": "print(6 * 7)", "language_id": 71},
                {"source_code": "x", "language_id": 9999},
                {"source_code": "echo $((6 * 7))", "language_id": 46},
            ]
        },
    )
    assert answer.status_code == 201, answer.text
    first, bad, third = answer.json()
    assert bad == {"language_id": ["language with id 9999 doesn't exist"]}
    for token in (first["token"], third["token"]):
        polled(server, token)
    unknown = "00000000-0000-4000-8000-000000000000"
    tokens = f"{first['token']},{unknown},{third['token']}"
    found = server.client.get("/submissions/batch", params={"tokens": tokens, "fields": "stdout"})
    assert found.json() == {"submissions": [{"stdout": "42\n"}, None, {"stdout": "42\n"}]}
    empty = server.client.post("/submissions/batch", json={"submissions": []})
    assert (empty.status_code, empty.json()) == (
        400,
        {"error": "there should be at least one submission in a batch"},
    )


def test_files_arguments_redirection_and_repeats(server: Server) -> None:
    """additional_files unpacked beside the source, command_line_arguments passed,
    stderr joined to stdout; three runs: `time` their average CPU time."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data/n.txt", "21\n")
    source = (
        "import sys\n"
        "n = int(open('data/n.txt').read())\n"
        "print(n * int(sys.argv[1]), flush=True)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    body = {
        "source_code": source,
        "language_id": 71,
        "additional_files": base64.b64encode(archive.getvalue()).decode(),
        "command_line_arguments": "2",
        "redirect_stderr_to_stdout": True,
        "number_of_runs": 3,
    }
    ran = submitted(server, body, wait="true", fields="stdout,stderr,status,time,number_of_runs")
    assert ran["status"]["id"] == 3, ran
    assert ran["stdout"] == "42\nto stderr\n"
    assert ran["stderr"] is None
    assert ran["number_of_runs"] == 3


def test_validation_and_a_full_queue_are_judge0s_answers(tmp_path: Path) -> None:
    """422 with Judge0's messages; with the one worker busy and no backlog: 503 queue is
    full, and nothing stored."""
    service = launch(tmp_path, *TEST_FLAGS, "--workers", "1", "--backlog", "0")
    try:
        invalid = service.client.post("/submissions", json={"language_id": 71})
        assert (invalid.status_code, invalid.json()) == (
            422,
            {"source_code": ["can't be blank"]},
        )
        slow = submitted(service, {"source_code": "sleep 2", "language_id": 46})

        def processing() -> bool:
            found = service.client.get(f"/submissions/{slow['token']}").json()
            return bool(found["status"]["id"] == 2)

        assert wait_until(processing, timeout=30)
        full = service.client.post("/submissions", json={"source_code": "x", "language_id": 71})
        assert full.status_code == 503
        assert full.json()["error"] == "queue is full"
        assert polled(service, slow["token"])["status"]["id"] == 3
    finally:
        assert service.stop() == 0


def test_a_callback_is_a_put_of_the_default_fields_in_base64(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    """When the submission ends, its callback_url gets a PUT: the default fields, base64
    encoded as Judge0 does (Ruby's lines)."""
    url, handler = receiver
    service = launch(tmp_path, *TEST_FLAGS, "--webhook-secret", "s", "--webhook-allow-private")
    try:
        created = submitted(
            service, {"source_code": "echo hi", "language_id": 46, "callback_url": url}
        )
        assert wait_until(lambda: len(handler.calls) == 1, timeout=30)
        assert handler.methods == ["PUT"]
        document = json.loads(handler.calls[0][1])
        assert list(document) == DEFAULT_KEYS
        assert document["token"] == created["token"]
        assert document["stdout"] == "aGkK\n"
        assert document["status"]["id"] == 3
    finally:
        assert service.stop() == 0


def test_the_information_routes_answer_as_judge0s(server: Server) -> None:
    """about says 1.13.1; config_info has Judge0's 39 keys with our maximums; statuses
    1-14; languages present by Judge0's ids and names, one of them in full."""
    assert server.client.get("/about").json()["version"] == "1.13.1"
    assert server.client.get("/version").text == "1.13.1"
    config = server.client.get("/config_info").json()
    assert len(config) == 39
    assert (config["max_wall_time_limit"], config["max_memory_limit"]) == (3.0, 256 * 1024)
    statuses = server.client.get("/statuses").json()
    assert [s["id"] for s in statuses] == list(range(1, 15))
    listed = {entry["id"]: entry["name"] for entry in server.client.get("/languages").json()}
    assert listed[71] == "Python (3.11.2)"
    assert listed[54] == "C++ (GCC 12.2.0)"
    python = server.client.get("/languages/71").json()
    assert list(python) == ["id", "name", "is_archived", "source_file", "compile_cmd", "run_cmd"]
    assert python["compile_cmd"] is None
    assert server.client.get("/languages/70").status_code == 404
    workers = server.client.get("/workers").json()
    assert workers[0]["queue"] == "1.13.1"
