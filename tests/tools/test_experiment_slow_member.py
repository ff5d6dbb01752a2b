"""The slow-member experiment, quick: echochat keeps delivering, the naive broadcasts stall."""

from __future__ import annotations

import json
from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.slow_member import NAIVE, figure_of, panel, run

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
REAL = ["asyncio", "trio", "anyio-asyncio", "anyio-trio", "asyncio-protocol"]


def test_per_client_queues_keep_healthy_members_served_while_naive_broadcasts_stall(
    tmp_path: Path,
) -> None:
    settings = Settings(quick=True, out=tmp_path)
    report = run(settings)
    servers = report.raw["servers"]
    real = [label for label in REAL if label in servers]
    # asyncio-protocol may still be missing; the other four never are.
    assert set(REAL) - set(real) <= {"asyncio-protocol"}
    naive_p99 = min(servers[label]["latency_ms"]["p99"] for label in NAIVE)
    for label in NAIVE:
        naive = servers[label]
        # Once the stalled member's buffers fill, nobody gets anything more.
        assert max(naive["delivered"]) < naive["sent"], label
        assert naive["latency_ms"]["lower_bounds"], label
        assert naive["dropped_after_messages"] is None, label
    for label in real:
        server = servers[label]
        # Every healthy member got every message, once and in order.
        assert server["delivered"] == [server["sent"]] * len(server["delivered"]), label
        assert server["in_order"], label
        assert not server["latency_ms"]["lower_bounds"], label
        # Generous: a loaded 2-core machine can push echochat's p99 up, but a
        # naive server's undelivered messages stay out for over a second.
        assert server["latency_ms"]["p99"] * 3 < naive_p99, (label, server, naive_p99)
    plot = tmp_path / "slow-member.png"
    assert plot.stat().st_size > 10_000
    assert f"plot: {plot}" in report.notes
    saved = json.loads(report.save_json(tmp_path, settings).read_text())
    assert saved["experiment"] == "slow-member"
    assert len(saved["rows"]) == len(servers)
    assert report.table().count("\n") > len(servers)


def test_the_figure_gives_each_group_of_servers_its_own_panel_of_a_few_lines() -> None:
    """Plotted from the saved full run (docs/figures): no panel holds more than four servers."""
    saved = json.loads((FIGURES / "slow-member.json").read_text())["raw"]["servers"]
    figure = figure_of(saved)
    plotted: list[str] = []
    for axes in figure.axes:
        # Lines whose label starts with "_" are unlabelled: the never-arrived tails.
        labels = [str(line.get_label()) for line in axes.get_lines()]
        named = [label for label in labels if not label.startswith("_")]
        assert len(named) <= 4, named
        plotted += named
    # Every server once, in the latency panels (the memory panels share their legend).
    assert sorted(plotted) == sorted(saved)
    assert len(figure.axes) == 2 * len({panel(label) for label in saved})
