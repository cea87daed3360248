"""`bg-compiler compare` as a user or CI runs it (a subprocess) against the real service:
entries side by side, the terminal chart, the image of --plot, --json and exit statuses."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.integration.test_cli_run import ADD, bg_run, tests_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("shared_server", ["runc"], indirect=True),
]
__all__ = ["tests_dir"]  # the fixture used here

# The same sums as ADD, in fewer bytes: what a code golfer compares.
GOLF = "read a b;echo $((a+b))\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header chunk (IHDR), which must come first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def bg_compare(server_url: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    done = bg_run(server_url, *args, cwd=cwd, command="compare")
    return done.returncode, done.stdout, done.stderr


def test_two_entries_side_by_side_with_chart_and_png(server: Server, tests_dir: Path) -> None:
    """Two right solutions on the same tests: a row each with its size in bytes, median,
    p95 and stdev and `4 accepted`; a chart row of bars per entry; progress per entry on
    stderr; a real PNG image written; exit 0."""
    (tests_dir.parent / "golf.sh").write_text(GOLF)
    status, out, err = bg_compare(
        server.url, "add.sh", "golf.sh", "--tests", "tests", "--count", "2",
        "--plot", "out.png", cwd=tests_dir.parent,
    )  # fmt: skip
    assert status == 0, out + err
    for column in ("bytes", "median", "p95", "stdev", "verdicts"):
        assert column in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│ sh " in line}
    assert set(rows) == {"add.sh", "golf.sh"}
    assert f" {len(ADD)} " in rows["add.sh"]
    assert f" {len(GOLF)} " in rows["golf.sh"]
    assert all("4 accepted" in row and "passed" in row for row in rows.values())
    chart = out[out.index("wall time distributions") :].splitlines()
    for name in ("add.sh", "golf.sh"):
        lines = [line for line in chart if line.startswith(f"{name} ")]
        assert len(lines) == 1, out
        assert set(lines[0]) & set("▁▂▃▄▅▆▇█"), out
    for name in ("add.sh", "golf.sh"):
        assert f"{name} run 4/4: ok accepted" in err
    image = tests_dir.parent / "out.png"
    width, height = png_size(image)
    assert width >= 600
    assert height >= 300
    assert image.stat().st_size > 10_000  # drawn, not an empty canvas


def test_a_wrong_entry_exits_1_and_json_lists_each_job(server: Server, tests_dir: Path) -> None:
    """A right and a wrong entry: exit 1, the wrong one's verdicts and `failed` in its row;
    with --json, stdout is the entries with their sizes, pass flags and job documents."""
    status, out, err = bg_compare(server.url, "add.sh", "sub.sh", "--tests", "tests",
                                  "--count", "1", cwd=tests_dir.parent)  # fmt: skip
    assert status == 1, out + err
    [row] = [line for line in out.splitlines() if line.startswith("│ sub.sh")]
    assert "2 wrong_answer" in row
    assert "failed" in row
    status, out, err = bg_compare(server.url, "add.sh", "sub.sh", "--tests", "tests",
                                  "--count", "1", "--json", cwd=tests_dir.parent)  # fmt: skip
    assert status == 1, err
    entries = json.loads(out)["entries"]
    assert [(e["file"], e["bytes"], e["passed"]) for e in entries] == [
        ("add.sh", len(ADD), True),
        ("sub.sh", len(ADD), False),
    ]
    assert [e["job"]["status"] for e in entries] == ["done", "done"]


def test_usage_and_server_errors_exit_4_naming_the_problem(server: Server, tests_dir: Path) -> None:
    """Two --language for three files, an unknown language (the server's 422 and its
    field), and a server nobody listens on: each exits 4 with the problem named, no
    traceback, and no job run."""
    cwd = tests_dir.parent
    status, _, err = bg_compare(
        server.url, "add.sh", "sub.sh", "add.sh", "--language", "sh", "--language", "sh", cwd=cwd
    )
    assert status == 4
    assert "2 --language for 3 files" in err
    status, _, err = bg_compare(server.url, "add.sh", "sub.sh", "--language", "nope", cwd=cwd)
    assert status == 4
    assert "422 invalid_request (field language)" in err
    status, _, err = bg_compare("http://127.0.0.1:9", "add.sh", "sub.sh", cwd=cwd)
    assert status == 4
    assert "cannot reach http://127.0.0.1:9" in err
    assert "Traceback" not in err
