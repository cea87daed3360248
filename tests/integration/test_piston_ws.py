"""Piston v2's interactive WebSocket on the real engine, as its clients see it: the frames of
a run and of a compile, input echoed line by line while the program runs, a signal that
reaches the program, the output cap, every close code, and no container left behind by a
client that leaves or a close that ends the job."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Server, wait_until

pytestmark = pytest.mark.integration

ECHO_UPPER = """
import sys
while True:
    line = sys.stdin.readline()
    if not line:
        break
    print(line.upper(), end="", flush=True)
print("bye", file=sys.stderr)
"""

C_GREETER = r"""
#include <stdio.h>
int main(void) {
    char name[64];
    if (!fgets(name, sizeof name, stdin)) return 3;
    printf("hello %s", name);
    return 0;
}
"""


def open_ws(server: Server) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{server.port}/api/v2/connect", open_timeout=30, close_timeout=10
    )


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def receive(ws: ClientConnection, timeout: float = 60) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def until_closed(ws: ClientConnection, timeout: float = 60) -> tuple[list[dict[str, Any]], int]:
    """Every message left, then the close code (its reason is checked by the callers)."""
    messages = []
    received = None
    try:
        while True:
            messages.append(receive(ws, timeout))
    except ConnectionClosed as closed:
        received = closed.rcvd
    assert received is not None, "the server did not close the connection"
    return messages, received.code


def close_reason(ws: ClientConnection) -> str:
    assert ws.close_reason is not None
    return ws.close_reason


def stream_text(ws: ClientConnection, expected: str, stream: str = "stdout") -> None:
    """Reads data frames of `stream` until they add up to `expected`."""
    text = ""
    while len(text) < len(expected):
        message = receive(ws)
        assert message["type"] == "data", message
        assert message["stream"] == stream, message
        text += message["data"]
    assert text == expected


def init(
    ws: ClientConnection, language: str, content: str, name: str = "main", **extra: Any
) -> None:
    file = {"name": name, "content": content}
    send(ws, type="init", language=language, version="*", files=[file], **extra)


def test_a_run_streams_each_line_back_before_the_next_is_sent(server: Server) -> None:
    """runtime, stage run, then each line typed comes back upper-cased while the program
    runs (the next line is sent only after); `eof` ends its input, it exits 0, its stderr
    arrives before `exit`, and the connection closes 4999 Job Completed."""
    with open_ws(server) as ws:
        init(ws, "python", ECHO_UPPER, stdin="ignored, as Piston ignores it\n")
        assert receive(ws) == {"type": "runtime", "language": "python", "version": "3.11.2"}
        assert receive(ws) == {"type": "stage", "stage": "run"}
        for line in ("hello\n", "wörld ✓\n"):
            send(ws, type="data", stream="stdin", data=line)
            stream_text(ws, line.upper())
        send(ws, type="data", stream="stdin", data="", eof=True)
        messages, code = until_closed(ws)
        assert code == 4999
        assert close_reason(ws) == "Job Completed"
    assert messages == [
        {"type": "data", "stream": "stderr", "data": "bye\n"},
        {"type": "exit", "stage": "run", "code": 0, "signal": None},
    ]


def test_a_compiled_language_compiles_then_runs_with_live_input(server: Server) -> None:
    """c: stage compile and its exit 0, then stage run; input typed during the run reaches
    the program, which answers and exits 0; then 4999."""
    with open_ws(server) as ws:
        init(ws, "c", C_GREETER, name="main.c")
        assert receive(ws)["type"] == "runtime"
        assert receive(ws) == {"type": "stage", "stage": "compile"}
        assert receive(ws) == {"type": "exit", "stage": "compile", "code": 0, "signal": None}
        assert receive(ws) == {"type": "stage", "stage": "run"}
        send(ws, type="data", stream="stdin", data="piston\n")
        stream_text(ws, "hello piston\n")
        messages, code = until_closed(ws)
    assert code == 4999
    assert messages == [{"type": "exit", "stage": "run", "code": 0, "signal": None}]


def test_a_failed_compile_has_no_run_stage(server: Server) -> None:
    """A compile error: the compiler's stderr, exit compile with code 1, no run, 4999."""
    with open_ws(server) as ws:
        init(ws, "c", "int main(void) { return x; }\n", name="main.c")
        messages, code = until_closed(ws)
    assert code == 4999
    kinds = [(m["type"], m.get("stage")) for m in messages]
    assert kinds[:2] == [("runtime", None), ("stage", "compile")]
    assert kinds[-1] == ("exit", "compile")
    assert ("stage", "run") not in kinds
    assert messages[-1]["code"] == 1
    stderr = "".join(m["data"] for m in messages if m["type"] == "data")
    assert "‘x’ undeclared" in stderr  # gcc's quotes, split or not, arrive whole


