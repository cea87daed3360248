"""POST /api/v1/runs on the real engine, with runc and with runsc."""

from __future__ import annotations

import base64
import os
import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, launch

pytestmark = pytest.mark.integration

SUM_C = (
    "#include <stdio.h>\n"
    'int main(void){long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 2; printf("%ld\\n",a+b);}\n'
)


def v1(server: Server, **body: Any) -> dict[str, Any]:
    response = server.client.post("/api/v1/runs", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_c_is_compiled_once_and_run_five_times(server: Server) -> None:
    """One compile result; five runs all execute the artefact that one compile produced."""
    result = v1(
        server,
        image="bgc/gcc:12",
        files=[{"name": "main.c", "content": SUM_C}],
        compile="gcc -O2 -o main main.c && head -c 16 /dev/urandom | od -An -tx1 > built",
        run="cat built; echo 20 22 | ./main",
        count=5,
    )
    assert result["compile"]["status"] == "ok"
    assert result["compile"]["exit_code"] == 0
    assert result["compile"]["wall_ms"] > 0
    assert len(result["runs"]) == 5
    outputs = {run["stdout"] for run in result["runs"]}
    assert len(outputs) == 1, "the runs did not all get the same compiled files"
    assert outputs.pop().endswith("42\n")
    assert result["summary"]["identical_outputs"] is True
    assert result["summary"]["distinct_outputs"] == 1
    assert [run["repeat"] for run in result["runs"]] == [0, 1, 2, 3, 4]


def test_a_failing_compile_runs_nothing_and_returns_the_compilers_message(server: Server) -> None:
    """A compile error: its status and message come back, and no run happens."""
    result = v1(server, language="c", script="int main(void) { return oops; }", count=3)
    assert result["compile"]["status"] == "runtime_error"
    assert result["compile"]["exit_code"] != 0
    assert "oops" in result["compile"]["stderr"]
    assert result["runs"] == []
    assert result["summary"]["runs"] == 0


def test_test_cases_get_verdicts_in_both_compare_modes(server: Server) -> None:
    """trim ignores trailing spaces and blank lines; exact does not; a wrong sum is wrong."""
    tests = [
        {"stdin": "1 2", "expected_output": "3"},
        {"stdin": "40 2", "expected_output": "41\n"},
    ]
    script = SUM_C.replace('"%ld\\n"', '"%ld  \\n\\n"')  # trailing spaces and a blank line
    trim = v1(server, language="c", script=script, tests=tests, compare="trim", count=2)
    assert [(r["test"], r["verdict"]) for r in trim["runs"]] == [
        (0, "accepted"),
        (0, "accepted"),
        (1, "wrong_answer"),
        (1, "wrong_answer"),
    ]
    assert trim["summary"]["tests"] == 2
    assert trim["summary"]["accepted"] == 1
    exact = v1(server, language="c", script=script, tests=tests, compare="exact")
    assert [r["verdict"] for r in exact["runs"]] == ["wrong_answer", "wrong_answer"]
    assert exact["summary"]["accepted"] == 0


def test_a_run_that_did_not_finish_ok_has_no_verdict(server: Server) -> None:
    """A crash is a status, not a wrong answer."""
    result = v1(
        server, language="sh", script="exit 3", tests=[{"stdin": "", "expected_output": ""}]
    )
    assert result["runs"][0]["status"] == "runtime_error"
    assert result["runs"][0]["verdict"] is None


def test_per_request_limits_apply_and_are_reported(server: Server) -> None:
    """time_ms, memory_mb, output_kb, pids and cpus below the server's maxima take effect."""
    result = v1(
        server,
        language="sh",
        script="yes | head -c 5000; sleep 5",
        limits={"time_ms": 500, "memory_mb": 64, "output_kb": 2, "pids": 32, "cpus": 0.5},
    )
    run = result["runs"][0]
    assert run["status"] == "output_limit"
    assert len(run["stdout"]) == 2048
    limits = result["environment"]["limits"]
    assert limits == {
        "time_ms": 500,
        "memory_mb": 64,
        "output_kb": 2,
        "pids": 32,
        "cpus": 0.5,
        "disk_mb": 16,
    }
    slow = v1(server, language="sh", script="exec sleep 5", limits={"time_ms": 500})
    assert slow["runs"][0]["status"] == "timeout"
    assert 490 <= slow["runs"][0]["wall_ms"] <= 560


@pytest.mark.parametrize(
    ("field", "value"),
    [("time_ms", 3001), ("memory_mb", 257), ("output_kb", 31), ("pids", 65), ("cpus", 1.5)],
)
def test_limits_above_the_servers_are_refused_by_name(
    server: Server, field: str, value: float
) -> None:
    """A limit over the server's maximum is a 422 naming `limits.<field>`; nothing runs."""
    response = server.client.post(
        "/api/v1/runs", json={"language": "sh", "script": "true", "limits": {field: value}}
    )
    assert response.status_code == 422
    assert response.json()["field"] == f"limits.{field}"


def test_binary_files_stdin_and_output_round_trip_in_base64(server: Server) -> None:
    """Every byte value survives: base64 file in, base64 stdin in, base64 stdout out."""
    blob = bytes(range(256)) * 4
    result = v1(
        server,
        image="bgc/busybox:latest",
        run="cat data.bin; cat",
        files=[
            {"name": "data.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64"}
        ],
        stdin_base64=base64.b64encode(b"\x00\xff\xfe").decode(),
    )
    run = result["runs"][0]
    assert base64.b64decode(run["stdout_base64"]) == blob + b"\x00\xff\xfe"


def test_stdin_is_byte_exact(server: Server) -> None:
    """Unlike /compile, v1 adds no newline to stdin."""
    result = v1(server, language="sh", script="wc -c", stdin="abc")
    assert result["runs"][0]["stdout"].strip() == "3"


def test_args_reach_the_program_verbatim(server: Server) -> None:
    """`args` are appended quoted: spaces and `$` arrive as given."""
    result = v1(
        server,
        image="bgc/busybox:latest",
        run="sh main",
        script='for a; do echo "[$a]"; done',
        args=["a b", "$HOME", "'q'"],
    )
    assert result["runs"][0]["stdout"] == "[a b]\n[$HOME]\n['q']\n"


def test_summary_statistics_match_values_computed_here(server: Server) -> None:
    """min, median, mean, p95, max, stdev and cv agree with this test's own computation."""
    result = v1(server, language="python", script="print(sum(range(10**5)))", count=6, warmup=1)
    runs = result["runs"]
    assert len(runs) == 6
    summary = result["summary"]
    assert summary["runs"] == 6
    assert summary["statuses"] == {"ok": 6}
    for figure in ("wall_ms", "cpu_ms", "memory_kb"):
        values = sorted(float(run[figure]) for run in runs)
        stats = summary[figure]
        mean = statistics.fmean(values)
        stdev = statistics.stdev(values)
        rank = 0.95 * (len(values) - 1)  # linear interpolation between closest ranks
        low = int(rank)
        p95 = values[low] + (values[min(low + 1, len(values) - 1)] - values[low]) * (rank - low)
        assert stats["min"] == values[0]
        assert stats["max"] == values[-1]
        assert stats["median"] == pytest.approx((values[2] + values[3]) / 2)
        assert stats["mean"] == pytest.approx(mean, abs=1e-5)
        assert stats["p95"] == pytest.approx(p95, abs=1e-5)
        assert stats["stdev"] == pytest.approx(stdev, abs=1e-5)
        assert stats["cv"] == pytest.approx(stdev / mean, abs=1e-5)


def test_spread_runs_give_the_same_results(server: Server) -> None:
    """sequential=false spreads the runs over the workers; every run is still reported."""
    result = v1(
        server,
        language="python",
        script="print(input())",
        stdin="same",
        count=4,
        sequential=False,
    )
    assert [r["stdout"] for r in result["runs"]] == ["same\n"] * 4
    assert result["environment"]["sequential"] is False


def test_environment_names_image_runtime_and_language(server: Server) -> None:
    """Provenance: the image and its id, the runtime, the language."""
    env = v1(server, language="python", script="pass")["environment"]
    assert env["image"] == "bgc/python:3"
    assert env["image_id"].startswith("sha256:")
    assert env["runtime"] == server.runtime
    assert env["language"] == "python"


def test_languages_lists_the_registry(server: Server) -> None:
    """Every preset is listed with its commands, and whether its image is here."""
    listed = {entry["name"]: entry for entry in server.client.get("/api/v1/languages").json()}
    assert set(listed) >= {"sh", "python", "c", "cpp", "javascript", "go", "java", "ruby", "rust"}
    assert listed["python"]["image_present"] is True
    assert listed["c"]["compile"].startswith("gcc")
    assert listed["python"]["file"] == "main.py"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"language": "cobol", "script": "x"}, "language"),
        ({"language": "sh", "image": "bgc/busybox", "run": "sh", "script": "x"}, None),
        ({"language": "sh"}, None),
        ({"language": "sh", "script": "x", "count": 15, "warmup": 6}, "count"),
        ({"language": "sh", "files": [{"name": "../x", "content": ""}]}, "files.0.name"),
        ({"language": "sh", "files": [{"name": "a", "content": "%%", "encoding": "base64"}]}, None),
    ],
)
def test_bad_v1_requests_are_named_422s(
    server: Server, body: dict[str, Any], field: str | None
) -> None:
    """Unknown language, both or neither of language/image, too many runs, bad files: 422."""
    response = server.client.post("/api/v1/runs", json=body)
    assert response.status_code == 422, response.text
    if field is not None:
        assert response.json()["field"] == field


