"""The TLS experiment, quick: every server stops reading a client that does not read."""

from __future__ import annotations

from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.common import MiB
from echochat.experiments.tls import SEND_LIMIT, run

KiB = 1024


def test_every_server_holds_a_non_reading_client_in_bounded_memory(tmp_path: Path) -> None:
    settings = Settings(quick=True, out=tmp_path)
    report = run(settings)
    print(report.table())
    rows = [dict(zip(report.columns, row, strict=True)) for row in report.rows]
    labels = {(row["implementation"], row["transport"]) for row in rows}
    for label in ("asyncio", "trio", "anyio-asyncio", "anyio-trio", "asyncio-protocol"):
        assert {(label, "plain"), (label, "TLS")} <= labels
    for row in rows:
        # The client's sends stalled long before the cap: the server stopped reading.
        assert row["sent MiB"] < SEND_LIMIT / MiB / 2, row
        # Most of what it sent waits in the two kernels, not in the server.
        assert row["client kernel KiB"] + row["server kernel KiB"] > 1024, row
        bound = 16 * 1024 if row["implementation"] == "anyio-asyncio+uvloop" else 2048
        assert row["server user space KiB"] < bound, row
    assert report.save_json(tmp_path, settings).exists()
