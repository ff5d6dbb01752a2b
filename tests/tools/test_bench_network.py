"""``echochat bench network``, tiny: one server alone, one behind a real Redis, and two servers
of different implementations on one Redis with the members split between them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from echochat.bench.chat import open_clients
from echochat.cli import main
from echochat.launch import ServerUnderTest

MEMBERS = 6


# Three runs, each with fresh servers (and Redis): a joining server waits 1 s for a snapshot.
@pytest.mark.timeout(120)
def test_every_configuration_runs_and_every_delivery_arrives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["bench", "network", "--impls", "asyncio,trio", "--members", str(MEMBERS),
         "--senders", "2", "--duration", "0.3", "--rounds", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    output = capsys.readouterr()
    assert status == 0, output.err
    document = json.loads((tmp_path / "network.json").read_text())
    runs = {run["configuration"]: run for run in document["raw"]["runs"]}
    assert list(runs) == ["alone", "hop", "pair"]
    assert runs["alone"]["servers"] == runs["hop"]["servers"] == ["asyncio"]
    assert runs["pair"]["servers"] == ["asyncio", "trio"]
    assert list(runs["alone"]["usage"]) == ["server 1"]
    assert list(runs["hop"]["usage"]) == ["server 1", "redis-server"]
    assert list(runs["pair"]["usage"]) == ["server 1", "server 2", "redis-server"]
    for run in runs.values():
        fan_out = run["fan_out"]
        assert fan_out["messages"] > 0, run
        # The fan-out checks each delivery as it comes and raises on any loss; this
        # checks the count it reports: every member but the sender got every message.
        assert fan_out["deliveries"] == fan_out["messages"] * (MEMBERS - 1), run
        assert 0 < fan_out["p50_ms"] <= fan_out["p99_ms"] <= fan_out["max_ms"], run
        assert all(usage["cpu_s"] >= 0 for usage in run["usage"].values()), run
        # Every server ran every message: none used no CPU at all.
        assert all(run["usage"][f"server {n + 1}"]["cpu_s"] > 0 for n in range(len(run["servers"])))
        assert 0 < fan_out["client_cpu_share"] < 2
    assert document["machine"]["cores"] > 0
    assert [row[0] for row in document["rows"]] == ["alone", "hop", "pair"]
    assert (tmp_path / "network.png").stat().st_size > 0
    # The table on stdout: a row per configuration, and the hop's cost in words.
    lines = output.out.splitlines()
    assert [line.split()[0] for line in lines[4:7]] == ["alone", "hop", "pair"]
    assert any(line.startswith("The Redis hop: ") for line in lines)
    assert any(line.startswith("Two servers: ") for line in lines)
    assert "network.json" in lines[-1]


def test_members_are_spread_over_the_servers_in_turn() -> None:
    with (
        ServerUnderTest.echochat("asyncio", "chat") as first,
        ServerUnderTest.echochat("trio", "chat") as second,
    ):
        socks = open_clients([first.port, second.port], 5)
        try:
            logs = first.stderr(), second.stderr()
        finally:
            for sock in socks:
                sock.close()
    # open_clients returns once each is welcomed. The hub logs a registration in the call
    # that queues the welcome, which asyncio's and trio's adapters send only after it.
    assert [re.findall(r"registered as (m\d+)!", log) for log in logs] == [
        ["m0", "m2", "m4"],
        ["m1", "m3"],
    ]
