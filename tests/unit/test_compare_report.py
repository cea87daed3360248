"""`bg-compiler compare`'s own parts: the terminal chart's bins and bars, the verdicts
counted, and --plot refused up front where matplotlib is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgcompiler.cli import main
from bgcompiler.client import compare_plot
from bgcompiler.client.compare_report import BLOCKS, bars, histogram


def test_histogram_counts_every_value_once_in_its_bin() -> None:
    """Equal bins from low to high: the lowest value in the first, the highest in the last
    (closed), each value counted once; a single repeated value fills the first bin."""
    values = [1.0, 1.4, 2.0, 2.6, 3.0, 3.0]
    counts = histogram(values, 1.0, 3.0, 4)
    assert sum(counts) == len(values)
    assert counts == [2, 0, 1, 3]  # bins of 0.5: [1, 1.5) [1.5, 2) [2, 2.5) [2.5, 3]
    assert histogram([5.0, 5.0], 5.0, 5.0, 3) == [2, 0, 0]


def test_bars_scale_to_the_tallest_bin_of_the_chart() -> None:
    """The tallest bin is a full block, an empty one a space, and a small non-empty bin
    never vanishes (at least the lowest block)."""
    assert bars([8, 0, 4, 1], tallest=8) == f"{BLOCKS[8]} {BLOCKS[4]}{BLOCKS[1]}"
    assert bars([1], tallest=100) == BLOCKS[1]


def test_plot_without_matplotlib_stops_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--plot where matplotlib is not installed: exit 2 naming the `plot` extra, and no
    request (the server given is one nobody listens on, which would be an exit 4)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        compare_plot.importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "matplotlib" else real(name, *rest),
    )
    entry = tmp_path / "a.sh"
    entry.write_text("echo a\n")
    result = CliRunner().invoke(
        main,
        ["compare", str(entry), str(entry), "--plot", str(tmp_path / "out.png"),
         "--server", "http://127.0.0.1:9"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "bg-compiler[plot]" in result.output
    assert not (tmp_path / "out.png").exists()
