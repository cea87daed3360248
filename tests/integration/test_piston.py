"""The Piston v2 API on the real engine, as Piston's clients see it: the runtimes present,
one run with stdin and args, a compile and its failure, the statuses and messages of a
timeout and of each output cap, and Piston's refusals (texts, order, status)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.conftest import Server

pytestmark = pytest.mark.integration

STAGE_KEYS = [
    "signal",
    "stdout",
    "stderr",
    "code",
    "output",
    "memory",
    "message",
    "status",
    "cpu_time",
    "wall_time",
]


def is_interleaving(merged: str, first: str, second: str) -> bool:
    """`merged` is `first` and `second` interleaved, each in its own order."""
    if len(merged) != len(first) + len(second):
        return False
    reachable = {(0, 0)}
    for char in merged:
        reachable = {
            step
            for i, j in reachable
            for step, ok in (
                ((i + 1, j), i < len(first) and first[i] == char),
                ((i, j + 1), j < len(second) and second[j] == char),
            )
            if ok
        }
    return (len(first), len(second)) in reachable


def test_runtimes_are_the_languages_whose_image_is_present(server: Server) -> None:
    """Each listed runtime's image is on the engine; python, c and c++ (built by setup) are
    listed with Piston's names, exact versions, aliases and, for gcc's, the runtime."""
    listed = server.client.get("/api/v2/runtimes").json()
    assert server.client.get("/api/v2/runtimes/").json() == listed
    by_name = {entry["language"]: entry for entry in listed}
    assert by_name["python"] == {
        "language": "python",
        "version": "3.11.2",
        "aliases": ["py", "py3", "python3"],
    }
    assert by_name["c++"]["runtime"] == "gcc"
    assert "cpp" in by_name["c++"]["aliases"]
    images = {
        "sh": "bgc/busybox:latest",
        "python": "bgc/python:3",
        "c": "bgc/gcc:12",
        "c++": "bgc/gcc:12",
        "javascript": "bgc/node:18",
        "go": "bgc/go:1.19",
        "java": "bgc/java:17",
        "ruby": "bgc/ruby:3.1",
        "rust": "bgc/rust:1.63",
    }
    for name, image in images.items():
        present = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        assert (name in by_name) == (present.returncode == 0), name


def test_a_run_gets_stdin_args_and_its_output_in_write_order(server: Server) -> None:
    """An alias and a range pick the runtime; stdin gets Piston's final newline; args reach
    the program as given; `output` interleaves the streams as written; keys in Piston's
    order; the body may come as text/plain (as a widely used client sends it)."""
    program = (
        "import sys\n"
        "line = sys.stdin.read()\n"
        "print(repr(line), sys.argv[1:], flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print('last', flush=True)\n"
    )
    body = {
        "language": "py3",
        "version": "3.x",
        "files": [{"content": program}],
        "stdin": "in",
        "args": ["a b", "$HOME"],
    }
    response = server.client.post(
        "/api/v2/execute", content=json.dumps(body), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["run", "language", "version"]
    assert (answer["language"], answer["version"]) == ("python", "3.11.2")
    run = answer["run"]
    assert list(run) == STAGE_KEYS
    assert run["stdout"] == "'in\\n' ['a b', '$HOME']\nlast\n"
    assert run["stderr"] == "to stderr\n"
    # Two pipes read apart: the order of writes microseconds apart is the engine's (as in
    # Piston); that arrival order is kept is tested on frames in tests/unit/test_capture.py.
    assert is_interleaving(run["output"], run["stdout"], run["stderr"])
    assert (run["code"], run["signal"], run["status"], run["message"]) == (0, None, None, None)
    assert run["memory"] > 0
    assert run["cpu_time"] > 0
    assert run["wall_time"] >= run["cpu_time"] * 0.5


def test_a_compiled_language_reports_both_stages_and_a_failed_compile_is_the_run(
    server: Server,
) -> None:
    """C: compile then run (exit 3: RE with isolate's message); a compile error: no run,
    and `run` is the compile stage, as Piston answers."""
    built = server.post_ok(
        "/api/v2/execute",
        language="c",
        version="12",
        files=[{"name": "m.c", "content": "int main(void) { return 3; }"}],
    )
    assert list(built) == ["compile", "run", "language", "version"]
    assert (built["compile"]["status"], built["compile"]["code"]) == (None, 0)
    assert (built["run"]["status"], built["run"]["code"]) == ("RE", 3)
    assert built["run"]["message"] == "Exited with error status 3"
    failed = server.post_ok(
        "/api/v2/execute",
        language="c",
        version="*",
        files=[{"name": "m.c", "content": "int main(void) { retur 3; }"}],
    )
    assert failed["compile"]["status"] == "RE"
    assert "retur" in failed["compile"]["stderr"]
    assert failed["run"] == failed["compile"]


def test_timeouts_and_output_caps_are_pistons_statuses(server: Server) -> None:
    """A run past run_timeout: TO, SIGKILL, no code. A flood on stdout: OL; on stderr: EL;
    each with Piston's message and SIGKILL."""
    slept = server.post_ok(
        "/api/v2/execute",
        language="sh",
        version="*",
        files=[{"content": "sleep 30"}],
        run_timeout=500,
    )["run"]
    assert (slept["status"], slept["signal"], slept["code"]) == ("TO", "SIGKILL", None)
    assert slept["message"] == "Time limit exceeded (wall clock)"
    for script, status, message in (
        ("yes", "OL", "stdout length exceeded"),
        ("yes >&2", "EL", "stderr length exceeded"),
    ):
        flooded = server.post_ok(
            "/api/v2/execute", language="sh", version="*", files=[{"content": script}]
        )["run"]
        assert (flooded["status"], flooded["message"], flooded["signal"]) == (
            status,
            message,
            "SIGKILL",
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "language is required as a string"),
        ({"language": "python"}, "version is required as a string"),
        ({"language": "python", "version": "3"}, "files is required as an array"),
        (
            {"language": "python", "version": "3", "files": [{"content": "x"}, {}]},
            "files[1].content is required as a string",
        ),
        ({"language": "python", "version": "4", "files": []}, "python-4 runtime is unknown"),
        (
            {"language": "python", "version": "3", "files": []},
            "files must include at least one utf8 encoded file",
        ),
        (
            {
                "language": "python",
                "version": "3",
                "files": [{"content": "x"}],
                "run_timeout": 3001,
                "compile_memory_limit": "a",
            },
            "If specified, compile_memory_limit must be a number",
        ),
        (
            {
                "language": "python",
                "version": "3",
                "files": [{"content": "x"}],
                "run_timeout": 3001,
            },
            "run_timeout cannot exceed the configured limit of 3000",
        ),
        (
            {"language": "python", "version": "3", "files": [{"content": "x"}], "run_cpu_time": -5},
            "run_cpu_time must be non-negative",
        ),
    ],
)
def test_refusals_are_pistons_in_its_order(
    server: Server, body: dict[str, Any], message: str
) -> None:
    """Each refusal: 400 with exactly Piston's message, the first failing check winning."""
    response = server.client.post("/api/v2/execute", json=body)
    assert (response.status_code, response.json()) == (400, {"message": message})


def test_a_body_that_is_not_json_is_a_400_naming_it(server: Server) -> None:
    response = server.client.post("/api/v2/execute", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not JSON")
