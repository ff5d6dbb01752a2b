"""`make compare`'s contract phase: outcomes counted per implementation, progress from the start."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from echochat.bench.contract import ContractTally, implementation_of
from echochat.registry import CONTRACT_CONFIGURATIONS

ROOT = Path(__file__).resolve().parents[2]

EVENTS: list[dict[str, Any]] = [
    {
        "collected": [
            "t.py::test_names[asyncio]",
            "t.py::test_names[anyio-asyncio]",
            "t.py::test_signal[SIGINT-anyio-trio]",
            "t.py::test_signal[SIGTERM-asyncio+uvloop]",
            "t.py::test_core_only",
            "t.py::test_trap[asyncio-backend]",
        ]
    },
    {"test": "t.py::test_names[asyncio]", "outcome": "passed"},
    {"test": "t.py::test_names[anyio-asyncio]", "outcome": "failed"},
    {"test": "t.py::test_signal[SIGINT-anyio-trio]", "outcome": "passed"},
    {"test": "t.py::test_signal[SIGTERM-asyncio+uvloop]", "outcome": "skipped"},
    {"test": "t.py::test_core_only", "outcome": "passed"},
]


def test_ids_name_their_implementation() -> None:
    assert implementation_of("t[asyncio]") == "asyncio"
    assert implementation_of("t[anyio-asyncio]") == "anyio-asyncio"  # not plain asyncio
    assert implementation_of("t[SIGINT-anyio-trio]") == "anyio-trio"
    assert implementation_of("t[asyncio+uvloop]") == "asyncio+uvloop"
    assert implementation_of("t[asyncio-backend]") is None
    assert implementation_of("t") is None


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


def test_compare_shows_progress_within_10_s_and_counts_each_implementation(
    tmp_path: Path,
) -> None:
    """`bench compare` on two contract tests per implementation, read line by line as it runs.

    The whole suite runs for minutes; its first line must come at once, and
    each finished test must show before the end.
    """
    command = [sys.executable, "-m", "echochat", "bench", "compare", "--contract-only"]
    command += [
        "--contract-filter",
        "test_many_small_messages_in_order or test_registration_nick_then_user",
    ]
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
    # The summary: each configuration with its two tests passed.
    for impl in CONTRACT_CONFIGURATIONS:
        assert re.search(rf"^  {re.escape(impl)} +2 passed, 0 failed$", output, re.M), output
    assert (tmp_path / "contract.log").read_text().count("passed") == 1
