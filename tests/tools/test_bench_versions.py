"""`bench versions`: this checkout against another, run for real, and the verdict's rule.

The runs are tiny (one implementation, 0.3-0.5 s windows) on a machine that
may be busy, so an A/A run asserts the document's shape and sane ratios,
never a verdict; a server slowed by its own options is flagged because the
slowdown is hundreds of times, far beyond any noise.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from echochat.bench.versions import Settings, Tree, plan, verdict
from servers import echochat

ROOT = Path(__file__).resolve().parents[2]
VERDICT = re.compile(r"within 10 %|within noise|(slower|faster) by \d+ %")
TINY = ("--impls", "asyncio", "--members", "10", "--against", str(ROOT))


def versions(out: Path, *options: str) -> dict[str, Any]:
    """Run the command against this very checkout, with this Python; its JSON document."""
    result = echochat(
        "bench", "versions", *TINY, "--against-python", sys.executable, "--out", str(out),
        *options, timeout=80,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    document: dict[str, Any] = json.loads((out / "versions.json").read_text())
    # The table on stdout has every row, with its verdict.
    for row in document["rows"]:
        assert re.search(rf"{row['load']} \(.*{re.escape(row['verdict'])}", result.stdout), row
    return document


@pytest.mark.timeout(120)
def test_this_checkout_against_itself_gives_finite_ratios_per_round(tmp_path: Path) -> None:
    document = versions(tmp_path, "--rounds", "2", "--duration", "0.3")
    trees = document["trees"]
    assert trees["base"]["root"] == trees["this"]["root"] == str(ROOT)
    assert trees["base"]["commit"] == trees["this"]["commit"]
    rows = document["rows"]
    assert [(row["impl"], row["load"]) for row in rows] == [
        ("asyncio", "echo 1 KiB"),
        ("asyncio", "echo 100 KiB"),
        ("asyncio", "fan-out 10"),
    ]
    for row in rows:
        assert len(row["ratios"]) == len(row["cpu_ratios"]) == 2, row
        for ratio in [*row["ratios"], *row["cpu_ratios"]]:
            assert math.isfinite(ratio), row
            assert ratio > 0, row
        assert min(row["ratios"]) <= row["ratio"] <= max(row["ratios"]), row
        assert VERDICT.fullmatch(row["verdict"]), row
    runs = document["runs"]
    # Both trees, every load, every round; and the order alternated between rounds.
    assert len(runs) == 2 * 3 * 2
    firsts = [next(run["tree"] for run in runs if run["round"] == n) for n in (0, 1)]
    assert sorted(firsts) == ["base", "this"]


@pytest.mark.timeout(120)
def test_a_server_throttled_by_its_options_is_flagged_slower(tmp_path: Path) -> None:
    # Flood control at 2 lines/s per sender, after a burst that registration
    # uses up: a few dozen deliveries a second against tens of thousands.
    throttle = ("--serve-option=--flood-burst=5", "--serve-option=--flood-rate=2")
    document = versions(tmp_path, "--rounds", "1", "--duration", "0.5", *throttle)
    rows = document["rows"]
    fan_out = next(row for row in rows if row["load"].startswith("fan-out"))
    assert fan_out["ratio"] < 0.2, fan_out
    assert fan_out["verdict"].startswith("slower by"), fan_out
    trees = document["trees"]
    assert trees["this"]["extra"] == ["--flood-burst=5", "--flood-rate=2"]
    assert trees["base"]["extra"] == []


def test_a_bad_against_is_refused_in_one_line(tmp_path: Path) -> None:
    no_ref = echochat("bench", "versions", "--against", "no-such-ref-at-all")
    assert no_ref.returncode == 1
    assert "neither a directory nor a git ref" in no_ref.stderr
    # A directory that the given Python does not import echochat from.
    elsewhere = echochat(
        "bench", "versions", "--against", str(tmp_path), "--against-python", sys.executable
    )
    assert elsewhere.returncode == 1
    assert f"not from {tmp_path.resolve()}" in elsewhere.stderr
    for result in (no_ref, elsewhere):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_verdict_reads_the_spread_of_ratios_against_ten_percent() -> None:
    assert verdict([0.97, 1.02, 0.95]) == "within 10 %"
    assert verdict([0.80, 0.85, 0.70]) == "slower by 20 %"
    # Some rounds say slower, some do not: the run cannot tell.
    assert verdict([0.85, 0.95, 1.0]) == "within noise"
    assert verdict([1.3, 1.5, 1.2]) == "faster by 30 %"
    # Faster in some rounds and within 10 % in others is no regression.
    assert verdict([0.95, 1.3]) == "within 10 %"
    assert verdict([0.85]) == "slower by 15 %"


def tree(label: str, impls: tuple[str, ...], options: tuple[str, ...]) -> Tree:
    installed: dict[str, str | None] = {
        "python": "3.11.7",
        "echochat": "0.1.0",
        "trio": "0.35.0",
        "anyio": "4.16.0",
    }
    return Tree(label, "/x", "/x/python", "x", None, None, installed, impls, options)


def test_what_an_older_serve_lacks_is_left_out_with_a_note() -> None:
    current = ("--impl", "--service", "--host", "--port", "--flood-rate", "--max-per-ip")
    this = tree("this", ("asyncio", "trio", "asyncio-sockets"), current)
    old = tree("base", ("asyncio", "trio"), tuple(o for o in current if o != "--max-per-ip"))
    settings = Settings(impls=("asyncio", "asyncio-sockets"))
    impls, loads, notes = plan(old, this, settings)
    assert impls == ["asyncio"]
    assert [load.service for load in loads] == ["echo", "echo"]
    assert notes == [
        "asyncio-sockets left out: base has no --impl asyncio-sockets",
        "fan-out left out: base's serve has no --max-per-ip, so its chat server would "
        "throttle the load",
    ]
    impls, loads, notes = plan(this, this, settings)
    assert impls == ["asyncio", "asyncio-sockets"]
    assert [load.name for load in loads] == ["echo 1 KiB", "echo 100 KiB", "fan-out 100"]
    assert notes == []
