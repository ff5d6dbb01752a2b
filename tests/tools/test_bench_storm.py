"""``echochat bench storm``: one short storm against one server, and the table it writes."""

from __future__ import annotations

import json
from pathlib import Path

from echochat.bench import storm
from echochat.experiments import Settings
from echochat.experiments.common import Report
from echochat.launch import ServerUnderTest


def test_a_short_storm_completes_connections_while_registered_clients_ping() -> None:
    with ServerUnderTest.echochat("trio", "chat") as server:
        result = storm.measure(server.port, "trio", seconds=0.5)
    assert result.completed > 0
    assert result.failed == {"connect_timeout": 0, "connect_error": 0, "reply_error": 0}
    assert result.pings > 0
    assert 0 < result.ping_p50_ms <= result.ping_p99_ms <= result.ping_max_ms


def test_the_table_names_the_machine_and_its_load(tmp_path: Path) -> None:
    report = Report(
        name=storm.NAME,
        title="Connection storm",
        columns=["server", "connections/s"],
        rows=[["asyncio", 1234]],
        raw={"load_average_1min": {"before": 0.5, "after": 1.25}},
    )
    paths = storm.save(report, tmp_path, Settings(quick=True, out=tmp_path))
    assert [path.name for path in paths] == ["storm.json", "storm.md"]
    assert json.loads(paths[0].read_text())["machine"]["cores"] > 0
    table = paths[1].read_text()
    assert "| asyncio | 1,234 |" in table
    assert "load average 0.5 before the run and 1.2 after" in table
