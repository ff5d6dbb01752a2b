"""The memory experiment, quick: only asyncio without drain() grows with what a client sends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
from matplotlib.lines import Line2D

from echochat.experiments import Settings
from echochat.experiments.common import MiB
from echochat.experiments.memory import growth_figure, run

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
BACKPRESSURED = [
    "asyncio",
    "trio",
    "anyio-asyncio",
    "anyio-trio",
    "asyncio-protocol",
    "asyncio-sockets",
    "asyncio-sockets+uvloop",
]


def test_only_the_server_without_drain_grows(tmp_path: Path) -> None:
    settings = Settings(quick=True, out=tmp_path)
    report = run(settings)
    print(report.table())
    rows = {row[0]: dict(zip(report.columns, row, strict=True)) for row in report.rows}

    for label in ["asyncio-nodrain", "asyncio-nodrain+uvloop"]:
        assert rows[label]["peak RSS growth MiB"] > 50_000_000 / MiB, label
        assert rows[label]["bounded"] == "no", label
    for label in BACKPRESSURED:
        assert rows[label]["peak RSS growth MiB"] < 4, label
    for label, row in rows.items():
        if not label.startswith("asyncio-nodrain"):
            # Whatever else a server buffers, the client's sends stall: it stopped reading.
            assert row["bounded"] == "yes", label
            assert row["sent MiB"] < 50, label

    assert f"plot: {tmp_path / 'memory.png'}" in report.notes
    assert (tmp_path / "memory.png").stat().st_size > 0
    assert report.save_json(tmp_path, settings).exists()
    series = report.raw["asyncio-nodrain"]
    assert len(series["t_s"]) == len(series["rss_growth_mib"]) == len(series["sent_mib"]) >= 2


def test_the_figure_marks_runs_a_cap_stopped_and_keeps_its_legend_off_the_lines() -> None:
    """Drawn from the saved full run (docs/figures), where asyncio-nodrain hit the send cap."""
    saved = json.loads((FIGURES / "memory.json").read_text())
    figure = growth_figure(saved["raw"], saved["quick"])
    figure.draw_without_rendering()
    (axes,) = figure.axes
    legend = axes.get_legend()
    assert legend is not None
    # Beside the plotting area, so it covers no line.
    assert not legend.get_window_extent().overlaps(axes.get_window_extent())
    labels = {str(line.get_label()): line for line in axes.get_lines()}
    stopped = [label for label in labels if "stopped at the 500 MiB send cap" in label]
    assert sorted(label.partition(":")[0] for label in stopped) == [
        "asyncio-nodrain",
        "asyncio-nodrain+uvloop",
    ]
    # Each ends in a marker, drawn where its line ends.
    markers = [line for line in axes.get_lines() if line.get_marker() == "x"]
    assert sorted(map(last_point, markers)) == sorted(last_point(labels[s]) for s in stopped)


def last_point(line: Line2D) -> tuple[float, float]:
    x, y = numpy.asarray(line.get_xydata())[-1]
    return float(x), float(y)
