"""`make compare`'s contract phase: outcomes counted per implementation, progress from the start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from echochat.bench.contract import ContractTally
from echochat.registry import CONTRACT_CONFIGURATIONS

ROOT = Path(__file__).resolve().parents[2]

# What the plugin writes: each collected test's implementation (None: a test
# without one), then each finished test.
# What the plugin writes: each collected test's id and implementation (None:
# a test without one), then each finished test.
EVENTS: list[dict[str, Any]] = [
    {
        "collected": [
            ["t.py::test_names[asyncio]", "asyncio"],
            ["t.py::test_names[anyio-asyncio]", "anyio-asyncio"],
            ["t.py::test_signal[anyio-trio-SIGINT]", "anyio-trio"],
            ["t.py::test_x[SIGTERM-asyncio+uvloop]", "asyncio+uvloop"],
            ["t.py::test_core_only", None],
        ]
    },
    {"test": "t.py::test_names[asyncio]", "impl": "asyncio", "outcome": "passed", "seconds": 1},
    {
        "test": "t.py::test_names[anyio-asyncio]",
        "impl": "anyio-asyncio",
        "outcome": "failed",
        "seconds": 2,
    },
    {
        "test": "t.py::test_signal[anyio-trio-SIGINT]",
        "impl": "anyio-trio",
        "outcome": "passed",
        "seconds": 3,
    },
    {
        "test": "t.py::test_x[SIGTERM-asyncio+uvloop]",
        "impl": "asyncio+uvloop",
        "outcome": "skipped",
        "seconds": 4,
    },
    {"test": "t.py::test_core_only", "impl": None, "outcome": "passed", "seconds": 5},
]


def test_outcomes_are_counted_per_implementation() -> None:
    tally = ContractTally()
    finished = [tally.add(event) for event in EVENTS]
    assert finished == [None, "asyncio", "anyio-asyncio", "anyio-trio", "asyncio+uvloop", None]
    assert dict(tally.totals) == {
        "asyncio": 1,
        "anyio-asyncio": 1,
        "anyio-trio": 1,
        "asyncio+uvloop": 1,
    }
    assert {impl: dict(counts) for impl, counts in tally.outcomes.items()} == {
        "asyncio": {"passed": 1},
        "anyio-asyncio": {"failed": 1},
        "anyio-trio": {"passed": 1},
        "asyncio+uvloop": {"skipped": 1},
    }
    assert tally.status("anyio-asyncio") == "0 passed, 1 failed"
    assert tally.status("asyncio+uvloop") == "0 passed, 0 failed, 1 skipped"


def test_the_time_left_counts_each_test_by_its_last_time() -> None:
    """The soak tests at the end take seconds each: counted as one test apiece, the
    estimate said '10 s left' for the last 100 s of a run."""
    tally = ContractTally({"t.py::test_names[asyncio]": 1.0, "t.py::test_slow[asyncio]": 9.0})
    tally.add(
        {
            "collected": [
                ["t.py::test_names[asyncio]", "asyncio"],
                ["t.py::test_slow[asyncio]", "asyncio"],
                ["t.py::test_new[asyncio]", "asyncio"],  # not in the history: the median
            ]
        }
    )
    assert tally.work == {"asyncio": 1.0 + 9.0 + 5.0}
    assert ContractTally().expected("t.py::test_anything") == 1.0


def test_compare_shows_progress_within_10_s_and_counts_each_implementation(
    tmp_path: Path,
) -> None:
    """`bench compare` on three contract tests per implementation, read line by line as it runs.

    The whole suite runs for minutes: its first line must come at once, and
    the count of tests as soon as pytest has collected them.
    """
    command = [sys.executable, "-m", "echochat", "bench", "compare", "--contract-only"]
    # One test of each shape of id: the implementation last, and first ([asyncio-one-signal]).
    tests = "test_many_small_messages_in_order or test_registration_nick_then_user"
    tests += " or (test_signal_while_a_client_is_not_reading and one-signal)"
    command += ["--contract-filter", tests]
    command += ["--out", str(tmp_path)]
    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip()))
    output = "\n".join(line for _, line in lines)
    assert process.returncode == 0, output
    first_at, first = lines[0]
    assert first.startswith("phase 1 of 2: the shared contract suite"), output
    assert first_at < 10, output
    collected_at = next(at for at, line in lines if line.startswith("collected "))
    assert collected_at < 10, output
    # The summary: each configuration with its three tests passed.
    for impl in CONTRACT_CONFIGURATIONS:
        assert re.search(rf"^  {re.escape(impl)} +3 passed, 0 failed$", output, re.M), output
    assert (tmp_path / "contract.log").read_text().count("passed") == 1
    times = json.loads((tmp_path / "contract-seconds.json").read_text())
    assert len(times) == 3 * len(CONTRACT_CONFIGURATIONS)
    assert all(seconds > 0 for seconds in times.values())
