"""Third-party clients, installed from their registries and used unchanged against the
service on the real engine: Judge0's official Python SDK (`judge0`), the async Piston
client `aiopyston`, and the Node Piston client `piston-client` (which sends its JSON as
text/plain)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import judge0
import pytest
from pyston import File, PystonClient
from pyston.exceptions import ExecutionError

from tests.conftest import Server

pytestmark = pytest.mark.integration

NODE_CLIENTS = Path(__file__).parent.parent / "clients" / "node"


def judge0_client(server: Server) -> judge0.Client:
    # A client of its own per test: its retry strategy counts across every wait().
    return judge0.Client(endpoint=server.url, retry_strategy=judge0.MaxWaitTime(60))


def test_judge0_sdk_runs_a_submission_and_is_judged(server: Server) -> None:
    """judge0.run with judge0.PYTHON (mapped by the SDK through /about's 1.13.1 to id 71):
    Accepted, its stdout and figures parsed from every field (`fields=*`: an unknown key
    would make the SDK fail)."""
    client = judge0_client(server)
    ran = judge0.run(
        client=client,
        source_code="print(input()[::-1])",
        language=judge0.PYTHON,
        stdin="hello",
        expected_output="olleh",
    )
    assert ran.status == judge0.Status.ACCEPTED
    assert ran.stdout == "olleh\n"
    assert ran.time is not None
    assert ran.time > 0
    assert ran.memory is not None
    assert ran.memory > 0
    assert ran.token


def test_judge0_sdk_runs_test_cases_as_a_batch_and_reports_verdicts(server: Server) -> None:
    """test_cases: one submission per case, created and polled as a batch; a wrong answer
    and a compile error come back as Judge0's statuses."""
    client = judge0_client(server)
    cases = judge0.run(
        client=client,
        source_code="print(int(input()) * 2)",
        language=judge0.PYTHON,
        test_cases=[("2", "4"), ("3", "7")],
    )
    assert [(case.stdout, case.status) for case in cases] == [
        ("4\n", judge0.Status.ACCEPTED),
        ("6\n", judge0.Status.WRONG_ANSWER),
    ]
    broken = judge0.run(client=client, source_code="int main( {", language=judge0.C)
    assert broken.status == judge0.Status.COMPILATION_ERROR
    assert broken.compile_output


def test_judge0_sdk_async_execute_then_wait(server: Server) -> None:
    """async_execute creates without waiting; judge0.wait polls the batch until both end."""
    client = judge0_client(server)
    submissions = judge0.async_execute(
        client=client,
        submissions=[
            judge0.Submission(source_code='echo "p"', language=46),
            judge0.Submission(source_code="exit 4", language=46),
        ],
    )
    judge0.wait(client=client, submissions=submissions, retry_strategy=judge0.MaxWaitTime(60))
    first, second = submissions
    assert (first.stdout, first.status) == ("p\n", judge0.Status.ACCEPTED)
    assert (second.status, second.exit_code) == (judge0.Status.RUNTIME_ERROR_NZEC, 4)


@pytest.mark.filterwarnings("ignore:verify_ssl is deprecated:DeprecationWarning")
async def test_aiopyston_lists_runtimes_and_executes(server: Server) -> None:
    """aiopyston (trailing-slash routes): the runtimes, a run of an unnamed file at the
    default version `*`, and Piston's 400 for an unknown language as its ExecutionError."""
    client = PystonClient(base_url=f"{server.url}/api/v2/")
    try:
        assert "python" in await client.languages()
        out = await client.execute("py", [File('import sys; print("hello", sys.argv[1:])')])
        assert out.run_stage is not None
        assert out.run_stage.stdout == "hello []\n"
        assert out.run_stage.code == 0
        assert out.version == "3.11.2"
        with pytest.raises(ExecutionError, match=r"cobol-\* runtime is unknown"):
            await client.execute("cobol", [File("x")])
    finally:
        await client.close_session()


def test_piston_client_from_npm_runs_code_sent_as_text_plain(server: Server) -> None:
    """piston-client posts JSON as text/plain with its default args 1 2 3: the program
    runs and gets them; the client reads runtimes by their canonical names."""
    node = shutil.which("node")
    assert node is not None, "make test installs Node for the npm clients"
    assert (NODE_CLIENTS / "node_modules" / "piston-client").is_dir(), "run make clients"
    request = {"language": "python", "code": "import sys; print(sys.argv[1:])", "config": {}}
    done = subprocess.run(
        [node, str(NODE_CLIENTS / "run_piston.mjs"), server.url, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    assert any(runtime["language"] == "python" for runtime in answer["runtimes"])
    result = answer["result"]
    assert result.get("success") is not False, result
    assert (result["language"], result["version"]) == ("python", "3.11.2")
    assert result["run"]["stdout"] == "['1', '2', '3']\n"
    assert result["run"]["code"] == 0
