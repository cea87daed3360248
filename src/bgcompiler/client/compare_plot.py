"""`bg-compiler compare --plot FILE`: the entries' wall times as an image (matplotlib, the
optional `plot` extra): their histograms overlaid, and a strip of each entry's runs with its
median and source size beside it. Written with the Agg backend: no display needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bgcompiler.client.compare_report import Entry

# matplotlib's default colour cycle, named so that both panels use the same per entry.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def plotting_missing() -> str | None:
    """Why --plot cannot work here (matplotlib not installed), or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib: pip install 'bg-compiler[plot]'"
    return None


def write_plot(entries: list[Entry], path: Path) -> None:
    """The image, in the format of the file's extension (png, svg, pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (overlaid, strips) = pyplot.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    try:
        every = [value for entry in entries for value in entry.walls]
        bins = max(5, min(30, int(len(every) ** 0.5) + 3))
        edges = None
        if every and max(every) > min(every):
            step = (max(every) - min(every)) / bins
            edges = [min(every) + step * k for k in range(bins + 1)]
        for index, entry in enumerate(entries):
            colour = COLOURS[index % len(COLOURS)]
            label = f"{entry.name} ({entry.size} B)"
            if entry.walls:
                overlaid.hist(
                    entry.walls, bins=edges or bins, alpha=0.45, color=colour, label=label,
                    edgecolor=colour,
                )  # fmt: skip
                jitter = [index + ((k * 37) % 11 - 5) * 0.02 for k in range(len(entry.walls))]
                strips.scatter(jitter, entry.walls, s=18, color=colour, alpha=0.8)
            stats = entry.job.result.summary.wall_ms if entry.job.result else None
            if stats is not None:
                strips.hlines(stats.median, index - 0.3, index + 0.3, color=colour, linewidth=2)
        overlaid.set_title("wall time per run, overlaid")
        overlaid.set_xlabel("wall ms")
        overlaid.set_ylabel("runs")
        overlaid.yaxis.get_major_locator().set_params(integer=True)  # runs are counted
        overlaid.legend()
        strips.set_title("runs and median per entry")
        strips.set_ylabel("wall ms")
        strips.set_xticks(range(len(entries)), [f"{e.name}\n{e.size} bytes" for e in entries])
        figure.savefig(path, dpi=110)
    finally:
        pyplot.close(figure)