def test_a_signal_reaches_the_program_and_ends_its_stage(patient_server: Server) -> None:
    """SIGTERM sent to `sleep 60` (no time limit of its own) ends it by that signal: exit
    with code null and signal SIGTERM, not the SIGKILL of a time limit."""
    with open_ws(patient_server) as ws:
        init(ws, "sh", "echo started\nsleep 60\n", run_timeout=0)
        assert receive(ws)["type"] == "runtime"
        assert receive(ws) == {"type": "stage", "stage": "run"}
        stream_text(ws, "started\n")
        send(ws, type="signal", signal="SIGTERM")
        messages, code = until_closed(ws)
    assert code == 4999
    assert messages == [{"type": "exit", "stage": "run", "code": None, "signal": "SIGTERM"}]


# A signal frame for SIGTERM with a nonce of zeros, written where the helper reads frames
# (the container's stdin, reachable as the init's fd 0), then a wait, then input to its end.
FORGER = r"""
printf 's%032d\000\000\000\001\017' 0 > /proc/1/fd/0 && echo forged || echo refused
sleep 0.5
echo alive
cat
echo input-ended
"""


def test_a_frame_the_program_forges_is_not_obeyed(server: Server) -> None:
    """A program writing a signal frame (without the run's nonce) into the container's
    input is not signalled: it lives on, its input ends (at the forged frame, or at the
    client's eof) and it exits 0."""
    with open_ws(server) as ws:
        init(ws, "sh", FORGER)
        assert receive(ws)["type"] == "runtime"
        assert receive(ws) == {"type": "stage", "stage": "run"}
        text = ""
        while "alive" not in text:
            message = receive(ws)
            assert message["type"] == "data", message
            text += message["data"]
        # If the input ended at the forged frame, the run may be over before our eof.
        with contextlib.suppress(ConnectionClosed):
            send(ws, type="data", stream="stdin", data="", eof=True)
        messages, code = until_closed(ws)
    assert code == 4999
    text += "".join(m["data"] for m in messages if m["type"] == "data" and m["stream"] == "stdout")
    assert text.endswith("alive\ninput-ended\n")
    assert messages[-1] == {"type": "exit", "stage": "run", "code": 0, "signal": None}


def test_output_past_the_cap_kills_the_stage(server: Server) -> None:
    """A flood is streamed up to the server's cap (30 KB on stdout) and not a byte more;
    the stage is killed: exit with code null and signal SIGKILL."""
    with open_ws(server) as ws:
        init(ws, "sh", "while :; do echo 0123456789abcdef; done\n")
        messages, code = until_closed(ws)
    assert code == 4999
    data = "".join(m["data"] for m in messages if m["type"] == "data")
    assert len(data) == 30 * 1024
    assert set(data) == set("0123456789abcdef\n")
    assert messages[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}


def test_a_client_that_leaves_mid_run_leaves_no_container(patient_server: Server) -> None:
    """A client gone while `sleep 60` runs: the job is killed and its container removed
    long before the program would have ended."""
    with open_ws(patient_server) as ws:
        init(ws, "sh", "sleep 60\n", run_timeout=0)
        assert receive(ws)["type"] == "runtime"
        assert receive(ws) == {"type": "stage", "stage": "run"}
        assert wait_until(patient_server.program_running, timeout=30)
    assert wait_until(lambda: not patient_server.busy(), timeout=20)
    assert patient_server.settled(timeout=20), patient_server.containers()


