"""POST /api/v1/runs on the real engine, with runc and with runsc."""

from __future__ import annotations

import base64
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUNTIMES, Server, docker_inspect, launch

pytestmark = pytest.mark.integration

SUM_C = (
    "#include <stdio.h>\n"
    'int main(void){long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 2; printf("%ld\\n",a+b);}\n'
)


def test_c_is_compiled_once_and_run_five_times(server: Server) -> None:
    """One compile result; five runs all execute the artefact that one compile produced."""
    result = server.v1(
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
    result = server.v1(language="c", script="int main(void) { return oops; }", count=3)
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
    trim = server.v1(language="c", script=script, tests=tests, compare="trim", count=2)
    assert [(r["test"], r["verdict"]) for r in trim["runs"]] == [
        (0, "accepted"),
        (0, "accepted"),
        (1, "wrong_answer"),
        (1, "wrong_answer"),
    ]
    assert trim["summary"]["tests"] == 2
    assert trim["summary"]["accepted"] == 1
    exact = server.v1(language="c", script=script, tests=tests, compare="exact")
    assert [r["verdict"] for r in exact["runs"]] == ["wrong_answer", "wrong_answer"]
    assert exact["summary"]["accepted"] == 0


def test_a_run_that_did_not_finish_ok_has_no_verdict(server: Server) -> None:
    """A crash is a status, not a wrong answer."""
    result = server.v1(language="sh", script="exit 3", tests=[{"stdin": "", "expected_output": ""}])
    assert result["runs"][0]["status"] == "runtime_error"
    assert result["runs"][0]["verdict"] is None


def test_per_request_limits_are_reported(server: Server) -> None:
    """The limits applied are the request's, each below the server's maximum."""
    result = server.v1(
        language="sh",
        script="true",
        limits={"time_ms": 500, "memory_mb": 64, "output_kb": 2, "pids": 32, "cpus": 0.5},
    )
    assert result["environment"]["limits"] == {
        "time_ms": 500,
        "memory_mb": 64,
        "output_kb": 2,
        "pids": 32,
        "cpus": 0.5,
        "disk_mb": 16,
    }


def test_a_per_request_output_cap_cuts_there(server: Server) -> None:
    """output_kb 2: the run is cut at 2048 bytes and killed (output_limit)."""
    run = server.v1(language="sh", script="yes | head -c 5000; sleep 5", limits={"output_kb": 2})
    assert run["runs"][0]["status"] == "output_limit"
    assert len(run["runs"][0]["stdout"]) == 2048


def test_a_per_request_time_limit_kills_there(server: Server) -> None:
    """time_ms 500: the program is killed at 500 ms by the helper (not at the server's 3 s):
    its own wall time is at least 500 ms and far below the server's limit."""
    slow = server.v1(language="sh", script="exec sleep 5", limits={"time_ms": 500})
    run = slow["runs"][0]
    assert run["status"] == "timeout"
    assert run["signal"] == "SIGKILL"
    assert 500 <= run["wall_ms"] < 500 + 1000


ALLOCATE = "import sys\nblock = bytearray(int(sys.argv[1]) << 20)\nprint('allocated')\n"


def test_a_per_request_memory_limit_kills_there(server: Server) -> None:
    """memory_mb 64: allocating 100 MB is a memory_limit; 32 MB (the control) is fine. The
    server's own limit (256 MB) would let both through."""
    over = server.v1(language="python", script=ALLOCATE, args=["100"], limits={"memory_mb": 64})
    assert over["runs"][0]["status"] == "memory_limit", over["runs"][0]
    under = server.v1(language="python", script=ALLOCATE, args=["32"], limits={"memory_mb": 64})
    assert under["runs"][0]["status"] == "ok", under["runs"][0]
    assert under["runs"][0]["stdout"] == "allocated\n"


FORK_MANY = (
    "import os, time\n"
    "children = 0\n"
    "for _ in range(40):\n"
    "    try:\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(2)\n"
    "            os._exit(0)\n"
    "        children += 1\n"
    "    except OSError:\n"
    "        break\n"
    "print(children)\n"
)


def test_a_per_request_pids_limit_caps_processes(server: Server) -> None:
    """pids 8: at most 8 processes (the helper, python and its children), so fewer than 8
    children; with the server's 64, all 40 are made."""
    capped = server.v1(language="python", script=FORK_MANY, limits={"pids": 8})
    assert int(capped["runs"][0]["stdout"]) < 8, capped["runs"][0]
    free = server.v1(language="python", script=FORK_MANY)
    assert int(free["runs"][0]["stdout"]) == 40, free["runs"][0]


# Spins for 1.5 s and prints the share of its milliseconds in which it made progress: a
# program held to half a CPU is stopped for about half of each scheduling period. (Its own
# CPU time is no measure here: gVisor counts the time its sandbox is held as running.)
SPIN = (
    "import time\n"
    "started = time.monotonic()\n"
    "ran = set()\n"
    "while (now := time.monotonic() - started) < 1.5:\n"
    "    ran.add(int(now * 1000))\n"
    "print(len(ran) / 1500)\n"
)


def test_a_per_request_cpu_cap_holds_the_program_to_its_share(server: Server) -> None:
    """cpus 0.5: a program spinning for 1.5 s runs in about half of its milliseconds, by
    its own clock (0.52 under runc and 0.57 under gVisor here, whose own threads share the
    cap; 1.0 without a cap on an idle machine)."""
    capped = server.v1(language="python", script=SPIN, limits={"cpus": 0.5})
    share = float(capped["runs"][0]["stdout"])
    assert share <= 0.75, share


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
    result = server.v1(
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
    result = server.v1(language="sh", script="wc -c", stdin="abc")
    assert result["runs"][0]["stdout"].strip() == "3"


def test_args_reach_the_program_verbatim(server: Server) -> None:
    """`args` are appended quoted: spaces and `$` arrive as given."""
    result = server.v1(
        image="bgc/busybox:latest",
        run="sh main",
        script='for a; do echo "[$a]"; done',
        args=["a b", "$HOME", "'q'"],
    )
    assert result["runs"][0]["stdout"] == "[a b]\n[$HOME]\n['q']\n"


def test_summary_statistics_match_values_computed_here(server: Server) -> None:
    """min, median, mean, p95, max, stdev and cv agree with this test's own computation."""
    result = server.v1(language="python", script="print(sum(range(10**5)))", count=6, warmup=1)
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


def test_spread_runs_execute_at_the_same_time_and_sequential_ones_do_not(
    server: Server,
) -> None:
    """sequential=false spreads the runs over the two workers: their spans (each run's own
    clock readings) overlap. sequential=true runs them one after another: no overlap."""
    script = "import time\nprint(time.time())\ntime.sleep(1)\nprint(time.time())\n"

    def spans(sequential: bool) -> list[tuple[float, float]]:
        result = server.v1(language="python", script=script, count=2, sequential=sequential)
        assert result["environment"]["sequential"] is sequential
        found = []
        for run in result["runs"]:
            start, end = map(float, run["stdout"].split())
            found.append((start, end))
        return sorted(found)

    (_, a_end), (b_start, _) = spans(sequential=False)
    assert b_start < a_end, "spread runs did not overlap"
    (_, a_end), (b_start, _) = spans(sequential=True)
    assert b_start >= a_end, "sequential runs overlapped"


def test_environment_names_image_runtime_and_language(server: Server) -> None:
    """Provenance: the image and its id, the runtime, the language."""
    env = server.v1(language="python", script="pass")["environment"]
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


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runs_are_pinned_to_a_spare_cpu(tmp_path: Path, runtime: str) -> None:
    """With a CPU to spare (1 worker on this 2-CPU machine), runs are pinned to CPU 1: the
    container's cpuset says so (and under runc, the program's own affinity)."""
    if (os.cpu_count() or 1) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    service = launch(tmp_path, "--workers", "1", "--pool", "0", runtime=runtime)
    try:
        seen: dict[str, dict[str, Any]] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                for container in service.containers():
                    if container not in seen and (found := docker_inspect(container)):
                        seen[container] = found
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = service.v1(
                language="sh",
                script="hostname; grep Cpus_allowed_list /proc/self/status; sleep 1",
            )
        finally:
            done.set()
            watcher.join()
        assert result["environment"]["cpuset"] == "1"
        hostname, *affinity = result["runs"][0]["stdout"].split()
        [config] = [c for c_id, c in seen.items() if c_id.startswith(hostname)]
        assert config["HostConfig"]["CpusetCpus"] == "1"
        if runtime == "runc":  # gVisor shows its own view of the CPUs
            assert affinity == ["Cpus_allowed_list:", "1"]
    finally:
        assert service.stop() == 0
    unpinned = launch(tmp_path / "b", "--workers", "1", "--no-pin-cpus", runtime=runtime)
    try:
        assert unpinned.v1(language="sh", script="true")["environment"]["cpuset"] is None
    finally:
        assert unpinned.stop() == 0


def test_long_nested_and_executable_files_arrive_intact(server: Server) -> None:
    """Names past 100 bytes (ustar's prefix field), nested directories, modes, empty files."""
    long_name = "deep/" + "d" * 90 + "/" + "f" * 60 + ".txt"
    result = server.v1(
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
        ("expr 6 '*' 7", "42\n"),  # quotes: the shell interprets
        ("echo $((6 * 7)) 'quoted  text'", "42 quoted  text\n"),
        ("X=1 env | grep ^X=", "X=1\n"),
        ("seq 3", "1\n2\n3\n"),  # nothing for a shell here: exec'd directly
    ],
)
def test_commands_mean_what_they_mean_under_sh(server: Server, run: str, stdout: str) -> None:
    """Whichever way a command is started, it means what it means under /bin/sh -c."""
    result = server.v1(image="bgc/busybox:latest", run=run, script="")
    assert result["runs"][0]["stdout"] == stdout


def test_a_simple_command_is_executed_without_a_shell(server: Server) -> None:
    """`env` alone is exec'd directly: no shell ran, so none exported SHLVL into its
    environment. The same command through a pipe (shell syntax) shows the shell's SHLVL."""
    direct = server.v1(image="bgc/busybox:latest", run="env", script="")["runs"][0]
    shelled = server.v1(image="bgc/busybox:latest", run="env | cat", script="")["runs"][0]
    assert "SHLVL=" in shelled["stdout"], shelled  # the control: busybox sh exports it
    assert "SHLVL=" not in direct["stdout"], direct


def test_a_missing_program_is_127_as_under_sh(server: Server) -> None:
    """A command that does not exist: exit 127 and the shell's message, exec'd directly or not."""
    run = server.v1(image="bgc/busybox:latest", run="no-such-program arg", script="")["runs"][0]
    assert run["exit_code"] == 127
    assert "no-such-program: not found" in run["stderr"]
    assert run["status"] == "runtime_error"


def test_a_compile_stage_that_times_out_runs_nothing(server: Server) -> None:
    """The compile stage has the time limit too: killed there, a timeout, and no run."""
    result = server.v1(image="bgc/busybox:latest", script="", compile="sleep 60", run="true")
    assert result["compile"]["status"] == "timeout"
    assert result["compile"]["timed_out"] is True
    assert result["runs"] == []


def test_a_compile_stage_that_floods_is_cut_and_runs_nothing(server: Server) -> None:
    """A compile stage past the output cap: output_limit, its output cut at the cap."""
    result = server.v1(image="bgc/busybox:latest", script="", compile="yes", run="true")
    assert result["compile"]["status"] == "output_limit"
    assert len(result["compile"]["stdout"]) == 30 * 1024
    assert result["runs"] == []


def test_only_regular_files_travel_from_a_compile_stage_to_its_runs(server: Server) -> None:
    """Links the compile stage made (to host paths, or hard links) are not handed on: the
    runs get regular files only."""
    result = server.v1(
        image="bgc/busybox:latest",
        script="",
        compile="echo data > file; ln -s /etc/passwd sym; ln -s .. up; ln file hard; mkdir d",
        run="ls -A; cat file hard 2>/dev/null",
    )
    assert result["compile"]["status"] == "ok"
    listed = result["runs"][0]["stdout"].split()
    assert not {"sym", "up"} & set(listed)
    # The archive holds the file once, under one of its two names (the other is a link).
    assert len([name for name in listed if name in ("file", "hard")]) == 1
    assert listed[-1] == "data"


def test_compile_files_over_artifacts_are_refused_with_a_reason(tmp_path: Path) -> None:
    """A compile stage leaving more than --artifacts MB in /bg: output_limit, a reason that
    names --artifacts, and no run (its own output is intact)."""
    service = launch(tmp_path, "--artifacts", "1", "--disk", "16")
    try:
        result = service.v1(
            image="bgc/busybox:latest",
            script="",
            compile="echo compiling; head -c 2000000 /dev/zero > big",
            run="true",
        )
        assert result["compile"]["status"] == "output_limit"
        assert "--artifacts" in result["compile"]["error"]
        assert result["compile"]["stdout"] == "compiling\n"
        assert result["compile"]["output_truncated"] is False
        assert result["runs"] == []
        small = service.v1(image="bgc/busybox:latest", script="", compile="echo x > f", run="cat f")
        assert small["runs"][0]["stdout"] == "x\n"
    finally:
        assert service.stop() == 0
