"""The fairness experiment, quick: every server answers pings beside a bulk stream."""

from __future__ import annotations

from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.common import MAIN, ON_UVLOOP, VARIANTS
from echochat.experiments.fairness import PING_INTERVAL, QUICK_DURATION, run


def test_every_implementation_answers_pings_under_load(tmp_path: Path) -> None:
    settings = Settings(quick=True, out=tmp_path)
    report = run(settings)
    print(report.table())

    labels = [
        impl if loop == "asyncio" else f"{impl}+{loop}"
        for impl, loop in [*MAIN, *VARIANTS, *ON_UVLOOP]
    ]
    assert [row[0] for row in report.rows] == labels

    for row in report.rows:
        label, baseline_p50, loaded_p50, loaded_p99, loaded_max, bulk = row
        assert 0 < baseline_p50 < 100, label
        assert 0 < loaded_p50 <= loaded_p99 <= loaded_max < 1000, label
        # The bulk stream really kept the server busy.
        assert bulk > 10, label
        rtts = report.raw[label]["loaded_rtt_ms"]
        # A ping every PING_INTERVAL, or right after the last answer when late:
        # at least half of them answered means no connection was starved.
        assert len(rtts) >= 0.5 * QUICK_DURATION / PING_INTERVAL, label

    assert f"plot: {tmp_path / 'fairness.png'}" in report.notes
    assert (tmp_path / "fairness.png").stat().st_size > 0
    assert report.save_json(tmp_path, settings).exists()