def test_runs_are_pinned_to_a_spare_cpu(tmp_path: Path) -> None:
    """With a CPU to spare (1 worker on this 2-CPU machine), runs are pinned to CPU 1."""
    if (os.cpu_count() or 1) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    service = launch(tmp_path, "--workers", "1")
    try:
        result = v1(service, language="sh", script="grep Cpus_allowed_list /proc/self/status")
        assert result["environment"]["cpuset"] == "1"
        if service.runtime == "runc":  # gVisor shows its own view of the CPUs
            assert result["runs"][0]["stdout"].split() == ["Cpus_allowed_list:", "1"]
        unpinned = launch(tmp_path / "b", "--workers", "1", "--no-pin-cpus")
        try:
            assert v1(unpinned, language="sh", script="true")["environment"]["cpuset"] is None
        finally:
            assert unpinned.stop() == 0
    finally:
        assert service.stop() == 0


def test_long_nested_and_executable_files_arrive_intact(server: Server) -> None:
    """Names past 100 bytes (ustar's prefix field), nested directories, modes, empty files."""
    long_name = "deep/" + "d" * 90 + "/" + "f" * 60 + ".txt"
    result = v1(
        server,
        image="bgc/busybox:latest",
        run="cat " + long_name + "; ./tool; wc -c < empty; ls -l tool | cut -c1-10",
        files=[
            {"name": long_name, "content": "far down\n"},
            {"name": "tool", "content": "#!/bin/sh\necho tool ran\n", "executable": True},
            {"name": "empty", "content": ""},
        ],
    )
    assert result["runs"][0]["stdout"].split("\n")[:4] == [
        "far down",
        "tool ran",
        "0",
        "-rwxr-xr-x",
    ]


@pytest.mark.parametrize(
    ("run", "stdout"),
    [
        ("echo plain words", "plain words\n"),  # exec'd directly: nothing for a shell here
        ("echo $((6 * 7)) 'quoted  text'", "42 quoted  text\n"),  # the shell interprets
        ("X=1 env | grep ^X=", "X=1\n"),
    ],
)
def test_commands_mean_what_they_mean_under_sh(server: Server, run: str, stdout: str) -> None:
    """Simple commands skip the shell; anything with shell syntax still gets /bin/sh -c."""
    result = v1(server, image="bgc/busybox:latest", run=run, script="")
    assert result["runs"][0]["stdout"] == stdout


def test_a_missing_program_is_127_as_under_sh(server: Server) -> None:
    """A command that does not exist: exit 127 and the shell's message, exec'd directly or not."""
    run = v1(server, image="bgc/busybox:latest", run="no-such-program arg", script="")["runs"][0]
    assert run["exit_code"] == 127
    assert "no-such-program: not found" in run["stderr"]
    assert run["status"] == "runtime_error"