def test_a_second_init_closes_4000_and_kills_the_job(patient_server: Server) -> None:
    """A second `init` while `sleep 60` runs: close 4000 Already Initialized, no error
    frame, and the running job is killed (its container removed) at once."""
    with open_ws(patient_server) as ws:
        init(ws, "sh", "sleep 60\n", run_timeout=0)
        assert receive(ws)["type"] == "runtime"
        assert receive(ws) == {"type": "stage", "stage": "run"}
        init(ws, "sh", "echo again\n")
        messages, code = until_closed(ws)
        assert (code, close_reason(ws)) == (4000, "Already Initialized")
    assert messages == []
    assert wait_until(lambda: not patient_server.busy(), timeout=20)
    assert patient_server.settled(timeout=20), patient_server.containers()


def test_no_init_within_a_second_closes_4001(server: Server) -> None:
    """A connection that sends nothing (or only messages of unknown types) is closed 4001
    Initialization Timeout."""
    with open_ws(server) as ws:
        send(ws, type="hello")
        ws.send("5")
        messages, code = until_closed(ws, timeout=10)
        assert (code, close_reason(ws)) == (4001, "Initialization Timeout")
    assert messages == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            json.dumps({"type": "init", "version": "*", "files": []}),
            "language is required as a string",
        ),
        (
            json.dumps({"type": "init", "language": "cobol", "version": "*", "files": []}),
            "cobol-* runtime is unknown",
        ),
        (
            json.dumps(
                {
                    "type": "init",
                    "language": "python",
                    "version": "*",
                    "files": [{"content": "x"}],
                    "run_timeout": 3001,
                }
            ),
            "run_timeout cannot exceed the configured limit of 3000",
        ),
        ("null", "Cannot read properties of null (reading 'type')"),
    ],
)
def test_a_bad_init_is_an_error_frame_then_4002(server: Server, raw: str, message: str) -> None:
    """An init Piston refuses: its message in an error frame, then 4002 Notified Error."""
    with open_ws(server) as ws:
        ws.send(raw)
        messages, code = until_closed(ws)
        assert (code, close_reason(ws)) == (4002, "Notified Error")
    assert messages == [{"type": "error", "message": message}]


def test_text_that_is_not_json_is_an_error_frame_then_4002(server: Server) -> None:
    """Invalid JSON: an error frame with the parser's message, then 4002."""
    with open_ws(server) as ws:
        ws.send("hello")
        messages, code = until_closed(ws)
    assert code == 4002
    assert len(messages) == 1
    assert messages[0]["type"] == "error"
    assert messages[0]["message"]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "data", "stream": "stdin", "data": "x"},
        {"type": "signal", "signal": "SIGKILL"},
    ],
)
def test_data_or_a_signal_before_init_closes_4003(server: Server, message: dict[str, Any]) -> None:
    """Input or a signal with no job: 4003 Not yet initialized."""
    with open_ws(server) as ws:
        ws.send(json.dumps(message))
        messages, code = until_closed(ws)
        assert (code, close_reason(ws)) == (4003, "Not yet initialized")
    assert messages == []


def test_data_for_another_stream_closes_4004_and_invalid_signals_4005(
    server: Server,
) -> None:
    """After init: data for stdout closes 4004 Can only write to stdin; a signal Piston
    does not name (a number, lower case, no prefix) closes 4005 Invalid signal."""
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"type": "data", "stream": "stdout", "data": "x"}, 4004, "Can only write to stdin"),
        ({"type": "signal", "signal": 9}, 4005, "Invalid signal"),
        ({"type": "signal", "signal": "sigkill"}, 4005, "Invalid signal"),
        ({"type": "signal", "signal": "KILL"}, 4005, "Invalid signal"),
    ]
    for message, expected_code, reason in cases:
        with open_ws(server) as ws:
            init(ws, "sh", "sleep 2\n")
            assert receive(ws)["type"] == "runtime"
            ws.send(json.dumps(message))
            messages, code = until_closed(ws)
            assert (code, close_reason(ws)) == (expected_code, reason), message
        assert all(m["type"] in ("stage", "data") for m in messages), messages
