"""The shared contract suite, summarised per implementation for ``make compare``."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

from echochat.registry import CONTRACT_CONFIGURATIONS

# The behavioural tests every implementation must pass: the whole directory,
# so a test added there is counted without a list to keep. The pytest id
# names the implementation, e.g. test_names[anyio-trio] or test_x[SIGINT-trio].
CONTRACT_TESTS = "tests/contract"
_PARAMS = re.compile(r"\[(.*)\]$")


def run_contract_suite(root: Path) -> dict[str, Counter[str]]:
    """Run the contract tests; count outcomes ("passed", "failed", "skipped") per implementation."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                CONTRACT_TESTS,
            ],
            cwd=root,
            stdout=subprocess.DEVNULL,
            check=False,  # Failures are what we count, not a reason to stop.
        )
        return count_outcomes(report.read_text())


def count_outcomes(junit_xml: str) -> dict[str, Counter[str]]:
    outcomes: dict[str, Counter[str]] = {}
    for case in ElementTree.fromstring(junit_xml).iter("testcase"):
        impl = implementation_of(case.get("name", ""))
        if impl is None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        outcomes.setdefault(impl, Counter())[outcome] += 1
    return outcomes


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
