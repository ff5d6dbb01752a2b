"""The memory experiment, quick: only asyncio without drain() grows with what a client sends."""

from __future__ import annotations

from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.common import MiB
from echochat.experiments.memory import run

BACKPRESSURED = ["asyncio", "trio", "anyio-asyncio", "anyio-trio", "asyncio-protocol"]


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
