"""The shared contract suite for `make compare`: run with progress, counted per implementation."""

from __future__ import annotations

import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echochat.bench.contract_plugin import EVENTS_FD
from echochat.bench.progress import PhaseProgress
from echochat.registry import CONTRACT_CONFIGURATIONS

# The behavioural tests every implementation must pass: the whole directory,
# so a test added there is counted without a list to keep.
CONTRACT_TESTS = "tests/contract"


class ContractTally:
    """Tests per implementation and their outcomes so far, from the plugin's events.

    Work is counted in seconds the tests took last time (``history``, test
    id -> seconds), so that the time left allows for the slow tests at the
    end (the soak tests take seconds each); without a history, one per test.
    """

    def __init__(self, history: dict[str, float] | None = None) -> None:
        self.history = history or {}
        self.usual = statistics.median(self.history.values()) if self.history else 1.0
        self.totals: Counter[str] = Counter()  # tests per implementation
        self.work: dict[str, float] = {}  # expected seconds per implementation
        self.outcomes: dict[str, Counter[str]] = {}
        self.seconds: dict[str, float] = {}  # test id -> seconds it took in this run

    def expected(self, test: str) -> float:
        return self.history.get(test, self.usual)

    def add(self, event: dict[str, Any]) -> str | None:
        """Take one event; return the implementation a finished test ran against."""
        if "collected" in event:
            for test, collected_impl in event["collected"]:
                if collected_impl is not None:
                    self.totals[collected_impl] += 1
                    work = self.work.get(collected_impl, 0.0) + self.expected(test)
                    self.work[collected_impl] = work
            return None
        impl: str | None = event["impl"]
        self.seconds[event["test"]] = event["seconds"]
        if impl is not None:
            self.outcomes.setdefault(impl, Counter())[event["outcome"]] += 1
        return impl

    def status(self, impl: str) -> str:
        counts = self.outcomes.get(impl, Counter())
        text = f"{counts['passed']} passed, {counts['failed']} failed"
        return text + (f", {counts['skipped']} skipped" if counts["skipped"] else "")


def run_contract_suite(
    root: Path, out: Path, select_tests: str | None = None
) -> dict[str, Counter[str]]:
    """Run the contract tests with a bar per implementation; count outcomes per implementation.

    pytest's own output goes to ``out/contract.log`` (read it for a failure's
    details), each test's time to ``out/contract-seconds.json`` for the next
    run's estimate; ``select_tests`` is pytest's ``-k``, for a quick check.
    """
    log, times = out / "contract.log", out / "contract-seconds.json"
    history = json.loads(times.read_text()) if times.exists() else {}
    # In this process (-n 0, not pytest-xdist's workers), where the plugin sees every test.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
    command += ["-p", "echochat.bench.contract_plugin", CONTRACT_TESTS]
    if select_tests is not None:
        command += ["-k", select_tests]
    tally = ContractTally(history)
    title = (
        "phase 1 of 2: the shared contract suite (tests/contract), every test against each of "
        f"{len(CONTRACT_CONFIGURATIONS)} configurations; 2-5 minutes on 2 cores. Time left "
        + (f"from the last run's test times ({times})" if history else "by test count")
        + f"; pytest's output: {log}"
    )
    out.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    with (
        PhaseProgress(title, dict.fromkeys(CONTRACT_CONFIGURATIONS, 0.0)) as progress,
        log.open("w") as output,
    ):
        try:
            process = subprocess.Popen(
                command,
                cwd=root,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, EVENTS_FD: str(write_end)},
                pass_fds=(write_end,),
            )
        finally:
            # Only pytest holds the write end now: its exit is our end-of-file.
            os.close(write_end)
        with process, _closing(read_end):
            for event in _events(read_end, progress):
                impl = tally.add(event)
                if "collected" in event:
                    for name, work in tally.work.items():
                        progress.set_total(name, work)
                    progress.log(f"collected {sum(tally.totals.values())} contract tests")
                elif impl is not None:
                    progress.advance(impl, tally.expected(event["test"]), tally.status(impl))
            # Failures are what we count, not a reason to stop.
            process.wait()
    times.write_text(json.dumps({**history, **tally.seconds}, indent=0) + "\n")
    return tally.outcomes


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[None]:
    try:
        yield
    finally:
        os.close(fd)


def _events(fd: int, progress: PhaseProgress) -> Iterator[dict[str, Any]]:
    """The plugin's JSON lines as they come; between them, the progress line stays fresh."""
    pending = b""
    while True:
        readable, _, _ = select.select([fd], [], [], progress.until_next_line())
        if not readable:
            progress.tick()
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield json.loads(line)
