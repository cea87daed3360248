"""`bg-compiler run` as a user or CI runs it (a subprocess) against the real service:
exit statuses, the progress fed by the event stream, --json, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server

pytestmark = [
    pytest.mark.integration,
    # The client is the same whatever runs the containers: runc's shared service only.
    pytest.mark.parametrize("shared_server", ["runc"], indirect=True),
]

ADD = "read a b\necho $((a + b))\n"


def bg_run(
    server_url: str, *args: str, cwd: Path, command: str = "run"
) -> subprocess.CompletedProcess[str]:
    """`bg-compiler COMMAND ARGS` with the server given by BGC_SERVER, as CI would set it."""
    env = {**os.environ, "BGC_SERVER": server_url, "COLUMNS": "120"}
    env.pop("BGC_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "bgcompiler", command, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.fixture
def tests_dir(tmp_path: Path) -> Path:
    """Two addition tests (1 2 -> 3, 40 2 -> 42) and a right and a wrong solution."""
    cases = tmp_path / "tests"
    cases.mkdir()
    for name, stdin, out in (("1", "1 2", "3\n"), ("2", "40 2", "42\n")):
        (cases / f"{name}.in").write_text(stdin)
        (cases / f"{name}.out").write_text(out)
    (tmp_path / "add.sh").write_text(ADD)
    (tmp_path / "sub.sh").write_text(ADD.replace("+", "-"))
    return cases


def test_accepted_tests_exit_0_with_progress_table_and_summary(
    server: Server, tests_dir: Path
) -> None:
    """The language is guessed from `.sh`; each run's progress line (off a terminal, one per
    `run` event) comes on stderr; stdout has the table and the summary; exit 0."""
    done = bg_run(server.url, "add.sh", "--tests", "tests", "--count", "2", cwd=tests_dir.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    for index in range(1, 5):
        assert f"run {index}/4: ok accepted" in done.stderr
    assert "4/4" in done.stderr  # the bar's last state
    assert "accepted" in done.stdout
    assert "median" in done.stdout
    assert "p95" in done.stdout
    assert "tests accepted: 2/2" in done.stdout
    assert "identical outputs: yes" in done.stdout


def test_a_wrong_answer_exits_1(server: Server, tests_dir: Path) -> None:
    """A solution that prints the wrong sums: the runs are wrong_answer, the exit status 1."""
    done = bg_run(server.url, "sub.sh", "--tests", "tests", cwd=tests_dir.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "wrong_answer" in done.stdout
    assert "tests accepted: 0/2" in done.stdout


def test_json_prints_only_the_job_document(server: Server, tests_dir: Path) -> None:
    """--json: stdout parses as the job document (done, the run's stdout from --stdin)."""
    stdin = tests_dir / "2.in"
    done = bg_run(server.url, "add.sh", "--stdin", str(stdin), "--json", cwd=tests_dir.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "done"
    assert [run["stdout"] for run in document["result"]["runs"]] == ["42\n"]


def test_errors_name_the_problem_and_exit_4(server: Server, tests_dir: Path) -> None:
    """An unknown language: the server's 422 named (field and message); a server nobody
    listens on: `cannot reach` it. Both exit 4, with no traceback."""
    refused = bg_run(server.url, "add.sh", "--language", "nope", cwd=tests_dir.parent)
    assert refused.returncode == 4
    assert "422 invalid_request (field language)" in refused.stderr
    assert "unknown language 'nope'" in " ".join(refused.stderr.split())
    unreachable = bg_run("http://127.0.0.1:9", "add.sh", cwd=tests_dir.parent)
    assert unreachable.returncode == 4
    assert "cannot reach http://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in refused.stderr + unreachable.stderr
