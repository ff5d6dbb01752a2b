"""The shared contract suite for `make compare`: run with progress, counted per implementation."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echochat.bench.contract_plugin import EVENTS_FD
from echochat.bench.progress import PLAIN_INTERVAL, PhaseProgress
from echochat.registry import CONTRACT_CONFIGURATIONS

# The behavioural tests every implementation must pass: the whole directory,
# so a test added there is counted without a list to keep. The pytest id
# names the implementation, e.g. test_names[anyio-trio] or test_x[SIGINT-trio].
CONTRACT_TESTS = "tests/contract"
_PARAMS = re.compile(r"\[(.*)\]$")


class ContractTally:
    """Tests per implementation and their outcomes so far, from the plugin's events."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {}

    def add(self, event: dict[str, Any]) -> str | None:
        """Take one event; return the implementation a finished test ran against."""
        if "collected" in event:
            for nodeid in event["collected"]:
                if (impl := implementation_of(nodeid)) is not None:
                    self.totals[impl] += 1
            return None
        impl = implementation_of(event["test"])
        if impl is not None:
            self.outcomes.setdefault(impl, Counter())[event["outcome"]] += 1
        return impl

    def status(self, impl: str) -> str:
        counts = self.outcomes.get(impl, Counter())
        text = f"{counts['passed']} passed, {counts['failed']} failed"
        return text + (f", {counts['skipped']} skipped" if counts["skipped"] else "")


def run_contract_suite(
    root: Path, log: Path, select_tests: str | None = None
) -> dict[str, Counter[str]]:
    """Run the contract tests with a bar per implementation; count outcomes per implementation.

    pytest's own output goes to ``log`` (read it for a failure's details);
    ``select_tests`` is pytest's ``-k``, for a quick check of this machinery.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "echochat.bench.contract_plugin", CONTRACT_TESTS]
    if select_tests is not None:
        command += ["-k", select_tests]
    tally = ContractTally()
    title = (
        "phase 1 of 2: the shared contract suite (tests/contract), every test against each of "
        f"{len(CONTRACT_CONFIGURATIONS)} configurations; usually 2-3 minutes. "
        f"pytest's output: {log}"
    )
    log.parent.mkdir(parents=True, exist_ok=True)
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
                    for name, total in tally.totals.items():
                        progress.set_total(name, total)
                    progress.log(f"collected {sum(tally.totals.values())} contract tests")
                elif impl is not None:
                    progress.advance(impl, status=tally.status(impl))
            # Failures are what we count, not a reason to stop.
            process.wait()
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
        readable, _, _ = select.select([fd], [], [], PLAIN_INTERVAL)
        if not readable:
            progress.tick()
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield json.loads(line)


def implementation_of(test_name: str) -> str | None:
    """The implementation a test ran against: the end of its id, e.g. ``[SIGINT-anyio-trio]``."""
    match = _PARAMS.search(test_name)
    if match is None:
        return None
    params = match.group(1)
    # Longest names first: "anyio-asyncio" also ends with "asyncio".
    for impl in sorted(CONTRACT_CONFIGURATIONS, key=len, reverse=True):
        if params == impl or params.endswith(f"-{impl}"):
            return impl
    return None
